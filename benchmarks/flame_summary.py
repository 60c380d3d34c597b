"""Summarise a py-spy flame graph (SVG from `fdr-benchmark --py-spy`).

The share of samples per thread and for the frames that matter on the node's hot path.

  .venv/bin/python benchmarks/flame_summary.py out/profile/yolox/flame_*.svg
"""
import html
import re
import sys
from typing import Dict, List, Tuple

# (label, substring of a py-spy frame title): inclusive share of all samples
HOT = [('inference (Session.run)', 'Session.run'),
       ('pre-processing (decode + letterbox)', 'PerceptionNode._preprocess'),
       ('post-processing (decode + NMS)', 'PerceptionNode._postprocess'),
       ('delivery (build + publish)', 'PerceptionNode._deliver'),
       ('image callback (submit)', 'FrameInputs.on_image'),
       ('executor: take + deserialise', 'Executor._take_subscription'),
       ('executor: wait for work', 'Executor.wait_for_ready_callbacks')]


def frames(svg: str) -> List[Tuple[str, float]]:
    out = []
    for title in re.findall(r'<title>(.*?)</title>', svg, re.S):
        m = re.match(r'(.*) \(([\d,]+) samples?, ([\d.]+)%\)$', html.unescape(title).strip())
        if m:
            out.append((m.group(1), float(m.group(3))))
    return out


def summary(path: str) -> None:
    rows = frames(open(path).read())
    threads: Dict[str, float] = {}
    for name, pct in rows:
        if name.startswith('thread ('):
            label = name.split(': ', 1)[-1]
            threads[label] = threads.get(label, 0.0) + pct
    print(f'{path}:')
    print('  per thread: ' + ', '.join(f'{k} {v:.1f} %' for k, v in
                                       sorted(threads.items(), key=lambda kv: -kv[1])))
    for label, key in HOT:
        # a frame can appear under several parents: add its boxes (they do not nest here)
        pct = sum(p for n, p in rows if key in n)
        print(f'  {label:<38} {pct:5.1f} %')


if __name__ == '__main__':
    for p in sys.argv[1:]:
        summary(p)

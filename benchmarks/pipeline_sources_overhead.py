"""What per-source input queues cost the single-camera path.

The pipeline of a base commit against the working tree's, on trivial stages (so only the
pipeline's own bookkeeping is timed), in one process, alternating runs.

  python benchmarks/pipeline_sources_overhead.py [--base 841b44d] [--frames 20000] [--runs 5]

Prints frames/s and microseconds per frame of each version (median over runs), for the default
source (single camera) and, for the tree's version, two named sources (two cameras).
"""
from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_pipeline(commit: str):
    """core/pipeline.py of `commit`, imported inside the package so its relative imports work."""
    src = subprocess.run(['git', '-C', str(ROOT), 'show',
                          f'{commit}:faster_deployment_ros/core/pipeline.py'],
                         check=True, capture_output=True, text=True).stdout
    tmp = Path(tempfile.mkdtemp()) / 'pipeline_base.py'
    tmp.write_text(src)
    import faster_deployment_ros.core  # noqa: F401 - the parent package
    spec = importlib.util.spec_from_file_location('faster_deployment_ros.core._pipeline_base',
                                                  tmp)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def run_once(mod, frames: int, sources: int) -> float:
    """Seconds to push `frames` through with the producer blocking (full throughput)."""
    done = threading.Event()
    count = [0]

    def sink(r):
        count[0] += 1
        if count[0] == frames:
            done.set()

    p = mod.Pipeline(lambda x: (x, x), [lambda t: t], lambda o, m: o, sink, queue_size=2,
                     full_policy='block', name='ovh')
    t0 = time.perf_counter()
    if sources == 0:
        for i in range(frames):
            p.submit(i)
    else:
        for i in range(frames):
            p.submit(i, source=i % sources)
    done.wait(120)
    dt = time.perf_counter() - t0
    p.close()
    return dt


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--base', default='841b44d')
    ap.add_argument('--frames', type=int, default=20000)
    ap.add_argument('--runs', type=int, default=5)
    args = ap.parse_args()
    from faster_deployment_ros.core import pipeline as tree
    base = load_pipeline(args.base)
    cases = [(f'base {args.base}, one source', base, 0), ('tree, one source', tree, 0),
             ('tree, two named sources', tree, 2)]
    times = {label: [] for label, _, _ in cases}
    run_once(tree, 2000, 0)  # warm-up
    for _ in range(args.runs):
        for label, mod, sources in cases:
            times[label].append(run_once(mod, args.frames, sources))
    print(f'| pipeline | frames/s (median of {args.runs}) | us per frame | runs (s) |')
    print('|---|---|---|---|')
    for label, ts in times.items():
        med = statistics.median(ts)
        print(f'| {label} | {args.frames / med:.0f} | {1e6 * med / args.frames:.1f} | '
              f'{", ".join(f"{t:.2f}" for t in ts)} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""One line per run and model of `benchmarks/outside_view.sh` results: issue #23's item 2 figures.

For the node, the minimal hand-rolled node and the minimal node without spinning: p50 - floor -
bare (the floor's answer empty), the same with the answer in hand as bytes, and p50 -
floor_answer - bare (the floor answering with the same detections) with its rounds; p99 over
the bare p99; the receiver's deserialization p50; and the CPU other users took meanwhile.

  .venv/bin/python benchmarks/outside_view_table.py out/outside_view [...]
  .venv/bin/python benchmarks/outside_view_table.py benchmarks/results/outside_view_floor_answer*
"""
import json
from pathlib import Path
import sys

MODELS = ('yolox_nano', 'yolov8n')
RUNS = ('node', 'minimal', 'minimal_nospin')


def load(run_dir: Path, model: str):
    """Return the fdr-benchmark result: OUT/<model>/benchmark.json, or <model>.json."""
    for path in (run_dir / model / 'benchmark.json', run_dir / f'{model}.json'):
        if path.exists():
            return json.loads(path.read_text())
    return None


def line(name: str, model: str, res) -> str:
    t, ov = res['targets']['outside_view'], res['outside_view']
    foreign = [r[n]['foreign_cpu_cores'] for r in ov['rounds'] for n in r
               if n not in ('order', 'bare')]
    cells = [name, model, f'{t["rate_hz"]:.1f} Hz', f'floor {t["floor_p50_ms"]:.1f}',
             f'floor_answer {t["floor_answer_p50_ms"]:.1f}', f'bare {t["bare_p50_ms"]:.1f}']
    for run in RUNS:
        r = t['runs'][run]
        rounds = ', '.join(f'{v:+.1f}' for v in r['over_floor_answer_per_round_ms'])
        cells.append(f'{run}: {r["over_floor_plus_bare_ms"]:+.1f} / bytes '
                     f'{r["over_floor_plus_bare_received_ms"]:+.1f} / floor_answer '
                     f'{r["over_floor_answer_plus_bare_ms"]:+.1f} ({rounds}) p99 '
                     f'x{r["p99_over_bare_p99"]} deser {r["answer_deserialise_p50_ms"]:.2f}')
    cells.append(f'other users {min(foreign):.2f}-{max(foreign):.2f} cores')
    return ' | '.join(cells)


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for arg in sys.argv[1:]:
        for model in MODELS:
            res = load(Path(arg), model)
            if res is not None and 'outside_view' in res.get('targets', {}):
                print(line(Path(arg).name, model, res))


if __name__ == '__main__':
    main()

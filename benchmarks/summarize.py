"""benchmark.json -> Markdown tables (for docs/performance.md).

Usage:
  python benchmarks/summarize.py out/benchmark/benchmark.json [more.json ...]
"""
from __future__ import annotations

import json
from pathlib import Path
import sys


def fmt(v, nd=1):
    return '-' if v is None else f'{v:.{nd}f}'


def tables(res: dict) -> str:
    m = res['meta']
    out = [f"**{Path(m['model']).name}** ({m['family']}, {m['backend']}), {m['frames']} frames "
           f"{m['frame_shape'][1]}x{m['frame_shape'][0]}, {m['cores']} cores, load "
           f"{m['load_avg'][0]:.1f} at start; `{m['command']}`", '']
    if res.get('bare'):
        out += ['| bare backend | pre p50 | infer p50 / p99 | post p50 | frame p50 '
                '| infer-only fps '
                '| CPU cores | other users |', '|---|---|---|---|---|---|---|---|']
        for b in res['bare']:
            out.append(f"| 1x{b['threads']} | {fmt(b['pre_ms']['p50'], 2)} | "
                       f"{fmt(b['infer_ms']['p50'], 2)} / {fmt(b['infer_ms']['p99'], 2)} | "
                       f"{fmt(b['post_ms']['p50'], 2)} | {fmt(b['frame_ms']['p50'], 2)} | "
                       f"{fmt(b['infer_fps'])} | {fmt(b['cpu_cores'], 2)} | "
                       f"{fmt(b.get('foreign_cpu_cores'), 2)} |")
        out.append('')
    runs = ([res['serial']] if res.get('serial') else []) + (res.get('pipeline') or [])
    runs += [res['autotune_run']] if res.get('autotune_run') else []
    runs += res.get('ros') or []
    runs += [res['soak']] if res.get('soak') else []
    if runs:
        out += ['| run | input Hz | fps | latency p50 / p90 / p99 ms | in / out / dropped | '
                'order viol. | CPU cores | other users |', '|---|---|---|---|---|---|---|---|']
        for r in runs:
            lat = r['latency_ms']
            cpu = r.get('cpu_cores', r.get('node_cpu_cores'))
            rate = r.get('input_fps') or r.get('input_rate')
            out.append(f"| {r['config']} | {fmt(rate) if rate else 'max'} | {fmt(r['fps'])} | "
                       f"{fmt(lat['p50'])} / {fmt(lat['p90'])} / {fmt(lat['p99'])} | "
                       f"{r['frames_in']} / {r['frames_out']} / {r['dropped']} | "
                       f"{r['order_violations']} | {fmt(cpu, 2)} | "
                       f"{fmt(r.get('foreign_cpu_cores'), 2)} |")
        out.append('')
    if res.get('autotune'):
        out += [f"autotune: {res['autotune']['reason']}", '']
    return '\n'.join(out)


def main() -> None:
    for p in sys.argv[1:]:
        print(tables(json.loads(Path(p).read_text())))


if __name__ == '__main__':
    main()

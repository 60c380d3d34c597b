"""Markdown tables of issue #14's numbers from `benchmarks/latency_budget.sh` results.

Usage: `.venv/bin/python benchmarks/summarize_budget.py out/latency_budget/*/benchmark.json`
"""
import json
import sys

HOPS = ('transport', 'callback', 'queue', 'pre', 'infer', 'post', 'handover', 'build',
        'publish')


def ms(d, q='p50'):
    return f'{d[q]:.1f}'


def others(*runs):
    vals = [r.get('foreign_cpu_cores', 0.0) for r in runs]
    return f'{min(vals):.2f}-{max(vals):.2f}'


def main(paths):
    rows = []
    for p in paths:
        r = json.load(open(p))
        name = r['meta']['model'].rsplit('/', 1)[-1]
        t, b = r['targets'], r['budget']
        rounds = b['rounds']
        fl = [x['floor'] for x in rounds]
        nd = [x['node'] for x in rounds]
        bare = [x['bare'] for x in rounds]
        print(f'### {name} (node {b["node_config"]}, started {r["meta"]["started"]}, load '
              f'{r["meta"]["load_avg"][0]:.2f} -> {r["meta"]["load_end"]:.2f})\n')
        print('| run @ {:.3g} Hz (half capacity) | p50 ms | p99 ms | other users (cores) |'.format(
            b['rate_hz']))
        print('|---|---|---|---|')
        print(f'| bare model, paced (pre+infer+post) | {b["bare_frame_ms"]["p50"]:.1f} | '
              f'{b["bare_frame_ms"]["p99"]:.1f} | {others(*bare)} |')
        print(f'| transport floor | {ms(b["floor_ms"])} | {ms(b["floor_ms"], "p99")} | '
              f'{others(*fl)} |')
        print(f'| **node** (shipped YAML) | **{ms(b["node_ms"])}** | {ms(b["node_ms"], "p99")} | '
              f'{others(*nd)} |')
        for v, d in b.get('variants', {}).items():
            vr = [x['variants'][v] for x in rounds]
            print(f'| node, variant `{v}` | {ms(d["node_ms"])} | {ms(d["node_ms"], "p99")} | '
                  f'{others(*vr)} |')
        o = t['overhead']
        print(f'\nnode p50 - (floor + bare) = **{o["node_over_floor_plus_bare_ms"]:+.1f} ms** '
              f'(ratio {o["ratio"]}; target <= +3 ms: {"met" if o["p50_ok"] else "NOT met"}); '
              f'p99 {o["node_p99_ms"]:.1f} vs {o["floor_plus_bare_ms"] + 13:.1f} allowed '
              f'({"met" if o["p99_ok"] else "NOT met"}).\n')
        h = b['node_hops_ms']
        print('Node per hop, p50 ms: ' + ', '.join(f'{k} {h[k]["p50"]:.2f}' for k in HOPS
                                                   if k in h) + '.\n')
        if 'overload' in t:
            ov, x = t['overload'], r['overload']
            print(f'Overload @ {ov["rate_hz"]:.3g} Hz: p50 {ov["p50_ms"]:.1f} ms vs ideal '
                  f'{ov["ideal_p50_ms"]:.1f} (floor {x["floor"]["latency_ms"]["p50"]:.1f} + '
                  f'stages {x["stages_p50_ms"]:.1f} + half period {x["half_period_ms"]:.1f}) = '
                  f'x{ov["p50_over_ideal"]}; p99 {ov["p99_ms"]:.1f} = {ov["p99_over_p50"]} x p50; '
                  f'{ov["fps"]:.1f} fps; other users {x["node"]["foreign_cpu_cores"]:.2f}. '
                  + ' '.join(f'Variant `{k}`: p50 {v["latency_ms"]["p50"]:.1f} / p99 '
                             f'{v["latency_ms"]["p99"]:.1f} ms, {v["fps"]:.1f} fps.'
                             for k, v in x.get('variants', {}).items()) + '\n')
        s, x = t['saturation'], r['saturation']
        print(f'Saturated @ {s["rate_hz"]:.3g} Hz: node {s["node_fps"]:.1f} fps vs pipeline '
              f'alone {s["pipeline_alone_fps"]:.1f} = {s["fps_ratio"]}; node CPU '
              f'{x["node_cpu_ms_per_frame_out"]:.1f} ms per delivered frame, inference alone '
              f'{x["infer_cpu_ms_per_frame"]:.1f} ms: outside inference '
              f'**{s["cpu_outside_inference_ms"]:.1f} ms** (transport floor alone '
              f'{x.get("floor_cpu_ms_per_frame", float("nan")):.1f} ms per frame); other users '
              f'{x["node"]["foreign_cpu_cores"]:.2f}.\n')
        if 'ultralytics' in t:
            u = t['ultralytics']
            print(f'ultralytics predict: {u["ultralytics_fps"]:.1f} fps, p50 '
                  f'{u["ultralytics_p50_ms"]:.1f} ms; node {u["node_fps"]:.1f} fps '
                  f'(x{u["fps_ratio"]}), node p50 at that rate '
                  f'{u["node_p50_at_same_rate_ms"]:.1f} ms.\n')
        rows.append(name)


if __name__ == '__main__':
    main(sys.argv[1:])

"""The issue's targets from what was measured, printed and charted.

Charts: throughput against latency per configuration (dot at p50, bar to p99), and the latency
budget per hop of the node next to the transport floor and the bare model (matplotlib, Agg).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

HOP_ORDER = ('transport', 'callback', 'queue', 'pre', 'infer', 'post', 'handover', 'build',
             'publish')
_COLORS = {'bare': '#1f77b4', 'serial': '#2ca02c', 'pipeline': '#ff7f0e', 'ros': '#d62728',
           'autotune': '#9467bd', 'ultralytics': '#8c564b', 'soak': '#7f7f7f',
           'floor': '#17becf'}


def plot_points(res: Dict[str, Any]) -> List[Dict[str, Any]]:
    pts = []
    for b in res.get('bare', []):
        pts.append({'kind': 'bare', 'label': f'bare 1x{b["threads"]} (infer only fps)',
                    'fps': b['infer_fps'], 'p50': b['frame_ms']['p50'],
                    'p99': b['frame_ms']['p99']})
    runs: List[Any] = []
    for key in ('serial', 'pipeline', 'autotune_run', 'ros', 'soak', 'at_ultralytics_rate'):
        items = res.get(key) or []
        runs += [(key, r) for r in (items if isinstance(items, list) else [items])]
    b = res.get('budget') or {}
    for rnd in b.get('rounds', [])[-1:]:
        runs += [('floor', rnd['floor']), ('ros', rnd['node'])]
    for key in ('overload', 'saturation'):
        sec = res.get(key) or {}
        runs += [('ros', sec['node'])] if 'node' in sec else []
        runs += [('pipeline', sec['pipeline_alone'])] if 'pipeline_alone' in sec else []
    for key, r in runs:
        if r and 'latency_ms' in r:
            kind = {'autotune_run': 'autotune', 'at_ultralytics_rate': 'ros'}.get(key, key)
            pts.append({'kind': kind, 'label': r['config'], 'fps': r['fps'],
                        'p50': r['latency_ms']['p50'], 'p99': r['latency_ms']['p99']})
    u = res.get('ultralytics') or {}
    if 'fps' in u:
        pts.append({'kind': 'ultralytics', 'label': 'ultralytics predict',
                    'fps': u['fps'], 'p50': u['latency_ms']['p50'],
                    'p99': u['latency_ms']['p99']})
    return pts


def plot(res: Dict[str, Any], path: Path, title: str) -> None:
    """benchmark.png: throughput vs latency; and, when measured, the per-hop budget."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    pts = [p for p in plot_points(res) if p.get('fps') and p.get('p50')]
    budget = res.get('budget') or {}
    hops = budget.get('node_hops_ms') or {}
    ncols = 2 if hops else 1
    fig, axes = plt.subplots(1, ncols, figsize=(11, 7), dpi=100, squeeze=False,
                             gridspec_kw={'width_ratios': [3, 2]} if hops else None)
    ax = axes[0][0]
    for k, p in enumerate(pts):
        c = _COLORS.get(p['kind'], 'black')
        ax.plot([p['p50'], p.get('p99') or p['p50']], [p['fps']] * 2, color=c, lw=1)
        ax.plot(p['p50'], p['fps'], 'o', color=c, label=f'{k + 1}. {p["label"]}'[:48])
        ax.annotate(str(k + 1), (p['p50'], p['fps']), textcoords='offset points',
                    xytext=(4, 4), fontsize=7, color=c)
    ax.set_xlabel('latency ms (dot p50, bar to p99)')
    ax.set_ylabel('fps')
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if pts:
        ax.legend(fontsize=6, loc='upper right', framealpha=0.8)
    ax.set_title(title[:90], fontsize=9)
    if hops:
        ax2 = axes[0][1]
        bars = [('bare model (paced)', [('pre+infer+post', budget['bare_frame_ms']['p50'])]),
                ('transport floor', [('round trip', budget['floor_ms']['p50'])]),
                ('node', [(h, hops[h]['p50']) for h in HOP_ORDER if h in hops])]
        cmap = plt.get_cmap('tab10')
        for y, (name, parts) in enumerate(bars):
            left = 0.0
            for j, (part, v) in enumerate(parts):
                ax2.barh(y, v, left=left, color=cmap(j % 10), edgecolor='white')
                if v >= 1.0:
                    ax2.text(left + v / 2, y, part, ha='center', va='center', fontsize=6,
                             rotation=90 if v < 6 else 0)
                left += v
        ax2.barh(len(bars), budget['node_ms']['p50'], color='#444444')
        ax2.set_yticks(range(len(bars) + 1))
        ax2.set_yticklabels([b[0] for b in bars] + ['node end to end'], fontsize=8)
        ax2.set_xlabel('ms (p50 per hop)')
        ax2.set_title(f'latency budget @{budget["rate_hz"]:.3g} Hz', fontsize=9)
        ax2.grid(alpha=0.3, axis='x')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------ targets
def _ratio(a: float, b: float) -> Optional[float]:
    return round(a / b, 3) if b else None


def targets(res: Dict[str, Any]) -> Dict[str, Any]:
    """Return the issue's targets from what was measured (absent where a section was skipped)."""
    out: Dict[str, Any] = {}
    bare = res.get('bare') or []
    if bare:
        best = max(bare, key=lambda b: b['infer_fps'])
        out['bare_best'] = {'threads': best['threads'], 'infer_fps': best['infer_fps'],
                            'frame_p50_ms': best['frame_ms']['p50']}
    b = res.get('budget')
    if b:
        floor, bare_p50, node = b['floor_ms']['p50'], b['bare_frame_ms']['p50'], b['node_ms']
        limit = floor + bare_p50
        out['overhead'] = {
            'rate_hz': b['rate_hz'], 'floor_p50_ms': floor, 'bare_p50_ms': bare_p50,
            'node_p50_ms': node['p50'], 'node_p99_ms': node['p99'],
            'floor_plus_bare_ms': round(limit, 3),
            'node_over_floor_plus_bare_ms': round(node['p50'] - limit, 3),
            'ratio': _ratio(node['p50'], limit),
            'p50_ok': bool(node['p50'] <= limit + 3.0),
            'p99_ok': bool(node['p99'] <= limit + 13.0)}
    ov = res.get('outside_view')
    if ov and 'runs' in ov:
        out['outside_view'] = outside_targets(ov)
    o = res.get('overload')
    if o:
        lat = o['node']['latency_ms']
        out['overload'] = {
            'rate_hz': o['rate_hz'], 'ideal_p50_ms': o['ideal_p50_ms'], 'p50_ms': lat['p50'],
            'p99_ms': lat['p99'], 'p50_over_ideal': _ratio(lat['p50'], o['ideal_p50_ms']),
            'p99_over_p50': _ratio(lat['p99'], lat['p50']), 'fps': o['node']['fps'],
            'p50_ok': bool(lat['p50'] <= 1.1 * o['ideal_p50_ms']),
            'p99_ok': bool(lat['p99'] <= 1.5 * lat['p50'])}
    s = res.get('saturation')
    if s:
        out['saturation'] = {
            'rate_hz': s['rate_hz'], 'node_fps': s['node']['fps'],
            'pipeline_alone_fps': s['pipeline_alone']['fps'], 'fps_ratio': s['fps_ratio'],
            'fps_ok': bool(s['fps_ratio'] is not None and s['fps_ratio'] >= 0.9),
            'cpu_outside_inference_ms': s['node_cpu_ms_outside_inference_per_frame'],
            'floor_cpu_ms_per_frame': s.get('floor_cpu_ms_per_frame'),
            'cpu_ok': bool(s['node_cpu_ms_outside_inference_per_frame'] <= 3.0)}
    u = res.get('ultralytics') or {}
    at = res.get('at_ultralytics_rate')
    if 'fps' in u and s:
        node_fps = s['node']['fps']
        out['ultralytics'] = {
            'ultralytics_fps': u['fps'], 'ultralytics_p50_ms': u['latency_ms']['p50'],
            'node_fps': node_fps, 'fps_ratio': _ratio(node_fps, u['fps']),
            'fps_ok': bool(node_fps >= 1.2 * u['fps']),
            'node_p50_at_same_rate_ms': at['latency_ms']['p50'] if at else None,
            'p50_ok': bool(at and at['latency_ms']['p50'] < u['latency_ms']['p50'])}
    pipe = [p for p in res.get('pipeline') or [] if not p.get('input_rate')]
    if pipe and bare:
        single = max([p['fps'] for p in pipe if p['workers'] == 1]
                     + [x['infer_fps'] for x in bare])
        multi = max(pipe, key=lambda p: p['fps'])
        out['multi_worker'] = {
            'best': multi['config'], 'fps': multi['fps'], 'best_single_session_fps': single,
            'ratio': _ratio(multi['fps'], single),
            'ratio_ok': bool(single and multi['fps'] >= 3 * single),
            'order_violations': sum(p['order_violations'] for p in res['pipeline'])}
    run = res.get('autotune_run')
    if run:
        budget = res['autotune']['latency_budget_ms']
        out['autotune'] = {'config': run['config'], 'p99_ms': run['latency_ms']['p99'],
                           'budget_ms': budget, 'p99_ok': bool(run['latency_ms']['p99'] <= budget),
                           'dropped': run['dropped'], 'frames_in': run['frames_in']}
    soak = res.get('soak')
    if soak and soak.get('flatness'):
        out['soak'] = soak['flatness']
    return out


def outside_targets(ov: Dict[str, Any]) -> Dict[str, Any]:
    """Issue #23's targets from the outside view: p50 <= floor + bare + 3 ms, p99 <= 2 x bare.

    The floor answers each frame with an empty Detection2DArray, the node with its detections.
    Each run also carries `over_floor_plus_bare_received_ms`: the same p50 difference with the
    answer in hand as bytes, before the receiver deserializes it, and the receiver's
    deserialization p50; and, where the run had the floor answering with the same detections
    (`floor_answer`), `over_floor_answer_plus_bare_ms` against that floor, with its own verdict
    `p50_answer_ok` (<= +3 ms).
    """
    floor, bare = ov['runs']['floor']['latency_ms'], ov['bare_ms']
    answer = ov['runs'].get('floor_answer')
    out: Dict[str, Any] = {'rate_hz': ov['rate_hz'], 'floor_p50_ms': floor['p50'],
                           'floor_answer_p50_ms': answer['latency_ms']['p50'] if answer else None,
                           'bare_p50_ms': bare['p50'], 'bare_p99_ms': bare['p99'],
                           'bare_threads': ov['bare_threads'], 'runs': {}}
    for name, run in ov['runs'].items():
        if 'over_floor_plus_bare_ms' not in run:  # a floor, not a run to hold to the targets
            continue
        lat = run['latency_ms']
        over = run['over_per_round_ms']
        out['runs'][name] = {
            'p50_ms': lat['p50'], 'p90_ms': lat['p90'], 'p99_ms': lat['p99'],
            'over_floor_plus_bare_ms': run['over_floor_plus_bare_ms'],
            'over_per_round_ms': over, 'spread_ms': round(max(over) - min(over), 3),
            'p99_over_bare_p99': _ratio(lat['p99'], bare['p99']),
            'lost': run['lost'], 'frames_in': run['frames_in'],
            'decomposition_ms': run.get('decomposition_ms', {}),
            'answer_deserialise_p50_ms': run.get('answer_deserialise_p50_ms'),
            'over_floor_plus_bare_received_ms': run.get('over_floor_plus_bare_received_ms'),
            'p50_ok': bool(run['over_floor_plus_bare_ms'] <= 3.0),
            'p99_ok': bool(lat['p99'] <= 2.0 * bare['p99'])}
        if 'over_floor_answer_plus_bare_ms' in run:
            over_a = run['over_floor_answer_per_round_ms']
            out['runs'][name].update(
                over_floor_answer_plus_bare_ms=run['over_floor_answer_plus_bare_ms'],
                over_floor_answer_per_round_ms=over_a,
                floor_answer_spread_ms=round(max(over_a) - min(over_a), 3),
                p50_answer_ok=bool(run['over_floor_answer_plus_bare_ms'] <= 3.0))
    return out


def _outside(o: Dict[str, Any], res: Dict[str, Any]) -> List[str]:
    lines = [f'outside view @{o["rate_hz"]:.3g} Hz (separate publisher / receiver processes): '
             f'floor p50 {o["floor_p50_ms"]:.1f} ms, bare ONNX Runtime ({o["bare_threads"]} '
             f'thr, default options) p50 {o["bare_p50_ms"]:.1f} p99 {o["bare_p99_ms"]:.1f} ms']
    for name, r in o['runs'].items():
        dec = ', '.join(f'{k} {v:+.2f}' for k, v in r['decomposition_ms'].items())
        lines.append(
            f'  {name}: p50 {r["p50_ms"]:.1f} p90 {r["p90_ms"]:.1f} p99 {r["p99_ms"]:.1f} ms; '
            f'p50 - floor - bare {r["over_floor_plus_bare_ms"]:+.1f} ms (rounds '
            f'{", ".join(f"{v:+.1f}" for v in r["over_per_round_ms"])}; <= +3: '
            f'{_ok(r["p50_ok"])}), p99 = {r["p99_over_bare_p99"]} x bare p99 (<= 2: '
            f'{_ok(r["p99_ok"])}), lost {r["lost"]}/{r["frames_in"]}'
            + (f'\n    answer in hand as bytes (before the receiver deserializes '
               f'{r["answer_deserialise_p50_ms"]:.2f} ms p50 of it): p50 - floor - bare '
               f'{r["over_floor_plus_bare_received_ms"]:+.1f} ms'
               if r.get('over_floor_plus_bare_received_ms') is not None else '')
            + (f'\n    against the floor answering with the same detections (p50 '
               f'{o["floor_answer_p50_ms"]:.1f} ms): p50 - floor_answer - bare '
               f'{r["over_floor_answer_plus_bare_ms"]:+.1f} ms (rounds '
               f'{", ".join(f"{v:+.1f}" for v in r["over_floor_answer_per_round_ms"])}; <= +3: '
               f'{_ok(r["p50_answer_ok"])})'
               if 'over_floor_answer_plus_bare_ms' in r else '')
            + (f'\n    made of (p50 ms): {dec}' if dec else ''))
    return lines


def _ok(flag: Any) -> str:
    return 'n/a' if flag is None else ('MET' if flag else 'NOT MET')


def _variants(res: Dict[str, Any], section: str) -> Dict[str, Any]:
    return (res.get(section) or {}).get('variants') or {}


def _overhead(o: Dict[str, Any], res: Dict[str, Any]) -> List[str]:
    hops = (res.get('budget') or {}).get('node_hops_ms') or {}
    return ([f'overhead @{o["rate_hz"]:.3g} Hz: node p50 {o["node_p50_ms"]:.1f} ms vs transport '
             f'floor {o["floor_p50_ms"]:.1f} + bare paced {o["bare_p50_ms"]:.1f} = '
             f'{o["floor_plus_bare_ms"]:.1f} ms: {o["node_over_floor_plus_bare_ms"]:+.1f} ms, '
             f'ratio {o["ratio"]} (<= +3 ms: {_ok(o["p50_ok"])}); p99 {o["node_p99_ms"]:.1f} '
             f'(<= +13 ms: {_ok(o["p99_ok"])})']
            + (['  node per hop p50 ms: ' + ', '.join(
                f'{h} {hops[h]["p50"]:.2f}' for h in HOP_ORDER if h in hops)] if hops else [])
            + [f'  variant {name}: p50 {v["node_ms"]["p50"]:.1f} p99 {v["node_ms"]["p99"]:.1f}'
               f' ms (node {o["node_p50_ms"]:.1f} / {o["node_p99_ms"]:.1f})'
               for name, v in _variants(res, 'budget').items()])


def _overload(o: Dict[str, Any], res: Dict[str, Any]) -> List[str]:
    return [f'overload @{o["rate_hz"]:.3g} Hz: p50 {o["p50_ms"]:.1f} ms vs ideal '
            f'{o["ideal_p50_ms"]:.1f} (x{o["p50_over_ideal"]}, <= 1.1: {_ok(o["p50_ok"])}), p99 '
            f'{o["p99_ms"]:.1f} = {o["p99_over_p50"]} x p50 (<= 1.5: {_ok(o["p99_ok"])}), '
            f'{o["fps"]:.1f} fps'] + [
        f'  variant {name}: p50 {v["latency_ms"]["p50"]:.1f} p99 {v["latency_ms"]["p99"]:.1f} '
        f'ms vs ideal {v["ideal_p50_ms"]:.1f}, {v["fps"]:.1f} fps'
        for name, v in _variants(res, 'overload').items()]


def _ultralytics(u: Dict[str, Any], res: Dict[str, Any]) -> List[str]:
    p50 = u['node_p50_at_same_rate_ms']
    return [f'ultralytics predict: {u["ultralytics_fps"]:.1f} fps, p50 '
            f'{u["ultralytics_p50_ms"]:.1f} ms; node {u["node_fps"]:.1f} fps = '
            f'{u["fps_ratio"]} x (>= 1.2: {_ok(u["fps_ok"])}), node p50 at that rate '
            f'{"n/a" if p50 is None else f"{p50:.1f}"} ms (below: {_ok(u["p50_ok"])})']


#: target -> its summary line: a format over the target's values (``{X_ok}``: MET / NOT MET)
_TARGET_FORMATS = {
    'saturation': 'saturated @{rate_hz:.3g} Hz: node {node_fps:.1f} fps vs pipeline alone '
                  '{pipeline_alone_fps:.1f} = {fps_ratio} (>= 0.9: {fps_ok}); node CPU outside '
                  'inference {cpu_outside_inference_ms:.2f} ms/frame (<= 3: {cpu_ok}; the '
                  'transport floor alone: {floor_cpu_ms_per_frame:.2f} ms/frame)',
    'multi_worker': 'multi-worker {best}: {fps:.1f} fps = {ratio} x best single session '
                    '({best_single_session_fps:.1f}) (>= 3x: {ratio_ok}), order violations '
                    '{order_violations}',
    'autotune': 'autotune {config}: p99 {p99_ms:.1f} ms vs budget {budget_ms:g} ms ({p99_ok}), '
                'dropped {dropped}/{frames_in}',
    'soak': 'soak: p50 first {first_p50} -> last {last_p50} ms at {first_fps} -> {last_fps} '
            'fps; waiting (p50 - workers/rate) {first_excess} -> {last_excess} ms, trend '
            '{excess_slope_ms_per_min} ms/min: no queue growth {flat}',
}


class _Values(dict):
    """A target's values for its format; one it lacks reads None (soak's may be missing)."""

    def __missing__(self, key: str) -> None:
        return None


def _formatted(key: str) -> Callable[[Dict[str, Any], Dict[str, Any]], List[str]]:
    def lines(v: Dict[str, Any], res: Dict[str, Any]) -> List[str]:
        values = _Values(v)
        values.update({k: _ok(values[k]) for k in ('flat', *v) if k == 'flat' or
                       k.endswith('_ok')})
        return [_TARGET_FORMATS[key].format_map(values)]
    return lines


#: the targets in the order they are printed, each with what prints it
TARGET_LINES = (('overhead', _overhead), ('outside_view', _outside), ('overload', _overload),
                ('saturation', _formatted('saturation')), ('ultralytics', _ultralytics),
                ('multi_worker', _formatted('multi_worker')),
                ('autotune', _formatted('autotune')), ('soak', _formatted('soak')))


def print_targets(t: Dict[str, Any], res: Dict[str, Any]) -> None:
    """Print the measured targets (targets()), MET or NOT MET, one line each."""
    print(f'\n== targets == (load average {res.get("meta", {}).get("load_end", "?")})')
    for key, lines in TARGET_LINES:
        if key in t:
            print('\n'.join(lines(t[key], res)))

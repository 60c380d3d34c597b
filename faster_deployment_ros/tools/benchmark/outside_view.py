"""The node's latency as an outside observer measures it, beside the transport floor and bare ORT.

`fdr-benchmark --outside-view`: separate processes for everything (tools/benchmark/probe.py): a
camera publisher and a detections receiver (latency = receipt time - time of the publish call,
one monotonic clock), the node under test, the transport floor (the echo node: what any Python
node pays to receive a 720p frame and answer), plain ONNX Runtime with default session options
at the best thread count of a short sweep, paced at the same rate (pre + infer + post with the
package's adapter), and the minimal hand-rolled node (the echo node running that same session
and adapter in its subscription callback, one frame at a time: what receiving frames on the
same cores costs the model without anything of the node's), once with ONNX Runtime's default
spinning threads and once without (`minimal_nospin`, the node's setting on <= 4 cores), and
the transport floor answering with detections (`floor_answer`: the echo node answering each
frame with that session's detections for it, computed once at its start, so the receiver gets
and deserializes the same answer as from the node, and no model runs). This process only starts
them and reads their answers, so nothing of it runs in the measured path.

Interleaved rounds (a new random order each round) of: bare, floor, floor_answer, minimal,
minimal_nospin, node, each --variant. The node's own per-hop budget (/diagnostics, read by the
receiver after each of its runs) says what the outside difference node - floor - bare is made
of: how much slower the node's pre / infer / post run than the bare loop's, the hops only the
node has (callback, queue, hand-overs, build, publish), and the receiver's deserialization of
the detections. node - floor_answer - bare is the same difference with a floor whose answer
is the same as the node's.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
import random
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .common import Model, Progress
from .ros_harness import (floor_command, hops_from_diag, node_settings, parse_rate,
                          parse_variant)
from ..processes import CpuWatch, load_avg, node_command, start_process, stop_processes
from ..report import order_violations
from ...core.stats import summarize
from ...ros.middleware_env import apply_camera_env, private_domain

PROBE = [sys.executable, '-m', 'faster_deployment_ros.tools.benchmark.probe']
#: stages the bare loop and the node both have (the node's hop names)
STAGES = ('pre', 'infer', 'post')
#: hops only the node has, between receiving a frame and publishing its answer
NODE_ONLY = ('callback', 'queue', 'handover', 'build', 'publish')
#: targets that publish no /diagnostics (the echo node, with and without a model)
NO_DIAGNOSTICS = ('floor', 'floor_answer', 'minimal', 'minimal_nospin')
#: the floors: what answering costs without a model run, empty and with the node's detections
FLOORS = ('floor', 'floor_answer')


def _summary_ms(values_ms: Sequence[float]) -> Dict[str, float]:
    s = summarize(np.asarray(values_ms, float) / 1e3) if len(values_ms) else summarize([])
    out = {k: round(v, 3) for k, v in s.items()}
    out['p90'] = round(float(np.percentile(values_ms, 90)), 3) if len(values_ms) else 0.0
    return out


class _Child:
    """A probe process spoken to in JSON lines (stdin / stdout); its stderr in a log file."""

    def __init__(self, args: List[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, 'w')
        self.proc = subprocess.Popen(PROBE + args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, text=True,
                                     bufsize=1)
        self.ask(None)  # its 'ready' line

    def ask(self, cmd: Optional[Dict[str, Any]]) -> Dict[str, Any]:
        if cmd is not None:
            self.proc.stdin.write(json.dumps(cmd) + '\n')
            self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self._log.flush()
            raise RuntimeError(f'probe {self.proc.args[3]} ended ({self.proc.poll()}); see '
                               f'{self.log_path}:\n{self.log_path.read_text()[-2000:]}')
        return json.loads(line)

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            stop_processes([self.proc], timeout=5.0)
        self._log.close()


class _Target:
    """A node process under test (or the floor): its namespace, command and log."""

    def __init__(self, name: str, cmd: List[str], namespace: str, node_name: str,
                 out_dir: Path, env: Optional[Dict[str, str]] = None) -> None:
        self.name, self.namespace, self.node_name = name, namespace, node_name
        self.cmd = cmd + ['-r', f'__ns:=/{namespace}']
        self.env = dict(env or {})
        self.log_path = out_dir / f'outside_{name}.log'
        self.proc = start_process(self.cmd, self.log_path,
                                  {**os.environ, **self.env} if self.env else None)
        self.image, self.detections = f'/{namespace}/image', f'/{namespace}/detections'

    @property
    def status(self) -> str:
        return f'{self.node_name}: pipeline'

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f'{self.name} exited ({self.proc.returncode}); see '
                               f'{self.log_path}:\n{self.log_path.read_text()[-2000:]}')


def run_outside_view(args, model: Model, video: Path, out_dir: Path,
                     progress: Progress, thread_counts: Sequence[int],
                     rate_hz: float = 0.0) -> Dict[str, Any]:
    """Run the section; return its results (raw latencies under keys starting with '_').

    At `rate_hz` when given (the inside view's budget rate, so both views run at one rate),
    else at --budget-rate ('Nx': N x the bare sweep's capacity).
    """
    private_domain(os.environ)
    env = apply_camera_env(os.environ)  # every process: the same transports
    pf, over, eff = node_settings(args, model)
    seconds = args.ros_duration or args.duration
    warm_s = min(2.0, max(0.5, 0.25 * seconds))
    n_frames = min(args.frames, 30)
    targets = [_Target('node', node_command(params_file=pf, parameters=over), 'ov_node',
                       'detector', out_dir),
               _Target('floor', floor_command(int(eff['qos_depth'])), 'ov_floor',
                       'transport_floor', out_dir)]
    for text in args.variant or []:
        name, vo, venv = parse_variant(text, over)
        targets.append(_Target(f'variant_{name}', node_command(
            params_file=pf, parameters=vo, ros_args=['-r', f'__node:=detector_{name}']),
            f'ov_{name}', f'detector_{name}', out_dir, venv))
    bare_cmd = ['bare', '--model', str(Path(args.model).resolve()), '--family', model.family,
                '--video', str(video), '--frames', str(n_frames), '--conf', str(args.conf)]
    children: List[_Child] = []
    res: Dict[str, Any] = {'env': {'ROS_DOMAIN_ID': os.environ['ROS_DOMAIN_ID'], **env},
                           'node_command': ' '.join(targets[0].cmd),
                           'variants': {t.name: {'command': ' '.join(t.cmd), 'env': t.env}
                                        for t in targets[2:]},
                           'params_file': str(pf) if pf else None, 'seconds': seconds,
                           'warmup_s': warm_s,
                           'bare_note': 'plain onnxruntime.InferenceSession, default '
                           'SessionOptions with intra_op_num_threads set (0: ORT default), '
                           "CPU provider; pre/post: the package's model adapter"}
    try:
        # the bare model first: the thread sweep, and the capacity an 'Nx' rate refers to
        sweep = _bare(bare_cmd + ['--threads', ','.join(str(t) for t in thread_counts)])
        best = sweep['threads']
        capacity = max(s['capacity_fps'] for s in sweep['sweep']) if sweep['sweep'] else 0.0
        rate, label = ((rate_hz, 'rate of the inside view') if rate_hz > 0
                       else parse_rate(args.budget_rate or '0.5x', capacity))
        res.update(bare_threads=best, bare_sweep=sweep['sweep'],
                   bare_capacity_fps=capacity, rate_hz=round(rate, 3), rate=label)
        print(f'outside view: bare ONNX Runtime sweep {sweep["sweep"]} -> {best} thread(s), '
              f'capacity {capacity:.1f} fps; runs at {rate:.3g} Hz ({label}), load {load_avg()}',
              flush=True)
        same_model = {'model': Path(args.model).resolve(), 'family': model.family,
                      'threads': best, 'conf': args.conf}
        for name, spinning in (('minimal', 'true'), ('minimal_nospin', 'false')):
            targets.append(_Target(name, floor_command(
                int(eff['qos_depth']), spinning=spinning, **same_model), f'ov_{name}',
                'transport_floor', out_dir))
        targets.append(_Target('floor_answer', floor_command(
            int(eff['qos_depth']), video=Path(video).resolve(), frames=n_frames, **same_model),
            'ov_floor_answer', 'transport_floor', out_dir))
        recv = _Child(['receive'], out_dir / 'outside_receiver.log')
        children.append(recv)
        pub = _Child(['publish', '--video', str(video), '--frames', str(n_frames)],
                     out_dir / 'outside_publisher.log')
        children.append(pub)
        for t in targets:
            if not recv.ask({'cmd': 'watch', 'topic': t.detections, 'timeout': 90})['ok']:
                t.check()
                raise RuntimeError(f'{t.name} never published {t.detections}; see '
                                   f'{t.log_path}')
        names = ['bare'] + [t.name for t in targets]
        by_name = {t.name: t for t in targets}
        rounds: List[Dict[str, Any]] = []
        rng = random.Random(0)  # reproducible orders
        for _ in range(max(1, args.budget_rounds)):
            # a fresh order each round: on a shared machine a run's latency depends on what ran
            # just before it (a fixed rotation kept the node right after the bare process in
            # every round, and two identical node configurations then differed by 50 %)
            order = rng.sample(names, len(names))
            rnd: Dict[str, Any] = {'order': order}
            for name in order:
                if name == 'bare':
                    rnd['bare'] = _bare(bare_cmd + ['--threads', str(best), '--rate', str(rate),
                                                    '--seconds', str(seconds)])
                    b = rnd['bare']
                    progress.done(f'outside  bare {best} thr @{rate:.3g}Hz: frame p50 '
                                  f'{np.median(b["frame"]):.1f} p99 '
                                  f'{np.percentile(b["frame"], 99):.1f} ms (pre '
                                  f'{np.median(b["pre"]):.2f}, infer {np.median(b["infer"]):.2f}, '
                                  f'post {np.median(b["post"]):.2f})')
                else:
                    rnd[name] = _phase(pub, recv, by_name[name], rate, seconds, warm_s,
                                       progress)
            rounds.append(rnd)
        res['rounds'] = rounds
        res.update(summarize_rounds(rounds, [t.name for t in targets]))
    finally:
        for c in children:
            c.close()
        stop_processes([t.proc for t in targets], timeout=15.0)
    res['load_avg_1m'] = load_avg()
    return res


def _bare(cmd: List[str]) -> Dict[str, Any]:
    proc = subprocess.run(PROBE + cmd, capture_output=True, text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('{')]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f'bare probe failed ({proc.returncode}): {proc.stderr[-2000:]}')
    return json.loads(lines[-1])


def _phase(pub: _Child, recv: _Child, t: _Target, rate: float, seconds: float, warm_s: float,
           progress: Progress) -> Dict[str, Any]:
    """Publish to `t` at `rate`; match each receipt to its publish call."""
    t.check()
    watch = CpuWatch([t.proc.pid])
    sent = pub.ask({'cmd': 'run', 'topic': t.image, 'rate': rate, 'seconds': seconds,
                    'warmup_s': warm_s})
    if 'error' in sent:
        t.check()
        raise RuntimeError(f'{t.name}: {sent["error"]}')
    t_end = time.monotonic_ns()
    got = recv.ask({'cmd': 'take', 'topic': t.detections, 'expect': len(sent['sent']),
                    'quiet_s': 1.0, 'timeout': 10.0, 'status': t.status,
                    'diagnostics_after_ns': t_end,
                    'diagnostics_timeout': 0.0 if t.name in NO_DIAGNOSTICS else 2.5})
    cw = watch.read()
    t.check()
    pub_ns = dict(sent['sent'])
    seen, dup, unknown, lat_ms, order, counts, deser_ms = set(), 0, 0, [], [], [], []
    for frame_id, ns, n_det, deser_ns in got['received']:
        try:
            k = int(frame_id)
        except ValueError:
            unknown += 1
            continue
        if k not in pub_ns:
            unknown += 1
        elif k in seen:
            dup += 1
        else:
            seen.add(k)
            order.append(k)
            counts.append([k, n_det])
            lat_ms.append((ns - pub_ns[k]) / 1e6)
            deser_ms.append(deser_ns / 1e6)
    diag = got['diagnostics']
    r = {'target': t.name, 'input_fps': sent['input_fps'], 'frames_in': len(pub_ns),
         'frames_out': len(seen), 'lost': len(pub_ns) - len(seen), 'duplicates': dup,
         'unknown': unknown, 'order_violations': order_violations(order),
         'latency_ms': _summary_ms(lat_ms), 'node_cpu_cores': round(cw['others_ours'] or 0, 3),
         'foreign_cpu_cores': round(cw['foreign'], 2), 'hops_ms': hops_from_diag(diag),
         'node_diagnostics': diag, 'load_avg_1m': load_avg(), '_lat': lat_ms,
         'answer_deserialise_ms': _summary_ms(deser_ms), '_deser': deser_ms,
         'detections_per_frame': counts}
    lat = r['latency_ms']
    progress.done(f'outside  {t.name:<18} @{rate:.3g}Hz: p50 {lat["p50"]:6.1f} p90 '
                  f'{lat["p90"]:6.1f} p99 {lat["p99"]:6.1f} ms, in {r["frames_in"]} out '
                  f'{r["frames_out"]} lost {r["lost"]}, CPU {r["node_cpu_cores"]:.2f}'
                  + (f' [other users: {r["foreign_cpu_cores"]:.2f} cores]'
                     if r['foreign_cpu_cores'] >= 0.1 else ''))
    return r


def _median(values: Sequence[float]) -> float:
    return round(float(np.median(values)), 3) if len(values) else 0.0


def summarize_rounds(rounds: List[Dict[str, Any]], names: Sequence[str]) -> Dict[str, Any]:
    """Pooled p50/p90/p99 per run kind, per-round spread, node - floor - bare, per-hop split."""
    bare_frame = [v for r in rounds for v in r['bare']['frame']]
    out: Dict[str, Any] = {
        'bare_ms': {**_summary_ms(bare_frame),
                    **{f'{s}_p50': _median([v for r in rounds for v in r['bare'][s]])
                       for s in STAGES}},
        'runs': {}}
    floor_p50 = _summary_ms(_pooled(rounds, 'floor', '_lat'))['p50']
    answer_p50 = (_summary_ms(_pooled(rounds, 'floor_answer', '_lat'))['p50']
                  if 'floor_answer' in names else None)
    floor_deser = _median(_pooled(rounds, 'floor', '_deser'))
    floor_received = _received_p50(rounds, 'floor')
    for name in names:
        s = _summary_ms(_pooled(rounds, name, '_lat'))
        per_round = [r[name]['latency_ms']['p50'] for r in rounds]
        run: Dict[str, Any] = {
            'latency_ms': s, 'p50_per_round': per_round,
            'frames_in': sum(r[name]['frames_in'] for r in rounds),
            'frames_out': sum(r[name]['frames_out'] for r in rounds),
            'lost': sum(r[name]['lost'] for r in rounds),
            'answer_deserialise_p50_ms': _median(_pooled(rounds, name, '_deser'))}
        if name not in FLOORS:
            run['over_floor_plus_bare_ms'] = round(s['p50'] - floor_p50
                                                   - out['bare_ms']['p50'], 3)
            run['over_per_round_ms'] = _over_per_round(rounds, name, 'floor')
            # the same with the answer in hand as bytes: without what a Python receiver pays to
            # deserialize the node's detections beyond the floor's empty answer
            run['over_floor_plus_bare_received_ms'] = round(
                _received_p50(rounds, name) - floor_received - out['bare_ms']['p50'], 3)
            run['hops_ms'] = _hops(rounds, name)
            run['decomposition_ms'] = decompose(
                run['hops_ms'], out['bare_ms'], run['over_floor_plus_bare_ms'],
                run['answer_deserialise_p50_ms'] - floor_deser)
            if answer_p50 is not None:
                # against the floor whose answer is the same detections: receiving the frame,
                # serializing, sending and deserializing that answer are in both
                run['over_floor_answer_plus_bare_ms'] = round(
                    s['p50'] - answer_p50 - out['bare_ms']['p50'], 3)
                run['over_floor_answer_per_round_ms'] = _over_per_round(rounds, name,
                                                                        'floor_answer')
        out['runs'][name] = run
    return out


def _over_per_round(rounds: List[Dict[str, Any]], name: str, floor: str) -> List[float]:
    """Each round's p50 of `name` minus that round's p50 of `floor` and its bare p50."""
    return [round(r[name]['latency_ms']['p50'] - r[floor]['latency_ms']['p50']
                  - float(np.median(r['bare']['frame'])), 3) for r in rounds]


def _pooled(rounds: List[Dict[str, Any]], name: str, key: str) -> List[float]:
    """Every round's per-frame values `key` of run kind `name`, in one list."""
    return [v for r in rounds for v in r[name][key]]


def _received_p50(rounds: List[Dict[str, Any]], name: str) -> float:
    """p50 latency of `name` with the answer in hand as bytes (before deserializing it)."""
    return _median([v - d for r in rounds for v, d in zip(r[name]['_lat'], r[name]['_deser'])])


def _hops(rounds: List[Dict[str, Any]], name: str) -> Dict[str, Dict[str, float]]:
    """Median over rounds of each hop's p50 / p99 (the node's /diagnostics after each run)."""
    hops: Dict[str, Dict[str, float]] = {}
    keys = {h for r in rounds for h in r[name]['hops_ms']}
    for h in keys:
        vals = [r[name]['hops_ms'][h] for r in rounds if h in r[name]['hops_ms']]
        hops[h] = {q: _median([v[q] for v in vals if q in v]) for q in ('p50', 'p99')}
    return hops


def decompose(hops: Dict[str, Dict[str, float]], bare: Dict[str, float],
              over_ms: float, answer_ms: float = 0.0) -> Dict[str, float]:
    """Return what node - floor - bare (p50) is made of: the node's hops against the bare loop.

    `<stage>_slower`: the node's stage p50 minus the bare loop's (the node's `pre` also
    decodes the message); the node-only hops; `answer_deserialise` (`answer_ms`): the
    receiver's p50 time to deserialize the node's answers minus that of the floor's empty ones;
    `rest`: what these do not explain (p50 of sums vs sums of p50s, the floor's own variation
    between runs, the node's receive and send beyond the floor's).
    """
    if not hops:
        return {}
    out = {f'{s}_slower': round(hops.get(s, {}).get('p50', 0.0) - bare[f'{s}_p50'], 3)
           for s in STAGES}
    out.update({h: hops.get(h, {}).get('p50', 0.0) for h in NODE_ONLY})
    out['answer_deserialise'] = round(answer_ms, 3)
    out['rest'] = round(over_ms - sum(out.values()), 3)
    return out

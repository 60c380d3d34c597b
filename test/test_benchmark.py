"""fdr-benchmark smoke run: every section on a few real frames, through a real ROS 2 graph.

Checks the report is produced and consistent (no timing asserts): frames in = out + dropped,
no order violations, a readable plot, the autotune YAML matching the JSON, the latency budget
per hop from the node's /diagnostics next to the transport floor and the bare model.
"""
from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import cv2
from faster_deployment_ros.ros.middleware_env import profile_var
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.ros
def test_benchmark_smoke(tmp_path, yolox_model, plaza_video):
    exe = Path(sys.executable).with_name('fdr-benchmark')
    assert exe.exists(), 'fdr-benchmark console script not installed (pip install -e .)'
    out = tmp_path / 'bench'
    params = tmp_path / 'tuned.yaml'
    cmd = [str(exe), '--model', str(yolox_model), '--video', str(plaza_video), '--frames', '4',
           '--iters', '4', '--duration', '1.0', '--threads', '1,2', '--workers', '1,2',
           '--ros-duration', '2.5', '--ros-rates', '1x', '--budget-rounds', '1',
           '--overload-rate', '2x', '--autotune', '--camera-rate', '10',
           '--latency-budget-ms', '2000', '--write-params', str(params), '--out', str(out),
           '--no-progress']
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert '== targets ==' in res.stdout

    report = json.loads((out / 'benchmark.json').read_text())
    assert report['meta']['frames'] == 4 and report['meta']['family'] == 'yolox'
    assert [b['threads'] for b in report['bare']] == [1, 2]
    for b in report['bare']:
        assert b['infer_ms']['count'] == 4 and b['infer_ms']['p50'] > 0
        assert b['frame_ms']['p50'] >= b['infer_ms']['p50']
    assert report['serial']['fps'] > 0

    pipes = report['pipeline']
    assert {(p['workers'], p['threads']) for p in pipes if not p['input_rate']} == {(1, 2), (2, 1)}
    assert {p['schedule'] for p in pipes if p['input_rate']} == {'eager', 'just_in_time'}
    budget, overload, sat = report['budget'], report['overload'], report['saturation']
    runs = (pipes + [report['autotune_run']] + report['ros'] + [budget['rounds'][0]['floor'],
            budget['rounds'][0]['node'], overload['floor'], overload['node'], sat['node'],
            sat['pipeline_alone']])
    for r in runs:
        assert r['frames_in'] == r['frames_out'] + r['dropped'], r['config']
        assert r['order_violations'] == 0, r['config']
        assert r['frames_out'] > 0 and r['fps'] > 0, r['config']
    for r in pipes:
        assert r['delivered'] == r['frames_out'] and r['failed'] == 0
        assert sum(r['per_worker']) == r['frames_out'] and len(r['per_worker']) == r['workers']

    ros = report['ros'][0]
    assert ros['duplicates'] == 0 and ros['unknown'] == 0
    assert ros['latency_ms']['p50'] > 0 and ros['node_cpu_cores'] > 0
    diag = ros['node_diagnostics']
    assert int(diag['pipeline_frames_in']) == (
        int(diag['pipeline_frames_out']) + int(diag['pipeline_dropped'])
        + int(diag['pipeline_in_flight']))
    assert report['ros_node']['env'][profile_var()].endswith('config/fastdds_large_data.xml')
    # the node runs with the family's shipped YAML; its per-hop budget comes from /diagnostics
    assert report['ros_node']['params_file'].endswith('config/yolox_nano_onnxruntime.yaml')
    hops = budget['node_hops_ms']
    assert {'transport', 'callback', 'queue', 'pre', 'infer', 'post', 'build', 'publish',
            'node'} <= set(hops)
    assert all(h['p50'] >= 0 for h in hops.values()) and hops['infer']['p50'] > 0
    assert budget['floor_ms']['p50'] > 0 and budget['bare_frame_ms']['p50'] > 0
    assert budget['rounds'][0]['floor']['fps'] > 0
    assert overload['ideal_p50_ms'] > overload['half_period_ms'] > 0
    assert sat['infer_cpu_ms_per_frame'] > 0 and sat['node']['node_cpu_ms_per_frame_out'] > 0
    assert sat['floor_cpu_ms_per_frame'] > 0 and sat['floor']['order_violations'] == 0

    tuned = yaml.safe_load(params.read_text())['/**']['ros__parameters']
    auto = report['autotune']
    assert (tuned['workers'], tuned['threads'], tuned['queue_size']) == (
        auto['workers'], auto['threads'], auto['queue_size'])
    assert auto['feasible'] and auto['reason'] and auto['candidates']
    assert report['autotune_run']['workers'] == auto['workers']

    targets = report['targets']
    assert {'bare_best', 'overhead', 'overload', 'saturation', 'multi_worker',
            'autotune'} <= set(targets)
    assert targets['overhead']['floor_plus_bare_ms'] == pytest.approx(
        budget['floor_ms']['p50'] + budget['bare_frame_ms']['p50'], abs=1e-2)
    assert targets['multi_worker']['order_violations'] == 0

    img = cv2.imread(str(out / 'benchmark.png'))
    assert img is not None and img.shape == (700, 1100, 3)
    assert (img < 250).any(axis=2).mean() > 0.01  # something was drawn


def test_benchmark_rejects_a_missing_model(tmp_path):
    res = subprocess.run([sys.executable, '-m', 'faster_deployment_ros.tools.benchmark',
                          '--model', str(tmp_path / 'nope.onnx'), '--out', str(tmp_path)],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode != 0 and 'model not found' in res.stderr


@pytest.mark.slow
@pytest.mark.ros
def test_benchmark_outside_view(tmp_path, yolox_model, plaza_video):
    """--outside-view: every frame accounted, the views and the per-hop split consistent."""
    exe = Path(sys.executable).with_name('fdr-benchmark')
    out = tmp_path / 'bench'
    cmd = [str(exe), '--model', str(yolox_model), '--video', str(plaza_video), '--frames', '4',
           '--skip', 'bare,serial,pipeline,ros', '--outside-view', '--threads', '1,2',
           '--budget-rate', '4', '--budget-rounds', '2', '--ros-duration', '2.0',
           '--variant', 'spin:onnxruntime.allow_spinning=true', '--out', str(out),
           '--no-progress']
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert 'outside view @4 Hz' in res.stdout

    ov = json.loads((out / 'benchmark.json').read_text())['outside_view']
    assert ov['rate_hz'] == 4 and ov['bare_threads'] in (1, 2)
    assert [s['threads'] for s in ov['bare_sweep']] == [1, 2]
    names = ['node', 'floor', 'floor_answer', 'minimal', 'minimal_nospin', 'variant_spin']
    for rnd in ov['rounds']:
        assert sorted(rnd['order']) == sorted(['bare'] + names)
    for rnd in ov['rounds']:
        bare = rnd['bare']
        assert len(bare['frame']) >= 4 and bare['threads'] == ov['bare_threads']
        for f, p, i, q in zip(bare['frame'], bare['pre'], bare['infer'], bare['post']):
            assert f == pytest.approx(p + i + q, abs=0.01)
        for name in names:
            r = rnd[name]
            assert r['frames_in'] >= 6, name  # 2 s at 4 Hz
            assert r['frames_in'] == r['frames_out'] + r['lost'], name
            assert r['lost'] == 0 and r['duplicates'] == 0 and r['unknown'] == 0, name
            assert r['order_violations'] == 0, name
            assert r['latency_ms']['count'] == r['frames_out'], name
        # the minimal node runs the same model, adapter and threshold in its callback: the same
        # detections per frame as the node (frame k is video frame k % 4); the floor none, and
        # the floor answering with detections (from its table, found by the frame's bytes) the
        # same as the node
        video_frame = {name: {k % 4: n for k, n in rnd[name]['detections_per_frame']}
                       for name in ('node', 'minimal', 'minimal_nospin', 'floor', 'floor_answer')}
        assert set(video_frame['floor'].values()) == {0}
        for name in ('minimal', 'minimal_nospin', 'floor_answer'):
            assert sum(video_frame[name].values()) > 0
            same = [k for k in video_frame['node'] if k in video_frame[name]]
            assert same and all(video_frame['node'][k] == video_frame[name][k] for k in same)
        for name in ('minimal', 'minimal_nospin'):
            assert rnd[name]['latency_ms']['p50'] > rnd['floor_answer']['latency_ms']['p50']
        for name in ('node', 'variant_spin'):  # its own budget, read after its run
            hops = rnd[name]['hops_ms']
            assert {'transport', 'callback', 'queue', 'pre', 'infer', 'post', 'handover',
                    'build', 'publish', 'node'} <= set(hops), name
            assert hops['infer']['p50'] > 0
            # what the node does takes longer than receiving and answering alone
            assert rnd[name]['latency_ms']['p50'] > rnd['floor']['latency_ms']['p50']
            assert rnd[name]['latency_ms']['p50'] >= hops['infer']['p50']

    runs, bare = ov['runs'], ov['bare_ms']
    for name in names:
        assert runs[name]['frames_in'] == sum(r[name]['frames_in'] for r in ov['rounds'])
    for name in ('node', 'variant_spin'):
        run = runs[name]
        assert run['over_floor_plus_bare_ms'] == pytest.approx(
            run['latency_ms']['p50'] - runs['floor']['latency_ms']['p50'] - bare['p50'],
            abs=2e-3)
        assert len(run['over_per_round_ms']) == 2
        dec = run['decomposition_ms']
        assert set(dec) == {'pre_slower', 'infer_slower', 'post_slower', 'callback', 'queue',
                            'handover', 'build', 'publish', 'answer_deserialise', 'rest'}
        assert sum(dec.values()) == pytest.approx(run['over_floor_plus_bare_ms'], abs=0.01)
        # the receiver turning the node's detections into Python objects costs more than the
        # floor's empty answer, and is its own line of the split
        floor_deser = runs['floor']['answer_deserialise_p50_ms']
        assert run['answer_deserialise_p50_ms'] > floor_deser
        assert dec['answer_deserialise'] == pytest.approx(
            run['answer_deserialise_p50_ms'] - floor_deser, abs=2e-3)
        assert isinstance(run['over_floor_plus_bare_received_ms'], float)
        assert run['over_floor_answer_plus_bare_ms'] == pytest.approx(
            run['latency_ms']['p50'] - runs['floor_answer']['latency_ms']['p50'] - bare['p50'],
            abs=2e-3)
        assert len(run['over_floor_answer_per_round_ms']) == 2
    # the floor's answer is what the node's is: the receiver deserializes the same detections
    assert runs['floor_answer']['answer_deserialise_p50_ms'] > \
        runs['floor']['answer_deserialise_p50_ms']
    assert 'over_floor_answer_plus_bare_ms' not in runs['floor_answer']
    for rnd in ov['rounds']:
        for name in names:  # one deserialization time per answer received
            assert rnd[name]['answer_deserialise_ms']['count'] == rnd[name]['frames_out']
    t = json.loads((out / 'benchmark.json').read_text())['targets']['outside_view']
    assert set(t['runs']) == {'node', 'minimal', 'minimal_nospin', 'variant_spin'}
    assert t['runs']['minimal']['decomposition_ms'] == {}  # no /diagnostics of its own
    node = t['runs']['node']
    assert node['p50_ok'] == (node['over_floor_plus_bare_ms'] <= 3.0)
    assert node['over_floor_plus_bare_received_ms'] == \
        runs['node']['over_floor_plus_bare_received_ms']
    assert 'answer in hand as bytes' in res.stdout
    assert t['floor_answer_p50_ms'] == runs['floor_answer']['latency_ms']['p50']
    assert node['p50_answer_ok'] == (node['over_floor_answer_plus_bare_ms'] <= 3.0)
    assert 'against the floor answering with the same detections' in res.stdout
    assert node['p99_ok'] == (node['p99_ms'] <= 2 * t['bare_p99_ms'])

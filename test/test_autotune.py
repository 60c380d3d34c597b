"""Auto-tuning: the chooser, a real measurement, the node with it, the pipeline it relies on.

The chooser on measured-like stage times, one real measurement on YOLOX-nano, the detector node
with `autotune: true`, and the pipeline's just-in-time schedule.
"""
from __future__ import annotations

import statistics
import time

import cv2
from faster_deployment_ros.backends import create_backend
from faster_deployment_ros.core import autotune
from faster_deployment_ros.core.autotune import measurement
from faster_deployment_ros.core.param_file import params_yaml
from faster_deployment_ros.core.pipeline import Pipeline
from faster_deployment_ros.models import create_adapter
import numpy as np
import pytest
from support.ros_nodes import destroy_node
import yaml

# Shaped like the 16-core measurements of YOLOv8n-640 (1x16: 36 fps at 27 ms, 4x4: 74
# fps, 8x2: 93 fps): threads scale sub-linearly, small sessions do more per core.
GPU_BOX = dict(pre_ms=3.0, post_ms=1.5, cores=16, pre_p90_ms=3.5, post_p90_ms=2.0,  # noqa: C408
               infer_ms={1: 170.0, 2: 86.0, 3: 66.0, 4: 54.0, 5: 46.0, 7: 37.0, 8: 35.0,
                         15: 28.0, 16: 27.0},
               infer_p90_ms={1: 180.0, 2: 92.0, 3: 70.0, 4: 58.0, 5: 50.0, 7: 40.0, 8: 38.0,
                             15: 30.5, 16: 30.0})


def stage_times(**over) -> autotune.StageTimes:
    kw = {**GPU_BOX, **over}
    return autotune.StageTimes(**kw)


def test_candidates_never_oversubscribe_and_cover_every_thread_count():
    st = stage_times()
    configs = autotune.candidate_configs(st)
    assert all(w * t <= 16 for w, t in configs)
    assert {t for _, t in configs} == set(autotune.thread_candidates(16))
    assert (16, 1) in configs and (1, 16) in configs and (2, 16) not in configs
    # even splits of all cores, and (4+ cores) of all cores but one
    assert autotune.thread_candidates(16) == [1, 2, 3, 4, 5, 7, 8, 15, 16]
    assert autotune.thread_candidates(6) == [1, 2, 3, 5, 6]
    assert autotune.thread_candidates(2) == [1, 2]
    assert autotune.thread_candidates(1) == [1]


def test_meets_camera_rate_within_budget_with_the_lowest_latency():
    st = stage_times()
    choice = autotune.choose(st, camera_rate=30.0, latency_budget_ms=100.0)
    assert choice.feasible
    p = choice.predicted
    assert p.sustains and p.within_budget and p.fps * 0.9 >= 30.0 and p.latency_tail_ms <= 100.0
    feasible = [c for c in choice.candidates if c.sustains and c.within_budget]
    assert p.latency_ms == min(c.latency_ms for c in feasible)
    # more throughput was on offer, at more latency: the chooser did not take it
    fastest = max(choice.candidates, key=lambda c: c.fps)
    assert fastest.fps > p.fps and fastest.latency_ms > p.latency_ms
    assert (choice.workers, choice.threads) != (fastest.workers, fastest.threads)
    assert choice.params() == {'workers': p.workers, 'threads': p.threads,
                               'queue_size': p.queue_size}
    assert f'{choice.workers} worker(s) x {choice.threads} thread(s)' in choice.reason
    assert '30 Hz' in choice.reason and '100 ms' in choice.reason


def test_a_faster_camera_needs_more_workers_and_the_choice_follows():
    st = stage_times()
    slow = autotune.choose(st, camera_rate=10.0, latency_budget_ms=200.0)
    fast = autotune.choose(st, camera_rate=60.0, latency_budget_ms=200.0)
    assert slow.feasible and fast.feasible
    assert slow.workers == 1          # one session is fastest per frame and enough for 10 Hz
    assert fast.workers > 1 and fast.predicted.fps * 0.9 >= 60.0
    assert fast.predicted.latency_ms > slow.predicted.latency_ms


def test_says_when_impossible_and_picks_the_lowest_latency():
    st = stage_times()
    choice = autotune.choose(st, camera_rate=200.0, latency_budget_ms=10.0)
    assert not choice.feasible
    assert 'NO configuration fits 10 ms' in choice.reason
    assert choice.predicted.latency_tail_ms == min(c.latency_tail_ms for c in choice.candidates)
    assert choice.queue_size == 1  # overloaded: only the newest frame waits


def test_rate_out_of_reach_within_budget_maximises_throughput_and_warns_of_drops():
    st = stage_times()
    choice = autotune.choose(st, camera_rate=500.0, latency_budget_ms=1000.0)
    assert not choice.feasible
    in_budget = [c for c in choice.candidates if c.within_budget]
    assert choice.predicted.fps == max(c.fps for c in in_budget)
    assert 'drop' in choice.reason and 'no configuration sustains 500 Hz' in choice.reason


def test_measured_contention_overrides_the_model():
    st = stage_times()
    first = autotune.choose(st, camera_rate=60.0, latency_budget_ms=150.0)
    assert first.workers > 1
    # the sessions turn out to fight over memory bandwidth: each call slows down 3x
    st.concurrent_ms[(first.workers, first.threads)] = 3 * st.infer_ms[first.threads]
    again = autotune.choose(st, camera_rate=60.0, latency_budget_ms=150.0)
    assert (again.workers, again.threads) != (first.workers, first.threads)


def test_queue_depth_follows_the_load():
    st = stage_times()
    low = autotune.predict(st, 1, 16, camera_rate=5.0)
    mid = autotune.predict(st, 1, 16, camera_rate=30.0)
    over = autotune.predict(st, 1, 16, camera_rate=100.0)
    assert (low.queue_size, mid.queue_size, over.queue_size) == (1, 2, 1)
    assert low.load < 0.5 < mid.load < 1.0 < over.load
    assert not over.sustains


def test_params_yaml_is_a_ros_parameter_file():
    choice = autotune.choose(stage_times(), 30.0, 100.0)
    text = params_yaml({'model_path': '/m/y "8".onnx', **choice.params(), 'autotune': False,
                        'onnxruntime.providers': ['CPUExecutionProvider']},
                       comment=choice.reason)
    doc = yaml.safe_load(text)
    p = doc['/**']['ros__parameters']
    assert p['workers'] == choice.workers and p['threads'] == choice.threads
    assert p['model_path'] == '/m/y "8".onnx' and p['autotune'] is False
    assert p['onnxruntime'] == {'providers': ['CPUExecutionProvider']}
    assert text.startswith('# camera 30 Hz')


def test_validation_measures_the_short_list_and_trusts_the_measurement(monkeypatch):
    st = stage_times()
    model_choice = autotune.choose(st, camera_rate=30.0, latency_budget_ms=100.0)
    top = (model_choice.workers, model_choice.threads)
    calls = []

    def fake_run(make_backend, adapter, frames, workers, threads, queue_size, rate, seconds):
        calls.append((workers, threads, rate, seconds))
        # all cores busy with intra-op threads: stragglers blow the tail; one core free: fine
        full = workers * threads >= 16
        p50 = 40.0 + 2 * workers + (0 if full else 3)
        return {'workers': workers, 'threads': threads, 'queue_size': queue_size,
                'p50_ms': p50, 'p90_ms': p50 + 10, 'p99_ms': 130.0 if full else 70.0,
                'fps': 30.0, 'frames_in': 90, 'frames_out': 90, 'dropped': 0}

    monkeypatch.setattr(measurement, 'measure_at_rate', fake_run)
    got = autotune.validate(model_choice, None, None, [None], seconds=2.0, top=2)
    assert calls[0][:2] == top and all(c[2:] == (30.0, 2.0) for c in calls)
    # each full-core pick was also tried with one core left free
    tried = {c[:2] for c in calls}
    for w, t in tried:
        if w * t >= 16:
            assert (w, 15 // w) in tried
    assert got.feasible and got.workers * got.threads < 16
    assert got.measured and {(m['workers'], m['threads']) for m in got.measured} == tried
    assert 'measured at 30 Hz' in got.reason and 'p99 70.0 ms' in got.reason

    def all_bad(*a, **k):
        r = fake_run(*a, **k)
        r['p99_ms'] = 500.0
        return r

    monkeypatch.setattr(measurement, 'measure_at_rate', all_bad)
    bad = autotune.validate(model_choice, None, None, [None], seconds=2.0, top=2)
    assert not bad.feasible and 'NONE met the budget' in bad.reason


def test_real_measurement_on_yolox_nano(yolox_model, plaza_video):
    cap = cv2.VideoCapture(str(plaza_video))
    frames = [cap.read()[1] for _ in range(3)]
    cap.release()
    made = []

    def make(threads):
        made.append(threads)
        return create_backend('onnxruntime', str(yolox_model), threads=threads)

    def adapter(b):
        return create_adapter('yolox', b.inputs, b.outputs, b.metadata)

    logs = []
    choice = autotune.autotune(make, adapter, frames, camera_rate=5.0, latency_budget_ms=5000.0,
                               threads=[1, 2], cores=2, iters=3, refine=1, validate_s=1.0,
                               validate_top=1, log=logs.append)
    st = choice.stage_times
    assert set(st.infer_ms) == {1, 2} and all(v > 0 for v in st.infer_ms.values())
    assert st.pre_ms > 0 and st.post_ms > 0
    assert (2, 1) in st.concurrent_ms  # the one multi-worker candidate on 2 cores, timed at once
    assert made.count(1) >= 3          # measured alone, then two at once
    assert choice.feasible  # 5 Hz with 5 s to spare fits any config on any machine
    assert choice.workers * choice.threads <= 2
    [m] = choice.measured  # the one validated config, run through the real pipeline at 5 Hz
    assert (m['workers'], m['threads']) == (choice.workers, choice.threads)
    assert m['frames_in'] == 5 and m['frames_in'] == m['frames_out'] + m['dropped']
    assert 0 < m['p50_ms'] <= m['p99_ms']
    assert any('inference' in line for line in logs) and logs[-1].startswith('autotune: camera')


def test_pipeline_just_in_time_schedule_keeps_overload_latency_at_one_pass():
    """Input twice as fast as inference, drop_oldest.

    Eager pre-processing makes each frame wait a whole inference for the worker; just in time it
    does not. Same throughput.
    """
    def run(schedule):
        lat = []
        p = Pipeline(lambda x: (time.sleep(0.004), (x, None))[1],
                     [lambda t: time.sleep(0.04) or t],
                     lambda o, m: o, lambda fr: lat.append(time.perf_counter() - fr.context),
                     queue_size=1, full_policy='drop_oldest', schedule=schedule, name=schedule)
        t0 = time.perf_counter()
        for i in range(60):
            due = t0 + i / 50.0
            time.sleep(max(0.0, due - time.perf_counter()))
            p.submit(i, context=time.perf_counter())
        p.close(drain=True)
        st = p.stats()
        assert st['frames_in'] == st['frames_out'] + st['dropped']
        return statistics.median(lat[2:]), len(lat)

    eager, n_eager = run('eager')
    jit, n_jit = run('just_in_time')
    assert eager > 0.07           # ~ pre + 2 x inference
    assert jit < 0.75 * eager     # ~ pre + inference + the newest frame's age
    assert abs(n_jit - n_eager) <= 3
    with pytest.raises(ValueError, match='schedule'):
        Pipeline(lambda x: (x, None), [lambda t: t], lambda o, m: o, lambda r: None,
                 schedule='sometimes')


@pytest.mark.ros
def test_node_with_autotune_configures_and_reports_its_choice(ros, yolox_model):
    pytest.importorskip('rclpy')
    from faster_deployment_ros.ros.detector_node import DetectorNode
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    node = None  # the session's rclpy context (the `ros` fixture)
    try:
        overrides = {'model_path': str(yolox_model), 'model_family': 'yolox', 'autotune': True,
                     'camera_rate': 5.0, 'latency_budget_ms': 5000.0, 'workers': 7, 'threads': 7,
                     'queue_size': 9, 'diagnostics_period': 0.0}
        node = DetectorNode(parameter_overrides=[Parameter(k, value=v)
                                                 for k, v in overrides.items()])
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        choice = node.autotune_choice
        assert choice is not None and choice.feasible and choice.reason
        assert node.get_parameter('workers').value == choice.workers == len(node.backends)
        assert node.get_parameter('threads').value == choice.threads
        assert node.get_parameter('queue_size').value == choice.queue_size
        assert node.pipeline.num_workers == choice.workers
        assert node.pipeline.schedule == 'just_in_time'
        assert choice.workers * choice.threads <= autotune.available_cores()
        # the node works with what it chose
        frame = np.full((360, 480, 3), 114, np.uint8)
        x, meta = node.adapter.preprocess(frame)
        node.adapter.postprocess(node.backends[0].infer(x), meta)
    finally:
        if node is not None:
            node.release()
            destroy_node(node)


@pytest.mark.ros
def test_node_autotune_needs_a_rate_and_a_budget(ros, yolox_model):
    pytest.importorskip('rclpy')
    from faster_deployment_ros.ros.detector_node import DetectorNode
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    node = None  # the session's rclpy context (the `ros` fixture)
    try:
        node = DetectorNode(parameter_overrides=[
            Parameter('model_path', value=str(yolox_model)),
            Parameter('model_family', value='yolox'),
            Parameter('autotune', value=True), Parameter('camera_rate', value=0.0)])
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.autotune_choice is None
    finally:
        if node is not None:
            node.release()
            destroy_node(node)

"""The ordered bounded-queue pipeline with real threads and real timing (no timed asserts)."""
from __future__ import annotations

import logging
import random
import threading
import time
from typing import List

from faster_deployment_ros.core.pipeline import FrameResult, Pipeline
from faster_deployment_ros.core.stats import RateMeter, RollingStats, summarize
import numpy as np
import pytest


class Sink:
    """on_result target; records the calling threads and fails on two calls at once."""

    def __init__(self) -> None:
        self.results: List[FrameResult] = []
        self.threads = set()
        self._inside = threading.Lock()
        self.overlapped = 0

    def __call__(self, r: FrameResult) -> None:
        if not self._inside.acquire(blocking=False):
            self.overlapped += 1
            self._inside.acquire()
        try:
            self.threads.add(threading.current_thread().name)
            self.results.append(r)
            time.sleep(0.0002)  # widen the window a second caller would hit
        finally:
            self._inside.release()

    @property
    def seqs(self) -> List[int]:
        return [r.seq for r in self.results]


@pytest.fixture
def make():
    made: List[Pipeline] = []

    def _make(pre=None, infer=None, post=None, workers=1, sink=None, **kw):
        pre = pre or (lambda x: (x, x))
        infer = infer if infer is not None else [lambda t: t] * workers
        post = post or (lambda out, meta: out)
        sink = sink if sink is not None else Sink()
        kw.setdefault('name', 'tp')
        p = Pipeline(pre, infer, post, sink, **kw)
        made.append(p)
        return p, sink

    yield _make
    for p in made:
        p.close()
        assert not [t for t in p.threads if t.is_alive()]


def wait_until(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.002)
    return pred()


def check_accounting(p: Pipeline) -> dict:
    s = p.stats()
    assert s['frames_in'] == s['frames_out'] + s['dropped'] + s['in_flight']
    return s


# ---------------------------------------------------------------------------- order
@pytest.mark.parametrize('workers', [1, 4])
def test_order_preserved_with_random_delays(make, workers):
    rngs = [random.Random(i) for i in range(workers)]

    def worker_fn(i):
        def infer(t):
            time.sleep(rngs[i].uniform(0.0, 0.008))
            return t * 10, i
        return infer

    def pre(x):
        time.sleep(random.uniform(0.0, 0.002))
        return x, x

    p, sink = make(pre=pre, infer=[worker_fn(i) for i in range(workers)],
                   post=lambda out, meta: (out[0] + meta, out[1]),
                   queue_size=4, full_policy='block')
    n = 60
    for i in range(n):
        assert p.submit(i, context=f'ctx{i}')
    assert p.flush(10)
    assert sink.seqs == list(range(n))
    assert [r.context for r in sink.results] == [f'ctx{i}' for i in range(n)]
    assert [r.result[0] for r in sink.results] == [11 * i for i in range(n)]
    assert all(r.error is None and r.worker == r.result[1] for r in sink.results)
    # the delivery thread, and a worker for a frame it ran on the idle fast path; one at a time
    assert 'tp-deliver' in sink.threads and sink.overlapped == 0
    assert sink.threads <= {'tp-deliver'} | {f'tp-infer{i}' for i in range(workers)}
    if workers > 1:
        assert len({r.worker for r in sink.results}) > 1
    s = check_accounting(p)
    assert (s['frames_in'], s['frames_out'], s['dropped'], s['in_flight']) == (n, n, 0, 0)
    assert sum(s['per_worker']) == n


def test_concurrent_producers_get_seqs_in_delivery_order(make):
    p, sink = make(infer=[lambda t: (time.sleep(0.001), t)[1]] * 2, queue_size=2,
                   full_policy='block')

    def produce(k):
        for i in range(25):
            assert p.submit((k, i), context=(k, i))

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert p.flush(10)
    assert sink.seqs == list(range(75))
    for k in range(3):  # each producer's frames stay in its own order
        assert [r.context[1] for r in sink.results if r.context[0] == k] == list(range(25))


# ---------------------------------------------------------------------------- bounded queues
def test_drop_oldest_keeps_queue_bounded_and_drops_the_oldest(make):
    started, release = threading.Event(), threading.Event()

    def pre(x):
        if x == 0:
            started.set()
            release.wait(5)
        return x, x

    dropped = []
    p, sink = make(pre=pre, queue_size=3, full_policy='drop_oldest',
                   on_drop=lambda seq, ctx: dropped.append((seq, ctx)))
    assert p.submit(0, context='c0')
    assert started.wait(5)  # frame 0 is inside pre-process; nothing else can move
    for i in range(1, 10):
        assert p.submit(i, context=f'c{i}')  # drop_oldest always accepts the new frame
        assert p.stats()['queued'] <= 3
    release.set()
    assert p.flush(5)
    assert sink.seqs == [0, 7, 8, 9]
    assert [r.result for r in sink.results] == [0, 7, 8, 9]
    assert dropped == [(i, f'c{i}') for i in range(1, 7)]
    s = check_accounting(p)
    assert (s['frames_in'], s['frames_out'], s['dropped']) == (10, 4, 6)


@pytest.mark.parametrize('workers', [1, 2])
def test_internal_queues_bounded_drops_only_at_input(make, workers):
    release = threading.Event()
    busy = []

    def infer(t):
        busy.append(t)
        release.wait(5)
        return t

    q = 2
    p, sink = make(infer=[infer] * workers, queue_size=q, full_policy='drop_oldest')
    cap = q + 2 * workers  # input queue + pre-processed frames waiting + frames in workers
    peak = 0
    for i in range(40):
        p.submit(i)
        s = p.stats()
        peak = max(peak, s['in_flight'])
        assert s['queued'] <= q
        time.sleep(0.001)
    # Everything downstream is stuck: the pipeline fills up to exactly its bounded depth.
    assert wait_until(lambda: p.stats()['in_flight'] == cap)
    assert peak <= cap
    for i in range(40, 60):
        p.submit(i)
        assert p.stats()['in_flight'] <= cap
    assert len(busy) == workers
    release.set()
    assert p.flush(5)
    seqs = sink.seqs
    assert seqs == sorted(seqs) and seqs[-q:] == list(range(60 - q, 60))
    assert len(seqs) == cap
    s = check_accounting(p)
    assert s['frames_in'] == 60 and s['frames_out'] + s['dropped'] == 60


def test_block_applies_back_pressure_and_times_out(make):
    started, release, second = threading.Event(), threading.Event(), threading.Event()

    def pre(x):
        if x == 0:
            started.set()
            release.wait(5)
        if x == 1:
            second.set()
        return x, x

    p, sink = make(pre=pre, queue_size=2, full_policy='block')
    assert p.submit(0)  # the idle fast path: the one worker runs it, held in its pre-process
    assert started.wait(5)
    assert p.submit(1, timeout=0)  # pre-processed, then waits for the busy worker
    assert second.wait(5)
    assert p.submit(2, timeout=0) and p.submit(3, timeout=0)  # fills the queue
    t0 = time.monotonic()
    assert p.submit(4, timeout=0.1) is False
    assert time.monotonic() - t0 >= 0.09
    assert p.stats()['rejected'] == 1

    ret = []
    blocked = threading.Thread(target=lambda: ret.append(p.submit(5, context='late')))
    blocked.start()
    time.sleep(0.2)
    assert blocked.is_alive() and not ret  # back-pressure: the producer waits for space
    assert p.stats()['queued'] == 2
    release.set()
    blocked.join(5)
    assert ret == [True]
    assert p.flush(5)
    # A rejected submit consumes no seq; nothing is dropped under 'block'.
    assert sink.seqs == [0, 1, 2, 3, 4]
    assert [r.result for r in sink.results] == [0, 1, 2, 3, 5]
    assert sink.results[-1].context == 'late'
    s = check_accounting(p)
    assert (s['frames_in'], s['frames_out'], s['dropped'], s['rejected']) == (5, 5, 0, 1)


@pytest.mark.parametrize('policy', ['block', 'drop_oldest'])
def test_drop_accounting_exact_under_load(make, policy):
    dropped = []
    p, sink = make(infer=[lambda t: (time.sleep(0.002), t)[1]] * 2, queue_size=2,
                   full_policy=policy, on_drop=lambda seq, ctx: dropped.append(seq))
    accepted = sum(p.submit(i, timeout=0.001) for i in range(200))
    assert p.flush(10)
    s = check_accounting(p)
    assert s['frames_in'] == accepted and s['in_flight'] == 0
    assert s['frames_in'] == s['frames_out'] + s['dropped']
    assert s['frames_out'] == len(sink.results) and s['dropped'] == len(dropped)
    assert sorted(sink.seqs + dropped) == list(range(accepted))
    assert sink.seqs == sorted(sink.seqs)
    if policy == 'drop_oldest':
        assert accepted == 200 and s['rejected'] == 0 and s['dropped'] > 0
    else:
        assert s['dropped'] == 0 and s['rejected'] == 200 - accepted


# ---------------------------------------------------------------------------- errors
def test_errors_in_each_stage_are_delivered_in_order(make):
    def pre(x):
        if x % 7 == 1:
            raise ValueError(f'pre {x}')
        return x, x

    def worker(i):
        def infer(t):
            time.sleep(0.001 * (t % 3))
            if t % 7 == 2:
                raise KeyError(f'infer {t}')
            return t
        return infer

    def post(out, meta):
        if out % 7 == 3:
            raise RuntimeError(f'post {out}')
        return out * 2

    p, sink = make(pre=pre, infer=[worker(0), worker(1)], post=post, queue_size=3,
                   full_policy='block')
    for i in range(40):
        assert p.submit(i)
    assert p.flush(10)
    assert sink.seqs == list(range(40))
    for r in sink.results:
        kind = r.seq % 7
        if kind in (1, 2, 3):
            assert r.result is None
            exc = {1: ValueError, 2: KeyError, 3: RuntimeError}[kind]
            assert isinstance(r.error, exc) and str(r.seq) in str(r.error)
            assert (r.worker == -1) == (kind == 1)
            assert (r.timings['infer'] == 0.0) == (kind == 1)
        else:
            assert r.error is None and r.ok and r.result == 2 * r.seq and r.worker in (0, 1)
        assert r.timings['total'] >= r.timings['pre'] + r.timings['infer'] + r.timings['post']
    s = check_accounting(p)
    assert s['failed'] == sum(1 for i in range(40) if i % 7 in (1, 2, 3))
    assert s['frames_out'] == 40


def test_on_result_exception_is_logged_and_delivery_continues(make, caplog):
    calls = []

    def on_result(r):
        calls.append(r.seq)
        if r.seq % 4 == 0:
            raise RuntimeError('consumer bug')

    p, _ = make(sink=on_result, queue_size=2, full_policy='block')
    with caplog.at_level(logging.ERROR, logger='faster_deployment_ros.pipeline'):
        for i in range(12):
            assert p.submit(i)
        assert p.flush(5)
    assert calls == list(range(12))
    logged = [r for r in caplog.records if r.name == 'faster_deployment_ros.pipeline']
    assert len(logged) == 3 and all('on_result raised' in r.getMessage() for r in logged)
    assert p.stats()['frames_out'] == 12


def test_a_dead_stage_thread_is_reported_not_silent(make, caplog):
    """Make a bug in the pipeline's own code visible.

    Here its latency bookkeeping raises: the pipeline must not stall silently but log it, report
    it in stats()['fault'] and refuse further frames.
    """

    class Broken:

        def add(self, value):
            raise RuntimeError('bookkeeping bug')

        def summary(self):
            return {}

    p, sink = make(queue_size=2, full_policy='block')
    p._stats['pre'] = Broken()
    with caplog.at_level(logging.CRITICAL, logger='faster_deployment_ros.pipeline'):
        assert p.submit(1)
        assert wait_until(lambda: 'fault' in p.stats())
    # the frame came on the idle fast path: the worker that ran it delivered it
    assert 'tp-infer0' in p.stats()['fault'] and 'bookkeeping bug' in p.stats()['fault']
    assert any('thread died' in r.getMessage() for r in caplog.records)
    assert not p.submit(2)
    assert p.close(timeout=5)


# ---------------------------------------------------------------------------- shutdown
def _pipeline_threads(name):
    return [t for t in threading.enumerate() if t.name.startswith(name + '-')]


def test_close_joins_all_threads_and_is_idempotent(make):
    p, sink = make(infer=[lambda t: t] * 3, full_policy='block', name='tp-close')
    assert len(_pipeline_threads('tp-close')) == 3 + 3
    for i in range(5):
        p.submit(i)
    assert p.close(drain=True)
    assert _pipeline_threads('tp-close') == []
    assert sink.seqs == list(range(5))
    assert p.close() and p.close(drain=True)  # again: no error, nothing to join
    assert p.submit(99) is False
    s = p.stats()
    assert s['rejected'] == 1 and s['frames_in'] == 5


def test_close_without_drain_accounts_for_every_frame(make):
    dropped = []
    p, sink = make(infer=[lambda t: (time.sleep(0.02), t)[1]] * 2, queue_size=20,
                   on_drop=lambda seq, ctx: dropped.append(seq), name='tp-abort')
    for i in range(20):
        assert p.submit(i)
    time.sleep(0.03)
    assert not dropped  # the queue holds all 20: every drop below happens in close()
    assert p.close(drain=False)
    assert _pipeline_threads('tp-abort') == []
    s = check_accounting(p)
    assert s['in_flight'] == 0 and s['frames_in'] == 20
    assert sorted(sink.seqs + dropped) == list(range(20))
    assert sink.seqs == sorted(sink.seqs)
    assert dropped and len(sink.seqs) < 20  # frames were still waiting when it closed


def test_context_manager_drains_and_stops():
    sink = Sink()
    with Pipeline(lambda x: (x, None), [lambda t: t + 1] * 2, lambda o, m: o, sink,
                  queue_size=8, full_policy='block', name='tp-ctx') as p:
        for i in range(10):
            p.submit(i)
    assert [r.result for r in sink.results] == list(range(1, 11))
    assert _pipeline_threads('tp-ctx') == []
    assert p.num_workers == 2


def test_flush_times_out_while_stuck(make):
    release = threading.Event()
    p, sink = make(infer=[lambda t: (release.wait(5), t)[1]])
    p.submit(0)
    assert p.flush(0.1) is False
    release.set()
    assert p.flush(5) is True and sink.seqs == [0]


def test_flush_from_on_result_raises_instead_of_deadlocking(make):
    errors = []
    holder = {}

    def on_result(r):
        try:
            holder['p'].flush(1)
        except RuntimeError as e:
            errors.append(e)

    p, _ = make(sink=on_result)
    holder['p'] = p
    p.submit(0)
    assert wait_until(lambda: errors)


# ---------------------------------------------------------------------------- concurrency
def test_multiple_workers_overlap(make):
    n, per = 20, 0.05
    p, sink = make(infer=[lambda t: (time.sleep(per), t)[1]] * 4, queue_size=4,
                   full_policy='block')
    t0 = time.perf_counter()
    for i in range(n):
        assert p.submit(i)
    assert p.flush(10)
    elapsed = time.perf_counter() - t0
    assert sink.seqs == list(range(n))
    assert elapsed < 0.6 * n * per, f'{elapsed:.3f}s vs serial {n * per:.3f}s'
    assert len({r.worker for r in sink.results}) == 4


def test_stages_overlap_with_one_worker(make):
    n, per = 20, 0.03
    p, sink = make(pre=lambda x: (time.sleep(per), (x, x))[1],
                   infer=[lambda t: (time.sleep(per), t)[1]],
                   post=lambda o, m: (time.sleep(per), o)[1], queue_size=2, full_policy='block')
    t0 = time.perf_counter()
    for i in range(n):
        assert p.submit(i)
    assert p.flush(10)
    elapsed = time.perf_counter() - t0
    assert sink.seqs == list(range(n))
    assert elapsed < 0.6 * 3 * n * per, f'{elapsed:.3f}s vs serial {3 * n * per:.3f}s'


class Gate:
    """Infer callables that report entering (`entered`) and wait for `release` to return."""

    def __init__(self, workers: int) -> None:
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)
        self.inside: List[int] = []  # worker index per call entered, in order
        self.calls = [self._call(i) for i in range(workers)]

    def _call(self, i):
        def infer(t):
            self.inside.append(i)
            self.entered.release()
            assert self.release.wait(30), 'the test never released the gate'
            return t
        return infer

    def wait_inside(self, count: int) -> List[int]:
        for _ in range(count):
            assert self.entered.acquire(timeout=10), f'{count} calls expected: {self.inside}'
        return list(self.inside)


def test_worker_groups_send_a_frame_to_an_idle_group_first(make):
    """Two workers per group: a group gets a second frame only when every group has one."""
    gate = Gate(6)
    groups = ['a', 'a', 'b', 'b', 'c', 'c']
    p, sink = make(infer=gate.calls, worker_groups=groups, queue_size=8, full_policy='block')
    for i in range(3):  # a burst: one frame to each group, none queued behind another
        assert p.submit(i)
    inside = gate.wait_inside(3)
    assert sorted(groups[i] for i in inside) == ['a', 'b', 'c'], inside
    busy = p.busy_workers()  # every group busy: the next frames go to the second workers,
    first = sorted(inside, key=lambda w: -busy[w])  # first of the group that started first
    for i in range(3, 6):
        assert p.submit(i)
        inside = gate.wait_inside(1)
        assert groups[inside[-1]] == groups[first[i - 3]], (inside, busy)
    assert sorted(inside) == list(range(6)), inside
    busy = p.busy_workers()
    assert all(t > 0 for t in busy.values()), busy
    gate.release.set()
    assert p.flush(10)
    assert sink.seqs == list(range(6)) and all(r.ok for r in sink.results)


def test_idle_fast_path_runs_the_frame_on_one_worker_and_keeps_order(make):
    """A frame into an idle pipeline is run and delivered by one worker; later ones wait for it.

    A frame submitted meanwhile takes the staged path and comes out after it, though its
    inference ends first.
    """
    hold, entered = threading.Event(), threading.Event()
    threads = {}

    def stage(name):
        def record(x):
            threads.setdefault(name, []).append(threading.current_thread().name)
            return x
        return record

    def infer(t):
        stage('infer')(t)
        if t == 0:
            entered.set()
            assert hold.wait(10)
        return t

    p, sink = make(pre=lambda x: (stage('pre')(x), x), infer=[infer, infer],
                   post=lambda o, m: stage('post')(o), queue_size=4, full_policy='block')
    assert p.submit(0)
    assert entered.wait(5)
    assert p.submit(1)
    worker0 = threads['infer'][0]
    assert wait_until(lambda: len(threads['infer']) == 2)  # frame 1's inference ran ...
    assert sink.seqs == []  # ... but it waits for frame 0
    hold.set()
    assert p.flush(5)
    assert sink.seqs == [0, 1] and [r.result for r in sink.results] == [0, 1]
    assert threads['pre'] == [worker0, 'tp-pre']
    assert threads['post'] == [worker0, 'tp-post']
    assert sink.results[0].worker != sink.results[1].worker
    assert sink.threads == {worker0, 'tp-deliver'} and sink.overlapped == 0
    fast = sink.results[0].timings
    assert fast['total'] >= fast['queue'] + fast['pre'] + fast['infer'] + fast['post']
    check_accounting(p)


def test_close_drops_a_frame_held_on_the_fast_path_and_counts_it(make):
    hold, entered = threading.Event(), threading.Event()

    def infer(t):
        entered.set()
        hold.wait(10)
        return t

    drops = []
    p, sink = make(infer=[infer], queue_size=2, full_policy='block',
                   on_drop=lambda seq, ctx: drops.append(seq))
    assert p.submit(0)
    assert entered.wait(5)
    assert p.submit(1) and p.submit(2)
    closer = threading.Thread(target=p.close)
    closer.start()
    assert wait_until(lambda: sorted(drops) == [1, 2])  # the waiting ones, at once
    hold.set()  # the held one finishes after close() began: dropped, not delivered
    closer.join(10)
    assert not closer.is_alive()
    s = check_accounting(p)
    assert s['frames_in'] == 3 and s['in_flight'] == 0 and s['dropped'] == 3
    assert sink.seqs == [] and sorted(drops) == [0, 1, 2]


def test_worker_groups_must_name_one_group_per_worker():
    ident = (lambda x: (x, x), [lambda t: t] * 2, lambda o, m: o, lambda r: None)
    with pytest.raises(ValueError, match='worker_groups names 3 groups for 2 workers'):
        Pipeline(*ident, worker_groups=[0, 0, 1])


# ---------------------------------------------------------------------------- stats
def test_stats_report_stage_latencies(make):
    p, sink = make(infer=[lambda t: (time.sleep(0.005), t)[1]] * 2, queue_size=4,
                   full_policy='block', stats_window=25)
    for i in range(30):
        p.submit(i)
    assert p.flush(10)
    s = p.stats()
    assert set(s) >= {'frames_in', 'frames_out', 'dropped', 'failed', 'in_flight', 'workers',
                      'fps', 'stages'}
    assert s['workers'] == 2 and s['fps'] > 0
    assert set(s['stages']) == {'pre', 'infer', 'post', 'queue', 'total'}
    for name, st in s['stages'].items():
        assert st['count'] == 25 and st['total'] == 30, name
        assert 0 <= st['p50'] <= st['p90'] <= st['p99'] <= st['max'], name
    assert s['stages']['infer']['p50'] >= 4.5  # ms; sleep(5 ms) lasts at least that
    assert s['stages']['total']['p50'] >= s['stages']['infer']['p50']
    for r in sink.results:
        assert set(r.timings) == {'pre', 'infer', 'post', 'queue', 'total'}


def test_rolling_stats_matches_numpy():
    rng = np.random.default_rng(0)
    vals = rng.exponential(0.01, 1500)
    rs = RollingStats(window=1000)
    for v in vals:
        rs.add(v)
    assert len(rs) == 1000 and rs.total == 1500
    np.testing.assert_array_equal(rs.values(), vals[-1000:])
    s = rs.summary()
    last = vals[-1000:] * 1000
    assert s['count'] == 1000
    np.testing.assert_allclose([s['mean'], s['p50'], s['p90'], s['p99'], s['max']],
                               [last.mean(), *np.percentile(last, [50, 90, 99]), last.max()])
    assert summarize([])['count'] == 0
    assert summarize([0.001, 0.003])['mean'] == pytest.approx(2.0)


def test_rate_meter():
    rm = RateMeter(window=5)
    for k in range(20):
        rm.tick(k * 0.1)
    assert rm.rate() == pytest.approx(10.0)
    aged = RateMeter(window=100, max_age_s=0.5)
    for k in range(20):
        aged.tick(k * 0.1)
    assert aged.rate(now=1.9) == pytest.approx(10.0)
    assert aged.rate(now=100.0) == 0.0


def test_invalid_arguments_are_rejected_clearly():
    ident = (lambda x: (x, x), [lambda t: t], lambda o, m: o, lambda r: None)
    with pytest.raises(ValueError, match="full_policy must be one of.*'block'.*'drop_newest'"):
        Pipeline(*ident, full_policy='drop_newest')
    with pytest.raises(ValueError, match='queue_size'):
        Pipeline(*ident, queue_size=0)
    with pytest.raises(ValueError, match='infer'):
        Pipeline(ident[0], [], ident[2], ident[3])
    with pytest.raises(TypeError, match='infer'):
        Pipeline(ident[0], [None], ident[2], ident[3])


# ---------------------------------------------------------------------------- real model
def test_onnxruntime_two_workers_match_serial(make, yolox_model):
    ort = pytest.importorskip('onnxruntime')

    def session():
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1  # two workers share the machine's cores
        so.inter_op_num_threads = 1
        return ort.InferenceSession(str(yolox_model), so, providers=['CPUExecutionProvider'])

    sessions = [session(), session()]
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (416, 416, 3), dtype=np.uint8) for _ in range(20)]

    def pre(img):
        return np.ascontiguousarray(img.transpose(2, 0, 1)[None], dtype=np.float32), img.shape

    def infer_with(sess):
        return lambda x: sess.run(['output'], {'images': x})[0]

    serial = [infer_with(sessions[0])(pre(f)[0]) for f in frames]

    p, sink = make(pre=pre, infer=[infer_with(s) for s in sessions],
                   post=lambda out, meta: out, queue_size=4, full_policy='block')
    for i, f in enumerate(frames):
        assert p.submit(f, context=i)
    assert p.flush(60)
    assert [r.context for r in sink.results] == list(range(20))
    assert {r.worker for r in sink.results} == {0, 1}
    for r, ref in zip(sink.results, serial):
        assert r.error is None and r.result.shape == (1, 3549, 85)
        np.testing.assert_allclose(r.result, ref, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------------------- stuck worker
def test_busy_workers_report_a_stuck_call_and_health_names_it(make):
    from faster_deployment_ros.core.health import ERROR, Health, HealthLimits
    release, entered = threading.Event(), threading.Event()

    hold = threading.Event()

    def infer(t):
        if t == 'hang':
            entered.set()
            release.wait(30)
        return t

    def infer1(t):  # holds a 'hang' frame until worker 0 has one, so worker 0 surely gets one
        if t == 'hang' and not entered.is_set():
            hold.wait(30)
        return t

    p, sink = make(infer=[infer, infer1])
    assert p.busy_workers() == {0: 0.0, 1: 0.0} and p.mean_infer_s is None
    assert p.submit('fine') and p.flush(10)
    assert p.mean_infer_s is not None and p.mean_infer_s < 1.0
    health = Health('tp', HealthLimits(stuck_min_s=0.2))
    # two 'hang' frames, one per worker in either order: worker 0's call hangs, worker 1's
    # returns once worker 0 has entered (it never waits for a frame only worker 1 would take)
    assert p.submit('hang') and p.submit('hang')
    assert entered.wait(10)
    hold.set()
    assert wait_until(lambda: p.busy_workers()[0] > 0.3)
    busy = p.busy_workers()
    assert busy[1] == 0.0 or busy[1] < busy[0]
    s = health.status(busy_workers=busy, mean_infer_s=p.mean_infer_s)
    assert s.level == ERROR and s.message.startswith('inference worker 0 stuck in one call for')
    assert 'the other 1 carry the load' in s.message
    release.set()
    assert p.flush(10)
    assert p.busy_workers() == {0: 0.0, 1: 0.0}
    assert health.status(busy_workers=p.busy_workers(),
                         mean_infer_s=p.mean_infer_s).level != ERROR

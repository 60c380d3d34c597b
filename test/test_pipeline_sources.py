"""Several sources (cameras) into one pipeline: queues, service, order and counters per source.

Real threads; synchronised on events and on the pipeline's own deliveries.
"""
from __future__ import annotations

from collections import defaultdict
import threading
from typing import Dict, List

from faster_deployment_ros.core.pipeline import FrameResult, Pipeline
import pytest


class Sink:

    def __init__(self) -> None:
        self.results: List[FrameResult] = []
        self.cv = threading.Condition()

    def __call__(self, r: FrameResult) -> None:
        with self.cv:
            self.results.append(r)
            self.cv.notify_all()

    def by_source(self) -> Dict[object, list]:
        out = defaultdict(list)
        for r in self.results:
            out[r.source].append(r.context)
        return out


@pytest.fixture
def make():
    made: List[Pipeline] = []

    def _make(pre=None, infer=None, sink=None, **kw):
        sink = sink if sink is not None else Sink()
        p = Pipeline(pre or (lambda x: (x, x)), infer or (lambda t: t),
                     lambda out, meta: out, sink, name='ts', **kw)
        made.append(p)
        return p, sink

    yield _make
    for p in made:
        p.close()
        assert not [t for t in p.threads if t.is_alive()]


def gate_on_first():
    """Make a preprocess that holds the first frame until released: nothing behind it moves."""
    started, release = threading.Event(), threading.Event()
    first = []

    def pre(x):
        if not first:
            first.append(x)
            started.set()
            assert release.wait(10)
        return x, x
    return pre, started, release


def check_source_accounting(stats: dict) -> None:
    for key, c in stats['sources'].items():
        assert c['frames_in'] == c['frames_out'] + c['dropped'] + c['in_flight'], key
    total = {k: sum(c[k] for c in stats['sources'].values())
             for k in ('frames_in', 'frames_out', 'dropped')}
    assert total == {k: stats[k] for k in total}


def test_sources_are_served_in_turn_and_keep_their_own_order(make):
    pre, started, release = gate_on_first()
    p, sink = make(pre=pre, queue_size=3, full_policy='drop_oldest')
    assert p.submit('x', context='x', source='a')
    assert started.wait(10)
    for i in range(3):  # 'a' is ready first, then 'b'
        assert p.submit(f'a{i}', context=f'a{i}', source='a')
    for i in range(2):
        assert p.submit(f'b{i}', context=f'b{i}', source='b')
    release.set()
    assert p.flush(10)
    assert [r.context for r in sink.results] == ['x', 'a0', 'b0', 'a1', 'b1', 'a2']
    assert [r.source for r in sink.results] == ['a', 'a', 'b', 'a', 'b', 'a']
    s = p.stats()
    assert s['sources']['a'] == {'frames_in': 4, 'frames_out': 4, 'dropped': 0, 'failed': 0,
                                 'rejected': 0, 'queued': 0, 'in_flight': 0}
    assert s['sources']['b']['frames_out'] == 2
    check_source_accounting(s)


def test_queue_size_and_drops_apply_per_source(make):
    pre, started, release = gate_on_first()
    dropped = []
    p, sink = make(pre=pre, queue_size=2, full_policy='drop_oldest',
                   on_drop=lambda seq, ctx: dropped.append(ctx))
    assert p.submit('x', context='x', source='fast')
    assert started.wait(10)
    for i in range(10):  # the fast camera overflows its own queue only
        assert p.submit(i, context=f'f{i}', source='fast')
    assert p.submit(0, context='s0', source='slow')
    s = p.stats()
    assert s['queued'] == 3
    assert s['sources']['fast']['dropped'] == 8 and s['sources']['slow']['dropped'] == 0
    release.set()
    assert p.flush(10)
    assert dropped == [f'f{i}' for i in range(8)]
    got = sink.by_source()
    assert got['fast'] == ['x', 'f8', 'f9'] and got['slow'] == ['s0']
    s = p.stats()
    assert (s['sources']['fast']['frames_in'], s['sources']['fast']['frames_out']) == (11, 3)
    check_source_accounting(s)


def test_queue_of_one_evicting_keeps_one_turn_per_source(make):
    # queue_size 1: an eviction empties the queue before the new frame goes in; the source
    # must keep exactly one turn (a second one made the pre stage pop an empty queue).
    pre, started, release = gate_on_first()
    p, sink = make(pre=pre, queue_size=1, full_policy='drop_oldest')
    assert p.submit('x', context='x', source='a')
    assert started.wait(10)
    for i in range(5):
        assert p.submit(i, context=f'a{i}', source='a')
        assert p.submit(i, context=f'b{i}', source='b')
    release.set()
    assert p.flush(10)
    assert [r.context for r in sink.results] == ['x', 'a4', 'b4']
    assert all(t.is_alive() for t in p.threads)
    assert p.submit(9, context='a9', source='a') and p.flush(10)
    assert sink.results[-1].context == 'a9'


def test_block_policy_waits_per_source(make):
    pre, started, release = gate_on_first()
    p, sink = make(pre=pre, queue_size=1, full_policy='block')
    assert p.submit('x', source=0)
    assert started.wait(10)
    assert p.submit('a', source=0, timeout=0)
    assert p.submit('b', source=0, timeout=0) is False  # camera 0's queue is full ...
    assert p.submit('c', source=1, timeout=0)           # ... camera 1's is not
    s = p.stats()
    assert s['rejected'] == 1 and s['sources'][0]['rejected'] == 1
    release.set()
    assert p.flush(10)
    assert [r.result for r in sink.results] == ['x', 'a', 'c']


def test_fast_source_over_capacity_cannot_starve_a_slow_one(make):
    """Serve every slow frame while a fast camera floods the pipeline.

    Input at 3.5x what the pipeline serves: per delivered frame the fast camera sends 3 frames
    and the slow one a frame every 6th delivery. Arrivals are driven by deliveries, so the
    ratio holds on any machine. Round-robin serves every slow frame; the fast camera gets the
    rest of the capacity and its own drops.
    """
    n_slow = 20
    sent = {'fast': 0, 'slow': 0}
    done = threading.Event()
    holder: list = []

    def produce(r: FrameResult) -> None:
        sink(r)
        p = holder[0]
        for _ in range(3):
            p.submit(sent['fast'], context=('fast', sent['fast']), source='fast')
            sent['fast'] += 1
        if len(sink.results) % 6 == 0 and sent['slow'] < n_slow:
            p.submit(sent['slow'], context=('slow', sent['slow']), source='slow')
            sent['slow'] += 1
        elif sent['slow'] >= n_slow:
            done.set()

    def infer(t):
        threading.Event().wait(0.002)  # a model call that takes a little time
        return t

    sink = Sink()
    p, _ = make(infer=[infer, infer], queue_size=2, full_policy='drop_oldest',
                sink=produce, schedule='just_in_time')
    holder.append(p)
    for i in range(4):  # prime the loop; later frames come from the deliveries
        p.submit(i, context=('fast', i), source='fast')
    sent['fast'] = 4
    assert done.wait(60), 'the loop stalled'
    p.close(drain=True, timeout=10)
    s = p.stats()
    check_source_accounting(s)
    slow, fast = s['sources']['slow'], s['sources']['fast']
    assert slow['frames_in'] == n_slow
    assert slow['dropped'] == 0 and slow['frames_out'] == n_slow  # every slow frame served
    assert fast['dropped'] > 0 and fast['frames_out'] > n_slow    # fast gets the rest
    got = sink.by_source()
    assert [c[1] for c in got['slow']] == list(range(n_slow))
    fast_seen = [c[1] for c in got['fast']]
    assert fast_seen == sorted(fast_seen)  # each camera in its own order


def test_default_source_has_no_per_source_stats(make):
    p, sink = make()
    assert p.submit(1)
    assert p.flush(10)
    s = p.stats()
    assert 'sources' not in s and sink.results[0].source is None

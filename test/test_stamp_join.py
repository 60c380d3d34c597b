"""runtime.stamp_join.LateJoin: frames wait for a late match and leave in delivery order."""
from __future__ import annotations

from faster_deployment_ros.runtime.stamp_join import LateJoin, READY, SKIP, WAIT
import pytest


class Matches:
    """What has arrived (stamp -> value) and what will never come, as resolve sees it."""

    def __init__(self) -> None:
        self.arrived = {}
        self.newest = -1
        self.emitted = []
        self.skipped = []
        self.coming = set()  # stamps whose match is still on its way whatever came after

    def resolve(self, stamp, item):
        if stamp in self.arrived:
            return READY, self.arrived[stamp]
        if stamp > self.newest or stamp in self.coming:
            return WAIT, f'{stamp} not yet'
        return SKIP, f'{stamp} never came'

    def emit(self, stamp, item, value):
        self.emitted.append((stamp, item, value))

    def skip(self, stamp, item, reason):
        self.skipped.append((stamp, reason))

    def arrive(self, stamp, value):
        self.arrived[stamp] = value
        self.newest = max(self.newest, stamp)

    def calls(self):
        return self.resolve, self.emit, self.skip


def test_a_match_already_there_is_emitted_at_once():
    m = Matches()
    m.arrive(1, 'd1')
    join = LateJoin(0.2)
    join.add(1, 'f1', 0.0, *m.calls())
    assert m.emitted == [(1, 'f1', 'd1')] and not m.skipped and len(join) == 0


def test_late_matches_release_frames_in_delivery_order():
    m = Matches()
    join = LateJoin(0.2)
    for stamp in (1, 2, 3):
        join.add(stamp, f'f{stamp}', 0.0, *m.calls())
    assert not m.emitted and len(join) == 3
    m.coming.add(1)
    m.arrive(2, 'd2')  # frame 2's match first: frame 1, still waiting, holds it back
    join.drain(0.01, *m.calls())
    assert not m.emitted and not m.skipped
    m.arrive(1, 'd1')
    join.drain(0.02, *m.calls())
    assert m.emitted == [(1, 'f1', 'd1'), (2, 'f2', 'd2')] and len(join) == 1
    m.arrive(3, 'd3')
    join.drain(0.03, *m.calls())
    assert [e[0] for e in m.emitted] == [1, 2, 3] and not m.skipped


def test_a_match_that_the_stream_passed_is_skipped_with_the_reason():
    m = Matches()
    join = LateJoin(0.2)
    join.add(1, 'f1', 0.0, *m.calls())
    join.add(2, 'f2', 0.0, *m.calls())
    m.arrive(2, 'd2')  # the depth stream skipped frame 1
    join.drain(0.01, *m.calls())
    assert m.skipped == [(1, '1 never came')]
    assert [e[0] for e in m.emitted] == [2]


def test_waiting_ends_after_wait_s_and_says_so():
    m = Matches()
    join = LateJoin(0.2)
    join.add(1, 'f1', 10.0, *m.calls())
    join.drain(10.19, *m.calls())
    assert not m.skipped
    join.drain(10.21, *m.calls())
    assert m.skipped == [(1, '1 not yet (waited 200 ms)')] and len(join) == 0


def test_zero_wait_takes_only_what_is_there():
    m = Matches()
    join = LateJoin(0.0)
    join.add(1, 'f1', 0.0, *m.calls())
    assert m.skipped == [(1, '1 not yet (waited 0 ms)')]


def test_limit_and_close_count_every_frame():
    m = Matches()
    join = LateJoin(5.0, limit=2)
    for stamp in (1, 2, 3):
        join.add(stamp, f'f{stamp}', 0.0, *m.calls())
    assert m.skipped == [(1, '2 frames already waiting for their match')]
    join.close(m.skip, 'stopped')
    assert m.skipped[1:] == [(2, 'stopped'), (3, 'stopped')] and len(join) == 0
    assert not m.emitted


@pytest.mark.parametrize('wait, limit', [(-0.1, 4), (10.5, 4), (0.1, 0)])
def test_bad_settings_are_refused(wait, limit):
    with pytest.raises(ValueError):
        LateJoin(wait, limit)

"""core/health.py without ROS: levels, messages and counters from what happened to the frames.

Also the block-policy feeder and the header-size limits.
"""
from __future__ import annotations

import threading

import cv2
from faster_deployment_ros.core.feeder import Feeder
from faster_deployment_ros.core.health import (ERROR, Health, HealthLimits, OK, STALE, StampGaps,
                                               WARN)
from faster_deployment_ros.core.image_codec import (check_image_size, compressed_image_size,
                                                    encode_compressed, ImageCodecError)
import numpy as np
import pytest


class Clock:
    """A clock the test advances: the window logic is checked without waiting."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(**limits):
    clock = Clock()
    return Health('cam', HealthLimits(**limits), clock=clock), clock


def feed(h, clock, n, outcome, dt=0.1, reason='ImageCodecError: unsupported encoding'):
    for _ in range(n):
        clock.t += dt
        h.received()
        if outcome == 'ok':
            h.published(0.02)
        elif outcome == 'fail':
            h.failed(reason)
        else:
            h.dropped()


def values(status):
    return dict(status.values)


def test_every_frame_failing_is_error_with_the_reason():
    h, clock = make()
    feed(h, clock, 30, 'fail')
    s = h.status()
    assert s.level == ERROR
    assert 'unsupported encoding' in s.message and 'nothing published' in s.message
    v = values(s)
    assert v['failed'] == '30' and v['published'] == '0' and float(v['fps']) == 0.0


def test_healthy_stream_is_ok_and_counters_add_up():
    h, clock = make()
    feed(h, clock, 40, 'ok')
    feed(h, clock, 2, 'drop')
    clock.t += 0.01
    h.received()  # in flight
    s = h.status()
    assert s.level == OK, s.message
    v = values(s)
    assert int(v['frames_in']) == int(v['published']) + int(v['dropped']) + int(v['failed']) \
        + int(v['in_flight'])
    assert v['in_flight'] == '1'
    assert 8.0 < float(v['fps']) < 12.0


def test_some_failures_warn():
    h, clock = make()
    for _ in range(10):
        feed(h, clock, 2, 'ok')
        feed(h, clock, 1, 'fail', reason='RuntimeError: model')
    s = h.status()
    assert s.level == WARN and 'RuntimeError: model' in s.message


def test_high_drop_ratio_warns():
    h, clock = make()
    for _ in range(10):
        feed(h, clock, 1, 'ok')
        feed(h, clock, 2, 'drop')
    s = h.status()
    assert s.level == WARN and 'dropping' in s.message


def test_middleware_losses_count_apart_and_warn():
    h, clock = make()
    feed(h, clock, 10, 'ok')
    h.lost(30)
    s = h.status()
    assert s.level == WARN and 'lost before' in s.message
    v = values(s)
    assert v['lost_middleware'] == '30' and v['frames_in'] == '10'


def test_old_results_warn():
    h, clock = make(max_latency_ms=100.0)
    feed(h, clock, 10, 'ok')
    assert h.status().level == OK
    assert h.status(extra_latency_s=0.5).level == WARN


def test_input_stopping_goes_stale_and_fps_decays_to_zero():
    h, clock = make(window_s=5.0, stale_s=3.0)
    feed(h, clock, 50, 'ok')
    assert h.status().level == OK
    clock.t += 3.5
    s = h.status()
    assert s.level == STALE and 'no input for 3.5 s' in s.message
    clock.t += 5.0
    assert float(values(h.status())['fps']) == 0.0


def test_never_any_input_goes_stale_after_the_grace_time():
    h, clock = make(stale_s=3.0)
    assert h.status().level == OK
    clock.t += 4.0
    s = h.status()
    assert s.level == STALE and 'no input yet' in s.message


def test_stamp_gaps_count_missing_frames():
    gaps = StampGaps()
    stamps = [i / 30 for i in range(20)] + [i / 30 for i in range(23, 40)]
    missing = sum(gaps.add(t) for t in stamps)
    assert missing == 3 and gaps.missing == 3  # frames 20, 21, 22
    assert gaps.add(0.5) == 0  # a restarted source does not count as a gap


def test_limits_are_checked():
    with pytest.raises(ValueError):
        HealthLimits(window_s=0).validate()
    with pytest.raises(ValueError):
        HealthLimits(warn_drop_ratio=1.5).validate()


def test_feeder_never_blocks_and_counts_what_it_drops():
    gate, entered, all_taken = threading.Event(), threading.Event(), threading.Event()
    taken, dropped = [], []

    def submit(item, ctx):  # a consumer that blocks until released
        entered.set()
        gate.wait(10)
        taken.append(item)
        if len(taken) == 4:
            all_taken.set()
        return True

    f = Feeder(submit, capacity=3, on_drop=dropped.append)
    f.put(0, 0)
    assert entered.wait(10)  # the feeder holds frame 0 in the blocked submit
    for i in range(1, 10):
        f.put(i, i)  # returns at once although the consumer is blocked
    assert dropped == [1, 2, 3, 4, 5, 6]  # the backlog keeps the newest 3
    assert len(f) == 4
    gate.set()
    assert all_taken.wait(10)
    f.close()
    assert taken == [0, 7, 8, 9]


def test_feeder_counts_a_raising_submit_as_failed_and_a_refused_one_as_dropped():
    errors, dropped, taken = [], [], []
    done = threading.Event()

    def submit(item, ctx):
        if item == 'boom':
            raise RuntimeError('injected submit failure')
        taken.append(item)
        if item == 'last':
            done.set()
        return item != 'refused'

    f = Feeder(submit, capacity=8, on_drop=dropped.append,
               on_error=lambda ctx, exc: errors.append((ctx, str(exc))))
    for item in ('a', 'boom', 'refused', 'last'):
        f.put(item, f'ctx-{item}')
    assert done.wait(10)
    f.close()
    assert errors == [('ctx-boom', 'injected submit failure')]
    assert dropped == ['ctx-refused']
    assert taken == ['a', 'refused', 'last']


def test_header_sizes_are_read_without_decoding():
    img = np.zeros((37, 53, 3), np.uint8)
    for fmt in ('png', 'jpeg'):
        _, data = encode_compressed(img, fmt)
        assert compressed_image_size(data) == (fmt, 53, 37)
    ok, prog = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert compressed_image_size(prog.tobytes()) == ('jpeg', 53, 37)
    with pytest.raises(ImageCodecError, match='neither jpeg nor png'):
        compressed_image_size(b'GIF89a' + bytes(20))
    with pytest.raises(ImageCodecError):
        compressed_image_size(data[:4])
    with pytest.raises(ImageCodecError, match='max_input_pixels'):
        check_image_size(16384, 16384, 7680 * 4320)
    with pytest.raises(ImageCodecError, match='empty'):
        check_image_size(0, 0, 0)
    check_image_size(7680, 4320, 7680 * 4320)


def test_huge_png_is_refused_from_its_header():
    # A 16384x16384 grey PNG compresses to a few hundred KB but decodes to 256 MB+.
    big = np.zeros((16384, 16384), np.uint8)
    _, data = encode_compressed(big, 'png')
    del big
    kind, w, h = compressed_image_size(data)
    assert (kind, w, h) == ('png', 16384, 16384)
    with pytest.raises(ImageCodecError, match='refused before decoding'):
        check_image_size(w, h, 7680 * 4320, 'png image')


# ---- #19 item 5: health that tells the truth ------------------------------------------------
def camera(h, clock, rate_hz, seconds, skip=()):
    """Feed frames of a camera at `rate_hz`, all published; numbers in `skip` never arrive.

    Stamps are on the camera's clock, which runs at the same speed as the arrival clock.
    """
    for k in range(int(rate_hz * seconds)):
        clock.t += 1.0 / rate_hz
        if k in skip:
            continue
        h.received(clock.t - 900.0)  # a stamp on the camera's clock: arrival minus an offset
        h.published(0.02)


def test_a_camera_that_slows_down_is_not_losing_frames():
    # 30 Hz, then 10 Hz, both well below what the node can do: nothing is lost. The period
    # estimate never came down before: every 10 Hz frame showed 2 "missing", WARN forever.
    h, clock = make()
    camera(h, clock, 30, 3)
    camera(h, clock, 10, 10)
    s = h.status()
    assert s.level == OK, s.message
    assert values(s)['stamp_gaps'] == '0' and h.gaps.rate_changes == 1
    # real losses at the new rate still count: 3 frames missing, once the stream is back
    camera(h, clock, 10, 2, skip=(5, 6, 7))
    assert h.gaps.missing == 3
    # and speeding up again counts nothing either
    camera(h, clock, 30, 5)
    assert h.gaps.missing == 3 and h.status().level == OK


def test_stamp_gaps_keep_counting_irregular_losses():
    gaps = StampGaps()
    t, missing = 0.0, 0
    for _ in range(10):
        t += 0.1
        missing += gaps.add(t, t)
    for k in (3, 2, 4, 3, 2, 5, 2, 3):  # a lossy link: gaps of varying length in a row
        t += 0.1 * k
        missing += gaps.add(t, t)
    t += 0.1
    missing += gaps.add(t, t)  # back at the period: everything pending counts
    assert missing == gaps.missing == sum(k - 1 for k in (3, 2, 4, 3, 2, 5, 2, 3))
    assert gaps.rate_changes == 0


@pytest.mark.parametrize('step_s', [1e9, 3600.0, -3600.0, -0.5])
def test_a_clock_step_restarts_the_gap_estimate(step_s):
    # NTP stepping the camera's clock after boot: the stamps jump while the frames keep coming
    # every 33 ms. Before: a jump of 1e9 s read as 3e10 frames lost.
    h, clock = make()
    offset = 5000.0
    for k in range(120):
        clock.t += 1 / 30
        if k == 60:
            offset += step_s
        h.received(clock.t + offset)
        h.published(0.02)
    s = h.status()
    assert s.level == OK, s.message
    v = values(s)
    assert v['stamp_gaps'] == '0'
    assert v.get('stamp_clock_steps', '0') == ('1' if abs(step_s) > 2.0 else '0')
    # after the restart, a real gap counts again
    camera(h, clock, 30, 1, skip=(10, 11))
    assert h.gaps.missing == 2


def test_a_new_activation_starts_a_new_stamp_series():
    # deactivated for 10 s, then active again: the pause was no 299 lost frames
    h, clock = make()
    camera(h, clock, 30, 2)
    clock.t += 10
    h.restart()
    camera(h, clock, 30, 2)
    assert h.gaps.missing == 0 and h.status().level == OK


def test_a_clock_step_without_arrival_times_is_not_counted_as_loss():
    gaps = StampGaps()
    for k in range(10):
        gaps.add(100.0 + k / 30)
    assert gaps.add(100.0 + 1e9) == 0 and gaps.clock_steps == 1 and gaps.missing == 0


def test_a_stuck_worker_is_an_error_naming_it():
    h, clock = make()
    for _ in range(10):  # the symptom as it looked: everything else dropped
        feed(h, clock, 1, 'ok')
        feed(h, clock, 3, 'drop')
    assert 'dropping' in h.status().message
    s = h.status(busy_workers={0: 0.01, 1: 12.34}, mean_infer_s=0.02)
    assert s.level == ERROR
    assert s.message.startswith('inference worker 1 stuck in one call for 12.3 s (bound 5.0 s')
    assert 'the other 1 carry the load' in s.message and 'restart the node' in s.message
    assert values(s)['worker_busy_s'] == '0: 0.0, 1: 12.3'
    # the bound follows the model: 20 x a 0.5 s inference is 10 s
    assert h.status(busy_workers={0: 8.0}, mean_infer_s=0.5).level != ERROR
    s = h.status(busy_workers={0: 10.5}, mean_infer_s=0.5)
    assert s.level == ERROR and 'bound 10.0 s = max(5 s, 20 x the mean inference 500 ms)' in \
        s.message and 'no worker left' in s.message
    # with no input at all (stale) the stuck worker still wins: it is the cause
    clock.t += 100
    assert h.status(busy_workers={0: 100.0}, mean_infer_s=None).level == ERROR
    with pytest.raises(ValueError, match='stuck_min_s'):
        HealthLimits(stuck_min_s=float('nan')).validate()


def test_incompatible_qos_is_a_warning_with_the_fix():
    h, clock = make()
    clock.t += 0.5
    h.incompatible_qos('incompatible QoS on /image (RELIABILITY): set qos_reliability: ...')
    s = h.status()
    assert s.level == WARN and 'RELIABILITY' in s.message
    clock.t += 10  # no input since: the likely reason is said instead of a bare STALE
    s = h.status()
    assert s.level == WARN and s.message.startswith('no input yet for 10.5 s: incompatible QoS')
    assert values(s)['incompatible_qos'].startswith('1: incompatible QoS on /image')
    feed(h, clock, 10, 'ok')  # a compatible publisher came: the warning ends after the window
    clock.t += 5
    feed(h, clock, 10, 'ok')
    assert h.status().level == OK

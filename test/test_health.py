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

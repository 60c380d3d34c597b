"""CameraInfo matched to images by stamp (runtime/camera_info.py): matches, and why not."""
from __future__ import annotations

import threading

from faster_deployment_ros.core.geometry import CameraModel
from faster_deployment_ros.runtime.camera_info import CameraInfoCache, stamp_ns
import pytest

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000


def model(fx: float = 600.0, width: int = 640, height: int = 480) -> CameraModel:
    return CameraModel(fx, fx, width / 2 - 0.5, height / 2 - 0.5, width, height)


def filled(n: int = 5, period_ns: int = 33 * MS, **kw) -> CameraInfoCache:
    cache = CameraInfoCache(**kw)
    for i in range(n):
        cache.add(T0 + i * period_ns, model(600.0 + i), 640, 480)
    return cache


def test_exact_stamp_matches_that_info_only():
    cache = filled(name='/front/camera_info')
    for i in range(5):
        got = cache.lookup(T0 + i * 33 * MS, 640, 480)
        assert got and got.info.fx == 600.0 + i and got.offset_ns == 0 and got.reason == ''
    assert cache.match(T0 + 2 * 33 * MS).fx == 602.0
    miss = cache.lookup(T0 + 2 * 33 * MS + 1)  # 1 ns off: exact means exact
    assert not miss and miss.info is None and cache.match(T0 + 2 * 33 * MS + 1) is None
    assert '/front/camera_info' in miss.reason and 'exact stamp' in miss.reason
    assert 'stamps differ' in miss.reason and '0.000 ms older' in miss.reason


def test_approximate_window_takes_the_nearest_within_it():
    cache = filled(tolerance_ns=5 * MS)
    got = cache.lookup(T0 + 33 * MS + 4 * MS)
    assert got.info.fx == 601.0 and got.offset_ns == -4 * MS
    got = cache.lookup(T0 + 66 * MS - 3 * MS)
    assert got.info.fx == 602.0 and got.offset_ns == 3 * MS
    miss = cache.lookup(T0 + 33 * MS + 12 * MS)  # 12 ms from 601, 21 ms from 602
    assert miss.info is None and 'within 5.000 ms' in miss.reason
    assert '12.000 ms older' in miss.reason
    # the call's own tolerance overrides the cache's; exact is 0
    assert cache.match(T0 + 33 * MS + 12 * MS, tolerance_ns=15 * MS).fx == 601.0
    assert cache.match(T0 + 33 * MS + 4 * MS, tolerance_ns=0) is None
    # equally near: the older one
    assert filled(tolerance_ns=20 * MS, period_ns=20 * MS).match(T0 + 10 * MS).fx == 600.0
    with pytest.raises(ValueError, match='0..1000000000'):
        CameraInfoCache(tolerance_ns=2_000_000_000)
    with pytest.raises(ValueError, match='0..1000000000'):
        cache.lookup(T0, tolerance_ns=-1)


def test_missing_reasons():
    empty = CameraInfoCache(name='/cam/camera_info')
    miss = empty.lookup(T0)
    assert miss.info is None and 'no CameraInfo received yet on /cam/camera_info' in miss.reason
    cache = filled()
    ahead = cache.lookup(T0 + 4 * 33 * MS + 10 * MS)  # newer than all: not arrived (yet)
    assert 'none at or after it yet (the newest is 10.000 ms older)' in ahead.reason
    old = filled(n=3, depth=3).lookup(T0 - 40 * MS)  # older than all kept
    assert 'older than the 3 CameraInfos kept' in old.reason and 'raise the cache depth' in \
        old.reason
    # the same cache for registered depth images says so
    depth = CameraInfoCache(name='/cam/aligned_depth', what='depth image')
    assert depth.lookup(T0).reason.startswith('no depth image received yet on /cam/aligned_depth')
    # the cache keeps only the newest `depth`
    small = filled(n=5, depth=2)
    assert small.match(T0) is None and small.match(T0 + 4 * 33 * MS).fx == 604.0
    assert small.received == 5


def test_size_mismatch_and_unusable_info():
    cache = filled()
    miss = cache.lookup(T0, 1280, 720)
    assert miss.info is None
    assert 'describes a 640x480 image but the image is 1280x720' in miss.reason
    assert cache.lookup(T0, 640, 480).info is not None
    cache.add(T0 + 500 * MS, None, 640, 480, error='uncalibrated')
    bad = cache.lookup(T0 + 500 * MS)
    assert bad.info is None and 'unusable: uncalibrated' in bad.reason


def test_concurrent_adds_and_lookups():
    cache = CameraInfoCache(depth=50)
    stop, errors = threading.Event(), []

    def reader():
        while not stop.is_set():
            try:
                got = cache.lookup(T0 + 1000)
                assert got.info is None or got.info.fx == 600.0
            except Exception as exc:  # noqa: B902 - any failure is reported below
                errors.append(exc)
                return

    t = threading.Thread(target=reader)
    t.start()
    for i in range(5000):
        cache.add(T0 + i * 1000, model(600.0 + (i != 1)), 640, 480)
    stop.set()
    t.join(10)
    assert not errors and cache.received == 5000


@pytest.mark.ros
def test_camera_info_messages():
    from sensor_msgs.msg import CameraInfo
    info = CameraInfo(width=1280, height=720)
    info.header.stamp.sec, info.header.stamp.nanosec = 1_700_000_000, 5
    info.header.frame_id = 'front_optical'
    info.k = [910.0, 0.0, 639.5, 0.0, 910.0, 359.5, 0.0, 0.0, 1.0]
    cache = CameraInfoCache()
    cache.add_camera_info(info)
    assert stamp_ns(info.header.stamp) == T0 + 5
    cam = cache.match(T0 + 5, width=1280, height=720)
    assert (cam.fx, cam.cx, cam.frame_id) == (910.0, 639.5, 'front_optical')
    assert 'is 640x480' in cache.lookup(T0 + 5, 640, 480).reason
    blank = CameraInfo(width=640, height=480)  # an uncalibrated camera: zeros
    blank.header.stamp.sec = 1_700_000_001
    cache.add_camera_info(blank)
    reason = cache.lookup(T0 + 1_000_000_000, 640, 480).reason
    assert 'unusable' in reason and 'uncalibrated' in reason

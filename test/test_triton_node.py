"""A DetectorNode with `backend: triton` in a real ROS 2 graph, against a real Triton server.

It publishes what the same node publishes with `backend: onnxruntime` on frames of the shared
plaza video, for the single `image` topic and for several cameras (`inputs`) sharing the
server; when the server stops, the frames fail, /diagnostics reads ERROR with the server's
words, and when the server is back the node detects again without a restart.
"""
from __future__ import annotations

import time

import pytest
from support.shared_data import missing

rclpy = pytest.importorskip('rclpy')
from faster_deployment_ros.ros.detector_node import DetectorNode  # noqa: E402, I100
from faster_deployment_ros.tools.frames import read_frames  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from support.node_harness import harnesses, header_key, image_msg, wait_status  # noqa: E402
from support.triton_server import TritonServer  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]
ERROR = 2
FRAMES = 6


@pytest.fixture(scope='module')
def server(yolox_model):
    """Yield a started Triton server serving YOLOX-nano; tests may stop and restart it."""
    try:
        import tritonclient.grpc  # noqa: F401
    except ImportError as exc:
        missing(f'tritonclient[grpc] is not installed ({exc})')
    server = TritonServer(yolox_model).start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope='module')
def frames(plaza_video):
    got = read_frames(plaza_video, FRAMES, step=25)
    assert len(got) == FRAMES
    return got


def rows(msg) -> list:
    """Return the detections of one message as comparable rows: class, score, box."""
    out = []
    for d in msg.detections:
        h, b = d.results[0].hypothesis, d.bbox
        out.append((h.class_id, h.score, b.center.position.x, b.center.position.y,
                    b.size_x, b.size_y))
    return sorted(out)


def assert_same(got: list, want: list) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[0] == w[0]
        assert g[1] == pytest.approx(w[1], abs=1e-5)
        assert g[2:] == pytest.approx(w[2:], abs=1e-3)


def run(make, frames, first_stamp: int, **params) -> dict:
    """Start a node, publish `frames`, return {header key: rows} of what it published."""
    h = make(**params)
    h.start()
    for i, frame in enumerate(frames):
        h.pubs['image'].publish(image_msg(frame, first_stamp + i))
    got = h.wait_count(h.got['detections'], len(frames), timeout=60)
    assert len(got) == len(frames), f'{len(got)} of {len(frames)} published'
    return {header_key(m.header): rows(m) for m in got}


CAMERAS = ('tc_front', 'tc_rear', 'tc_side')


def run_cameras(make, camera_frames: dict, **params) -> dict:
    """Run a node with one `inputs` topic per camera; return what each camera got, in order.

    Each camera's frames are published interleaved with the others'; the result is
    {camera: [(header key, rows)]}.
    """
    h = make(inputs=[f'/{c}/image_raw' for c in camera_frames], **params)
    h.start(list(camera_frames))
    for i in range(FRAMES):
        for cam, cam_frames in camera_frames.items():
            h.pubs[cam].publish(image_msg(cam_frames[i], 1 + i, cam))
    out = {}
    for cam in camera_frames:
        got = h.wait_count(h.got[cam], FRAMES, timeout=60)
        assert len(got) == FRAMES, f'{cam}: {len(got)} of {FRAMES} published'
        out[cam] = [(header_key(m.header), rows(m)) for m in got]
    return out


def test_triton_node_serves_several_cameras_each_its_own_detections(
        ros, yolox_model, server, frames):
    # each camera its own order of the frames: a frame's result on the wrong camera would show
    camera_frames = {c: frames[k:] + frames[:k] for k, c in enumerate(CAMERAS)}
    io = ({c: (Image, f'/{c}/image_raw') for c in CAMERAS},
          {c: (Detection2DArray, f'/{c}/detections') for c in CAMERAS})
    base = {'model_family': 'yolox', 'conf_threshold': 0.3}
    with harnesses(DetectorNode, base, 'triton_cams_ref_peer', *io) as make:
        want = run_cameras(make, camera_frames, model_path=str(yolox_model),
                           backend='onnxruntime')
    assert all(sum(len(r) for _, r in want[c]) > 0 for c in CAMERAS)
    with harnesses(DetectorNode, base, 'triton_cams_peer', *io) as make:
        got = run_cameras(make, camera_frames, model_path=server.model_path(),
                          backend='triton', workers=len(CAMERAS),
                          **{'triton.timeout_s': 10.0})
    for cam in CAMERAS:
        assert [k for k, _ in got[cam]] == [k for k, _ in want[cam]], cam
        for (_, g), (_, w) in zip(got[cam], want[cam]):
            assert_same(g, w)


def test_triton_node_publishes_what_onnxruntime_does_and_survives_a_server_restart(
        ros, yolox_model, server, frames):
    base = {'model_family': 'yolox', 'conf_threshold': 0.3}
    io = ({'image': (Image, 'image')}, {'detections': (Detection2DArray, 'detections')})
    with harnesses(DetectorNode, base, 'triton_node_ref_peer', *io) as make:
        want = run(make, frames, 1, model_path=str(yolox_model), backend='onnxruntime')
    assert sum(len(r) for r in want.values()) > 0

    with harnesses(DetectorNode, base, 'triton_node_peer', *io) as make:
        h = make(model_path=server.model_path(), backend='triton', workers=2,
                 **{'triton.timeout_s': 10.0})
        h.start()
        published = h.got['detections']
        for i, frame in enumerate(frames):
            h.pubs['image'].publish(image_msg(frame, 1 + i))
        got = h.wait_count(published, FRAMES, timeout=60)
        assert [header_key(m.header) for m in got] == list(want)
        for m in got:
            assert_same(rows(m), want[header_key(m.header)])

        server.stop()
        for i, frame in enumerate(frames):
            h.pubs['image'].publish(image_msg(frame, 101 + i))
        status = wait_status(h.node, ERROR, 'frames failed')
        assert f'Triton server at {server.url}' in status.message, status.message
        assert len(published) == FRAMES  # a failed frame publishes nothing
        assert h.node.lifecycle_state == 'active'

        server.start()  # the same address: the node reconnects on its next frame
        for i, frame in enumerate(frames):
            h.pubs['image'].publish(image_msg(frame, 201 + i))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            back = [m for m in list(published) if m.header.stamp.nanosec > 200]
            if len(back) == FRAMES:
                break
            time.sleep(0.1)
        assert len(back) == FRAMES, f'{len(back)} of {FRAMES} after the restart'
        for m in back:
            assert_same(rows(m), want[(0, m.header.stamp.nanosec - 200, 'camera')])

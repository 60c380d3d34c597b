"""Track ids from the detector node (`tracking: true`) in a real ROS 2 graph.

Real rclpy, real ONNX Runtime, the real YOLOX-nano model, consecutive frames of the plaza video.
The ids in Detection2D.id must be those of a ByteTracker fed the same model's detections of the
same frames (so: stable from frame to frame), start again after deactivate / activate, and be
kept per camera with `inputs`.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from faster_deployment_ros.backends import create_backend  # noqa: E402, I100
from faster_deployment_ros.core.tracking import ByteTracker  # noqa: E402
from faster_deployment_ros.core.types import Detections  # noqa: E402
from faster_deployment_ros.models import create_adapter  # noqa: E402
from faster_deployment_ros.ros.detector_node import DetectorNode  # noqa: E402
from faster_deployment_ros.tools.frames import read_frames  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from support.node_harness import header_key, image_msg, NodeHarness, TEST_PARAMETERS  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

pytestmark = pytest.mark.ros

RATE = 50.0  # the plaza video's frame rate: camera_rate, so the tracker's buffer scales to it
T0 = 1_700_000_000_000_000_000
#: per frame: (track id, (centre x, centre y, width, height)) of each published detection
Tracks = List[List[Tuple[int, Tuple[float, ...]]]]


def reference_tracks(model: Path, frames: List[np.ndarray], person_only: bool = False) -> Tracks:
    """Run the model in-process (the node's adapter and backend) and a ByteTracker on it.

    `person_only`: the class filter first (COCO class 0), as `classes: [person]` does.
    """
    with create_backend('onnxruntime', str(model)) as backend:
        adapter = create_adapter('yolox', backend.inputs, backend.outputs, backend.metadata,
                                 conf_threshold=0.3)
        tracker = ByteTracker(RATE)
        out = []
        for frame in frames:
            tensors, meta = adapter.preprocess(frame)
            det = adapter.postprocess(backend.infer(tensors), meta)
            if person_only:
                keep = det.class_ids == 0
                det = Detections(det.boxes[keep], det.scores[keep], det.class_ids[keep])
            det = tracker.update(det)
            b = det.boxes.astype(np.float64)
            cxcywh = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                               b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
            out.append(list(zip(det.track_ids.tolist(), map(tuple, cxcywh.tolist()))))
        return out


def published_tracks(msgs: List[Detection2DArray]) -> Tracks:
    out = []
    for m in msgs:
        rows = []
        for d in m.detections:
            assert d.id.isdigit(), f'Detection2D.id {d.id!r} is not a decimal track id'
            c = d.bbox.center.position
            rows.append((int(d.id), (c.x, c.y, d.bbox.size_x, d.bbox.size_y)))
        out.append(rows)
    return out


def assert_same_tracks(got: Tracks, want: Tracks) -> None:
    for i, (g, w) in enumerate(zip(got, want)):
        assert [t for t, _ in g] == [t for t, _ in w], f'frame {i}: ids differ'
        np.testing.assert_allclose(np.array([b for _, b in g]).reshape(-1, 4),
                                   np.array([b for _, b in w]).reshape(-1, 4), atol=1e-3)
    assert len(got) == len(want)


def send(h: NodeHarness, pub: str, frames: List[np.ndarray], into: list, t0: int = T0,
         frame_id: str = 'plaza') -> List[Detection2DArray]:
    """Publish `frames` at the video's rate stamps; return the results they got, in order."""
    start = len(into)
    sent = []
    for i, frame in enumerate(frames):
        msg = image_msg(frame, t0 + i * 20_000_000, frame_id)
        sent.append(header_key(msg.header))
        h.pubs[pub].publish(msg)
    got = h.wait_count(into, start + len(frames), timeout=120.0)[start:]
    assert [header_key(m.header) for m in got] == sent  # every frame, in order
    return got


@pytest.fixture(scope='module')
def plaza_frames(plaza_video) -> List[np.ndarray]:
    frames = read_frames(plaza_video, 16)
    assert len(frames) == 16
    return frames


@pytest.fixture
def node(ros, yolox_model):
    made = []

    def make(outputs, subscribed, **params) -> NodeHarness:
        overrides = {**TEST_PARAMETERS, 'model_path': str(yolox_model), 'model_family': 'yolox',
                     'conf_threshold': 0.3, 'tracking': True, 'camera_rate': RATE, **params}
        h = NodeHarness(DetectorNode, overrides, 'tracking_test_peer',
                        inputs={k: (Image, t) for k, t in subscribed.items()},
                        outputs={k: (Detection2DArray, t) for k, t in outputs.items()})
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def test_ids_are_stable_and_restart_on_activate(node, yolox_model, plaza_frames):
    want = reference_tracks(yolox_model, plaza_frames)
    h = node({'det': 'detections'}, {'image': 'image'})
    h.start()
    got = published_tracks(send(h, 'image', plaza_frames, h.got['det']))
    assert_same_tracks(got, want)
    # a crowd of people, tracked from the first frame on (ids 1.. in detection order) and
    # stable: nearly every id of one frame is there in the next
    assert len(got[0]) >= 8 and sorted(t for t, _ in got[0]) == list(range(1, len(got[0]) + 1))
    for a, b in zip(got, got[1:]):
        ids_a, ids_b = {t for t, _ in a}, {t for t, _ in b}
        assert len(ids_a & ids_b) >= 0.8 * len(ids_a)
    assert len({t for frame in got for t, _ in frame}) < 2 * len(got[0])

    # deactivate / activate: a new stream, ids from 1 again (the same frames, the same ids)
    assert h.node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS
    assert h.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    h.wait_matched(h.pubs['image'])
    again = published_tracks(send(h, 'image', plaza_frames[:4], h.got['det'], T0 + 10**9))
    assert_same_tracks(again, want[:4])


def test_each_camera_has_its_own_tracker_after_the_class_filter(node, yolox_model, plaza_frames):
    # two cameras see different parts of the video, interleaved frame by frame
    front, rear = plaza_frames[:8], plaza_frames[8:]
    h = node({'front': '/trk_front/detections', 'rear': '/trk_rear/detections'},
             {'front': '/trk_front/image_raw', 'rear': '/trk_rear/image_raw'},
             inputs=['/trk_front/image_raw', '/trk_rear/image_raw'], workers=2,
             classes=['person'])
    h.start(['front', 'rear'])
    for i in range(len(front)):
        for cam, frames in (('front', front), ('rear', rear)):
            h.pubs[cam].publish(image_msg(frames[i], T0 + i * 20_000_000, cam))
    got = {cam: published_tracks(h.wait_count(h.got[cam], len(front), timeout=120.0))
           for cam in ('front', 'rear')}
    # each camera's ids are a tracker's over that camera's frames alone (both start at 1),
    # of the classes the filter keeps
    assert_same_tracks(got['front'], reference_tracks(yolox_model, front, person_only=True))
    assert_same_tracks(got['rear'], reference_tracks(yolox_model, rear, person_only=True))
    assert min(t for t, _ in got['rear'][0]) == 1


def test_tracks_are_of_the_classes_the_filter_keeps(node, dog_image_path):
    # dog, bicycle, car, truck in one image; tracking only cars, the car is track 1 (tracked
    # before the filter it would be the third track)
    frame = cv2.imread(str(dog_image_path))
    h = node({'det': 'detections'}, {'image': 'image'}, classes=['car'])
    h.start()
    got = send(h, 'image', [frame] * 3, h.got['det'])
    assert [[(d.id, d.results[0].hypothesis.class_id) for d in m.detections] for m in got] == \
        [[('1', 'car')]] * 3

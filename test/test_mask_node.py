"""The detector node's instance mask outputs in a real ROS 2 graph.

Real rclpy, real Fast DDS, real ONNX Runtime, the yolov8n-seg test model (ultralytics' graph,
scripts/build_test_models.py), real camera frames.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from support.golden import MODELS
from support.shared_data import missing

rclpy = pytest.importorskip('rclpy')
from faster_deployment_ros.backends import create_backend  # noqa: E402, I100
from faster_deployment_ros.models import create_adapter  # noqa: E402
from faster_deployment_ros.ros.detector_node import DetectorNode  # noqa: E402
from faster_deployment_ros.ros.label_info import label_info_qos  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from support.golden import golden_frames, load_golden  # noqa: E402
from support.node_harness import harnesses, header_key, image_msg  # noqa: E402
from vision_msgs.msg import Detection2DArray, LabelInfo  # noqa: E402

pytestmark = pytest.mark.ros

MASK_OUTPUTS = {'instance': (Image, 'instance_mask'), 'semantic': (Image, 'semantic_mask'),
                'confidence': (Image, 'mask_confidence')}


@pytest.fixture(scope='module')
def seg_model():
    path = MODELS / 'yolov8n-seg.onnx'
    if not path.exists():
        missing(f'{path} not built: run `bash scripts/test_assets.d/20_test_models.sh`')
    return path


@pytest.fixture(scope='module')
def frames(seg_model):
    _, info = load_golden('yolov8n-seg')
    return golden_frames(info)


def make_rig(ros, seg_model, outputs):
    return harnesses(DetectorNode, {'model_path': str(seg_model), 'publish_masks': True,
                                    'class_id_mode': 'index'},
                     'mask_test_peer', {'image': (Image, 'image')},
                     {'detections': (Detection2DArray, 'detections'), **outputs})


def wait_subscribed(node, kinds, timeout: float = 10.0) -> None:
    """Wait until the node's mask publishers of `kinds` see the peer's subscriptions."""
    deadline = time.monotonic() + timeout
    for kind in kinds:
        pub = node._mask_pubs[0][kind]
        while pub.get_subscription_count() == 0:
            assert time.monotonic() < deadline, f'{kind} never matched'
            time.sleep(0.05)


def send(h, frames):
    sent = []
    for i, (key, frame) in enumerate(frames.items()):
        msg = image_msg(frame, 1_700_000_000_000_000_000 + i * 33_000_000, f'cam_{key}')
        sent.append(header_key(msg.header))
        h.pubs['image'].publish(msg)
    return sent


def pixels(msg) -> np.ndarray:
    dtype = np.uint16 if msg.encoding == 'mono16' else np.uint8
    return np.frombuffer(bytes(msg.data), dtype).reshape(msg.height, msg.width)


def test_mask_images_match_the_detections(ros, seg_model, frames):
    with make_rig(ros, seg_model, MASK_OUTPUTS) as make:
        h = make()
        labels, got_label = [], threading.Event()
        h.peer.create_subscription(LabelInfo, 'label_info',
                                   lambda m: (labels.append(m), got_label.set()),
                                   label_info_qos())
        h.start()
        wait_subscribed(h.node, ('instance', 'semantic', 'confidence'))
        sent = send(h, frames)
        n = len(sent)
        dets = h.wait_count(h.got['detections'], n)
        images = {k: h.wait_count(h.got[k], n) for k in MASK_OUTPUTS}
        assert len(dets) == n and all(len(v) == n for v in images.values())
        assert got_label.wait(10.0) and len(labels[-1].class_map) == 80
        # the mask cost on /diagnostics (over the last 10 s)
        values = {kv.key: kv.value for kv in h.node.diagnostic_statuses()[0].values}
        assert values['masks_rendered'] == str(n) and float(values['masks_p50_ms']) > 0
        backend = create_backend('onnxruntime', str(seg_model), threads=1)
        adapter = create_adapter('auto', backend.inputs, backend.outputs, backend.metadata)
        shown = 0
        for k, (key, frame) in enumerate(frames.items()):
            det_msg = dets[k]
            inst, sem, conf = (images[kind][k] for kind in ('instance', 'semantic', 'confidence'))
            for msg in (det_msg, inst, sem, conf):
                assert header_key(msg.header) == sent[k]
            for msg in (inst, sem, conf):
                assert (msg.height, msg.width) == frame.shape[:2] and msg.encoding == 'mono8'
            ids = [d.id for d in det_msg.detections]
            assert ids == [str(i + 1) for i in range(len(ids))]  # Detection2D.id names it
            inst_px, sem_px, conf_px = pixels(inst), pixels(sem), pixels(conf)
            classes = np.array([int(d.results[0].hypothesis.class_id)
                                for d in det_msg.detections])
            scores = np.array([d.results[0].hypothesis.score for d in det_msg.detections])
            values = np.unique(inst_px)
            assert values[0] == 0 and values[-1] <= len(ids) and len(values) > 5
            for v in values[1:].tolist():  # each instance lies in its detection's box
                d = det_msg.detections[v - 1]
                ys, xs = np.nonzero(inst_px == v)
                c, half = d.bbox.center.position, (d.bbox.size_x / 2, d.bbox.size_y / 2)
                assert xs.min() >= c.x - half[0] - 1 and xs.max() <= c.x + half[0] + 1
                assert ys.min() >= c.y - half[1] - 1 and ys.max() <= c.y + half[1] + 1
            on = inst_px > 0
            np.testing.assert_array_equal(sem_px[on], classes[inst_px[on] - 1])
            np.testing.assert_array_equal(conf_px[on], np.rint(scores * 255)[inst_px[on] - 1])
            assert (sem_px[~on] == 255).all() and (conf_px[~on] == 0).all()
            # and the same pixels as the adapter's own masks for this frame
            inputs, meta = adapter.preprocess(frame)
            det = adapter.postprocess(backend.infer(inputs), meta)
            np.testing.assert_array_equal(inst_px, det.masks.render(det.scores)['instance'])
            shown += len(values) - 1
        backend.close()
        assert shown > 20
        assert h.node.masks_rendered == n and h.node.masks_unsubscribed == 0


def test_no_mask_work_without_subscribers(ros, seg_model, frames):
    with make_rig(ros, seg_model, {}) as make:
        h = make()
        h.start()
        sent = send(h, frames)
        dets = h.wait_count(h.got['detections'], len(sent))
        assert [header_key(m.header) for m in dets] == sent
        assert sum(len(m.detections) for m in dets) > 20
        assert h.node.masks_rendered == 0 and h.node.masks_unsubscribed == len(sent)
        assert h.node.mask_time.total == 0
        values = {kv.key: kv.value for kv in h.node.diagnostic_statuses()[0].values}
        assert values['masks_unsubscribed'] == str(len(sent))


def test_only_the_subscribed_images_are_made(ros, seg_model, frames):
    with make_rig(ros, seg_model, {'semantic': MASK_OUTPUTS['semantic']}) as make:
        h = make()
        h.start()
        wait_subscribed(h.node, ('semantic',))
        sent = send(h, dict(list(frames.items())[:1]))
        got = h.wait_count(h.got['semantic'], 1)
        assert [header_key(m.header) for m in got] == sent
        assert h.node._mask_pubs[0]['instance'].get_subscription_count() == 0
        assert h.node.masks_rendered == 1


def test_publish_masks_needs_a_mask_head(ros):
    path = MODELS / 'yolov8n.onnx'
    if not path.exists():
        missing(f'{path} not built: run `bash scripts/test_assets.d/20_test_models.sh`')
    with make_rig(ros, path, {}) as make:
        h = make()
        assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert 'publish_masks' in h.node.configure_error
        assert 'no instance mask head' in h.node.configure_error

"""The segmentation node in a real ROS 2 graph.

Real rclpy, Fast DDS, ONNX Runtime, real frames and the LR-ASPP test model
(scripts/test_assets.d/20_test_models.sh): mask and confidence arrive with the frame's header
and size and equal the adapter's own result, label_info is latched, a runtime min_confidence
reaches the next frame and label_info, and an output nobody subscribes to is never built.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from faster_deployment_ros.backends import create_backend  # noqa: E402, I100
from faster_deployment_ros.core.image_codec import msg_to_numpy  # noqa: E402
from faster_deployment_ros.models import create_adapter  # noqa: E402
from faster_deployment_ros.ros.label_info import label_info_qos  # noqa: E402
from faster_deployment_ros.ros.segmentation_node import SegmentationNode  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from support.golden import model_path, read_frame  # noqa: E402
from support.node_harness import header_key, image_msg, NodeHarness  # noqa: E402
from support.node_harness import TEST_PARAMETERS, wait_until  # noqa: E402
from vision_msgs.msg import LabelInfo  # noqa: E402

pytestmark = pytest.mark.ros

MODEL = 'lraspp_mobilenet_v3_large'


@pytest.fixture
def rig(ros):
    made = []

    def make(outputs=('mask', 'conf'), **params):
        topics = {'mask': (Image, 'segmentation'), 'conf': (Image, 'segmentation_confidence')}
        h = NodeHarness(SegmentationNode, {**TEST_PARAMETERS,
                                           'model_path': str(model_path(MODEL)), **params},
                        'segmentation_test_peer', inputs={'image': (Image, 'image')},
                        outputs={k: topics[k] for k in outputs})
        made.append(h)
        return h
    yield make
    for h in made:
        h.close()


def expected(frame: np.ndarray, **params):
    with create_backend('onnxruntime', str(model_path(MODEL))) as b:
        adapter = create_adapter('auto', b.inputs, b.outputs, b.metadata, **params)
        inputs, meta = adapter.preprocess(frame)
        return adapter.postprocess(b.infer(inputs), meta)


def latched_label_info(node, timeout: float = 30.0) -> LabelInfo:
    """Subscribe (transient local) after the fact; return the label_info kept for late joiners."""
    got, done = [], threading.Event()

    def keep(msg):
        got.append(msg)
        done.set()
    sub = node.peer.create_subscription(LabelInfo, 'label_info', keep, label_info_qos())
    try:
        assert done.wait(timeout), 'no latched label_info for a late subscriber'
        return got[-1]
    finally:
        node.peer.destroy_subscription(sub)


def test_mask_and_confidence_with_the_frames_header_and_latched_label_info(rig, campus_video):
    h = rig()
    h.start()
    info = latched_label_info(h)  # subscribed after configure: it must have been kept
    assert [(c.class_id, c.class_name) for c in info.class_map][:3] == [
        (0, '__background__'), (1, 'aeroplane'), (2, 'bicycle')]
    assert len(info.class_map) == 21 and info.threshold == 0.0
    frames = [read_frame(campus_video, i) for i in (5, 25)]
    sent = [image_msg(f, 1_000_000_000 + 33_000_000 * i, 'campus_optical')
            for i, f in enumerate(frames)]
    for msg in sent:
        h.pubs['image'].publish(msg)
    masks = h.wait_count(h.got['mask'], 2, timeout=120)
    confs = h.wait_count(h.got['conf'], 2, timeout=120)
    assert len(masks) == len(confs) == 2
    for frame, src, mask, conf in zip(frames, sent, masks, confs):
        for out in (mask, conf):
            assert header_key(out.header) == header_key(src.header)
            assert (out.height, out.width, out.encoding) == (*frame.shape[:2], 'mono8')
            assert out.step == out.width  # row-major class ids, as Nav2's layer indexes them
        want = expected(frame)
        np.testing.assert_array_equal(msg_to_numpy(mask), want.mask)
        np.testing.assert_array_equal(msg_to_numpy(conf), want.confidence)
    assert h.node.telemetry.published == 2


def test_min_confidence_at_runtime_reaches_the_mask_and_label_info(rig, campus_video):
    h = rig()
    h.start()
    frame = read_frame(campus_video, 5)
    result = h.node.set_parameters([Parameter('min_confidence', value=0.3)])
    assert result[0].successful, result[0].reason
    assert latched_label_info(h).threshold == pytest.approx(0.3)
    h.pubs['image'].publish(image_msg(frame, 2_000_000_000, 'campus_optical'))
    mask = msg_to_numpy(h.wait_count(h.got['mask'], 1, timeout=120)[0])
    conf = msg_to_numpy(h.wait_count(h.got['conf'], 1, timeout=120)[0])
    want = expected(frame, min_confidence=0.3)
    np.testing.assert_array_equal(mask, want.mask)
    none = mask == 255
    assert 0.05 < none.mean() < 0.95, 'the threshold must cut part of this frame'
    # p < 0.3 <=> p x 255 < 76.5: rounded, at most 76; kept pixels at least 76
    assert conf[none].max() <= 76 and conf[~none].min() >= 76


def test_an_output_nobody_subscribes_to_is_not_built(rig, campus_video):
    h = rig(outputs=('conf',))  # only the confidence has a subscriber
    h.start()
    frame = read_frame(campus_video, 5)
    for i in range(2):
        h.pubs['image'].publish(image_msg(frame, 3_000_000_000 + i, 'campus_optical'))
    assert len(h.wait_count(h.got['conf'], 2, timeout=120)) == 2
    assert wait_until(lambda: h.node.telemetry.published == 2, timeout=60.0)  # delivered, counted
    assert h.node._mask_msg is None, 'the mask was built although nobody subscribes to it'


def test_a_depth_model_is_refused_naming_the_node_to_use(rig):
    h = rig(model_path=str(model_path('midas_small_style')))
    from rclpy.lifecycle import TransitionCallbackReturn
    assert h.node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert 'depth_node' in h.node.configure_error

"""Every non-YOLOX family through its node in a real ROS 2 graph, configured by its shipped YAML.

YOLOv8 / YOLO11 / YOLO11-obb / RT-DETR (both export layouts) -> Detection2DArray, Depth Anything
V2 -> 32FC1.

Each result must carry the source header and equal what the family's adapter gives directly
(the adapters themselves are checked against the references in test_yolov8/rtdetr/depth.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip('rclpy')
from faster_deployment_ros.backends import create_backend  # noqa: E402, I100
from faster_deployment_ros.core.image_codec import msg_to_numpy  # noqa: E402
from faster_deployment_ros.ros.depth_node import DepthNode  # noqa: E402
from faster_deployment_ros.ros.detector_node import DetectorNode  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from support.golden import golden_frames, load_golden, model_path  # noqa: E402
from support.node_harness import header_key, image_msg, NodeHarness  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[1]
RELIABLE = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)

# model -> (node class, YAML, output type, topic)
CASES = {
    'yolov8n': (DetectorNode, 'yolov8n_onnxruntime.yaml', Detection2DArray, 'detections'),
    'yolo11n': (DetectorNode, 'yolo11n_onnxruntime.yaml', Detection2DArray, 'detections'),
    'yolo11n-obb': (DetectorNode, 'yolo11n_obb_onnxruntime.yaml', Detection2DArray,
                    'detections'),
    'rtdetr-l': (DetectorNode, 'rtdetr_onnxruntime.yaml', Detection2DArray, 'detections'),
    'rtdetr-l-orig': (DetectorNode, 'rtdetr_onnxruntime.yaml', Detection2DArray, 'detections'),
    'depth_anything_v2_vits': (DepthNode, 'depth_anything_v2_onnxruntime.yaml', Image, 'depth'),
    'depth_anything_v2_metric_hypersim_vits': (DepthNode,
                                               'depth_anything_v2_metric_onnxruntime.yaml',
                                               Image, 'depth'),
}


def yaml_parameters(name: str) -> dict:
    """Return the YAML's ros__parameters, nested keys flattened as ROS does."""
    doc = yaml.safe_load((ROOT / 'config' / name).read_text())
    params = doc['/**']['ros__parameters']
    flat = {}

    def walk(prefix, d):
        for k, v in d.items():
            if isinstance(v, dict):
                walk(f'{prefix}{k}.', v)
            else:
                flat[prefix + k] = v
    walk('', params)
    return flat


@pytest.mark.slow
@pytest.mark.parametrize('model', sorted(CASES))
def test_family_node_with_its_yaml(ros, model):
    node_cls, yaml_name, msg_type, topic = CASES[model]
    path = model_path(model)
    _, info = load_golden(model)
    frames = golden_frames(info)
    params = yaml_parameters(yaml_name)
    params.update(model_path=str(path), autostart=False, qos_reliability='reliable',
                  full_policy='block', queue_size=4, qos_depth=4, diagnostics_period=0.0)
    h = NodeHarness(node_cls, params, f'family_peer_{model.replace("-", "_")}',
                    inputs={'image': (Image, 'image')}, outputs={'result': (msg_type, topic)},
                    qos=RELIABLE)
    try:
        h.start()
        keys = ['dog', 'plaza30']
        sent = []
        for i, key in enumerate(keys):
            msg = image_msg(frames[key], (1000 + i) * 1_000_000_000 + 500 * i, f'cam_{key}')
            h.pubs['image'].publish(msg)
            sent.append(msg.header)
        got = h.wait_count(h.got['result'], len(keys), timeout=90)
        assert len(got) == len(keys)
        for msg, header, key in zip(got, sent, keys):
            assert header_key(msg.header) == header_key(header)
            check_result(msg, frames[key], h.node, path)
    finally:
        h.close()


def check_result(msg, frame, node, path):
    """Return the node's message equals the adapter's own result on the same frame."""
    with create_backend('onnxruntime', str(path)) as backend:
        adapter = node.make_adapter(backend)
        assert type(adapter) is type(node.adapter)
        inputs, meta = adapter.preprocess(frame)
        result = adapter.postprocess(backend.infer(inputs), meta)
    if isinstance(msg, Image):
        assert msg.encoding == '32FC1' and (msg.height, msg.width) == frame.shape[:2]
        np.testing.assert_allclose(msg_to_numpy(msg), result.depth, rtol=1e-4, atol=1e-4)
        return
    assert len(result) > 0 and len(msg.detections) == len(result)
    centres = np.array([[d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.center.theta,
                         d.bbox.size_x, d.bbox.size_y] for d in msg.detections])
    if result.obb is None:
        b = result.boxes
        expect = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, 0 * b[:, 0],
                           b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1)
    else:  # oriented boxes: centre, theta and the size along the box's own axes
        expect = result.obb[:, [0, 1, 4, 2, 3]]
        assert (centres[:, 2] != 0).any()
    np.testing.assert_allclose(centres, expect, atol=1e-2)
    names = [d.results[0].hypothesis.class_id for d in msg.detections]
    assert names == result.names() and all(not n.isdigit() for n in names)  # metadata names

"""The benchmarks' echo node as the floor answering with detections (outside view, floor_answer).

It answers each frame of its table with the detections the model gives for that frame, with the
frame's header, and a frame not in its table with an empty answer, counted and logged.
"""
from __future__ import annotations

import functools

from faster_deployment_ros.ros.detection_msgs import to_detection_array
from faster_deployment_ros.tools.benchmark.echo_node import EchoNode
from faster_deployment_ros.tools.benchmark.probe import (detector, make_adapter, ort_session,
                                                         read_video)
import numpy as np
import pytest
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from support.node_harness import header_key, image_msg, NodeHarness
from vision_msgs.msg import Detection2DArray

pytestmark = pytest.mark.ros


def _boxes(msg: Detection2DArray) -> np.ndarray:
    return np.array([[d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x,
                      d.bbox.size_y, d.results[0].hypothesis.score] for d in msg.detections])


def test_answers_table_frames_with_their_detections_others_empty(ros, yolox_model, plaza_video):
    frames = read_video(str(plaza_video), 2)
    session = ort_session(str(yolox_model), 1)
    detect = detector(session, make_adapter(session, 'yolox', 0.3))
    expected = [to_detection_array(detect(f), Header()) for f in frames]
    assert all(len(e.detections) > 0 for e in expected)

    unknown = frames[0].copy()
    unknown.reshape(-1)[0] ^= 0xFF  # a byte the table's sample reads
    node_cls = functools.partial(EchoNode, namespace='echo_table')
    h = NodeHarness(node_cls, {'model': str(yolox_model), 'family': 'yolox', 'conf': 0.3,
                               'threads': 1, 'video': str(plaza_video), 'frames': 2,
                               'qos_depth': 10},
                    'echo_table_peer', {'image': (Image, '/echo_table/image')},
                    {'det': (Detection2DArray, '/echo_table/detections')})
    try:
        assert h.node.table is not None and len(h.node.table) == 2
        h.wait_matched(h.pubs['image'])
        sent = [image_msg(frames[1], 1_000, 'one'), image_msg(unknown, 2_000, 'unknown'),
                image_msg(frames[0], 3_000, 'zero')]
        for msg in sent:  # one at a time: the node subscribes best effort, depth 10
            n = len(h.got['det'])
            h.pubs['image'].publish(msg)
            assert len(h.wait_count(h.got['det'], n + 1, timeout=20.0)) == n + 1
        got = h.got['det']
        assert [header_key(m.header) for m in got] == [header_key(m.header) for m in sent]
        np.testing.assert_allclose(_boxes(got[0]), _boxes(expected[1]), atol=1e-4)
        np.testing.assert_allclose(_boxes(got[2]), _boxes(expected[0]), atol=1e-4)
        assert len(got[1].detections) == 0 and h.node.unknown == 1
    finally:
        h.close()

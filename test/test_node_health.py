"""/diagnostics of a running DetectorNode in the cases where health used to lie.

A publisher whose QoS cannot match the node's subscription (the common "runs but nothing comes
out") and an inference worker stuck in one call are both named on the node's status; the stuck
worker stays ERROR after deactivate, while the runtime still holds it. Real rclpy graph, real
model; the misbehaving backend is support/fault_backend.py.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

rclpy = pytest.importorskip('rclpy')
from faster_deployment_ros.backends import register_backend  # noqa: E402, I100
from faster_deployment_ros.ros.detector_node import DetectorNode  # noqa: E402
from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from support import fault_backend  # noqa: E402
from support.node_harness import harnesses, image_msg, RELIABLE, wait_status  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

pytestmark = pytest.mark.ros
SUCCESS = TransitionCallbackReturn.SUCCESS
OK, WARN, ERROR, STALE = 0, 1, 2, 3
register_backend('fault', 'support.fault_backend', 'FaultBackend')


@pytest.fixture
def harness(ros, yolox_model):
    base = {'model_path': str(yolox_model), 'model_family': 'yolox'}
    try:
        with harnesses(DetectorNode, base, 'node_health_peer', {},
                       {'detections': (Detection2DArray, 'detections')}) as make:
            yield make
    finally:
        fault_backend.RELEASE.set()


def test_a_publisher_whose_qos_cannot_match_is_named_within_seconds(harness):
    h = harness(qos_reliability='reliable')
    h.start(inputs=[])
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    pub = h.peer.create_publisher(Image, 'image', best_effort)
    t0 = time.monotonic()
    status = wait_status(h.node, WARN, 'qos_reliability')
    assert 'best_effort' in status.message, status.message
    assert time.monotonic() - t0 < 10
    h.peer.destroy_publisher(pub)


def test_a_worker_stuck_in_one_call_is_error_naming_it_in_every_state(harness):
    fault_backend.HANGING.clear()
    fault_backend.RELEASE.clear()
    h = harness(backend='fault', **{'fault.mode': 'hang'})
    h.start(inputs=[])
    pub = h.peer.create_publisher(Image, 'image', RELIABLE)
    h.wait_matched(pub)
    pub.publish(image_msg(np.full((120, 160, 3), 90, np.uint8), 1))
    assert fault_backend.HANGING.wait(30)
    # the bound is max(5 s, 20 x the mean inference): a first call has no mean yet
    wait_status(h.node, ERROR, 'inference worker 0 stuck', timeout=30)
    assert h.node.trigger_deactivate() == SUCCESS
    wait_status(h.node, ERROR, 'inference worker 0 stuck', timeout=5)
    fault_backend.RELEASE.set()
    wait_status(h.node, STALE, 'inactive', timeout=30)

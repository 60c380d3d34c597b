"""ros/health.py's QoS event wiring in a real rclpy graph.

An incompatible publisher reaches /diagnostics as a WARN naming the policy and the fix.
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from faster_deployment_ros.core.health import Health, HealthStatus, WARN
from faster_deployment_ros.ros.health import (diagnostic_status, DiagnosticsPublisher,
                                              incompatible_qos_message,
                                              message_lost_event_callbacks)
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from support.ros_nodes import destroy_node

pytestmark = pytest.mark.ros


def test_incompatible_publisher_is_reported_on_diagnostics(ros):
    topic = f'/fdr_qos_probe_{threading.get_ident() % 100000}'
    health = Health('camera')
    sub_node = rclpy.create_node('fdr_qos_subscriber')
    pub_node = rclpy.create_node('fdr_qos_publisher')
    listener = rclpy.create_node('fdr_qos_listener')
    reliable = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE)
    best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
    callbacks = message_lost_event_callbacks(health.lost, health.incompatible_qos, topic)
    assert callbacks is not None and callbacks.incompatible_qos is not None
    sub_node.create_subscription(Image, topic, lambda msg: health.received(), reliable,
                                 event_callbacks=callbacks)
    diag = DiagnosticsPublisher(sub_node, 0.2, lambda: [diagnostic_status(health.status(),
                                                                          'camera')])
    warned = threading.Event()
    seen: list = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        for st in msg.status:
            seen.append(st)
            if st.level == bytes([WARN]) and 'RELIABILITY' in st.message:
                warned.set()

    listener.create_subscription(DiagnosticArray, '/diagnostics', on_diagnostics, 10)
    executor = SingleThreadedExecutor()
    for node in (sub_node, pub_node, listener):
        executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        # a compatible (reliable) publisher matches and raises nothing
        good = pub_node.create_publisher(Image, topic, reliable)
        deadline = time.monotonic() + 15
        while good.get_subscription_count() == 0:
            assert time.monotonic() < deadline, 'the reliable publisher never matched'
            time.sleep(0.05)
        assert health.incompatible_qos_total == 0
        pub_node.destroy_publisher(good)
        # a best-effort publisher cannot serve a reliable subscription: the event fires
        t0 = time.monotonic()
        pub_node.create_publisher(Image, topic, best_effort)
        assert warned.wait(15), [(s.level, s.message) for s in seen[-3:]]
        took = time.monotonic() - t0
        status = next(s for s in reversed(seen) if 'RELIABILITY' in s.message)
        assert status.message.startswith(f'incompatible QoS on {topic} (RELIABILITY): a '
                                         'publisher is best effort')
        assert 'set qos_reliability: best_effort' in status.message
        print(f'incompatible publisher on /diagnostics after {took:.2f} s')
    finally:
        executor.shutdown(timeout_sec=5)
        spinner.join(5)
        diag.destroy()
        destroy_node(sub_node, pub_node, listener)


def test_incompatible_qos_messages_name_each_policy():
    from rclpy.qos import QoSPolicyKind
    assert 'transient local' in incompatible_qos_message(QoSPolicyKind.DURABILITY)
    assert incompatible_qos_message(int(QoSPolicyKind.DEADLINE), '/cam').startswith(
        'incompatible QoS on /cam (DEADLINE)')
    assert 'ros2 topic info -v' in incompatible_qos_message(QoSPolicyKind.LIFESPAN)
    status = HealthStatus(WARN, incompatible_qos_message(QoSPolicyKind.RELIABILITY))
    assert diagnostic_status(status, 'x').level == bytes([WARN])

"""Raw-publish bytes (a serialised message built without rclpy) checked against rclpy itself.

`assert_cdr_is` compares the bytes with rclpy's serialisation of the message they stand for;
`receive_raw` publishes them with rclpy's raw publish and returns what an ordinary subscriber
of the message type receives (ros/detection_msgs.py, ros/cloud_msgs.py publish this way).
"""
from __future__ import annotations

import threading
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from support.ros_nodes import destroy_node


def assert_cdr_is(cdr: bytes, want: Any) -> Any:
    """Assert `cdr` deserialises to `want` with rclpy's layout; return the decoded message.

    The lengths must match rclpy's serialisation of `want` (same alignment and padding
    positions; the padding bytes' values may differ, rmw leaves them as they were).
    """
    assert isinstance(cdr, bytes)
    assert len(cdr) == len(serialize_message(want))
    msg = deserialize_message(cdr, type(want))
    assert msg == want
    return msg


def receive_raw(msg_type: type, payload: bytes, topic: str, node_name: str) -> Any:
    """Publish `payload` on `topic` as bytes; return the `msg_type` a subscriber receives.

    One node holds both ends, spun by its own executor; discovery is waited for (up to 10 s)
    and the message (up to 10 s more): a message never received fails the assertion.
    """
    node = rclpy.create_node(node_name)
    got, done = [], threading.Event()
    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    sub = node.create_subscription(msg_type, topic, lambda m: (got.append(m), done.set()), qos)
    pub = node.create_publisher(msg_type, topic, qos)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        for _ in range(200):  # until discovery matched the two ends
            if pub.get_subscription_count():
                break
            executor.spin_once(timeout_sec=0.05)
        pub.publish(payload)
        for _ in range(100):  # bounded: a lost message fails the assertion below
            if done.is_set():
                break
            executor.spin_once(timeout_sec=0.1)
        assert got, f'nothing received on {topic} within 10 s of the raw publish'
        return got[0]
    finally:
        executor.shutdown()
        node.destroy_subscription(sub)
        destroy_node(node)


__all__ = ['assert_cdr_is', 'receive_raw']

"""vision_msgs/LabelInfo for a detector: the class id -> name map and the score threshold.

vision_msgs asks detectors to publish it once on `label_info` with transient-local durability, so
a visualiser or tracker that starts later still receives it and can decode `class_id_mode:
index` output (ObjectHypothesis.class_id = the index as text). A plain publisher, not a lifecycle
one: the map describes the configured model, so it is there from configure until cleanup, and it
is published again when the threshold changes at run time.
"""
from __future__ import annotations

from typing import Any, Optional, Sequence

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from vision_msgs.msg import LabelInfo, VisionClass

TOPIC = 'label_info'


def label_info_qos() -> QoSProfile:
    """Reliable, transient local, depth 1: what a late subscriber needs (and asks for)."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL)


def make_label_info(class_names: Optional[Sequence[str]], threshold: float, stamp=None,
                    frame_id: str = '') -> LabelInfo:
    """Build a LabelInfo with class_id = index (uint16, as `class_id_mode: index` has it)."""
    msg = LabelInfo()
    if stamp is not None:
        msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    names = list(class_names or [])
    if len(names) > 65536:
        raise ValueError(f"{len(names)} classes do not fit LabelInfo's uint16 class_id")
    msg.class_map = [VisionClass(class_id=i, class_name=str(n)) for i, n in enumerate(names)]
    msg.threshold = float(threshold)
    return msg


class LabelInfoPublisher:
    """Publishes one node's LabelInfo on `label_info` (transient local)."""

    def __init__(self, node: Any, topic: str = TOPIC) -> None:
        self._node = node
        self._pub = node.create_publisher(LabelInfo, topic, label_info_qos())

    def publish(self, class_names: Optional[Sequence[str]], threshold: float) -> LabelInfo:
        msg = make_label_info(class_names, threshold, self._node.get_clock().now().to_msg())
        self._pub.publish(msg)
        return msg

    def destroy(self) -> None:
        if self._pub is not None:
            self._node.destroy_publisher(self._pub)
            self._pub = None

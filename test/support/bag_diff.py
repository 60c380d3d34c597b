"""
Bags of constructed Detection2DArray and depth Image messages for the `fdr-bag diff` tests.

Written with rosbags: no ROS install needed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, Optional, Sequence, Tuple

from faster_deployment_ros.core.image_codec import numpy_to_image_fields
from faster_deployment_ros.tools.bag_types import make_typestore
import numpy as np
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import StoragePlugin

STORE = make_typestore()
T = STORE.types
# (class_id, score, x1, y1, x2, y2), or with a seventh value bbox.center.theta (the box then
# turns by theta about its centre; x1..y2 give its centre and own-frame size)
Det = Tuple[float, ...]


def header(stamp_ns: int, frame_id: str = 'camera'):
    return T['std_msgs/msg/Header'](
        stamp=T['builtin_interfaces/msg/Time'](sec=stamp_ns // 10**9,
                                               nanosec=stamp_ns % 10**9),
        frame_id=frame_id)


def detection_array(stamp_ns: int, dets: Iterable[Det], frame_id: str = 'camera',
                    ids: Sequence[str] = ()):
    """Build a Detection2DArray; `ids` are the detections' Detection2D.id (default empty)."""
    h = header(stamp_ns, frame_id)
    pose = T['geometry_msgs/msg/PoseWithCovariance'](
        pose=T['geometry_msgs/msg/Pose'](
            position=T['geometry_msgs/msg/Point'](x=0.0, y=0.0, z=0.0),
            orientation=T['geometry_msgs/msg/Quaternion'](x=0.0, y=0.0, z=0.0, w=1.0)),
        covariance=np.zeros(36))
    out = []
    dets = list(dets)
    ids = list(ids) or [''] * len(dets)
    for (cls, score, x1, y1, x2, y2, *theta), tid in zip(dets, ids):
        hyp = T['vision_msgs/msg/ObjectHypothesisWithPose'](
            hypothesis=T['vision_msgs/msg/ObjectHypothesis'](class_id=cls, score=score),
            pose=pose)
        bbox = T['vision_msgs/msg/BoundingBox2D'](
            center=T['vision_msgs/msg/Pose2D'](
                position=T['vision_msgs/msg/Point2D'](x=(x1 + x2) / 2, y=(y1 + y2) / 2),
                theta=float(theta[0]) if theta else 0.0),
            size_x=x2 - x1, size_y=y2 - y1)
        out.append(T['vision_msgs/msg/Detection2D'](header=h, results=[hyp], bbox=bbox, id=tid))
    return T['vision_msgs/msg/Detection2DArray'](header=h, detections=out)


def depth_image(stamp_ns: int, depth: np.ndarray, frame_id: str = 'camera'):
    return T['sensor_msgs/msg/Image'](header=header(stamp_ns, frame_id),
                                      **numpy_to_image_fields(depth.astype(np.float32), '32FC1'))


def write_bag(path: Path, topics: Dict[str, Tuple[str, Sequence]]) -> Path:
    """topics: {topic: (msgtype, [messages])}; each message is written at its header stamp."""
    with Writer(path, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as w:
        for topic, (msgtype, msgs) in topics.items():
            conn = w.add_connection(topic, msgtype, typestore=STORE)
            for m in msgs:
                t = m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                w.write(conn, t, STORE.serialize_cdr(m, msgtype))
    return path


def detections_bag(path: Path, frames: Dict[int, Sequence[Det]], topic: str = '/detections',
                   ids: Optional[Dict[int, Sequence[str]]] = None) -> Path:
    """Write a bag of `frames` (stamp -> detections), with track ids per stamp if given."""
    msgs = [detection_array(s, d, ids=(ids or {}).get(s, ())) for s, d in sorted(frames.items())]
    return write_bag(path, {topic: ('vision_msgs/msg/Detection2DArray', msgs)})

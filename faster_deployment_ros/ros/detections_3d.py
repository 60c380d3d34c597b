"""detector_node's `detections_3d`: each frame's detections lifted to metres (vision_msgs).

Per camera: a registered depth image (`depth_topic`, 16UC1 millimetres or 32FC1 metres, aligned
to the image) and the `camera_info`, both matched to the frame by stamp
(runtime.camera_info.CameraInfoCache); core.geometry.detections_to_3d lifts each box (median
depth of its core). A depth image that has not arrived yet when the frame is delivered (a depth
model slower than the detector, e.g. our depth_node on the same camera) is waited for up to
`depth_wait_ms` (runtime.stamp_join.LateJoin: frames leave in delivery order); a frame without
a match gets no 3D detections and a counted warning naming why (`node.output_skipped`).
"""
from __future__ import annotations

from functools import partial
import time
from typing import Any, List

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection3DArray

from .cloud_msgs import to_detection3d_array
from ..core.geometry import detections_to_3d
from ..core.image_codec import msg_to_numpy
from ..runtime.camera_info import CameraInfoCache, stamp_ns
from ..runtime.stamp_join import LateJoin, READY, SKIP, WAIT

#: how often frames still waiting are checked against `depth_wait_ms` when no input arrives
EXPIRY_PERIOD_S = 0.05


def add_depth_image(cache: CameraInfoCache, msg: Image) -> None:
    """Keep a registered depth image (16UC1 mm / 32FC1 m) for the frame of its stamp."""
    try:
        depth = np.array(msg_to_numpy(msg))  # a copy: the message's buffer is reused
    except ValueError as exc:
        cache.add(stamp_ns(msg.header.stamp), None, msg.width, msg.height, str(exc))
        return
    if depth.ndim != 2 or depth.dtype not in (np.uint16, np.float32):
        cache.add(stamp_ns(msg.header.stamp), None, msg.width, msg.height,
                  f'depth image encoding {msg.encoding!r}: give 16UC1 (mm) or 32FC1 (m)')
        return
    cache.add(stamp_ns(msg.header.stamp), depth, msg.width, msg.height)


class Detections3DOutput:
    """The `detections_3d` publishers, depth / camera_info inputs and waiting frames of a node."""

    def __init__(self, node: Any, qos: Any) -> None:
        self.node = node
        values = node.values
        self.pubs = [node.create_lifecycle_publisher(Detection3DArray, t, qos)
                     for t in node.output_topics('detections_3d')]
        self.joins = [LateJoin(values['depth_wait_ms'] / 1e3) for _ in self.pubs]
        self.camera_infos: List[CameraInfoCache] = []  # (callbacks may run before both are set)
        self.depth_images: List[CameraInfoCache] = []
        self.camera_infos = node.stamped_inputs('camera_info', CameraInfo, 'CameraInfo',
                                                self._arrived(CameraInfoCache.add_camera_info))
        self.depth_images = node.stamped_inputs(values['depth_topic'], Image, 'depth image',
                                                self._arrived(add_depth_image))
        self._timer = node.create_timer(EXPIRY_PERIOD_S, self._expire) \
            if values['depth_wait_ms'] > 0 else None

    def _arrived(self, add):
        """Keep the message, then hand on the frames of that camera it completes."""
        def on_message(cache: CameraInfoCache, msg: Any) -> None:
            add(cache, msg)
            for camera, caches in enumerate(zip(self.depth_images, self.camera_infos)):
                if cache in caches:
                    self._drain(camera)
        return on_message

    def publish(self, det: Any, header: Any, camera: int) -> None:
        """Lift and publish the frame's detections now, or once its depth image is there."""
        self.joins[camera].add(stamp_ns(header.stamp), (det, header), time.monotonic(),
                               partial(self._resolve, camera), partial(self._emit, camera),
                               self._skip)

    def _drain(self, camera: int) -> None:
        self.joins[camera].drain(time.monotonic(), partial(self._resolve, camera),
                                 partial(self._emit, camera), self._skip)

    def _expire(self) -> None:
        for camera in range(len(self.joins)):
            self._drain(camera)

    def _resolve(self, camera: int, stamp: int, item: Any) -> tuple:
        depth = self.depth_images[camera].lookup(stamp)
        if not depth:
            return (WAIT if depth.pending else SKIP), f'no 3D detections: {depth.reason}'
        height, width = depth.info.shape
        info = self.camera_infos[camera].lookup(stamp, width, height)
        if not info:
            return (WAIT if info.pending else SKIP), f'no 3D detections: {info.reason}'
        return READY, (depth.info, info.info)

    def _emit(self, camera: int, stamp: int, item: Any, match: Any) -> None:
        det, header = item
        depth, model = match
        boxes = detections_to_3d(det.boxes, depth, model)
        ids = None if det.track_ids is None else [str(i) for i in det.track_ids.tolist()]
        self.pubs[camera].publish(self.node.timed_build(
            to_detection3d_array, boxes, det, header, self.node.task.class_id_mode, ids))

    def _skip(self, stamp: int, item: Any, reason: str) -> None:
        self.node.output_skipped(reason)

    def destroy(self) -> None:
        """Count the frames still waiting as skipped; drop publishers, inputs and the timer."""
        for join in self.joins:
            join.close(self._skip, 'no 3D detections: the node stopped while the frame waited '
                                   'for its depth image')
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
            self._timer = None
        self.node.destroy_publishers(self.pubs)
        self.pubs, self.joins, self.camera_infos, self.depth_images = [], [], [], []

"""2D object detector lifecycle node: `image` -> `detections` (vision_msgs/Detection2DArray).

Each output carries the source frame's header unchanged; an optional `debug_image` shows the
boxes; `label_info` (latched) maps class ids to names. Model family, backend and pipeline shape
come from parameters (runtime/parameters.py, config/*.yaml); thresholds, class filter and class
id mode live in runtime.tasks.DetectionTask.

With `publish_detections_3d: true` each camera's registered depth image (`depth_topic`, 16UC1
millimetres or 32FC1 metres, aligned to the image) and its `camera_info` are matched to the
frame by stamp, and `detections_3d` (vision_msgs/Detection3DArray, the frame's header) carries
each detection lifted to metres in the optical frame (core.geometry.detections_to_3d: the
median depth of the box's core); a frame without a matching depth image or camera_info gets no
3D detections and a warning naming why.
"""
from __future__ import annotations

from typing import Any, List, Optional

import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray, Detection3DArray

from .cloud_msgs import to_detection3d_array
from .detection_msgs import detection_array_cdr, draw_detections
from .label_info import LabelInfoPublisher
from .node_main import run_node
from .perception_node import PerceptionNode
from ..core.geometry import detections_to_3d
from ..core.image_codec import fill_image_msg, msg_to_numpy
from ..runtime.camera_info import CameraInfoCache, stamp_ns


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


class DetectorNode(PerceptionNode):
    TASK = 'detection'

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('detector', **kwargs)
        self._det_pubs: List[Any] = []
        self._debug_pubs: List[Any] = []
        self._debug_msg: Optional[Image] = None
        self._label_info: Optional[LabelInfoPublisher] = None
        self._det3d_pubs: List[Any] = []
        self.camera_infos: List[CameraInfoCache] = []
        self.depth_images: List[CameraInfoCache] = []

    def create_outputs(self, qos: QoSProfile) -> None:
        # one set per camera (`inputs`): /front/image_raw -> /front/detections
        self._det_pubs = [self.create_lifecycle_publisher(Detection2DArray, t, qos)
                          for t in self.output_topics('detections')]
        # Always there, so publish_debug_image can be switched on while running.
        self._debug_pubs = [self.create_lifecycle_publisher(Image, t, qos)
                            for t in self.output_topics('debug_image')]
        self._label_info = LabelInfoPublisher(self)
        self._publish_label_info()
        if self.values['publish_detections_3d']:
            self._det3d_pubs = [self.create_lifecycle_publisher(Detection3DArray, t, qos)
                                for t in self.output_topics('detections_3d')]
            self.camera_infos = self.stamped_inputs('camera_info', CameraInfo, 'CameraInfo',
                                                    CameraInfoCache.add_camera_info)
            self.depth_images = self.stamped_inputs(self.values['depth_topic'], Image,
                                                    'depth image', add_depth_image)
        a = self.adapter
        self.get_logger().info(
            f'{a.family}: conf_threshold {a.conf_threshold:g}'
            + (f', nms_threshold {a.nms_threshold:g}' if hasattr(a, 'nms_threshold') else '')
            + " (negative parameters: the family's reference defaults)")

    def on_parameter_applied(self, name: str, value: Any) -> None:
        if name == 'conf_threshold':
            self._publish_label_info()

    def _publish_label_info(self) -> None:
        if self._label_info is not None and self.adapter is not None:
            self._label_info.publish(self.adapter.class_names, self.adapter.conf_threshold)

    def destroy_outputs(self) -> None:
        self.destroy_publishers(self._det_pubs + self._debug_pubs + self._det3d_pubs)
        self._det_pubs, self._debug_pubs, self._det3d_pubs = [], [], []
        self.camera_infos, self.depth_images = [], []
        if self._label_info is not None:
            self._label_info.destroy()
            self._label_info = None

    def publish_result(self, det, header, image: Optional[np.ndarray],
                       camera: int = 0) -> None:
        task = self.task
        # serialised bytes straight from the arrays (ros/detection_msgs.py says why)
        self._det_pubs[camera].publish(self.timed_build(detection_array_cdr, det, header,
                                                        task.class_id_mode))
        if task.debug and image is not None:
            if self._debug_msg is None:
                self._debug_msg = Image()
            msg = fill_image_msg(self._debug_msg, draw_detections(image, det), 'bgr8')
            msg.header = header
            self._debug_pubs[camera].publish(msg)
        if self._det3d_pubs:
            self._publish_3d(det, header, camera)

    def _publish_3d(self, det, header, camera: int) -> None:
        stamp = stamp_ns(header.stamp)
        depth = self.depth_images[camera].lookup(stamp)
        if not depth:
            self.output_skipped(f'no 3D detections: {depth.reason}')
            return
        height, width = depth.info.shape
        info = self.camera_infos[camera].lookup(stamp, width, height)
        if not info:
            self.output_skipped(f'no 3D detections: {info.reason}')
            return
        boxes = detections_to_3d(det.boxes, depth.info, info.info)
        ids = None if det.track_ids is None else [str(i) for i in det.track_ids.tolist()]
        self._det3d_pubs[camera].publish(self.timed_build(
            to_detection3d_array, boxes, det, header, self.task.class_id_mode, ids))


def main(args=None) -> None:
    run_node(DetectorNode, args)


if __name__ == '__main__':
    main()

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

With `publish_masks: true` (instance segmentation models, YOLOv8 / YOLO11 -seg) each camera also
gets `instance_mask` (mono8, mono16 above 254 detections: 1 + the detection's index in that
frame's Detection2DArray, 0 none; Detection2D.id then names the instance: its track id with
`tracking`, else that pixel value), `semantic_mask` (mono8 class id, 255 none) and
`mask_confidence` (mono8 score x 255, 0 none) at the source resolution with the frame's header:
the inputs of Nav2's semantic segmentation layer, with `label_info` (core/masks.py has the
rules). Only the images someone subscribes to are made; with no subscriber to any of them the
masks are not computed at all. Their cost is on /diagnostics (`masks_*`).
"""
from __future__ import annotations

import dataclasses
from functools import partial
import time
from typing import Any, Dict, List, Optional

from diagnostic_msgs.msg import KeyValue
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
from ..core.stats import RollingStats
from ..runtime.camera_info import CameraInfoCache, stamp_ns
from ..runtime.parameters import ParameterError

#: mask outputs per camera: topic -> the InstanceMasks.render image
MASK_TOPICS = {'instance_mask': 'instance', 'semantic_mask': 'semantic',
               'mask_confidence': 'confidence'}


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
        self._mask_pubs: List[Dict[str, Any]] = []  # per camera: render kind -> publisher
        self.masks_rendered = 0  # frames whose masks were made
        self.masks_unsubscribed = 0  # frames with masks nobody subscribed to (none made)
        self.mask_time = RollingStats(1000, max_age_s=10.0)

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
        if self.values['publish_masks']:
            if not getattr(a, 'num_masks', 0):
                raise ParameterError(f'publish_masks: the {a.family} model has no instance mask '
                                     'head: give a -seg export (e.g. yolov8n-seg.onnx) or set '
                                     'publish_masks false')
            topics = {k: self.output_topics(t) for t, k in MASK_TOPICS.items()}
            self._mask_pubs = [{k: self.create_lifecycle_publisher(Image, topics[k][c], qos)
                                for k in MASK_TOPICS.values()}
                               for c in range(len(topics['instance']))]
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
        self.destroy_publishers(self._det_pubs + self._debug_pubs + self._det3d_pubs
                                + [p for pubs in self._mask_pubs for p in pubs.values()])
        self._det_pubs, self._debug_pubs, self._det3d_pubs = [], [], []
        self._mask_pubs = []
        self.camera_infos, self.depth_images = [], []
        if self._label_info is not None:
            self._label_info.destroy()
            self._label_info = None

    def publish_result(self, det, header, image: Optional[np.ndarray],
                       camera: int = 0) -> None:
        task = self.task
        if det.masks is not None and not self._mask_pubs:
            det = dataclasses.replace(det, masks=None)  # no mask outputs: no instance ids either
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
        if self._mask_pubs:
            self._publish_masks(det, header, camera)

    def _publish_masks(self, det, header, camera: int) -> None:
        """Render and publish the mask images someone subscribes to (none: no mask work)."""
        pubs = self._mask_pubs[camera]
        wanted = {k: p for k, p in pubs.items() if p.get_subscription_count() > 0}
        if not wanted:
            self.masks_unsubscribed += 1
            return
        t0 = time.perf_counter()
        images = self.timed_build(partial(det.masks.render, **{k: k in wanted for k in pubs}),
                                  det.scores, det.class_ids)
        self.mask_time.add(time.perf_counter() - t0)
        self.masks_rendered += 1
        for kind, pub in wanted.items():
            img = images[kind]
            msg = self.timed_build(fill_image_msg, Image(), img,
                                   'mono16' if img.dtype == np.uint16 else 'mono8')
            msg.header = header
            pub.publish(msg)

    def diagnostic_statuses(self):
        """Return the pipeline statuses, the first with the mask counters and cost."""
        statuses = super().diagnostic_statuses()
        if self._mask_pubs and statuses:
            s = self.mask_time.summary()
            extra = [('masks_rendered', self.masks_rendered),
                     ('masks_unsubscribed', self.masks_unsubscribed)]
            if s['count']:
                extra += [(f'masks_{q}_ms', f'{s[q]:.3f}') for q in ('p50', 'p99', 'mean')]
            statuses[0].values += [KeyValue(key=k, value=str(v)) for k, v in extra]
        return statuses

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

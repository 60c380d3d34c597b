"""2D object detector lifecycle node: `image` -> `detections` (vision_msgs/Detection2DArray).

Each output carries the source frame's header unchanged; an optional `debug_image` shows the
boxes; `label_info` (latched) maps class ids to names. Model family, backend and pipeline shape
come from parameters (runtime/parameters.py, config/*.yaml); thresholds, class filter and class
id mode live in runtime.tasks.DetectionTask.

With `publish_detections_3d: true` each camera's `detections_3d` (vision_msgs/Detection3DArray,
the frame's header) carries each detection lifted to metres in the optical frame with the
registered depth image and `camera_info` of the frame's stamp (ros/detections_3d.py: waiting up
to `depth_wait_ms` for a depth image that comes after the detections; a frame without a match
gets no 3D detections and a warning naming why).

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
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from .detection_msgs import detection_array_cdr, draw_detections
from .detections_3d import Detections3DOutput
from .label_info import LabelInfoPublisher
from .node_main import run_node
from .perception_node import PerceptionNode
from ..core.image_codec import fill_image_msg
from ..core.stats import RollingStats
from ..runtime.parameters import ParameterError

#: mask outputs per camera: topic -> the InstanceMasks.render image
MASK_TOPICS = {'instance_mask': 'instance', 'semantic_mask': 'semantic',
               'mask_confidence': 'confidence'}


class DetectorNode(PerceptionNode):
    TASK = 'detection'

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('detector', **kwargs)
        self._det_pubs: List[Any] = []
        self._debug_pubs: List[Any] = []
        self._debug_msg: Optional[Image] = None
        self._label_info: Optional[LabelInfoPublisher] = None
        self.detections_3d: Optional[Detections3DOutput] = None
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
            self.detections_3d = Detections3DOutput(self, qos)
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
        self.destroy_publishers(self._det_pubs + self._debug_pubs
                                + [p for pubs in self._mask_pubs for p in pubs.values()])
        self._det_pubs, self._debug_pubs, self._mask_pubs = [], [], []
        if self.detections_3d is not None:
            self.detections_3d.destroy()
            self.detections_3d = None
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
        if self.detections_3d is not None:
            self.detections_3d.publish(det, header, camera)
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


def main(args=None) -> None:
    run_node(DetectorNode, args)


if __name__ == '__main__':
    main()

"""2D object detector lifecycle node: `image` -> `detections` (vision_msgs/Detection2DArray).

Each output carries the source frame's header unchanged; an optional `debug_image` shows the
boxes; `label_info` (latched) maps class ids to names. Model family, backend and pipeline shape
come from parameters (runtime/parameters.py, config/*.yaml); thresholds, class filter and class
id mode live in runtime.tasks.DetectionTask.
"""
from __future__ import annotations

from typing import Any, List, Optional

import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from .detection_msgs import detection_array_cdr, draw_detections
from .label_info import LabelInfoPublisher
from .node_main import run_node
from .perception_node import PerceptionNode
from ..core.image_codec import fill_image_msg


class DetectorNode(PerceptionNode):
    TASK = 'detection'

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('detector', **kwargs)
        self._det_pubs: List[Any] = []
        self._debug_pubs: List[Any] = []
        self._debug_msg: Optional[Image] = None
        self._label_info: Optional[LabelInfoPublisher] = None

    def create_outputs(self, qos: QoSProfile) -> None:
        # one set per camera (`inputs`): /front/image_raw -> /front/detections
        self._det_pubs = [self.create_lifecycle_publisher(Detection2DArray, t, qos)
                          for t in self.output_topics('detections')]
        # Always there, so publish_debug_image can be switched on while running.
        self._debug_pubs = [self.create_lifecycle_publisher(Image, t, qos)
                            for t in self.output_topics('debug_image')]
        self._label_info = LabelInfoPublisher(self)
        self._publish_label_info()
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
        self.destroy_publishers(self._det_pubs + self._debug_pubs)
        self._det_pubs, self._debug_pubs = [], []
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


def main(args=None) -> None:
    run_node(DetectorNode, args)


if __name__ == '__main__':
    main()

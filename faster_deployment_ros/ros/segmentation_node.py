"""Semantic segmentation lifecycle node: `image` -> `segmentation` + `segmentation_confidence`.

Same lifecycle, pipeline and parameter conventions as the detector node. For a model with one
(1, C, H, W) logits output (models/semantic_seg.py), each frame gives

- `segmentation` (sensor_msgs/Image, mono8): the class id of every pixel, 255 where no class
  reaches `min_confidence`;
- `segmentation_confidence` (mono8, with `publish_confidence`): the softmax probability of that
  class x 255;

both at the source frame's width/height with its header (stamp and frame_id), so they pair
exactly with anything else made from the frame (a depth node's `points`: Nav2's
semantic_segmentation_layer synchronises mask, confidence and an aligned cloud by exact stamp).
`label_info` (vision_msgs/LabelInfo, transient local, published at configure and when
`min_confidence` changes) maps class ids to names; its threshold is `min_confidence`.

An output is built and published only while it has subscribers; a frame nobody listens to is
still counted as delivered.
"""
from __future__ import annotations

from typing import Any, List, Optional

import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image

from .label_info import LabelInfoPublisher
from .node_main import run_node
from .perception_node import PerceptionNode
from ..core.image_codec import fill_image_msg

MASK_TOPIC = 'segmentation'
CONFIDENCE_TOPIC = 'segmentation_confidence'


class SegmentationNode(PerceptionNode):
    TASK = 'segmentation'

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('segmentation', **kwargs)
        self._mask_pubs: List[Any] = []
        self._conf_pubs: List[Any] = []
        self._mask_msg: Optional[Image] = None
        self._conf_msg: Optional[Image] = None
        self._label_info: Optional[LabelInfoPublisher] = None

    def create_outputs(self, qos: QoSProfile) -> None:
        # one set per camera (`inputs`): /front/image_raw -> /front/segmentation
        self._mask_pubs = [self.create_lifecycle_publisher(Image, t, qos)
                           for t in self.output_topics(MASK_TOPIC)]
        self._conf_pubs = [self.create_lifecycle_publisher(Image, t, qos)
                           for t in self.output_topics(CONFIDENCE_TOPIC)] \
            if self.values['publish_confidence'] else []
        self._label_info = LabelInfoPublisher(self)
        self._publish_label_info()
        a = self.adapter
        self.get_logger().info(f'{a.family}: {a.num_classes} classes, {a.resize_mode}, '
                               f'min_confidence {a.min_confidence:g}')

    def on_parameter_applied(self, name: str, value: Any) -> None:
        if name == 'min_confidence':
            self._publish_label_info()

    def _publish_label_info(self) -> None:
        if self._label_info is not None and self.adapter is not None:
            self._label_info.publish(self.adapter.class_names, self.adapter.min_confidence)

    def destroy_outputs(self) -> None:
        self.destroy_publishers(self._mask_pubs + self._conf_pubs)
        self._mask_pubs, self._conf_pubs = [], []
        if self._label_info is not None:
            self._label_info.destroy()
            self._label_info = None

    def publish_result(self, result, header, image: Optional[np.ndarray],
                       camera: int = 0) -> None:
        # publish() serialises before it returns: one message per output, overwritten in place.
        pub = self._mask_pubs[camera]
        if pub.get_subscription_count():
            if self._mask_msg is None:
                self._mask_msg = Image()
            msg = self.timed_build(fill_image_msg, self._mask_msg, result.mask, 'mono8')
            msg.header = header
            pub.publish(msg)
        if self._conf_pubs and self._conf_pubs[camera].get_subscription_count():
            if self._conf_msg is None:
                self._conf_msg = Image()
            msg = self.timed_build(fill_image_msg, self._conf_msg, result.confidence, 'mono8')
            msg.header = header
            self._conf_pubs[camera].publish(msg)


def main(args=None) -> None:
    run_node(SegmentationNode, args)


if __name__ == '__main__':
    main()

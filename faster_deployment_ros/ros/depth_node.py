"""Monocular depth lifecycle node: `image` -> `depth` (sensor_msgs/Image, 32FC1).

Same lifecycle, pipeline and parameter conventions as the detector node. Each depth image has
the source frame's header and width/height; its values are the model's relative inverse depth,
or metres with `depth_output: metric_from_inverse` (1 / (depth_scale * out + depth_shift),
NaN where invalid, as REP 118 asks) or `metric` (a metric model). An optional `depth_colored`
(bgr8 colour map of each frame's own range) is for viewing only.
"""
from __future__ import annotations

from typing import Any, List, Optional

import cv2
import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image

from . import params
from .perception_node import PerceptionNode, run_node
from ..core.image_codec import fill_image_msg
from ..models import create_adapter
from ..models.depth import OUTPUTS

COLORMAPS = {'inferno': cv2.COLORMAP_INFERNO, 'magma': cv2.COLORMAP_MAGMA,
             'turbo': cv2.COLORMAP_TURBO, 'jet': cv2.COLORMAP_JET, 'viridis': cv2.COLORMAP_VIRIDIS}


def colorize(depth: np.ndarray, colormap: int, near_is_bright: bool) -> np.ndarray:
    """bgr8 view of a depth map scaled to its finite min..max; invalid pixels black."""
    finite = np.isfinite(depth)
    if not finite.any():
        return np.zeros(depth.shape + (3,), np.uint8)
    lo, hi = float(depth[finite].min()), float(depth[finite].max())
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    norm = np.where(finite, (depth - lo) * scale, 0.0)
    if not near_is_bright:  # metric depth: small is near; flip so near stays bright
        norm = np.where(finite, 255.0 - norm, 0.0)
    out = cv2.applyColorMap(norm.astype(np.uint8), colormap)
    out[~finite] = 0
    return out


class DepthNode(PerceptionNode):
    TASK_PARAMETERS = {
        'depth_output': ('relative_inverse', 'relative_inverse (as the model gives it), '
                         'metric_from_inverse (1 / (depth_scale * out + depth_shift), metres) '
                         'or metric (a metric model: out * depth_scale, metres)'),
        'depth_scale': (1.0, 'scale of the metric conversion'),
        'depth_shift': (0.0, 'shift of metric_from_inverse'),
        'keep_aspect_ratio': (True, 'dynamic-shape models: keep the frame aspect when resizing'),
        'publish_colored': (False, 'also publish depth_colored (bgr8 colour map) for viewing'),
        'colormap': ('inferno', 'depth_colored colour map: ' + ', '.join(COLORMAPS)),
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('depth', **kwargs)
        self._depth_pub = None
        self._color_pub = None
        self._depth_pubs: List[Any] = []
        self._color_pubs: List[Any] = []
        self._depth_msg: Optional[Image] = None
        self._color_msg: Optional[Image] = None

    def read_task_parameters(self) -> None:
        v = lambda n: params.value(self, n)  # noqa: E731
        self.depth_output = v('depth_output')
        if self.depth_output not in OUTPUTS:
            raise params.ParameterError(f'depth_output={self.depth_output!r}: choose '
                                        f'{", ".join(OUTPUTS)}')
        if self.depth_output != 'relative_inverse' and float(v('depth_scale')) <= 0:
            raise params.ParameterError('depth_scale must be > 0 for metric output')
        if v('colormap') not in COLORMAPS:
            raise params.ParameterError(f'colormap={v("colormap")!r}: choose '
                                        f'{", ".join(COLORMAPS)}')
        self.colored = bool(v('publish_colored'))
        self.colormap = COLORMAPS[v('colormap')]

    def make_adapter(self, backend) -> Any:
        v = lambda n: params.value(self, n)  # noqa: E731
        knobs = {'output': self.depth_output, 'depth_scale': float(v('depth_scale')),
                 'depth_shift': float(v('depth_shift')),
                 'keep_aspect_ratio': bool(v('keep_aspect_ratio'))}
        if self.config.input_size:
            knobs['input_size'] = tuple(self.config.input_size)
        family = self.config.model_family
        if family in ('auto', ''):
            from ..models import resolve_family
            family, reason = resolve_family(family, backend.inputs, backend.outputs,
                                            backend.metadata)
            self.get_logger().info(f'model_family auto -> {family} ({reason})')
            if family not in ('depth', 'depth_anything_v2', 'midas'):
                raise params.ParameterError(f'{self.config.model_path} looks like a {family} '
                                            'model (detection); use the detector_node')
        adapter = create_adapter(family, backend.inputs, backend.outputs, backend.metadata,
                                 **knobs)
        if adapter.task != 'depth':
            raise params.ParameterError(
                f'{self.config.model_path} is a {adapter.task} model; use the detector_node')
        return adapter

    def create_outputs(self, qos: QoSProfile) -> None:
        # one set per camera (`inputs`): /front/image_raw -> /front/depth
        self._depth_pubs = [self.create_lifecycle_publisher(Image, t, qos)
                            for t in self.output_topics('depth')]
        self._color_pubs = [self.create_lifecycle_publisher(Image, t, qos)
                            for t in self.output_topics('depth_colored')] if self.colored else []
        self._depth_pub = self._depth_pubs[0]
        self._color_pub = self._color_pubs[0] if self._color_pubs else None

    def destroy_outputs(self) -> None:
        destroy = getattr(self, 'destroy_lifecycle_publisher', self.destroy_publisher)
        for pub in self._depth_pubs + self._color_pubs:
            destroy(pub)
        self._depth_pubs, self._color_pubs = [], []
        self._depth_pub = self._color_pub = None

    def publish_result(self, result, header, image: Optional[np.ndarray],
                       camera: int = 0) -> None:
        depth = np.ascontiguousarray(result.depth, np.float32)
        if self._depth_msg is None:
            self._depth_msg = Image()
        # publish() serialises before it returns: one message whose buffer is overwritten in place.
        msg = self.timed_build(fill_image_msg, self._depth_msg, depth, '32FC1')
        msg.header = header
        self._depth_pubs[camera].publish(msg)
        if self._color_pubs:
            if self._color_msg is None:
                self._color_msg = Image()
            colored = colorize(depth, self.colormap, result.meaning == 'relative_inverse')
            cmsg = fill_image_msg(self._color_msg, colored, 'bgr8')
            cmsg.header = header
            self._color_pubs[camera].publish(cmsg)


def main(args=None) -> None:
    run_node(DepthNode, args)


if __name__ == '__main__':
    main()

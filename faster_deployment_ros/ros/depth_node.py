"""Monocular depth lifecycle node: `image` -> `depth` (sensor_msgs/Image, 32FC1).

Same lifecycle, pipeline and parameter conventions as the detector node. Each depth image has
the source frame's header and width/height; its values are metres for a metric model (metadata
`depth_kind: metric`, picked by `depth_output: auto`, or `metric`), or a relative model's
relative inverse depth, or metres from it with `depth_output: metric_from_inverse`
(1 / (depth_scale * out + depth_shift), NaN where invalid, as REP 118 asks); models/depth.py
holds the rule and the refusals. An optional `depth_colored` (bgr8 colour map of each frame's
own range) is for viewing only.

With `publish_points: true` (metric depth only) each camera's `camera_info` (beside its image
topic, as image_transport names it) is matched to the frame by stamp and `points`
(sensor_msgs/PointCloud2, organized, float32 x y z in metres, NaN where the depth is invalid,
optional rgb) is published in the image's optical frame with its header: depth_image_proc's
point_cloud_xyz formula (core/geometry.py). A frame whose camera_info is missing, of another
size or uncalibrated gets no cloud and a WARN naming why (at most one line per 5 s).
"""
from __future__ import annotations

from typing import Any, List, Optional

import cv2
import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from .cloud_msgs import pack_rgb, point_cloud_cdr
from .node_main import run_node
from .perception_node import PerceptionNode
from ..core.geometry import depth_to_points
from ..core.image_codec import fill_image_msg
from ..runtime.camera_info import CameraInfoCache, stamp_ns

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
    TASK = 'depth'

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('depth', **kwargs)
        self._depth_pubs: List[Any] = []
        self._color_pubs: List[Any] = []
        self._depth_msg: Optional[Image] = None
        self._color_msg: Optional[Image] = None
        self._points_pubs: List[Any] = []
        self.camera_infos: List[CameraInfoCache] = []

    def create_outputs(self, qos: QoSProfile) -> None:
        # one set per camera (`inputs`): /front/image_raw -> /front/depth
        self._depth_pubs = [self.create_lifecycle_publisher(Image, t, qos)
                            for t in self.output_topics('depth')]
        self._color_pubs = [self.create_lifecycle_publisher(Image, t, qos)
                            for t in self.output_topics('depth_colored')] \
            if self.values['publish_colored'] else []
        if self.values['publish_points']:
            self._points_pubs = [self.create_lifecycle_publisher(PointCloud2, t, qos)
                                 for t in self.output_topics('points')]
            self.camera_infos = self.stamped_inputs('camera_info', CameraInfo, 'CameraInfo',
                                                    CameraInfoCache.add_camera_info)

    def destroy_outputs(self) -> None:
        self.destroy_publishers(self._depth_pubs + self._color_pubs + self._points_pubs)
        self._depth_pubs, self._color_pubs, self._points_pubs = [], [], []
        self.camera_infos = []

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
            colored = colorize(depth, COLORMAPS[self.values['colormap']],
                               result.meaning == 'relative_inverse')
            cmsg = fill_image_msg(self._color_msg, colored, 'bgr8')
            cmsg.header = header
            self._color_pubs[camera].publish(cmsg)
        if self._points_pubs:
            self._publish_points(depth, header, image, camera)

    def _publish_points(self, depth: np.ndarray, header, image: Optional[np.ndarray],
                        camera: int) -> None:
        values = self.values
        cache = self.camera_infos[camera]
        match = cache.lookup(stamp_ns(header.stamp), depth.shape[1], depth.shape[0],
                             tolerance_ns=round(values['camera_info_tolerance_ms'] * 1e6))
        if not match:
            self.output_skipped(f'no point cloud: {match.reason}')
            return
        stride = values['points_stride']
        points = depth_to_points(depth, match.info, stride=stride)
        rgb = pack_rgb(image, 'bgr8', stride) if values['points_rgb'] and image is not None \
            else None
        self._points_pubs[camera].publish(self.timed_build(point_cloud_cdr, points, header, rgb))


def main(args=None) -> None:
    run_node(DepthNode, args)


if __name__ == '__main__':
    main()

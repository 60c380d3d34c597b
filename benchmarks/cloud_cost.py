"""Cost of the 3D outputs at 1280x720: points, PointCloud2, 3D boxes (p50 / p99 ms per frame).

- depth_to_points on a 32FC1 (metres) and a 16UC1 (millimetres) depth map, stride 1 and 2;
- the PointCloud2 (xyz, and xyz + rgb) as a message, and as CDR bytes for a raw publish, each
  including the publish (a publisher without subscribers: the message is serialised anyway);
- detections_to_3d with 10 and 50 boxes (20..300 px) and their Detection3DArray, and both
  together (what publish_detections_3d adds per frame).

One thread, a fixed synthetic scene (the cost does not depend on the values).

  .venv/bin/python benchmarks/cloud_cost.py [--repeats N]
"""
import argparse
import os
from pathlib import Path
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from faster_deployment_ros.core.geometry import (CameraModel, depth_to_points,  # noqa: E402
                                                 detections_to_3d)
from faster_deployment_ros.core.types import Detections  # noqa: E402
from faster_deployment_ros.ros.cloud_msgs import (pack_rgb, point_cloud,  # noqa: E402
                                                  point_cloud_cdr, to_detection3d_array)
from faster_deployment_ros.ros.middleware_env import (apply_camera_env,  # noqa: E402
                                                      private_domain)
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from sensor_msgs.msg import PointCloud2  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

private_domain(os.environ)
apply_camera_env(os.environ)

W, H = 1280, 720
CAM = CameraModel(fx=910.46, fy=909.87, cx=639.27, cy=358.91, width=W, height=H)


def timings(fn, n: int) -> str:
    for _ in range(3):
        fn()
    ms = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ms.append(1e3 * (time.perf_counter() - t))
    return f'{np.percentile(ms, 50):8.2f} {np.percentile(ms, 99):8.2f}'


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeats', type=int, default=100, help='timed calls per row')
    n = ap.parse_args().repeats
    rng = np.random.default_rng(0)
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    metres = (1.0 + 2000.0 / (v + 40.0) + 0.001 * u).astype(np.float32)
    metres[rng.random((H, W)) < 0.02] = np.nan  # 2 % holes
    millimetres = np.where(np.isfinite(metres), np.round(metres * 1000), 0).astype(np.uint16)
    image = rng.integers(0, 256, (H, W, 3), np.uint8)
    header = Header(frame_id='camera_color_optical_frame')

    rclpy.init()
    node = rclpy.create_node('cloud_cost_bench')
    pub = node.create_publisher(PointCloud2, 'points', 10)
    print(f'{W}x{H}, {n} calls per row                              p50 ms   p99 ms')
    for stride in (1, 2):
        pts = depth_to_points(metres, CAM, stride)
        rgb = pack_rgb(image, 'bgr8', stride)
        rows = [
            ('depth_to_points 32FC1', lambda: depth_to_points(metres, CAM, stride)),
            ('depth_to_points 16UC1', lambda: depth_to_points(millimetres, CAM, stride)),
            ('pack_rgb bgr8', lambda: pack_rgb(image, 'bgr8', stride)),
            ('xyz message + publish', lambda: pub.publish(point_cloud(pts, header))),
            ('xyz CDR + raw publish', lambda: pub.publish(point_cloud_cdr(pts, header))),
            ('xyzrgb CDR + raw publish', lambda: pub.publish(point_cloud_cdr(pts, header, rgb))),
            ('total xyz: points + CDR + publish',
             lambda: pub.publish(point_cloud_cdr(depth_to_points(metres, CAM, stride), header))),
            ('total xyzrgb: points + rgb + CDR + publish',
             lambda: pub.publish(point_cloud_cdr(depth_to_points(metres, CAM, stride), header,
                                                 pack_rgb(image, 'bgr8', stride)))),
        ]
        for name, fn in rows:
            print(f'stride {stride}  {name:42s} {timings(fn, n)}')
    for count in (10, 50):
        xy = rng.uniform(0, [W - 300, H - 300], (count, 2))
        boxes = np.hstack([xy, xy + rng.uniform(20, 300, (count, 2))])
        det = Detections(boxes.astype(np.float32), rng.uniform(0.3, 1, count).astype(np.float32),
                         rng.integers(0, 80, count), [f'class{i}' for i in range(80)])
        lifted = detections_to_3d(boxes, metres, CAM)
        rows = [
            ('detections_to_3d 32FC1', lambda: detections_to_3d(boxes, metres, CAM)),
            ('detections_to_3d 16UC1', lambda: detections_to_3d(boxes, millimetres, CAM)),
            ('Detection3DArray', lambda: to_detection3d_array(lifted, det, header)),
            ('total 3D: lift 32FC1 + Detection3DArray',
             lambda: to_detection3d_array(detections_to_3d(boxes, metres, CAM), det, header)),
        ]
        for name, fn in rows:
            print(f'{count} boxes  {name:42s} {timings(fn, n)}')
    node.destroy_node()
    rclpy.shutdown()


if __name__ == '__main__':
    main()

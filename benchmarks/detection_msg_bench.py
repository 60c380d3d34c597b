"""Cost of turning detections into a published Detection2DArray.

Rclpy message objects (to_detection_array + publish) against the CDR bytes the node publishes
(detection_array_cdr + raw publish), for 0-50 detections. Publisher without subscribers (the
message is built and serialised either way).

  .venv/bin/python benchmarks/detection_msg_bench.py
"""
import os
from pathlib import Path
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from faster_deployment_ros.core.types import Detections  # noqa: E402
from faster_deployment_ros.ros.detection_msgs import (detection_array_cdr,  # noqa: E402
                                                      to_detection_array)
from faster_deployment_ros.ros.middleware_env import (apply_camera_env,  # noqa: E402
                                                      private_domain)
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

private_domain(os.environ)
apply_camera_env(os.environ)


def per_call_ms(fn, n: int = 300) -> float:
    for _ in range(20):
        fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return 1e3 * (time.perf_counter() - t) / n


def main() -> None:
    rclpy.init()
    node = rclpy.create_node('detection_msg_bench')
    pub = node.create_publisher(Detection2DArray, 'detections', 10)
    rng = np.random.default_rng(0)
    header = Header(frame_id='camera')
    print('detections | message + publish ms | CDR bytes + raw publish ms')
    for n in (0, 5, 20, 50):
        b = rng.uniform(0, 600, (n, 4)).astype(np.float32)
        b[:, 2:] += b[:, :2]
        det = Detections(b, rng.uniform(0, 1, n).astype(np.float32), rng.integers(0, 80, n),
                         [f'class{i}' for i in range(80)])
        msg_ms = per_call_ms(lambda: pub.publish(to_detection_array(det, header)))
        cdr_ms = per_call_ms(lambda: pub.publish(detection_array_cdr(det, header)))
        print(f'{n:10d} | {msg_ms:20.3f} | {cdr_ms:.3f}')
    node.destroy_node()
    rclpy.shutdown()


if __name__ == '__main__':
    main()

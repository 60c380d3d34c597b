"""The transport floor: a minimal rclpy node answering each Image with an empty detection array.

The answer (vision_msgs/Detection2DArray) carries the frame's header.

What any Python node pays before it does any work (DDS, deserialising a 720p frame, the
executor, serialising and sending the answer), with the same QoS, executor and middleware
settings as detector_node; the benchmark runs it beside the node and the bare model.

  python -m faster_deployment_ros.tools.benchmark.echo_node --ros-args -r __ns:=/floor
"""
from __future__ import annotations

import sys

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from ...core.memory import reuse_large_buffers
from ...ros.node_main import make_executor


class EchoNode(Node):

    def __init__(self) -> None:
        super().__init__('transport_floor')
        depth = int(self.declare_parameter('qos_depth', 1).value)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                         reliability=ReliabilityPolicy.BEST_EFFORT)
        self.pub = self.create_publisher(Detection2DArray, 'detections', QoSProfile(depth=depth))
        self.sub = self.create_subscription(Image, 'image', self._on_image, qos)
        self.get_logger().info(f'answering {self.resolve_topic_name("image")} on '
                               f'{self.resolve_topic_name("detections")}')

    def _on_image(self, msg: Image) -> None:
        self.pub.publish(Detection2DArray(header=msg.header))


def main(args=None) -> None:
    reuse_large_buffers()
    rclpy.init(args=args if args is not None else sys.argv)
    node = EchoNode()
    executor = make_executor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == '__main__':
    main()

"""The transport floor, and the minimal hand-rolled detector node, for the benchmarks.

Without `model`: the transport floor, a minimal rclpy node answering each Image with an empty
vision_msgs/Detection2DArray carrying the frame's header. What any Python node pays before it
does any work (DDS, deserialising a 720p frame, the executor, serialising and sending the
answer), with the same QoS, executor and middleware settings as detector_node.

With `model` (an ONNX file) and `family`: the smallest detector node one would write by hand,
as yolo_ros-style nodes and scripts do: in the subscription callback, the frame's bytes as an
image, the package's adapter pre-processing, a plain ONNX Runtime session (default options,
`threads` intra-op threads, 0: ORT's default; `spinning: false` makes its idle threads block,
as the node's do on <= 4 cores), the adapter's post-processing, the detections published with
the frame's header. One frame at a time, nothing overlapped, no queue: the
reference the outside view compares the node's own part with.

  python -m faster_deployment_ros.tools.benchmark.echo_node --ros-args -r __ns:=/floor
  python -m faster_deployment_ros.tools.benchmark.echo_node --ros-args -p model:=M.onnx \
      -p family:=yolox -p threads:=2
"""
from __future__ import annotations

import sys

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from ...core.memory import reuse_large_buffers
from ...ros.detection_msgs import to_detection_array
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

        model = str(self.declare_parameter('model', '').value)
        self.infer = None
        if model:
            from .probe import make_adapter, ort_session
            threads = int(self.declare_parameter('threads', 0).value)
            family = str(self.declare_parameter('family', 'auto').value)
            conf = float(self.declare_parameter('conf', 0.25).value)
            spinning = bool(self.declare_parameter('spinning', True).value)
            session = ort_session(model, threads, spinning)
            adapter = make_adapter(session, family, conf)
            names = [i.name for i in session.get_inputs()]
            outs = [o.name for o in session.get_outputs()]

            def infer(image: np.ndarray):
                tensors, meta = adapter.preprocess(image)
                return adapter.postprocess(session.run(outs, dict(zip(names, tensors))), meta)
            self.infer = infer
            self.get_logger().info(f'minimal node: {model} ({adapter.family}), {threads} '
                                   'intra-op thread(s) (0: ONNX Runtime default), '
                                   f'{"spinning" if spinning else "no spinning"}')

    def _on_image(self, msg: Image) -> None:
        if self.infer is None:
            self.pub.publish(Detection2DArray(header=msg.header))
            return
        if msg.encoding != 'bgr8' or msg.step != 3 * msg.width:
            self.get_logger().error(f'minimal node: bgr8 frames without padding only, got '
                                    f'{msg.encoding} step {msg.step}: publish bgr8 frames')
            return
        image = np.frombuffer(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
        self.pub.publish(to_detection_array(self.infer(image), msg.header))


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

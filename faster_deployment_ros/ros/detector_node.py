"""2D object detector lifecycle node: `image` -> `detections` (vision_msgs/Detection2DArray).

Each output carries the source frame's header unchanged; an optional `debug_image` shows the
boxes. Model family, backend and pipeline shape come from parameters (see config/*.yaml).
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from ..core.image_codec import fill_image_msg
from ..models import create_adapter
from . import params as P
from .detection_msgs import draw_detections, to_detection_array
from .perception_node import PerceptionNode, run_node


class DetectorNode(PerceptionNode):
    TASK_PARAMETERS = {
        'conf_threshold': (0.25, 'minimum detection score'),
        'nms_threshold': (0.45, 'IoU threshold of class-aware NMS'),
        'max_detections': (300, 'most detections per frame'),
        'class_names': ([''], 'class names in index order; empty uses the model metadata or COCO'),
        'labels_file': ('', 'text file with one class name per line (instead of class_names)'),
        'class_id_mode': ('name', 'ObjectHypothesis.class_id as the class name or its index'),
        'publish_debug_image': (False, 'also publish debug_image (bgr8) with drawn boxes'),
        'gpu_pipeline': (True, 'letterbox, decode and NMS on the GPU when the backend offers it '
                               '(tensorrt); false keeps them on the CPU'),
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__('detector', **kwargs)
        self._det_pub = None
        self._debug_pub = None
        self._det_pubs: List[Any] = []
        self._debug_pubs: List[Any] = []
        self._debug_msg: Optional[Image] = None

    def read_task_parameters(self) -> None:
        v = lambda n: P.value(self, n)  # noqa: E731
        self.class_id_mode = v('class_id_mode')
        if self.class_id_mode not in ('name', 'index'):
            raise P.ParameterError(f'class_id_mode={self.class_id_mode!r}: choose name or index')
        self.debug = bool(v('publish_debug_image'))
        names: List[str] = [n for n in (v('class_names') or []) if n]
        labels_file = v('labels_file')
        if labels_file:
            path = Path(labels_file)
            if not path.is_file():
                raise P.ParameterError(f'labels_file {labels_file!r} does not exist')
            names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        self.class_names = names or None
        for name in ('conf_threshold', 'nms_threshold'):
            if not 0.0 <= float(v(name)) <= 1.0:
                raise P.ParameterError(f'{name}={v(name)}: must lie in [0, 1]')

    def make_adapter(self, backend) -> Any:
        v = lambda n: P.value(self, n)  # noqa: E731
        params = dict(conf_threshold=float(v('conf_threshold')),
                      nms_threshold=float(v('nms_threshold')),
                      max_detections=int(v('max_detections')),
                      class_names=self.class_names)
        if self.config.input_size:
            params['input_size'] = tuple(self.config.input_size)
        adapter = create_adapter(self.config.model_family, backend.inputs, backend.outputs,
                                 backend.metadata, **params)
        if adapter.task != 'detection':
            raise P.ParameterError(
                f'{self.config.model_path} is a {adapter.task} model; use the {adapter.task}_node')
        return adapter

    def wants_image(self) -> bool:
        return self.debug

    def stage_functions(self):
        """The GPU path where every worker's backend offers one: the frame goes to the GPU as
        raw bytes and comes back as detections (one small copy); otherwise the CPU path."""
        if not (P.value(self, 'gpu_pipeline')
                and all(getattr(b, 'supports_gpu_pipeline', False) for b in self.backends)):
            return super().stage_functions()
        from ..gpu.pipeline import specs_for_adapter
        try:
            pre, dec = specs_for_adapter(self.adapter)
        except ValueError as exc:
            self.get_logger().info(f'pre/post-processing on the CPU: {exc}')
            return super().stage_functions()
        for backend in self.backends:
            backend.enable_gpu_pipeline(pre, dec)
        names = self.adapter.class_names

        def preprocess(msg):
            image = self._decode(msg)
            return image, (image if self.debug else None)

        def postprocess(det, image):
            return det, image

        self.get_logger().info('letterbox, decode and NMS on the GPU')
        return preprocess, [partial(b.detect_image, class_names=names) for b in self.backends], \
            postprocess

    def create_outputs(self, qos: QoSProfile) -> None:
        # one set per camera (`inputs`): /front/image_raw -> /front/detections
        self._det_pubs = [self.create_lifecycle_publisher(Detection2DArray, t, qos)
                          for t in self.output_topics('detections')]
        self._debug_pubs = [self.create_lifecycle_publisher(Image, t, qos)
                            for t in self.output_topics('debug_image')] if self.debug else []
        self._det_pub = self._det_pubs[0]
        self._debug_pub = self._debug_pubs[0] if self._debug_pubs else None

    def destroy_outputs(self) -> None:
        destroy = getattr(self, 'destroy_lifecycle_publisher', self.destroy_publisher)
        for pub in self._det_pubs + self._debug_pubs:
            destroy(pub)
        self._det_pubs, self._debug_pubs = [], []
        self._det_pub = self._debug_pub = None

    def publish_result(self, det, header, image: Optional[np.ndarray],
                       camera: int = 0) -> None:
        self._det_pubs[camera].publish(to_detection_array(det, header, self.class_id_mode))
        if self._debug_pubs and image is not None:
            if self._debug_msg is None:
                self._debug_msg = Image()
            msg = fill_image_msg(self._debug_msg, draw_detections(image, det), 'bgr8')
            msg.header = header
            self._debug_pubs[camera].publish(msg)


def main(args=None) -> None:
    run_node(DetectorNode, args)


if __name__ == '__main__':
    main()

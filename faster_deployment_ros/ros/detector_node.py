"""2D object detector lifecycle node: `image` -> `detections` (vision_msgs/Detection2DArray).

Each output carries the source frame's header unchanged; an optional `debug_image` shows the
boxes. Model family, backend and pipeline shape come from parameters (see config/*.yaml).
"""
from __future__ import annotations

from functools import partial
import inspect
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

from . import params
from .detection_msgs import detection_array_cdr, draw_detections
from .label_info import LabelInfoPublisher
from .perception_node import PerceptionNode, run_node
from ..core.image_codec import fill_image_msg
from ..core.types import Detections
from ..models import create_adapter


class DetectorNode(PerceptionNode):
    TASK_PARAMETERS = {
        'conf_threshold': (-1.0, "minimum detection score; negative: the model family's "
                           'reference default (YOLOX 0.3, YOLOv8/YOLO11/RT-DETR 0.25)'),
        'nms_threshold': (-1.0, "IoU threshold of class-aware NMS; negative: the family's "
                          'reference default (YOLOX 0.45, YOLOv8/YOLO11 0.7; RT-DETR has no NMS)'),
        'max_detections': (300, 'most detections per frame'),
        'class_names': ([''], 'class names in index order; empty uses the model metadata or COCO'),
        'labels_file': ('', 'text file with one class name per line (instead of class_names)'),
        'class_id_mode': ('name', 'ObjectHypothesis.class_id as the class name or its index'),
        'publish_debug_image': (False, 'also publish debug_image (bgr8) with drawn boxes'),
        'classes': ([''], 'publish only detections of these classes (names, or indices with '
                    'class_id_mode: index); empty: all'),
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
        self._label_info: Optional[LabelInfoPublisher] = None
        self._gpu_path = False
        self.keep_classes: Optional[frozenset] = None

    # Applied to the next frame while running; the rest needs a reconfigure.
    RUNTIME_TASK_PARAMETERS = ('conf_threshold', 'nms_threshold', 'max_detections', 'classes',
                               'publish_debug_image', 'class_id_mode')

    def validate_parameter(self, name: str, value: Any) -> None:
        if name in ('conf_threshold', 'nms_threshold') and float(value) > 1.0:
            raise params.ParameterError(f'{name}={value}: must lie in [0, 1] (or be negative for '
                                        "the model family's reference default)")
        if name == 'max_detections' and int(value) < 1:
            raise params.ParameterError(f'max_detections={value}: must be >= 1')
        if name == 'class_id_mode' and value not in ('name', 'index'):
            raise params.ParameterError(f'class_id_mode={value!r}: choose name or index')
        if self.adapter is None:
            return
        if name in ('conf_threshold', 'nms_threshold', 'max_detections'):
            if self._gpu_path:
                raise params.ParameterError(f'needs reconfigure: {name} (the GPU decode holds it)')
            if not hasattr(self.adapter, name):
                raise params.ParameterError(f'{name} does not apply to {self.adapter.family} '
                                            'models (no such step in their decoding)')
        if name == 'classes':
            self._class_filter(value, self.adapter.class_names,
                               params.value(self, 'class_id_mode'))

    def apply_parameter(self, name: str, value: Any) -> None:
        if name in ('conf_threshold', 'nms_threshold', 'max_detections'):
            if name != 'max_detections' and float(value) < 0.0:  # back to the family's own
                value = inspect.signature(type(self.adapter)).parameters[name].default
            self.adapter.set_thresholds(**{name: value})
            if name == 'conf_threshold':
                self._publish_label_info()
        elif name == 'classes':
            self.keep_classes = self._class_filter(value, self.adapter.class_names,
                                                   params.value(self, 'class_id_mode'))
        elif name == 'class_id_mode':
            self.keep_classes = self._class_filter(params.value(self, 'classes'),
                                                   self.adapter.class_names, value)
            self.class_id_mode = value
        elif name == 'publish_debug_image':
            self.debug = bool(value)

    @staticmethod
    def _class_filter(value, class_names, mode: str) -> Optional[frozenset]:
        """Return the class indices `classes` keeps (None: all); unknown entries are an error."""
        wanted = [str(c).strip() for c in (value or []) if str(c).strip()]
        if not wanted:
            return None
        names = list(class_names or [])
        keep = set()
        for c in wanted:
            if mode == 'index' or c.isdigit():
                if not c.isdigit() or int(c) >= len(names):
                    raise params.ParameterError(f'classes: {c!r} is not a class index of this '
                                                f'model (0..{len(names) - 1})')
                keep.add(int(c))
            elif c in names:
                keep.add(names.index(c))
            else:
                more = ', ...' if len(names) > 8 else ''
                raise params.ParameterError(f'classes: {c!r} is not a class of this model (it has '
                                            f'{", ".join(names[:8])}{more})')
        return frozenset(keep)

    def read_task_parameters(self) -> None:
        v = lambda n: params.value(self, n)  # noqa: E731
        self._gpu_path = False
        self.keep_classes = None
        self.class_id_mode = v('class_id_mode')
        if self.class_id_mode not in ('name', 'index'):
            raise params.ParameterError(
                f'class_id_mode={self.class_id_mode!r}: choose name or index')
        if int(v('max_detections')) < 1:
            raise params.ParameterError(f'max_detections={v("max_detections")}: must be >= 1')
        self.debug = bool(v('publish_debug_image'))
        names: List[str] = [n for n in (v('class_names') or []) if n]
        labels_file = v('labels_file')
        if labels_file:
            path = Path(labels_file)
            if not path.is_file():
                raise params.ParameterError(f'labels_file {labels_file!r} does not exist')
            names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        self.class_names = names or None
        for name in ('conf_threshold', 'nms_threshold'):  # negative: the family's default
            if float(v(name)) > 1.0:
                raise params.ParameterError(f'{name}={v(name)}: must lie in [0, 1] (or be '
                                            "negative for the model family's reference default)")

    def make_adapter(self, backend) -> Any:
        v = lambda n: params.value(self, n)  # noqa: E731
        knobs = {'max_detections': int(v('max_detections')), 'class_names': self.class_names}
        for name in ('conf_threshold', 'nms_threshold'):  # unset: the adapter's family default
            if float(v(name)) >= 0.0:
                knobs[name] = float(v(name))
        if self.config.input_size:
            knobs['input_size'] = tuple(self.config.input_size)
        adapter = create_adapter(self.config.model_family, backend.inputs, backend.outputs,
                                 backend.metadata, **knobs)
        if adapter.task != 'detection':
            raise params.ParameterError(
                f'{self.config.model_path} is a {adapter.task} model; use the {adapter.task}_node')
        self.keep_classes = self._class_filter(v('classes'), adapter.class_names,
                                               self.class_id_mode)
        return adapter

    def wants_image(self) -> bool:
        return self.debug

    def stage_functions(self):
        """Return the GPU path where every worker's backend offers one.

        The frame goes to the GPU as raw bytes and comes back as detections (one small copy);
        otherwise the CPU path.
        """
        if not (params.value(self, 'gpu_pipeline')
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
        self._gpu_path = True
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
        # Always there, so publish_debug_image can be switched on while running.
        self._debug_pubs = [self.create_lifecycle_publisher(Image, t, qos)
                            for t in self.output_topics('debug_image')]
        self._det_pub, self._debug_pub = self._det_pubs[0], self._debug_pubs[0]
        self._label_info = LabelInfoPublisher(self)
        self._publish_label_info()
        a = self.adapter
        self.get_logger().info(
            f'{a.family}: conf_threshold {a.conf_threshold:g}'
            + (f', nms_threshold {a.nms_threshold:g}' if hasattr(a, 'nms_threshold') else '')
            + " (negative parameters: the family's reference defaults)")

    def _publish_label_info(self) -> None:
        if self._label_info is not None and self.adapter is not None:
            self._label_info.publish(self.adapter.class_names, self.adapter.conf_threshold)

    def destroy_outputs(self) -> None:
        destroy = getattr(self, 'destroy_lifecycle_publisher', self.destroy_publisher)
        for pub in self._det_pubs + self._debug_pubs:
            destroy(pub)
        self._det_pubs, self._debug_pubs = [], []
        self._det_pub = self._debug_pub = None
        if self._label_info is not None:
            self._label_info.destroy()
            self._label_info = None

    def publish_result(self, det, header, image: Optional[np.ndarray],
                       camera: int = 0) -> None:
        keep = self.keep_classes
        if keep is not None and len(det):
            mask = np.isin(det.class_ids, list(keep))
            det = Detections(det.boxes[mask], det.scores[mask], det.class_ids[mask],
                             det.class_names)
        # serialised bytes straight from the arrays (ros/detection_msgs.py says why)
        self._det_pubs[camera].publish(self.timed_build(detection_array_cdr, det, header,
                                                        self.class_id_mode))
        if self.debug and self._debug_pubs and image is not None:
            if self._debug_msg is None:
                self._debug_msg = Image()
            msg = fill_image_msg(self._debug_msg, draw_detections(image, det), 'bgr8')
            msg.header = header
            self._debug_pubs[camera].publish(msg)


def main(args=None) -> None:
    run_node(DetectorNode, args)


if __name__ == '__main__':
    main()

"""The GPU fast path: raw BGR frame -> letterbox -> model -> decode/NMS, on one stream.

`GpuFramePipeline` is runtime-agnostic: the model is any callable that runs on the stream from
the input device buffer into the output device buffer (TensorRT's execute_async_v3; in tests
ONNX Runtime behind a copy). `specs_for_adapter` derives the GPU settings from a CPU model
adapter, so the two paths cannot disagree on thresholds or letterbox placement.
"""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

from ..core.letterbox import LetterboxMeta, letterbox, to_chw_tensor
from .cuda import Device, DeviceBuffer, Stream, get_device
from .postprocess import MAX_CANDIDATES, DecodeSpec, GpuDetectionDecoder
from .preprocess import GpuLetterbox, PreprocessSpec

# Pre-processing of the families we ship, for a model input of (h, w).
PRESETS = {
    'yolox': dict(center=False, pad_value=114, swap_rb=False),
    'ultralytics': dict(center=True, pad_value=114, swap_rb=True, scale=(1 / 255,) * 3),
}


def preset(name: str, size: Tuple[int, int], dtype: str = 'float32') -> PreprocessSpec:
    try:
        kw = PRESETS[name]
    except KeyError:
        raise ValueError(f'unknown pre-processing preset {name!r}; one of {", ".join(PRESETS)}') from None
    return PreprocessSpec(size=(int(size[0]), int(size[1])), dtype=dtype, **kw)


def preprocess_cpu(image: np.ndarray, spec: PreprocessSpec) -> Tuple[np.ndarray, LetterboxMeta]:
    """The CPU reference of GpuLetterbox: core.letterbox + (v - mean) * scale, CHW."""
    canvas, meta = letterbox(image[:, :, :3], spec.size, pad_value=spec.pad_value,
                             center=spec.center, rounding=spec.rounding)
    src = canvas[:, :, ::-1] if spec.swap_rb else canvas
    x = to_chw_tensor(np.ascontiguousarray(src), dtype=np.float32)
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)
    scale = np.asarray(spec.scale, np.float32).reshape(1, 3, 1, 1)
    x = (x - mean) * scale
    return x.astype(spec.dtype), meta


def specs_for_adapter(adapter: Any, dtype: str = 'float32') -> Tuple[PreprocessSpec, DecodeSpec]:
    """(PreprocessSpec, DecodeSpec) equal to what a CPU adapter does, for the families we know."""
    family = getattr(adapter, 'family', '')
    size = tuple(int(v) for v in adapter.input_size)
    common = dict(conf_threshold=float(adapter.conf_threshold),
                  nms_threshold=float(adapter.nms_threshold),
                  max_detections=int(adapter.max_detections),
                  class_agnostic=bool(getattr(adapter, 'class_agnostic', False)))
    if family == 'yolox':
        layout = 'yolox_decoded' if getattr(adapter, 'decoded', False) else 'yolox'
        return (preset('yolox', size, dtype),
                DecodeSpec(layout=layout, strides=tuple(adapter.strides), **common))
    if family in ('yolov8', 'yolo11', 'ultralytics'):
        if getattr(adapter, 'end2end', False):
            raise ValueError('end-to-end YOLO exports decode in the model; use the CPU postprocess')
        layout = 'yolov8_transposed' if getattr(adapter, 'transposed', False) else 'yolov8'
        top_k = min(int(getattr(adapter, 'max_nms', MAX_CANDIDATES)), MAX_CANDIDATES)
        return (preset('ultralytics', size, dtype),
                DecodeSpec(layout=layout, top_k=top_k, per_axis_scale=True, center=True, **common))
    raise ValueError(f'no GPU decode for model family {family!r}; use the CPU postprocess')


class GpuFramePipeline:
    """Letterbox into `input_buffer`, run the model, decode from `output_buffer`; one stream.

    run_model(stream) must enqueue the model on `stream` (or run synchronously) reading
    `input_buffer` and writing `output_buffer`. With `decode` None, `infer` returns the raw
    output copied to the host; with it, `detect` returns final boxes with one small copy.
    """

    def __init__(self, preprocess: PreprocessSpec, input_buffer: DeviceBuffer,
                 output_buffer: DeviceBuffer, output_shape: Sequence[int],
                 run_model: Callable[[Stream], None], decode: Optional[DecodeSpec] = None,
                 stream: Optional[Stream] = None, device: Optional[Device] = None,
                 output_dtype: Any = np.float32) -> None:
        self.device = device or get_device()
        self.stream = stream or Stream(self.device)
        self.letterbox = GpuLetterbox(preprocess, self.stream, self.device, output=input_buffer)
        self.output_buffer = output_buffer
        self.output_shape = tuple(int(d) for d in output_shape)
        self.output_dtype = np.dtype(output_dtype)
        self.run_model = run_model
        self.decoder = None
        if decode is not None:
            if self.output_dtype != np.float32:
                raise ValueError(f'GPU decode reads float32 outputs, the model gives {self.output_dtype}')
            self.decoder = GpuDetectionDecoder(decode, self.output_shape, preprocess.size,
                                               self.stream, self.device)

    def infer(self, image: np.ndarray) -> Tuple[np.ndarray, LetterboxMeta]:
        """Raw model output on the host (for CPU post-processing) and the letterbox meta."""
        self.device.activate()
        meta = self.letterbox.run(image)
        self.run_model(self.stream)
        host = np.empty(self.output_shape, self.output_dtype)
        self.output_buffer.download(host, self.stream)
        self.stream.synchronize()
        return host, meta

    def detect(self, image: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, LetterboxMeta]:
        """(boxes xyxy in source pixels, scores, class_ids, meta) with decode/NMS on the GPU."""
        if self.decoder is None:
            raise RuntimeError('this pipeline was built without a DecodeSpec')
        meta = self.letterbox.run(image)
        self.run_model(self.stream)
        self.decoder.enqueue(self.output_buffer.ptr, meta)
        boxes, scores, classes = self.decoder.collect()
        return boxes, scores, classes, meta

    def close(self) -> None:
        self.letterbox.close()
        if self.decoder is not None:
            self.decoder.close()


__all__ = ['PRESETS', 'preset', 'preprocess_cpu', 'specs_for_adapter', 'GpuFramePipeline']

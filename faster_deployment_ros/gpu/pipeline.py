"""The GPU fast path: raw BGR frame -> letterbox -> model -> decode/NMS, on one stream.

`GpuFramePipeline` is runtime-agnostic: the model is any callable that runs on the stream from
the input device buffer into the output device buffer (TensorRT's execute_async_v3; in tests
ONNX Runtime behind a copy). `specs_for_adapter` takes the GPU settings from what the CPU model
adapter declares (core.specs), so the two paths cannot disagree on thresholds or letterbox
placement.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional, Sequence, Tuple

import numpy as np

from .cuda import Device, DeviceBuffer, get_device, Stream
from .postprocess import GpuDetectionDecoder, MAX_CANDIDATES
from .preprocess import GpuLetterbox
from ..core.letterbox import letterbox, LetterboxMeta, to_chw_tensor
from ..core.specs import DecodeSpec, PreprocessSpec


def preprocess_cpu(image: np.ndarray, spec: PreprocessSpec) -> Tuple[np.ndarray, LetterboxMeta]:
    """Return the CPU reference of GpuLetterbox: core.letterbox + (v - mean) * scale, CHW."""
    canvas, meta = letterbox(image[:, :, :3], spec.size, pad_value=spec.pad_value,
                             center=spec.center, rounding=spec.rounding)
    src = canvas[:, :, ::-1] if spec.swap_rb else canvas
    x = to_chw_tensor(np.ascontiguousarray(src), dtype=np.float32)
    mean = np.asarray(spec.mean, np.float32).reshape(1, 3, 1, 1)
    scale = np.asarray(spec.scale, np.float32).reshape(1, 3, 1, 1)
    x = (x - mean) * scale
    return x.astype(spec.dtype), meta


def specs_for_adapter(adapter: Any, dtype: str = 'float32') -> Tuple[PreprocessSpec, DecodeSpec]:
    """Return the (PreprocessSpec, DecodeSpec) the adapter declares, top-k capped for the GPU.

    ValueError where the adapter has no GPU-capable pre/post-processing.
    """
    pre, dec = adapter.preprocess_spec(dtype), adapter.decode_spec()
    if pre is None or dec is None:
        raise ValueError(f'no GPU pre/post-processing for {type(adapter).__name__} '
                         f'({getattr(adapter, "family", "?")}); use the CPU postprocess')
    return pre, replace(dec, top_k=min(dec.top_k, MAX_CANDIDATES))


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
                raise ValueError('GPU decode reads float32 outputs, the model gives '
                                 f'{self.output_dtype}')
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

    def detect(self, image: np.ndarray
               ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, LetterboxMeta]:
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


__all__ = ['preprocess_cpu', 'specs_for_adapter', 'GpuFramePipeline']

"""GPU letterbox pre-processing: raw BGR bytes in, the model's input tensor out, in one kernel.

One launch does resize (OpenCV INTER_LINEAR, bit-exact on downscales), padding, R/B swap,
(v - mean) * scale and HWC->CHW, writing float32 or float16 straight into the buffer the
engine reads. The only other work per frame is one host->device copy of the frame. Geometry
comes from core.letterbox so boxes map back the same way.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

from .cuda import Device, DeviceBuffer, get_device, PinnedBuffer, Stream
from .kernels import get_module
from .resize_tables import linear_table
from ..core.letterbox import letterbox_geometry, LetterboxMeta
from ..core.specs import PreprocessSpec

_BLOCK = (32, 8)


class _Geometry:
    """Device tables for one source size (cameras rarely change size; rebuilt when they do)."""

    def __init__(self, src_hw: Tuple[int, int], spec: PreprocessSpec, device: Device,
                 stream: Stream) -> None:
        dst_h, dst_w = spec.size
        r, new_w, new_h, left, top = letterbox_geometry(src_hw, (dst_h, dst_w), spec.center,
                                                        spec.rounding)
        self.src_hw = src_hw
        self.new_w, self.new_h, self.left, self.top = new_w, new_h, left, top
        self.meta = LetterboxMeta(float(r), float(left), float(top), int(src_hw[1]),
                                  int(src_hw[0]))
        xofs, xcoef = linear_table(src_hw[1], new_w)
        yofs, ycoef = linear_table(src_hw[0], new_h)
        self._host = [np.ascontiguousarray(a) for a in (xofs, xcoef, yofs, ycoef)]
        self.buffers = [DeviceBuffer(a.nbytes, device) for a in self._host]
        for buf, arr in zip(self.buffers, self._host):
            buf.upload(arr, stream)
        stream.synchronize()  # the host tables may go away after this

    def close(self) -> None:
        for b in self.buffers:
            b.close()


class GpuLetterbox:
    """Letterbox frames on the GPU into a preallocated (1, 3, H, W) device tensor.

    `output` is the device buffer the model reads (bind it as the engine's input address).
    Not thread-safe: one instance per inference worker, like the backend that owns it.
    """

    def __init__(self, spec: PreprocessSpec, stream: Optional[Stream] = None,
                 device: Optional[Device] = None, output: Optional[DeviceBuffer] = None,
                 staging: str = 'direct') -> None:
        if staging not in ('direct', 'pinned'):
            raise ValueError(f"staging must be 'direct' or 'pinned', not {staging!r}")
        self.spec = spec
        self.staging = staging
        self.device = device or get_device()
        self.stream = stream or Stream(self.device)
        self._module = get_module(self.device)
        self._owns_output = output is None
        self.output = output or DeviceBuffer(spec.nbytes, self.device)
        if self.output.nbytes < spec.nbytes:
            raise ValueError(f'output buffer holds {self.output.nbytes} bytes, need {spec.nbytes}')
        self._geom: Optional[_Geometry] = None
        self._src: Optional[DeviceBuffer] = None
        self._pinned: Optional[PinnedBuffer] = None

    def _geometry(self, h: int, w: int) -> _Geometry:
        if self._geom is None or self._geom.src_hw != (h, w):
            if self._geom is not None:
                self._geom.close()
            self._geom = _Geometry((h, w), self.spec, self.device, self.stream)
        return self._geom

    def _staging(self, nbytes: int) -> None:
        if self._src is None or self._src.nbytes < nbytes:
            for b in (self._src, self._pinned):
                if b is not None:
                    b.close()
            self._src = DeviceBuffer(nbytes, self.device)
            if self.staging == 'pinned':
                self._pinned = PinnedBuffer((nbytes,), np.uint8, self.device)

    def upload(self, image: np.ndarray) -> Tuple[int, int, int, int]:
        """Copy an HxWx3 (or x4) uint8 frame into device memory; returns (ptr, pitch, h, w).

        'direct' (default) hands the frame itself to the driver, which stages pageable memory
        through its own pinned buffers while the DMA runs; 'pinned' copies it into our pinned
        buffer first, then transfers asynchronously. Neither wins consistently (measured in
        docs/tensorrt_gpu.md): both are the cost of one host memcpy, and 'direct' needs no extra
        buffer. The frame may be reused once this returns.
        """
        image = np.ascontiguousarray(_check_image(image))
        self.device.activate()  # workers call from their own threads
        self._staging(image.size)
        if self.staging == 'direct':
            self._src.upload(image, self.stream)
        else:
            self.stream.synchronize()  # the pinned staging buffer may still be in flight
            flat = self._pinned.array[:image.size]
            np.copyto(flat.reshape(image.shape), image)
            self._src.upload(flat, self.stream)
        return self._src.ptr, image.shape[1] * image.shape[2], image.shape[0], image.shape[1]

    def run(self, image: np.ndarray) -> LetterboxMeta:
        """Upload `image` and enqueue the fused kernel; `output` is ready when the stream is."""
        ptr, pitch, h, w = self.upload(image)
        return self.run_device(ptr, pitch, h, w, image.shape[2])

    def run_device(self, src_ptr: int, pitch: int, height: int, width: int,
                   channels: int = 3) -> LetterboxMeta:
        """Enqueue pre-processing of a frame already in device memory (e.g. from a GPU decoder)."""
        self.device.activate()
        g = self._geometry(int(height), int(width))
        spec = self.spec
        name = 'letterbox_chw_f32' if spec.dtype == 'float32' else 'letterbox_chw_f16'
        dst_h, dst_w = spec.size
        mean = [float(m) for m in spec.mean]
        scale = [float(s) for s in spec.scale]
        args = (*self._common_args(g, src_ptr, pitch, channels), self.output.ptr, dst_w, dst_h,
                int(spec.swap_rb), *mean, *scale)
        self._module[name].launch(_grid(dst_w, dst_h), _BLOCK, args, self.stream)
        return g.meta

    def letterbox_u8(self, image: np.ndarray) -> Tuple[np.ndarray, LetterboxMeta]:
        """Return the HxWx3 uint8 letterboxed image (as core.letterbox.letterbox); for checks."""
        ptr, pitch, h, w = self.upload(image)
        g = self._geometry(h, w)
        dst_h, dst_w = self.spec.size
        out_dev = DeviceBuffer(dst_h * dst_w * 3, self.device)
        try:
            args = (*self._common_args(g, ptr, pitch, image.shape[2]), out_dev.ptr, dst_w, dst_h)
            self._module['letterbox_hwc_u8'].launch(_grid(dst_w, dst_h), _BLOCK, args, self.stream)
            host = np.empty((dst_h, dst_w, 3), np.uint8)
            out_dev.download(host, self.stream)
            self.stream.synchronize()
        finally:
            out_dev.close()
        return host, g.meta

    def download(self) -> np.ndarray:
        """Return the current input tensor on the host (synchronises); for checks, CPU runtimes."""
        self.device.activate()
        host = np.empty(self.spec.tensor_shape, self.spec.dtype)
        self.output.download(host, self.stream)
        self.stream.synchronize()
        return host

    def _common_args(self, g: _Geometry, src_ptr: int, pitch: int, channels: int) -> tuple:
        xofs, xcoef, yofs, ycoef = g.buffers
        return (int(src_ptr), int(pitch), int(channels), xofs.ptr, xcoef.ptr, g.src_hw[1],
                yofs.ptr, ycoef.ptr, g.src_hw[0], g.left, g.top, g.new_w, g.new_h,
                int(self.spec.pad_value))

    def close(self) -> None:
        for b in (self._src, self._pinned, self._geom):
            if b is not None:
                b.close()
        self._src = self._pinned = self._geom = None
        if self._owns_output:
            self.output.close()


def _grid(w: int, h: int) -> Sequence[int]:
    return ((w + _BLOCK[0] - 1) // _BLOCK[0], (h + _BLOCK[1] - 1) // _BLOCK[1])


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f'expected an HxWx3 (or x4) uint8 BGR image, got {image.dtype} '
                         f'{image.shape}')
    return image


__all__ = ['GpuLetterbox']

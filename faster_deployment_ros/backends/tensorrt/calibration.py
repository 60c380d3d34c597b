"""INT8 calibration data: the images, their fingerprint, and the tensors made from them.

Contract: calibration tensors are made by the model adapter's own `preprocess` (handed in as
`adapter_factory`, since backends sit below the models layer), so every family, multi-input
models included, calibrates exactly as it runs. `calibration_batches` checks them against the
shapes the engine is built for; `calibration_id` is what the engine key records (a content hash
of the images and of the pre-processing, or of the calibration cache). `make_calibrator` feeds
TensorRT 8.6/10.x's IInt8EntropyCalibrator2; 11.x gets the same tensors through ModelOpt
(modelopt_convert.py).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .engine_cache import atomic_write, file_sha256
from .options import onnx_tensors
from ..base import BackendError
from ...core.types import TensorSpec

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


def list_calibration_images(source: os.PathLike, limit: Optional[int] = None) -> List[Path]:
    """Images for INT8 calibration.

    A folder (sorted) or a text file of paths, one per line (relative paths are relative to the
    list file; '#' starts a comment).
    """
    src = Path(source)
    if src.is_dir():
        paths = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    elif src.is_file():
        paths = []
        for line in src.read_text().splitlines():
            line = line.split('#', 1)[0].strip()
            if line:
                p = Path(line)
                paths.append(p if p.is_absolute() else src.parent / p)
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise ValueError(f'calibration list {src} names missing files: {missing[:3]}'
                             + (' ...' if len(missing) > 3 else ''))
    else:
        raise ValueError(f'calibration images: {src} is neither a folder nor a list file')
    if limit is not None and limit > 0:
        paths = paths[:limit]
    if not paths:
        raise ValueError(f'no calibration images found in {src} ({", ".join(IMAGE_SUFFIXES)})')
    return paths


def calibration_fingerprint(paths: Sequence[Path], preprocess_id: str = '') -> str:
    """Content hash of the calibration set (and how it is pre-processed)."""
    h = hashlib.sha256(preprocess_id.encode())
    for p in paths:
        h.update(Path(p).name.encode())
        h.update(file_sha256(p).encode())
    return h.hexdigest()[:16]


def calibration_id(opts: Dict[str, Any]) -> Tuple[List[Path], str]:
    """(calibration images, their id for the engine key); ([], '') unless precision is int8."""
    if opts['precision'] != 'int8':
        return [], ''
    if opts['int8_calibration']:
        try:
            paths = list_calibration_images(opts['int8_calibration'],
                                            opts['calibration_limit'] or None)
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        return paths, calibration_fingerprint(paths, opts['calibration_preprocess'])
    return [], 'cache:' + file_sha256(opts['calibration_cache'])[:16]


class CalibrationBatches:
    """Calibration tensors, one batch at a time, from images through the model's pre-processing.

    `preprocess(image_bgr) -> [one array per model input]` (a model adapter's preprocess, in
    the model's input order); a batch stacks `batch_size` images per input along axis 0.
    """

    def __init__(self, paths: Sequence[Path],
                 preprocess: Callable[[np.ndarray], Sequence[np.ndarray]],
                 batch_size: int = 1,
                 on_batch: Optional[Callable[[int, int], None]] = None) -> None:
        self.paths = list(paths)
        self.preprocess = preprocess
        self.batch_size = max(1, int(batch_size))
        self.on_batch = on_batch
        self._next = 0

    def __len__(self) -> int:
        return len(self.paths) // self.batch_size

    def reset(self) -> None:
        self._next = 0

    def next_batch(self) -> Optional[List[np.ndarray]]:
        """Return the next batch, one contiguous array per input; None when all are used."""
        import cv2
        if self._next >= len(self):
            return None
        chunk = self.paths[self._next * self.batch_size:(self._next + 1) * self.batch_size]
        per_image = []
        for p in chunk:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f'cannot read calibration image {p}')
            tensors = self.preprocess(img)
            if isinstance(tensors, np.ndarray):
                tensors = [tensors]
            per_image.append([np.asarray(t) for t in tensors])
        self._next += 1
        if self.on_batch is not None:
            self.on_batch(self._next, len(self))
        return [np.ascontiguousarray(np.concatenate([t[i] for t in per_image], 0))
                for i in range(len(per_image[0]))]

    def all_batches(self) -> List[List[np.ndarray]]:
        self.reset()
        out = []
        while True:
            batch = self.next_batch()
            if batch is None:
                return out
            out.append(batch)


def calibration_adapter(onnx_path: Path, family: str, shapes: Dict[str, Tuple[int, ...]],
                        factory: Any) -> Any:
    """Make the model adapter whose preprocess makes the calibration tensors (sized as built).

    `factory(family, inputs, outputs, metadata)` is models.adapter_factory's, handed in by the
    caller (the node, fdr-convert): backends sit below the models layer.
    """
    if factory is None:
        raise BackendError("int8 calibration needs the model's pre-processing: pass "
                           'adapter_factory=faster_deployment_ros.models.adapter_factory() '
                           '(the node and fdr-convert tensorrt do)')
    inputs, outputs, metadata = onnx_tensors(onnx_path)
    inputs = [TensorSpec(t.name, shapes.get(t.name, t.shape), t.dtype) for t in inputs]
    try:
        return factory(family, inputs, outputs, metadata)
    except ValueError as exc:
        raise BackendError(f"int8 calibration needs the model's pre-processing: {exc}; set "
                           'calibration_preprocess to the model family') from None


def calibration_batches(onnx_path: Path, opts: Dict[str, Any], paths: Sequence[Path],
                        shapes: Dict[str, Tuple[int, ...]],
                        log=lambda s: None) -> CalibrationBatches:
    """Images -> tensors through the adapter's own preprocess, checked against the inputs."""
    adapter = calibration_adapter(onnx_path, opts['calibration_preprocess'], shapes,
                                  opts.get('adapter_factory'))
    names = list(shapes)
    batch = shapes[names[0]][0] if shapes[names[0]] else 1

    def preprocess(img: np.ndarray) -> List[np.ndarray]:
        tensors, _ = adapter.preprocess(img)
        if len(tensors) != len(names):
            raise BackendError(f'the {adapter.family} pre-processing makes {len(tensors)} '
                               f'tensor(s) but the model has inputs {names}: set '
                               'calibration_preprocess to the family that fits this model')
        for name, x in zip(names, tensors):
            want = (1,) + tuple(shapes[name][1:])
            if tuple(np.shape(x)) != want:
                raise BackendError(f'calibration tensor for {name!r} is {np.shape(x)}, the '
                                   f'engine is built for {shapes[name]}: set calibration_'
                                   'preprocess to the family that fits this model')
        return tensors

    log(f'int8 calibration: {len(paths)} image(s) through the {adapter.family} pre-processing')
    return CalibrationBatches(
        paths, preprocess, batch,
        on_batch=lambda i, n: (log(f'  calibration batch {i}/{n}')
                               if i == n or i % 10 == 0 else None))


def make_calibrator(trt: Any, batches: CalibrationBatches, cache_file: Optional[Path],
                    device: Any = None,
                    inputs: Optional[Sequence[Tuple[str, Any]]] = None) -> Any:
    """Make an IInt8EntropyCalibrator2 (TensorRT 8.6/10.x) feeding `batches`.

    One device buffer per input. The stream and buffers are made at the first batch: with a
    calibration cache TensorRT asks for none, and nothing touches the GPU. `inputs`: the
    network's (name, numpy dtype) in the order `batches` gives them; each batch is cast to the
    network's type (8.x takes an ONNX int64 input as INT32) and handed over in the order of
    the names TensorRT asks for.
    """
    from ...gpu.cuda import DeviceBuffer, Stream

    class _Calibrator(trt.IInt8EntropyCalibrator2):

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._stream: Optional[Any] = None
            self._dev: List[DeviceBuffer] = []

        def get_batch_size(self) -> int:
            return batches.batch_size

        def get_batch(self, names: List[str], p_str: Any = None) -> Optional[List[int]]:
            batch = batches.next_batch()
            if batch is None:
                return None
            if len(batch) != len(names):
                raise BackendError(f'calibration pre-processing gives {len(batch)} input(s), '
                                   f'the engine has {len(names)} ({", ".join(names)})')
            if inputs:
                by_name = {n: np.ascontiguousarray(x, dtype)
                           for (n, dtype), x in zip(inputs, batch)}
                batch = [by_name[n] for n in names]
            if self._stream is None:
                self._stream = Stream(device)
            if len(self._dev) != len(batch) or any(
                    d.nbytes < x.nbytes for d, x in zip(self._dev, batch)):
                self._dev = [DeviceBuffer(x.nbytes, device) for x in batch]
            for d, x in zip(self._dev, batch):
                d.upload(x, self._stream)
            self._stream.synchronize()
            return [d.ptr for d in self._dev]

        def read_calibration_cache(self) -> Optional[bytes]:
            if cache_file is not None and Path(cache_file).is_file():
                return Path(cache_file).read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_file is not None:
                atomic_write(Path(cache_file), bytes(cache))

    return _Calibrator()


__all__ = ['IMAGE_SUFFIXES', 'list_calibration_images', 'calibration_fingerprint',
           'calibration_id', 'CalibrationBatches', 'calibration_adapter', 'calibration_batches',
           'make_calibrator']

"""Thin, explicit CUDA driver layer over cuda-python (`cuda.bindings`, or the older `cuda` module).

Why the driver API: TensorRT and our NVRTC kernels share the device's *primary* context, so
device pointers and streams created here can be handed straight to `execute_async_v3`.
Everything is allocated once (device buffers, pinned host buffers, streams, events) and reused
per frame; nothing here allocates on the hot path. A driver context is current per *thread*, and
pipeline workers are threads, so every entry point makes the device's context current first.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass
import threading
from typing import Any, Optional, Sequence, Tuple

import numpy as np


class GpuUnavailable(RuntimeError):
    """No usable CUDA: cuda-python missing, no driver, or no device. The message says which."""


class CudaError(RuntimeError):
    """A CUDA driver or NVRTC call failed."""


_lock = threading.Lock()
_modules: Optional[Tuple[Any, Any]] = None


def cuda_modules() -> Tuple[Any, Any]:
    """(driver, nvrtc) modules of cuda-python; raises GpuUnavailable when not installed."""
    global _modules
    if _modules is None:
        try:
            from cuda.bindings import driver, nvrtc  # cuda-python >= 12.6
        except ImportError:
            try:
                from cuda import cuda as driver, nvrtc  # older cuda-python (JetPack 5/6 wheels)
            except ImportError as exc:
                raise GpuUnavailable(
                    'cuda-python is not installed (pip install cuda-python, or cuda-bindings '
                    f'matching your CUDA major version): {exc}') from None
        _modules = (driver, nvrtc)
    return _modules


def check(result: Any) -> Any:
    """Unwrap a cuda-python `(status, *values)` tuple, raising CudaError on failure."""
    if not isinstance(result, tuple):
        result = (result,)
    status, values = result[0], result[1:]
    if int(status) != 0:
        raise CudaError(_error_text(status))
    if not values:
        return None
    return values[0] if len(values) == 1 else values


def _error_text(status: Any) -> str:
    driver, nvrtc = cuda_modules()
    if isinstance(status, nvrtc.nvrtcResult):
        name = nvrtc.nvrtcGetErrorString(status)[1]
        return f'NVRTC error {int(status)}: {name.decode(errors="replace")}'
    try:
        name = driver.cuGetErrorName(status)[1].decode()
        text = driver.cuGetErrorString(status)[1].decode()
        return f'CUDA error {int(status)} {name}: {text}'
    except Exception:  # noqa: BLE001 - the original status is what matters
        return f'CUDA error {status}'


@dataclass(frozen=True)
class DeviceInfo:
    ordinal: int
    name: str
    compute_capability: Tuple[int, int]
    multiprocessors: int
    total_memory: int
    driver_version: int

    @property
    def arch(self) -> str:
        return f'sm_{self.compute_capability[0]}{self.compute_capability[1]}'


_devices: dict = {}


class Device:
    """One GPU with its primary context retained; `activate()` makes it current on this thread."""

    def __init__(self, ordinal: int = 0) -> None:
        driver, _ = cuda_modules()
        self._driver = driver
        try:
            check(driver.cuInit(0))
        except CudaError as exc:
            raise GpuUnavailable(f'CUDA driver could not initialise: {exc}') from None
        except Exception as exc:  # noqa: BLE001 - missing libcuda raises from the loader
            raise GpuUnavailable(f'no NVIDIA driver (libcuda) found: {exc}') from None
        count = check(driver.cuDeviceGetCount())
        if count == 0:
            raise GpuUnavailable('the CUDA driver reports no GPU')
        if not 0 <= ordinal < count:
            raise GpuUnavailable(f'GPU {ordinal} requested but only {count} present')
        self.ordinal = ordinal
        self.handle = check(driver.cuDeviceGet(ordinal))
        self.context = check(driver.cuDevicePrimaryCtxRetain(self.handle))
        self.activate()
        attr = driver.CUdevice_attribute
        get = lambda a: int(check(driver.cuDeviceGetAttribute(a, self.handle)))  # noqa: E731
        self.info = DeviceInfo(
            ordinal=ordinal,
            name=check(driver.cuDeviceGetName(256, self.handle)).split(b'\0')[0].decode(),
            compute_capability=(get(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
                                get(attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)),
            multiprocessors=get(attr.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
            total_memory=int(check(driver.cuDeviceTotalMem(self.handle))),
            driver_version=int(check(driver.cuDriverGetVersion())))

    def activate(self) -> None:
        check(self._driver.cuCtxSetCurrent(self.context))

    def synchronize(self) -> None:
        check(self._driver.cuCtxSynchronize())


def get_device(ordinal: int = 0) -> Device:
    """Return the process-wide Device for `ordinal` (its primary context is shared)."""
    with _lock:
        dev = _devices.get(ordinal)
        if dev is None:
            dev = _devices[ordinal] = Device(ordinal)
    dev.activate()
    return dev


def gpu_status(ordinal: int = 0) -> Tuple[bool, str]:
    """(usable, reason): why the GPU paths would not run here, for skips and error messages."""
    try:
        dev = get_device(ordinal)
    except GpuUnavailable as exc:
        return False, str(exc)
    return True, f'{dev.info.name} ({dev.info.arch})'


class Stream:
    """A non-blocking CUDA stream; `handle` is the integer TensorRT's execute_async_v3 takes."""

    def __init__(self, device: Optional[Device] = None) -> None:
        self.device = device or get_device()
        self._driver = self.device._driver
        self.device.activate()
        self._stream = check(self._driver.cuStreamCreate(
            int(self._driver.CUstream_flags.CU_STREAM_NON_BLOCKING)))
        self.handle = int(self._stream)

    @property
    def raw(self) -> Any:
        return self._stream

    def synchronize(self) -> None:
        check(self._driver.cuStreamSynchronize(self._stream))

    def close(self) -> None:
        if self._stream is not None:
            self.device.activate()
            check(self._driver.cuStreamDestroy(self._stream))
            self._stream = None


class Event:
    """A CUDA event for ordering and timing work on streams."""

    def __init__(self, device: Optional[Device] = None, timing: bool = True) -> None:
        self.device = device or get_device()
        self._driver = self.device._driver
        flags = 0 if timing else int(self._driver.CUevent_flags.CU_EVENT_DISABLE_TIMING)
        self.device.activate()
        self._event = check(self._driver.cuEventCreate(flags))

    def record(self, stream: Stream) -> None:
        check(self._driver.cuEventRecord(self._event, stream.raw))

    def synchronize(self) -> None:
        check(self._driver.cuEventSynchronize(self._event))

    def elapsed_ms(self, end: 'Event') -> float:
        """Milliseconds from this event to `end` (both recorded; waits for `end`)."""
        end.synchronize()
        return float(check(self._driver.cuEventElapsedTime(self._event, end._event)))

    def close(self) -> None:
        if self._event is not None:
            self.device.activate()
            check(self._driver.cuEventDestroy(self._event))
            self._event = None


class DeviceBuffer:
    """Device memory allocated once (cuMemAlloc); `ptr` is the raw address for kernels/TensorRT."""

    def __init__(self, nbytes: int, device: Optional[Device] = None) -> None:
        self.device = device or get_device()
        self._driver = self.device._driver
        self.nbytes = int(nbytes)
        self.device.activate()  # the context is current per thread
        self._mem = check(self._driver.cuMemAlloc(max(self.nbytes, 1)))
        self.ptr = int(self._mem)

    def upload(self, host: np.ndarray, stream: Stream, nbytes: Optional[int] = None) -> None:
        """Copy host->device asynchronously; `host` must be pinned (PinnedBuffer) to be async."""
        n = host.nbytes if nbytes is None else int(nbytes)
        self._check_size(n, host)
        check(self._driver.cuMemcpyHtoDAsync(self._mem, host.ctypes.data, n, stream.raw))

    def download(self, host: np.ndarray, stream: Stream, nbytes: Optional[int] = None) -> None:
        """Copy device->host into `host` asynchronously (if pinned); sync before reading it."""
        n = host.nbytes if nbytes is None else int(nbytes)
        self._check_size(n, host)
        check(self._driver.cuMemcpyDtoHAsync(host.ctypes.data, self._mem, n, stream.raw))

    def fill_u8(self, value: int, stream: Stream, nbytes: Optional[int] = None) -> None:
        n = self.nbytes if nbytes is None else int(nbytes)
        check(self._driver.cuMemsetD8Async(self._mem, int(value) & 0xFF, n, stream.raw))

    def _check_size(self, n: int, host: np.ndarray) -> None:
        if n > self.nbytes or n > host.nbytes:
            raise ValueError(f'copy of {n} bytes exceeds device buffer ({self.nbytes}) '
                             f'or host array ({host.nbytes})')
        if not host.flags.c_contiguous:
            raise ValueError('host array must be C-contiguous')

    def close(self) -> None:
        if self._mem is not None:
            self.device.activate()
            check(self._driver.cuMemFree(self._mem))
            self._mem, self.ptr = None, 0

    def __del__(self) -> None:  # best effort; explicit close() is preferred
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


class PinnedBuffer:
    """Page-locked host memory seen as a NumPy array, so uploads/downloads run asynchronously."""

    def __init__(self, shape: Sequence[int], dtype: Any = np.uint8,
                 device: Optional[Device] = None) -> None:
        self.device = device or get_device()
        self._driver = self.device._driver
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dtype.itemsize
        self.device.activate()
        self._ptr = int(check(self._driver.cuMemHostAlloc(max(nbytes, 1), 0)))
        raw = (ctypes.c_ubyte * max(nbytes, 1)).from_address(self._ptr)
        self.array = np.frombuffer(raw, np.uint8, nbytes).view(dtype).reshape(tuple(shape))

    def close(self) -> None:
        if self._ptr:
            self.array = None
            self.device.activate()
            check(self._driver.cuMemFreeHost(self._ptr))
            self._ptr = 0

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001
            pass


__all__ = ['GpuUnavailable', 'CudaError', 'cuda_modules', 'check', 'DeviceInfo', 'Device',
           'get_device', 'gpu_status', 'Stream', 'Event', 'DeviceBuffer', 'PinnedBuffer']

"""NVRTC compilation of gpu/kernel_source.py and typed kernel launches.

Compiles to a cubin for the device's exact architecture (a cubin loads on any driver of the same
CUDA major version, where PTX from a newer NVRTC would not), falling back to PTX only when NVRTC
does not know the architecture. Compiled images are cached in memory per process and on disk
(~/.cache/faster_deployment_ros/nvrtc, or $FDR_NVRTC_CACHE), so a node starts without compiling.

The disk cache directory must be writable by this user alone (core.private_dir; otherwise
KernelModule raises CudaError saying how to fix it): an image planted there would run on the
GPU. Each cache file carries its image's sha256; a file that is truncated, corrupt, of an older
format or that the driver refuses to load is reported (a warning naming it), compiled again and
replaced. A cache directory that cannot be created or written (a read-only home) only costs a
compile per process.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
from pathlib import Path
import threading
from typing import Any, Dict, Optional, Sequence, Tuple

from .cuda import check, cuda_modules, CudaError, Device, get_device, Stream
from .kernel_source import SOURCE
from ..core.atomic_file import atomic_write
from ..core.private_dir import private_dir, UnsafeDirectory, user_cache_dir

_LOG = logging.getLogger('faster_deployment_ros.gpu')

# argument type codes of a kernel signature: pointer, int32, float32, float64
_CTYPES = {'p': ctypes.c_void_p, 'i': ctypes.c_int, 'f': ctypes.c_float, 'd': ctypes.c_double}

_LB = 'pii' + 'ppi' + 'ppi' + 'iiiii'  # LETTERBOX_ARGS
SIGNATURES: Dict[str, str] = {
    'letterbox_hwc_u8': _LB + 'pii',
    'letterbox_chw_f32': _LB + 'pii' + 'i' + 'ffffff',
    'letterbox_chw_f16': _LB + 'pii' + 'i' + 'ffffff',
    'decode_candidates': 'piiiiifipp' + 'p',
    'select_nms': 'piii' + 'ipi' + 'ppp' + 'ifii' + 'ffffffi' + 'ppp' + 'p',
}

COMPILE_OPTIONS = ('--fmad=false', '--std=c++14')

_cache_lock = threading.Lock()
_modules: Dict[Tuple[int, str], 'KernelModule'] = {}


def _cache_dir() -> Path:
    return user_cache_dir('FDR_NVRTC_CACHE', 'nvrtc')


def read_cached_image(path: Path) -> Optional[Tuple[bytes, str]]:
    r"""Return (image, kind) from a kernel cache file; None when there is no whole image.

    The file is `<kind> <sha256 of image>\n<image>`. One that does not match (truncated,
    corrupt, an older format) is reported with a warning naming it; the caller compiles and
    replaces it.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        _LOG.warning('GPU kernel cache file %s cannot be read (%s): compiling the kernels again',
                     path, exc)
        return None
    head, _, image = data.partition(b'\n')
    kind, _, digest = head.partition(b' ')
    if (kind not in (b'cubin', b'ptx') or not image
            or digest.decode(errors='replace') != hashlib.sha256(image).hexdigest()):
        _LOG.warning('GPU kernel cache file %s is not a whole kernel image (truncated, corrupt '
                     'or of an older format): compiling the kernels again and replacing it', path)
        return None
    return image, kind.decode()


def write_cached_image(path: Path, image: bytes, kind: str) -> None:
    """Write a kernel cache file atomically (concurrent nodes may compile at the same time).

    A directory that cannot be written (a read-only home) only costs a compile per process.
    """
    try:
        atomic_write(path, kind.encode() + b' ' + hashlib.sha256(image).hexdigest().encode()
                     + b'\n' + image)
    except OSError:
        pass


def cache_directory() -> Optional[Path]:
    """Return the kernel cache directory, made where missing; None where it cannot be made.

    Raises CudaError when another user can write it (core.private_dir), saying how to fix it.
    """
    try:
        return private_dir(_cache_dir(), 'GPU kernel cache directory')
    except UnsafeDirectory as exc:
        raise CudaError(f'{exc} ($FDR_NVRTC_CACHE chooses another)') from None
    except OSError:
        return None  # a read-only home only costs a compile per process


def _nvrtc_version() -> Tuple[int, int]:
    _, nvrtc = cuda_modules()
    _, major, minor = nvrtc.nvrtcVersion()
    return int(major), int(minor)


def compile_source(source: str, arch: Tuple[int, int], options: Sequence[str] = COMPILE_OPTIONS,
                   name: str = 'fdr_kernels.cu') -> Tuple[bytes, str]:
    """(image, kind) with kind 'cubin' or 'ptx'. Needs NVRTC only, not a GPU."""
    _, nvrtc = cuda_modules()
    major, minor = arch
    attempts = [(f'--gpu-architecture=sm_{major}{minor}', 'cubin'),
                (f'--gpu-architecture=compute_{major}{minor}', 'ptx')]
    last_log = ''
    for arch_opt, kind in attempts:
        prog = check(nvrtc.nvrtcCreateProgram(source.encode(), name.encode(), 0, [], []))
        try:
            opts = [o.encode() for o in (*options, arch_opt)]
            status = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)[0]
            log_size = check(nvrtc.nvrtcGetProgramLogSize(prog))
            log = b' ' * int(log_size)
            check(nvrtc.nvrtcGetProgramLog(prog, log))
            last_log = log.decode(errors='replace').strip('\0 \n')
            if int(status) != 0:
                if ('invalid value for --gpu-architecture' in last_log
                        or 'arch' in last_log.lower()):
                    continue  # NVRTC older than the GPU: try PTX for the virtual architecture
                raise CudaError(f'NVRTC failed to compile {name}:\n{last_log}')
            if kind == 'cubin':
                size = check(nvrtc.nvrtcGetCUBINSize(prog))
                image = b' ' * int(size)
                check(nvrtc.nvrtcGetCUBIN(prog, image))
            else:
                size = check(nvrtc.nvrtcGetPTXSize(prog))
                image = b' ' * int(size)
                check(nvrtc.nvrtcGetPTX(prog, image))
            return image, kind
        finally:
            nvrtc.nvrtcDestroyProgram(prog)
    raise CudaError(f'NVRTC cannot target sm_{major}{minor}:\n{last_log}')


class Kernel:
    """One `extern "C"` kernel with its argument types; `launch` enqueues it on a stream."""

    def __init__(self, module: 'KernelModule', name: str, signature: str) -> None:
        self.name = name
        self._driver = module.device._driver
        self.function = check(self._driver.cuModuleGetFunction(module.handle, name.encode()))
        self._types = tuple(_CTYPES[c] for c in signature)

    def launch(self, grid: Sequence[int], block: Sequence[int], args: Sequence[Any],
               stream: Stream, shared_bytes: int = 0) -> None:
        if len(args) != len(self._types):
            raise TypeError(f'{self.name} takes {len(self._types)} arguments, got {len(args)}')
        gx, gy, gz = (tuple(grid) + (1, 1))[:3]
        bx, by, bz = (tuple(block) + (1, 1))[:3]
        check(self._driver.cuLaunchKernel(self.function, gx, gy, gz, bx, by, bz, int(shared_bytes),
                                          stream.raw, (tuple(args), self._types), 0))

    def set_max_dynamic_shared(self, nbytes: int) -> None:
        attr = self._driver.CUfunction_attribute.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
        check(self._driver.cuFuncSetAttribute(self.function, attr, int(nbytes)))


class KernelModule:
    """The compiled kernel source loaded into a device's context."""

    def __init__(self, device: Device, source: str = SOURCE,
                 signatures: Optional[Dict[str, str]] = None, use_disk_cache: bool = True) -> None:
        self.device = device
        device.activate()
        arch = device.info.compute_capability
        image, self.kind, cached = self._image(source, arch, use_disk_cache)
        try:
            self.handle = check(device._driver.cuModuleLoadData(image))
        except CudaError as exc:
            if cached is None:
                raise
            _LOG.warning('GPU kernel cache file %s does not load (%s): compiling the kernels '
                         'again and replacing it', cached, exc)
            image, self.kind = compile_source(source, arch)
            write_cached_image(cached, image, self.kind)
            self.handle = check(device._driver.cuModuleLoadData(image))
        self.kernels = {name: Kernel(self, name, sig)
                        for name, sig in (signatures or SIGNATURES).items()}

    def __getitem__(self, name: str) -> Kernel:
        return self.kernels[name]

    @staticmethod
    def _image(source: str, arch: Tuple[int, int],
               use_disk_cache: bool) -> Tuple[bytes, str, Optional[Path]]:
        """(image, kind, the cache file it was read from or None if compiled here)."""
        key = hashlib.sha256('\n'.join([source, repr(arch), repr(COMPILE_OPTIONS),
                                        repr(_nvrtc_version())]).encode()).hexdigest()[:24]
        directory = cache_directory() if use_disk_cache else None
        path = directory / f'{key}.img' if directory is not None else None
        if path is not None:
            found = read_cached_image(path)
            if found is not None:
                return found[0], found[1], path
        image, kind = compile_source(source, arch)
        if path is not None:
            write_cached_image(path, image, kind)
        return image, kind, None


def get_module(device: Optional[Device] = None) -> KernelModule:
    """Return the process-wide kernel module for `device` (compiled once)."""
    device = device or get_device()
    key = (device.ordinal, SOURCE)
    with _cache_lock:
        mod = _modules.get(key)
        if mod is None:
            mod = _modules[key] = KernelModule(device)
    return mod


__all__ = ['SIGNATURES', 'COMPILE_OPTIONS', 'compile_source', 'read_cached_image',
           'write_cached_image', 'cache_directory', 'Kernel', 'KernelModule', 'get_module']

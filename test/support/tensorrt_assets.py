"""Assets of the TensorRT tests that run on the stand-ins (support.trt_standins).

The device identity used where no GPU is, the ModelOpt interpreter, and calibration images cut from
the shared video.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from support.shared_data import missing, ROOT

MODELOPT_PYTHON = ROOT / '.venv-modelopt' / 'bin' / 'python'


def device_identity(name: str = 'NVIDIA H200', cc=(9, 0)) -> SimpleNamespace:
    """Describe a device as prepare_engine reads it (name, compute capability: the cache key).

    For the build paths that run without a GPU.
    """
    from faster_deployment_ros.gpu.cuda import DeviceInfo
    return SimpleNamespace(info=DeviceInfo(0, name, tuple(cc), 132, 1 << 37, 13000))


def modelopt_python() -> Path:
    """Find the ModelOpt venv that scripts/test_assets.d/40_modelopt.sh builds (CI has it)."""
    if not MODELOPT_PYTHON.is_file():
        missing(f'{MODELOPT_PYTHON} not found (make test-assets builds it)')
    return MODELOPT_PYTHON


def calibration_frames(video: Path, out: Path, count: int = 6, every: int = 40) -> Path:
    """`count` frames of a real video as JPEGs in `out` (a calibration folder)."""
    import cv2
    out.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(video))
    i = n = 0
    while n < count:
        ok, frame = cap.read()
        if not ok:
            break
        if i % every == 0:
            cv2.imwrite(str(out / f'frame_{i:05d}.jpg'), frame)
            n += 1
        i += 1
    cap.release()
    assert n == count, f'{video} gave {n} of {count} frames'
    return out

"""What every section shares.

Frames, the model (backend factory + adapter), summaries and the progress line.
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from ..frames import read_frames
from ..paths import ROOT as REPO
from ...core.pipeline import FrameResult
from ...core.stats import summarize
from ...models import available_families, create_adapter
from ...runtime import create_worker_backend, PerceptionRuntime, RuntimeConfig

SHARED_REL = Path('shared/data/pedestrians_plaza_1280x720_50fps.avi')
#: the shipped parameter file per family: the node runs with it unless --node-params says else
SHIPPED_PARAMS = {'yolox': 'config/yolox_nano_onnxruntime.yaml',
                  'yolov8': 'config/yolov8n_onnxruntime.yaml',
                  'yolo11': 'config/yolo11n_onnxruntime.yaml',
                  'rtdetr': 'config/rtdetr_onnxruntime.yaml'}


def default_video() -> Optional[Path]:
    for base in (Path.cwd().parent, REPO.parent, Path.cwd()):
        p = base / SHARED_REL
        if p.exists():
            return p
    return None


def load_frames(path: Path, n: int, step: int = 1) -> List[np.ndarray]:
    try:
        frames = read_frames(path, n, step)
    except (OSError, ValueError) as exc:
        raise SystemExit(f'cannot read frames: {exc}') from None
    if not frames:
        raise SystemExit(f'no frames in {path}')
    return frames


def guess_family(model: str, family: str, backend: Any = None) -> str:
    """`family`, or for 'auto' what the model's signature says (else its file name)."""
    if family != 'auto':
        return family
    try:
        from ...models import resolve_family
        return resolve_family('auto', backend.inputs, backend.outputs, backend.metadata)[0]
    except (ImportError, AttributeError, ValueError):
        pass
    name = Path(model).name.lower()
    for key, fam in (('yolox', 'yolox'), ('rtdetr', 'rtdetr'), ('rt-detr', 'rtdetr'),
                     ('yolo11', 'yolo11'), ('yolov8', 'yolov8'), ('yolo', 'yolov8')):
        if key in name and fam in available_families():
            return fam
    raise SystemExit(f'cannot tell the model family of {model}; pass --family '
                     f'({", ".join(available_families())})')


def lat_summary(values_s: Sequence[float]) -> Dict[str, float]:
    return {k: round(v, 3) for k, v in summarize(values_s).items()}


def foreign(r: Dict[str, Any]) -> str:
    f = r.get('foreign_cpu_cores', 0.0)
    return f' [other users: {f:.2f} cores]' if f >= 0.1 else ''


class Progress:
    """One updating line on a terminal, a line every few seconds otherwise."""

    def __init__(self, enabled: bool = True, stream=sys.stderr) -> None:
        self.enabled, self.stream = enabled, stream
        self.tty = enabled and stream.isatty()
        self._last = 0.0

    def update(self, label: str, done: float, total: float, extra: str = '') -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._last < (0.2 if self.tty else 5.0):
            return
        self._last = now
        pct = 100.0 * min(1.0, done / total) if total else 0.0
        bar = '#' * int(pct / 5)
        line = f'[{label}] [{bar:<20}] {pct:3.0f}% {extra}'
        if self.tty:
            self.stream.write('\r' + line[:118].ljust(118))
        else:
            self.stream.write(line + '\n')
        self.stream.flush()

    def done(self, line: str) -> None:
        if self.tty:
            self.stream.write('\r' + ' ' * 118 + '\r')
        print(line, flush=True)
        self._last = 0.0


def scalar(text: str) -> Any:
    low = text.lower()
    if low in ('true', 'false'):
        return low == 'true'
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


class Model:
    """The run's model as a RuntimeConfig: backends, one adapter, runtimes of any shape."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.path, self.backend_name = args.model, args.backend
        self.options: Dict[str, Any] = {}
        if args.providers:
            self.options['providers'] = args.providers
        for kv in args.backend_option or []:
            key, _, val = kv.partition('=')
            self.options[key.strip()] = scalar(val.strip())
        self.config = RuntimeConfig(model_path=args.model, backend=args.backend,
                                    backend_options=dict(self.options), gpu_pipeline=False)
        probe = self.make(1)
        self.family = guess_family(args.model, args.family, probe)
        self.config = self.config.replace(model_family=self.family)
        self.adapter_params = {'conf_threshold': args.conf}
        self.adapter = self.make_adapter(probe)
        self.inputs = [(s.name, s.shape) for s in probe.inputs]
        probe.close()

    def make(self, threads: int, **extra: Any):
        """Return a backend with `threads` (0: the runtime's default) and the run's options."""
        cfg = self.config.replace(backend_options={**self.options, **extra})
        return create_worker_backend(cfg, 0, threads)

    def with_options(self, extra: Dict[str, Any]) -> 'Model':
        """Return this model with backend options `extra` added (same adapter)."""
        other = copy.copy(self)
        other.options = {**self.options, **extra}
        other.config = self.config.replace(backend_options=dict(other.options))
        return other

    def runtime(self, workers: int, threads: int, queue_size: int, full_policy: str,
                on_result: Callable[[FrameResult], None], name: str,
                schedule: str = '') -> PerceptionRuntime:
        """Return a PerceptionRuntime of this model in the given pipeline shape."""
        cfg = self.config.replace(workers=workers, threads=threads, queue_size=queue_size,
                                  full_policy=full_policy, schedule=schedule, name=name)
        return PerceptionRuntime(cfg, self.make_adapter, on_result)

    def make_adapter(self, backend):
        return create_adapter(self.family, backend.inputs, backend.outputs, backend.metadata,
                              **self.adapter_params)

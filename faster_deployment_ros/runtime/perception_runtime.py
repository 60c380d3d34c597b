"""Model + backends + ordered pipeline, built from a `RuntimeConfig`: the node without ROS.

`PerceptionRuntime(config, make_adapter, on_result)` creates one backend per inference worker,
the model adapter (`make_adapter(first_backend)`), chooses the CPU or the GPU path, runs
autotune when asked, and owns the `core.pipeline.Pipeline`. Frames go in with `submit`; every
accepted frame comes out once through `on_result` (a `FrameResult` whose `result` is
`(model result, decoded image or None)`), in submission order per source, one call at a time
(from the pipeline's delivery thread, or the worker that ran it on the idle fast path).
`close` releases everything and never closes a backend while its worker is inside a call: such
a worker is reported and its backend released when (if) the call returns.

With `worker_mode: processes` the workers are processes (`core.process_pipeline`): each builds
its backend from the same config and gets a copy of the adapter (`runtime.workers.
FrameWorkerSpec`) and runs pre-process + infer + post-process of whole frames; this process
decodes, copies frames into shared memory and delivers the results in order. The adapter here
is made from a backend opened once to read the model's signature, then closed; `backends` is
empty; threshold changes to `adapter` reach the processes before their next frame.

A construction that fails half-way releases what it had created before the exception leaves.
The detector and depth nodes, fdr-benchmark, the multi-camera bench and the demo build their
pipelines here and nowhere else.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from .config import RuntimeConfig
from .parameters import ParameterError
from .workers import (adapter_controls, create_worker_backend, FrameWorkerSpec,
                      preprocess_image)
from ..backends import backend_class
from ..backends.base import Backend
from ..core.autotune import autotune, Choice
from ..core.autotune.measurement import available_cores
from ..core.memory import trim_heap
from ..core.pipeline import FrameResult, Pipeline
from ..core.process_pipeline import ProcessPipeline

LOG = logging.getLogger('faster_deployment_ros.runtime')

Log = Callable[[str], None]


def synthetic_frame() -> np.ndarray:
    """Return a 1280x720 frame with structure (not flat grey), so resizing does real work."""
    small = np.random.default_rng(0).integers(0, 256, (90, 160, 3), np.uint8)
    return cv2.resize(small, (1280, 720), interpolation=cv2.INTER_LINEAR)


def close_backend(backend: Backend, warn: Log) -> None:
    try:
        backend.close()
    except Exception as exc:  # noqa: BLE001 - releasing must go on
        warn(f'closing the {backend.name} backend failed: {type(exc).__name__}: {exc}')


def close_when_done(worker: threading.Thread, backend: Backend, warn: Log) -> threading.Thread:
    """Close `backend` once `worker` (stuck in a call on it) has returned, from a thread."""
    def reap() -> None:
        worker.join()
        close_backend(backend, warn)
    reaper = threading.Thread(target=reap, name=f'{worker.name}-release', daemon=True)
    reaper.start()
    return reaper


class PerceptionRuntime:
    """One model served by `config.workers` backends through the ordered pipeline."""

    def __init__(self, config: RuntimeConfig, make_adapter: Callable[[Backend], Any],
                 on_result: Callable[[FrameResult], None], *,
                 decode: Optional[Callable[[Any], np.ndarray]] = None,
                 wants_image: Callable[[], bool] = lambda: False,
                 on_drop: Optional[Callable[[int, Any], None]] = None,
                 log: Log = LOG.info, warn: Log = LOG.warning) -> None:
        self.config = config
        self._make_adapter = make_adapter
        self._decode = decode if decode is not None else (lambda frame: frame)
        self._wants_image = wants_image
        self._log, self._warn = log, warn
        self.backends: List[Backend] = []
        self.adapter: Any = None
        self.pipeline: Optional[Union[Pipeline, ProcessPipeline]] = None
        self.gpu_path = False
        self.autotune_choice: Optional[Choice] = None
        #: workers whose call was still running when close() gave up on them
        self.stuck_workers: List[int] = []
        self.reapers: List[threading.Thread] = []
        try:
            if config.autotune:
                self._autotune()
            self._warn_oversubscribed()  # before loading workers x models
            config = self.config  # autotune may have chosen the shape
            if config.worker_mode == 'processes':
                self._start_processes(on_result, on_drop)
                return
            for i in range(config.workers):
                self.backends.append(create_worker_backend(config, i))
            self.adapter = make_adapter(self.backends[0])
            preprocess, infer, postprocess = self._stages()
            self.pipeline = Pipeline(
                preprocess=preprocess, infer=infer, postprocess=postprocess,
                on_result=on_result, queue_size=config.queue_size,
                full_policy=config.full_policy, name=config.name,
                schedule=config.pipeline_schedule(),
                on_drop=on_drop)
        except BaseException:  # noqa: B902 - release what was built, then re-raise
            self.close()
            raise

    # ---- frames ---------------------------------------------------------------------------
    def submit(self, item: Any, context: Any = None, source: Any = None,
               timeout: Optional[float] = None) -> bool:
        """Queue a frame (`source`: its camera); False when closed or (block) timed out."""
        pipeline = self.pipeline
        return pipeline is not None and pipeline.submit(item, context=context, source=source,
                                                        timeout=timeout)

    def flush(self, timeout: Optional[float] = None) -> bool:
        """Wait until every accepted frame was delivered or dropped; False on timeout."""
        return self.pipeline is None or self.pipeline.flush(timeout)

    def stats(self) -> dict:
        """Return the pipeline's counters and stage latencies (core.pipeline.Pipeline.stats)."""
        return self.pipeline.stats() if self.pipeline is not None else {}

    @property
    def fault(self) -> Optional[str]:
        return self.pipeline.fault if self.pipeline is not None else None

    def close(self, timeout: float = 2.0) -> List[int]:
        """Stop the pipeline (waiting frames dropped and counted), release the backends.

        Returns the workers still inside a call after `timeout`: their backends are left to
        them and closed when the call returns. Safe to call again. Worker processes still
        running a frame after `timeout` are terminated (none is left running).
        """
        stuck: List[int] = []
        pipeline, self.pipeline = self.pipeline, None
        alive = {}
        if isinstance(pipeline, ProcessPipeline):
            pipeline.close(timeout=timeout)
            pipeline = None
        if pipeline is not None:
            pipeline.close(timeout=timeout)  # a hung model call must not hang the caller
            alive = {t.name: t for t in pipeline.threads if t.is_alive()}
        for i, backend in enumerate(self.backends):
            worker = alive.get(f'{self.config.name}-infer{i}')
            if worker is not None:
                stuck.append(i)
                self.reapers.append(close_when_done(worker, backend, self._warn))
            else:
                close_backend(backend, self._warn)
        if stuck:
            self._warn(f'inference worker(s) {", ".join(map(str, stuck))} still inside a model '
                       f'call after {timeout:g} s: left running, their backends are released '
                       'when the call returns')
        self.backends = []
        self.adapter = None
        self.stuck_workers = stuck
        trim_heap()  # give the models' memory back (see core/memory.trim_heap)
        return stuck

    # ---- building -------------------------------------------------------------------------
    def _start_processes(self, on_result: Callable[[FrameResult], None],
                         on_drop: Optional[Callable[[int, Any], None]]) -> None:
        """worker_mode 'processes': the adapter from the model's signature, then the processes."""
        cfg = self.config
        cls = backend_class(cfg.backend)
        if cls.pins_workers:
            raise ParameterError(f'worker_mode=processes: the {cfg.backend} backend pins each '
                                 'worker to a device core from inside this process; use '
                                 'worker_mode: threads')
        if cfg.gpu_pipeline and cls.supports_gpu_pipeline:
            raise ParameterError(f'worker_mode=processes: the {cfg.backend} backend runs '
                                 'pre/post-processing on the GPU (gpu_pipeline: true), one CUDA '
                                 'stream per worker in this process; use worker_mode: threads, '
                                 'or gpu_pipeline: false')
        probe = create_worker_backend(cfg, 0)  # the model's signature, for the adapter
        try:
            self.adapter = self._make_adapter(probe)
        finally:
            close_backend(probe, self._warn)
        adapter = self.adapter
        self.pipeline = ProcessPipeline(
            FrameWorkerSpec(cfg, adapter), cfg.workers, on_result,
            queue_size=cfg.queue_size, full_policy=cfg.full_policy, name=cfg.name,
            prepare=self._prepare_frame, postprocess=_pass_through,
            control=lambda: adapter_controls(adapter), on_drop=on_drop,
            schedule=cfg.pipeline_schedule())
        self._log(f'{cfg.workers} worker processes (pids '
                  f'{", ".join(str(p) for p in self.pipeline.pids())}): pre-process, inference '
                  'and post-process in each')

    def _prepare_frame(self, item: Any) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """worker_mode 'processes', in this process: decode (the worker does the rest)."""
        image = self._decode(item)
        return image, (image if self._wants_image() else None)

    def _stages(self) -> Tuple[Any, List[Any], Any]:
        """(preprocess, one infer per worker, postprocess): the GPU path where offered."""
        cfg = self.config
        task = getattr(self.adapter, 'task', '')
        gpu_backends = all(b.supports_gpu_pipeline for b in self.backends)
        if cfg.gpu_pipeline and gpu_backends and task != 'detection':
            self._log(f'pre/post-processing on the CPU: the GPU path decodes detections only '
                      f'(this is a {task} model)')
        if cfg.gpu_pipeline and gpu_backends and task == 'detection':
            from ..gpu.pipeline import specs_for_adapter
            try:
                pre, dec = specs_for_adapter(self.adapter)
            except ValueError as exc:
                self._log(f'pre/post-processing on the CPU: {exc}')
            else:
                for backend in self.backends:
                    backend.enable_gpu_pipeline(pre, dec)
                self.gpu_path = True
                self._log('letterbox, decode and NMS on the GPU')
                names = self.adapter.class_names
                return (self._decode_only,
                        [_detect_with(b, names) for b in self.backends], _pass_through)
        return self._preprocess, [b.infer for b in self.backends], self._postprocess

    def _decode_only(self, item: Any) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        image = self._decode(item)
        return image, (image if self._wants_image() else None)

    def _preprocess(self, item: Any) -> Tuple[Any, Any]:
        image = self._decode(item)
        tensors, meta = preprocess_image(self.adapter, image)
        return tensors, (meta, image if self._wants_image() else None)

    def _postprocess(self, outputs: Sequence[np.ndarray], meta: Any) -> Tuple[Any, Any]:
        adapter_meta, image = meta
        return self.adapter.postprocess(outputs, adapter_meta), image

    def _autotune(self) -> None:
        """Measure the model, run the short list at the camera rate, set the pipeline shape.

        Measured on `autotune_image` (else a synthetic 1280x720 frame); each short-listed
        configuration runs for 2 s; sets workers, threads and queue_size of the config.
        """
        cfg = self.config
        if cfg.autotune_image:
            frame = cv2.imread(cfg.autotune_image, cv2.IMREAD_COLOR)
            if frame is None:
                raise ParameterError(f'autotune_image {cfg.autotune_image!r} cannot be read: '
                                     'give a readable image file or leave it empty')
        else:
            frame = synthetic_frame()
        copy = np.empty_like(frame)  # receiving a frame costs about one copy of it
        t0 = time.perf_counter()
        np.copyto(copy, frame)
        overhead_ms = (time.perf_counter() - t0) * 1000.0
        # A GPU backend (uses_threads False) has no thread knob: tune workers (its execution
        # contexts) and the queue only; threads 0 costs no CPU core in the cost model.
        uses_threads = backend_class(cfg.backend).uses_threads
        choice = autotune(lambda threads: create_worker_backend(cfg, 0, threads),
                          self._make_adapter, [frame], cfg.camera_rate * cfg.sources,
                          cfg.latency_budget_ms, threads=None if uses_threads else [0],
                          iters=10, overhead_ms=overhead_ms, time_limit_s=30.0, validate_s=2.0,
                          validate_top=2, log=self._log)
        self.config = cfg.with_shape(choice.workers, choice.threads, choice.queue_size)
        self.autotune_choice = choice
        (self._log if choice.feasible else self._warn)(f'autotune: {choice.reason}')

    def _warn_oversubscribed(self) -> None:
        """More inference threads than cores only adds contention: say so."""
        cfg = self.config
        if not backend_class(cfg.backend).uses_threads:
            return  # inference on a GPU: workers are contexts, not CPU threads
        cores = available_cores()
        per_worker = cfg.threads or cores  # 0: the runtime takes one thread per core
        if cfg.workers * per_worker > cores:
            self._warn(
                f'workers x threads = {cfg.workers} x {cfg.threads or f"auto ({cores})"} '
                f'= {cfg.workers * per_worker} inference threads on {cores} cores: they will '
                'contend for the CPU and raise latency; use workers x threads <= cores '
                '(or autotune: true)')


def _detect_with(backend: Backend, class_names: Any) -> Callable[[np.ndarray], Any]:
    def detect(image: np.ndarray) -> Any:
        return backend.detect_image(image, class_names=class_names)
    return detect


def _pass_through(result: Any, image: Any) -> Tuple[Any, Any]:
    return result, image

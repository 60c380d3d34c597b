"""Lifecycle skeleton shared by the detector and depth nodes.

configure loads the model (one backend per inference worker) and builds the pipeline; activate
subscribes; deactivate unsubscribes and lets frames in flight finish; cleanup releases the
backends. A failure in configure leaves the node unconfigured with the reason logged. Frames
that fail anywhere in the pipeline (bad encoding, truncated data, a backend that throws) are
logged and skipped; results are published from the pipeline's delivery thread, strictly in
arrival order, with the source frame's header.

With `autotune: true`, configure first measures the model (see core/autotune/) and replaces
workers, threads and queue_size with the configuration that sustains `camera_rate` at the lowest
latency within `latency_budget_ms`; the choice and its reason are logged, written back to those
parameters and reported on /diagnostics. Hot path: frames are zero-copy views of the received
message, glibc keeps multi-MB blocks for reuse, and under drop_oldest the pipeline starts
pre-processing just in time so the frame inferred is the newest.
"""
from __future__ import annotations

import faulthandler
from functools import partial
import os
import signal
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import cv2
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import (ExternalShutdownException, MultiThreadedExecutor,
                             SingleThreadedExecutor)
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CompressedImage, Image

from . import params
from .bond import Bond, close_bond, open_bond
from .camera_inputs import camera_statuses, CameraInput, CameraStats, resolve_inputs
from .health import (attach_log_handler, detach_log_handler, diagnostic_status,
                     DiagnosticsPublisher, guard_event_handlers, message_lost_event_callbacks)
from ..backends import available_backends, backend_class, create_backend
from ..core.autotune import autotune, Choice
from ..core.autotune.measurement import available_cores
from ..core.feeder import Feeder
from ..core.health import ERROR, Health, HealthStatus, STALE
from ..core.image_codec import (check_image_size, compressed_image_size, decode_compressed,
                                ImageCodecError, msg_to_numpy, to_bgr8)
from ..core.memory import limit_malloc_arenas, reuse_large_buffers, trim_heap
from ..core.pipeline import FrameResult, Pipeline
from ..core.stats import RollingStats
from ..models import adapter_factory


#: A frame's hops, in order: stamp -> callback (transport, incl. deserialisation, when the stamp
#: is on this machine's clock), the callback until the frame is queued, the input queue, the
#: pipeline's pre / infer / post, the hand-over to the delivery thread, building the output
#: message(s), publishing them; `node` is queued -> published (pipeline total + build + publish).
HOPS = ('transport', 'callback', 'queue', 'pre', 'infer', 'post', 'handover', 'build', 'publish',
        'node')

_now = time.perf_counter


class PerceptionNode(LifecycleNode):
    """Camera frames in, one result per frame out, through the ordered pipeline."""

    #: extra parameters of the subclass: name -> (default, description)
    TASK_PARAMETERS: dict = {}

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, automatically_declare_parameters_from_overrides=True, **kwargs)
        params.declare(self, params.COMMON_PARAMETERS)
        params.declare(self, self.TASK_PARAMETERS)
        known = list(params.COMMON_PARAMETERS) + list(self.TASK_PARAMETERS)
        unknown = params.unknown_parameters(self, known, available_backends())
        if unknown:
            self.get_logger().warning('ignoring unknown parameters (typos?): '
                                      + ', '.join(unknown))
        self.config: Optional[params.CommonConfig] = None
        self.backends: List[Any] = []
        self.adapter: Any = None
        self.pipeline: Optional[Pipeline] = None
        self._sub = None
        # Several cameras (`inputs`): one subscription, source and output set per camera.
        self.cameras: List[CameraInput] = []
        self.camera_stats: List[CameraStats] = []
        self._camera_subs: List[Any] = []
        self._camera_feeders: Dict[int, Feeder] = {}
        self._active = threading.Event()
        self._errors = 0
        self._last_error_log = 0.0
        self._published = 0
        self._build_s = 0.0
        self.autotune_choice: Optional[Choice] = None
        self._input_age = RollingStats(1000)
        # Per-hop latency of delivered frames (see HOPS): where a frame's time goes.
        # Over the last 10 s, so /diagnostics shows the current load, not an earlier one.
        self.hops = {name: RollingStats(1000, max_age_s=10.0) for name in HOPS}
        # Health (see core/health.py): every frame received is published, dropped or failed;
        # /diagnostics reports it in every lifecycle state, from a timer that lives with the node.
        self.health = Health(node_name, params.health_limits(self))
        self._configure_error = ''
        self._feeder: Optional[Feeder] = None
        self._internal_set = False  # configure writing back autotune's choice
        self._bond: Optional[Bond] = None
        self._log_handler = attach_log_handler(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diagnostics = DiagnosticsPublisher(
            self, float(params.value(self, 'diagnostics_period')), self.diagnostic_statuses)

    # ---- subclass hooks -------------------------------------------------------------------
    def make_adapter(self, backend) -> Any:
        raise NotImplementedError

    def create_outputs(self, qos: QoSProfile) -> None:
        raise NotImplementedError

    def publish_result(self, result: Any, header, image: Optional[np.ndarray],
                       camera: int = 0) -> None:
        """Publish one frame's result on camera `camera`'s outputs (0 without `inputs`)."""
        raise NotImplementedError

    def output_topics(self, name: str) -> List[str]:
        """Output `name`'s topic per camera, in camera order.

        [name] for the single `image` input, else each camera's own (/front/image_raw ->
        /front/<name>).
        """
        return [c.output(name) for c in self.cameras] or [name]

    def stage_functions(self) -> Tuple[Any, List[Any], Any]:
        """(preprocess, one infer per worker, postprocess) for the pipeline.

        The default runs the adapter's pre/post-processing on the CPU around each backend's
        `infer`.
        """
        return self._preprocess, [b.infer for b in self.backends], self._postprocess

    def wants_image(self) -> bool:
        """Whether postprocess needs the decoded source image (e.g. for a debug overlay)."""
        return False

    # ---- lifecycle ------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.autotune_choice = None
        try:
            self.config = cfg = params.read_common(self)
            self.read_task_parameters()
            self._resolve_cameras(cfg)
            if cfg.autotune:
                self._autotune(cfg)
            self._warn_oversubscribed(cfg)  # before loading workers x models
            self.backends = [self._create_backend(cfg, i) for i in range(cfg.workers)]
            self.adapter = self.make_adapter(self.backends[0])
            schedule = 'just_in_time' if cfg.full_policy == 'drop_oldest' else 'eager'
            preprocess, infer, postprocess = self.stage_functions()
            self.pipeline = Pipeline(
                preprocess=preprocess, infer=infer, postprocess=postprocess,
                on_result=self._deliver,
                queue_size=cfg.queue_size, full_policy=cfg.full_policy, name=self.get_name(),
                schedule=schedule, on_drop=self._on_drop)
            self.create_outputs(QoSProfile(depth=max(cfg.qos_depth, 10)))
        except Exception as exc:  # noqa: BLE001 - any failure must leave the node unconfigured
            self._configure_error = f'{type(exc).__name__}: {exc}' if not isinstance(
                exc, params.ParameterError) else str(exc)
            self.get_logger().error(f'configure failed: {exc}')
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._configure_error = ''
        self.get_logger().info(
            f'configured: {type(self.adapter).__name__} on {cfg.backend} x{cfg.workers} '
            f'({cfg.model_path}), queue {cfg.queue_size} {cfg.full_policy}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self.config
        reliability = (ReliabilityPolicy.BEST_EFFORT if cfg.qos_reliability == 'best_effort'
                       else ReliabilityPolicy.RELIABLE)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=cfg.qos_depth,
                         reliability=reliability)
        msg_type = CompressedImage if cfg.input_type == 'compressed' else Image
        topic = 'image/compressed' if cfg.input_type == 'compressed' else 'image'
        if cfg.full_policy == 'block':  # the callback hands frames over, never waits
            pipeline = self.pipeline
            self._feeder = Feeder(lambda msg, header: pipeline.submit(msg, context=header),
                                  self._backlog(cfg), lambda header: self.health.dropped(),
                                  self.get_name())
        self.health.restart()
        self._active.set()
        # Nav2's lifecycle_manager watches active nodes through a bond (ros/bond.py)
        self._bond = open_bond(self, float(params.value(self, 'bond_heartbeat_period')),
                               self._bond)
        if self.cameras:
            self._subscribe_cameras(cfg, qos)
            return super().on_activate(state)
        self._sub = guard_event_handlers(self.create_subscription(
            msg_type, topic, self._on_image, qos,
            callback_group=MutuallyExclusiveCallbackGroup(),
            event_callbacks=message_lost_event_callbacks(self.health.lost)))
        self.get_logger().info(f'active: {self.resolve_topic_name(topic)} -> results')
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active.clear()
        if self._bond is not None:
            self._bond.break_bond()
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        self._unsubscribe_cameras()
        if self._feeder is not None:
            self._feeder.close()
            self._feeder = None
        if self.pipeline is not None:
            self.pipeline.flush(timeout=2.0)
        self.get_logger().info('inactive')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info('cleaned up')
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active.clear()
        if self._sub is not None:
            self.destroy_subscription(self._sub)
            self._sub = None
        self._unsubscribe_cameras()
        if self._feeder is not None:
            self._feeder.close()
            self._feeder = None
        self._release()
        return super().on_shutdown(state)

    def read_task_parameters(self) -> None:
        """Return subclasses read and validate their own parameters here (raise ParameterError)."""

    #: task parameters a configured node applies to the next frame (see apply_parameter)
    RUNTIME_TASK_PARAMETERS: Tuple[str, ...] = ()

    def validate_parameter(self, name: str, value: Any) -> None:
        """Raise ParameterError when a task parameter's value is unacceptable.

        The rules are the ones configure applies. Subclasses extend it.
        """

    def apply_parameter(self, name: str, value: Any) -> None:
        """Apply a RUNTIME_TASK_PARAMETERS change of a configured node to the next frame."""

    def destroy_node(self) -> None:
        close_bond(self._bond)
        self._bond = None
        self._diagnostics.destroy()
        detach_log_handler(self._log_handler)
        super().destroy_node()

    # ---- runtime parameter changes ------------------------------------------------------
    def _on_set_parameters(self, changes: List[Parameter]) -> SetParametersResult:
        """Validate every value with configure's rules; apply the runtime ones to the next frame.

        Reject structural ones while configured ("needs reconfigure"), since accepting a value the
        running pipeline ignores would make get_parameters lie.
        """
        if self._internal_set:
            return SetParametersResult(successful=True)
        state = self._state_machine.current_state[1]
        configured = state not in ('unconfigured', 'finalized')
        runtime = set(params.RUNTIME_PARAMETERS) | set(self.RUNTIME_TASK_PARAMETERS)
        try:
            for p in changes:
                params.validate(p.name, p.value)
                if p.name == 'backend' and p.value not in available_backends():
                    raise params.ParameterError(f'backend={p.value!r}: choose one of '
                                                f'{", ".join(available_backends())}')
                self.validate_parameter(p.name, p.value)
                if p.name in params.STARTUP_PARAMETERS and p.name != 'autostart':
                    raise params.ParameterError(f'{p.name} is read when the node starts: restart '
                                                'it')
                if configured and p.name not in runtime and (
                        p.name in params.COMMON_PARAMETERS or p.name in self.TASK_PARAMETERS
                        or '.' in p.name) and p.name != 'autostart':
                    raise params.ParameterError(
                        f'needs reconfigure: {p.name} (deactivate, cleanup, set it, configure)')
        except params.ParameterError as exc:
            self.get_logger().warning(f'parameter change rejected: {exc}')
            return SetParametersResult(successful=False, reason=str(exc))
        if configured:
            for p in changes:
                if p.name in runtime:
                    self._apply_runtime(p.name, p.value)
        return SetParametersResult(successful=True)

    def _apply_runtime(self, name: str, value: Any) -> None:
        limits = self.health.limits
        if name == 'max_input_pixels' and self.config is not None:
            self.config.max_input_pixels = int(value)
        elif name == 'bit_depth' and self.config is not None:
            self.config.bit_depth = int(value)
        elif name == 'diagnostics_window':
            limits.window_s = float(value)
        elif name == 'diagnostics_stale_after':
            limits.stale_s = float(value)
        elif name == 'diagnostics_max_latency_ms':
            limits.max_latency_ms = float(value)
        else:
            self.apply_parameter(name, value)
        self.get_logger().info(f'{name} = {value!r} (applies from the next frame)')

    # ---- internals -------------------------------------------------------------------------
    def _autotune(self, cfg: params.CommonConfig) -> None:
        """Measure the model, run the short list at the camera rate, set the worker parameters.

        Measured on a representative frame; each short-listed configuration runs for 2 s; sets
        workers/threads/queue_size.
        """
        import cv2

        if cfg.autotune_image:
            frame = cv2.imread(cfg.autotune_image, cv2.IMREAD_COLOR)
            if frame is None:
                raise params.ParameterError(
                    f'autotune_image {cfg.autotune_image!r} cannot be read')
        else:  # structure rather than flat grey, so resizing does real work
            frame = cv2.resize(np.random.default_rng(0).integers(0, 256, (90, 160, 3), np.uint8),
                               (1280, 720), interpolation=cv2.INTER_LINEAR)
        copy = np.empty_like(frame)  # receiving a frame costs about one copy of it
        t0 = time.perf_counter()
        np.copyto(copy, frame)
        overhead_ms = (time.perf_counter() - t0) * 1000.0

        def make(threads: int):
            return self._create_backend(cfg, 0, threads)

        log = self.get_logger().info
        # A GPU backend (uses_threads False) has no thread knob: tune workers (its execution
        # contexts) and the queue only; threads 0 costs no CPU core in the cost model.
        uses_threads = getattr(backend_class(cfg.backend), 'uses_threads', True)
        # camera_rate is per camera: several cameras (`inputs`) share the model
        rate = cfg.camera_rate * max(1, len(self.cameras))
        choice = autotune(make, self.make_adapter, [frame], rate,
                          cfg.latency_budget_ms, threads=None if uses_threads else [0],
                          iters=10, overhead_ms=overhead_ms,
                          time_limit_s=30.0, validate_s=2.0, validate_top=2, log=log)
        cfg.workers, cfg.threads = choice.workers, choice.threads
        cfg.queue_size = choice.queue_size
        self._internal_set = True  # structural parameters: only configure itself sets them
        try:
            self.set_parameters([Parameter(k, value=v)
                                 for k, v in choice.params().items()])
        finally:
            self._internal_set = False
        self.autotune_choice = choice
        (log if choice.feasible else self.get_logger().warning)(f'autotune: {choice.reason}')

    def _create_backend(self, cfg: params.CommonConfig, index: int, threads: Optional[int] = None):
        options = dict(cfg.backend_options)
        threads = cfg.threads if threads is None else threads
        if threads:
            options.setdefault('threads', threads)
        if backend_class(cfg.backend).pins_workers:
            options.setdefault('worker_index', index)
            options.setdefault('workers', cfg.workers)
        if getattr(backend_class(cfg.backend), 'takes_adapter_factory', False):
            options.setdefault('adapter_factory', adapter_factory(cfg.model_family))
        return create_backend(cfg.backend, cfg.model_path, **options)

    def _release(self) -> None:
        close_bond(self._bond)
        self._bond = None
        if self._feeder is not None:
            self._feeder.close()
            self._feeder = None
        if self.pipeline is not None:
            self.pipeline.close(timeout=2.0)  # a hung model call must not hang the node
            self.pipeline = None
        for backend in self.backends:
            try:
                backend.close()
            except Exception as exc:  # noqa: BLE001 - releasing must go on
                self.get_logger().warning(f'closing backend: {exc}')
        self.backends = []
        self.adapter = None
        self.destroy_outputs()
        trim_heap()  # give the models' memory back (see core/memory.trim_heap)

    @staticmethod
    def _backlog(cfg: params.CommonConfig) -> int:
        """Frames `block` holds in front of a full input queue.

        What the subscription's history held while the callback waited before, plus a queue's
        worth, so a burst that arrives before the hand-over thread runs is not taken for
        back-pressure.
        """
        return cfg.qos_depth + cfg.queue_size

    def _warn_oversubscribed(self, cfg: params.CommonConfig) -> None:
        """More inference threads than cores only adds contention.

        Say so (autotune never chooses such a configuration).
        """
        if not getattr(backend_class(cfg.backend), 'uses_threads', True):
            return  # inference on a GPU: workers are contexts, not CPU threads
        cores = available_cores()
        per_worker = cfg.threads or cores  # 0: the runtime takes one thread per core
        if cfg.workers * per_worker > cores:
            self.get_logger().warning(
                f'workers x threads = {cfg.workers} x {cfg.threads or f"auto ({cores})"} '
                f'= {cfg.workers * per_worker} inference threads on {cores} cores: they will '
                'contend for the CPU and raise latency; use workers x threads <= cores '
                '(or autotune: true)')

    def destroy_outputs(self) -> None:
        """Return subclasses destroy their publishers here."""

    def _resolve_cameras(self, cfg: params.CommonConfig) -> None:
        """Return `inputs` -> cameras; names that ROS would refuse fail configure, not activate."""
        self.cameras = resolve_inputs(cfg.inputs, cfg.input_type) or []
        for cam in self.cameras:
            for topic in (cam.topic, cam.output('x')):
                try:
                    self.resolve_topic_name(topic)
                except Exception as exc:  # noqa: BLE001 - rclpy raises several kinds
                    raise params.ParameterError(f'inputs: {topic!r} is not a valid topic name '
                                                f'({exc})') from exc
        # a health window per camera, sharing the node's limits (runtime changes apply to all)
        self.camera_stats = [CameraStats(Health(cam.name, self.health.limits))
                             for cam in self.cameras]

    def _subscribe_cameras(self, cfg: params.CommonConfig, qos: QoSProfile) -> None:
        """One subscription per camera.

        Under `block` one feeder per camera, so a camera whose queue is full holds back only
        itself.
        """
        pipeline = self.pipeline
        for cam in self.cameras:
            stats = self.camera_stats[cam.index]
            stats.health.restart()
            if cfg.full_policy == 'block':
                self._camera_feeders[cam.index] = Feeder(
                    partial(_submit_from, pipeline, cam.index), self._backlog(cfg),
                    partial(_dropped_before_queue, self.health, stats),
                    f'{self.get_name()}-{cam.index}')
            self._camera_subs.append(guard_event_handlers(self.create_subscription(
                CompressedImage if cam.compressed else Image, cam.topic,
                partial(self._on_image, source=cam.index), qos,
                callback_group=MutuallyExclusiveCallbackGroup(),
                event_callbacks=message_lost_event_callbacks(
                    partial(_lost, self.health, stats)))))
        self.get_logger().info('active: ' + ', '.join(
            f'{self.resolve_topic_name(c.topic)} -> '
            f'{self.resolve_topic_name(c.output("x"))[:-1]}*'
            for c in self.cameras))

    def _unsubscribe_cameras(self) -> None:
        for sub in self._camera_subs:
            self.destroy_subscription(sub)
        self._camera_subs = []
        for feeder in self._camera_feeders.values():
            feeder.close()
        self._camera_feeders = {}

    def camera_diagnostics(self) -> List[DiagnosticStatus]:
        """Return one status per camera (none without `inputs`): its health and latency."""
        if not self.cameras or self.pipeline is None:
            return []
        return camera_statuses(self.get_name(), self.cameras, self.camera_stats,
                               self.pipeline.stats().get('sources', {}), self._active.is_set(),
                               self.config.backend if self.config else '')

    def _on_image(self, msg, source: Any = None) -> None:
        if self._active.is_set() and self.pipeline is not None:
            t0 = _now()
            # How old the frame is on arrival (stamp to here: transport and executor), when the
            # stamp is on this machine's clock; a growing value means frames queue before us.
            stamp = msg.header.stamp
            age = time.time() - (stamp.sec + 1e-9 * stamp.nanosec)
            if 0.0 <= age < 10.0:
                self._input_age.add(age)
                self.hops['transport'].add(age)
            # stamp gaps only make sense within one camera's series
            self.health.received(stamp.sec + 1e-9 * stamp.nanosec if source is None else None)
            if source is not None:
                self.camera_stats[source].health.received(stamp.sec + 1e-9 * stamp.nanosec)
            feeder = self._feeder if source is None else self._camera_feeders.get(source)
            if feeder is not None:  # block: handed to the feeder thread, never waits here
                feeder.put(msg, msg.header)
            elif not self.pipeline.submit(msg, context=msg.header, source=source):
                self.health.dropped()  # closing
            self.hops['callback'].add(_now() - t0)

    def _decode(self, msg) -> np.ndarray:
        limit = self.config.max_input_pixels if self.config is not None else 0
        if isinstance(msg, CompressedImage):
            kind, w, h = compressed_image_size(msg.data)
            check_image_size(w, h, limit, f'{kind} image')
            array, encoding = decode_compressed(msg.format, msg.data)
        else:
            check_image_size(msg.width, msg.height, limit, f'{msg.encoding!r} image')
            array, encoding = msg_to_numpy(msg), msg.encoding
        return to_bgr8(array, encoding, self.config.bit_depth if self.config else 16)

    def _preprocess(self, msg) -> Tuple[Any, Any]:
        image = self._decode(msg)
        try:
            tensors, meta = self.adapter.preprocess(image)
        except (ArithmeticError, cv2.error) as exc:  # e.g. a 1x2000 frame scales to 0 rows
            size = getattr(self.adapter, 'input_size', None)
            raise ImageCodecError(
                f'{image.shape[1]}x{image.shape[0]} frame is too small or too elongated for the '
                f'model input{f" {size[1]}x{size[0]}" if size else ""}: '
                f'{str(exc).strip().splitlines()[-1]}') from exc
        return tensors, (meta, image if self.wants_image() else None)

    def _postprocess(self, outputs, meta) -> Tuple[Any, Optional[np.ndarray]]:
        adapter_meta, image = meta
        return self.adapter.postprocess(outputs, adapter_meta), image

    def _on_drop(self, seq: int, header) -> None:
        self.health.dropped()

    def _deliver(self, fr: FrameResult) -> None:
        if fr.error is not None:
            self._errors += 1
            self.health.failed(f'{type(fr.error).__name__}: {fr.error}')
            if fr.source is not None:
                self.camera_stats[fr.source].health.failed(
                    f'{type(fr.error).__name__}: {fr.error}')
            now = time.monotonic()
            if now - self._last_error_log > 1.0:  # throttled: one bad stream must not flood logs
                self._last_error_log = now
                kind = 'bad frame' if isinstance(fr.error, ImageCodecError) else 'frame failed'
                self.get_logger().error(
                    f'{kind} (stamp {fr.context.stamp.sec}.{fr.context.stamp.nanosec:09d}), '
                    f'dropped: {type(fr.error).__name__}: {fr.error} [{self._errors} so far]')
            return
        if not self._active.is_set() or not self.context.ok():
            self.health.dropped()  # finished after deactivate / shutdown: not published
            return
        result, image = fr.result
        t0 = _now()
        self._build_s = 0.0
        try:
            self.publish_result(result, fr.context, image, fr.source or 0)
        except Exception as exc:  # noqa: BLE001 - e.g. the context shut down under us
            if self.context.ok():
                self.health.failed(f'publishing: {type(exc).__name__}: {exc}')
                raise
            self.health.dropped()
            return
        self._published += 1
        self.health.published(fr.timings.get('total', 0.0))
        if fr.source is not None:
            self.camera_stats[fr.source].add(fr.timings['total'], t0)
        t = fr.timings
        out_s = _now() - t0
        hops = self.hops
        for k in ('queue', 'pre', 'infer', 'post'):
            hops[k].add(t.get(k, 0.0))
        hops['handover'].add(max(0.0, t['total'] - t['queue'] - t['pre'] - t['infer']
                                 - t['post']))
        hops['build'].add(self._build_s)
        hops['publish'].add(out_s - self._build_s)
        hops['node'].add(t['total'] + out_s)

    def timed_build(self, build, *args):
        """Call `build(*args)` (output message construction) and count it in the `build` hop.

        What publish_result spends outside such calls counts as `publish`.
        """
        t0 = _now()
        msg = build(*args)
        self._build_s += _now() - t0
        return msg

    def latency_budget(self) -> dict:
        """Hop -> {'p50', 'p99', 'mean'} in ms over the last delivered frames (HOPS order)."""
        out = {}
        for name in HOPS:
            s = self.hops[name].summary()
            if s['count']:
                out[name] = {q: s[q] for q in ('p50', 'p99', 'mean')}
        return out

    def diagnostic_statuses(self) -> List[DiagnosticStatus]:
        """Return what /diagnostics says about this node, in every lifecycle state.

        In `active` the level and message come from what happened to the recent frames
        (core/health.py); otherwise the state itself, and after a failed configure its reason
        (ERROR).
        """
        state = self._state_machine.current_state[1]
        name = f'{self.get_name()}: pipeline'
        hardware = self.config.backend if self.config else str(params.value(self, 'backend'))
        age_s = self._input_age.summary()['p50'] / 1000.0 if len(self._input_age) else 0.0
        health = self.health.status(extra_latency_s=age_s)
        if not self._active.is_set():
            if state == 'unconfigured' and self._configure_error:
                level, message = ERROR, f'unconfigured: {self._configure_error}'
            elif state == 'unconfigured':
                level, message = STALE, 'unconfigured (no model loaded)'
            elif state == 'inactive':
                level, message = STALE, 'inactive (configured, not subscribed)'
            else:
                level, message = STALE, state
            health = HealthStatus(level, message, health.values)
        elif self.pipeline is not None and self.pipeline.fault:
            health = HealthStatus(
                ERROR, f'pipeline stopped: {self.pipeline.fault} (reconfigure the node)',
                health.values)
        extra = [(v.key, v.value) for v in self._pipeline_values()]
        return [diagnostic_status(health, name, hardware, extra)] + self.camera_diagnostics()

    def _pipeline_values(self) -> List[KeyValue]:
        if self.pipeline is None:
            return []
        stats = self.pipeline.stats()
        values = [KeyValue(key=f'pipeline_{k}', value=str(stats[k]))
                  for k in ('frames_in', 'frames_out', 'dropped', 'failed', 'in_flight', 'queued')
                  if k in stats]
        if self.autotune_choice is not None:
            values.append(KeyValue(key='autotune', value=self.autotune_choice.reason))
        if len(self._input_age):
            age = self._input_age.summary()
            values += [KeyValue(key=f'input_age_{q}_ms', value=f'{age[q]:.2f}')
                       for q in ('p50', 'p99')]
        for stage, s in stats.get('stages', {}).items():
            for q in ('p50', 'p99'):
                if q in s:
                    values.append(KeyValue(key=f'{stage}_{q}_ms', value=f'{s[q]:.2f}'))
        for hop, s in self.latency_budget().items():
            values += [KeyValue(key=f'hop_{hop}_{q}_ms', value=f'{s[q]:.3f}')
                       for q in ('p50', 'p99', 'mean')]
        return values


def _submit_from(pipeline: Pipeline, source: int, msg, header) -> bool:
    return pipeline.submit(msg, context=header, source=source)


def _dropped_before_queue(health, stats: CameraStats, header) -> None:
    health.dropped()
    stats.health.dropped()
    stats.dropped_before_queue += 1


def _lost(health, stats: CameraStats, count: int) -> None:
    health.lost(count)
    stats.health.lost(count)


def make_executor(kind: str = ''):
    """Return the executor that spins a perception node.

    Every callback of ours is short (the image callback only queues the frame; results are
    published from the pipeline's thread), so one thread suffices, and it spends less per message
    than rclpy's MultiThreadedExecutor (lower receive latency and CPU; rclpy.experimental's
    EventsExecutor busy-looped and ignored SIGTERM: figures in docs/performance.md). `kind` (or
    FDR_EXECUTOR): single (default) or multi.
    """
    kind = (kind or os.environ.get('FDR_EXECUTOR', '') or 'single').lower()
    if kind == 'multi':
        return MultiThreadedExecutor(num_threads=2)
    return SingleThreadedExecutor()


def run_node(node_cls, args=None) -> None:
    """Console-script entry: one efficient executor (see make_executor); honour `autostart`.

    SIGINT and SIGTERM stop the node in order while the context is still valid: unsubscribe,
    drop the frames in flight, join the pipeline (bounded), destroy the node, shut rclpy down,
    exit 0. rclpy's own handlers would invalidate the context first, so results still in the
    pipeline would be published into a dead context. The signals are taken by a thread of
    their own (sigwait), so they are seen even while the main thread is inside a call; if the
    process has not exited SHUTDOWN_LIMIT_S after the signal (teardown included), every
    thread's stack is written to stderr and it exits 1. A second signal exits at once.
    """
    reuse_large_buffers()
    limit_malloc_arenas()  # memory comes back after cleanup (see core/memory.py)
    stop = threading.Event()
    signals = {signal.SIGINT, signal.SIGTERM}
    lock = threading.RLock()  # the handler may run inside begin_stop on the main thread

    def begin_stop(*_) -> None:
        with lock:
            if stop.is_set():
                os._exit(0)  # asked twice: the operator wants it gone now
            stop.set()
        # A C-level timer (no GIL needed): it also covers the interpreter's own teardown,
        # where the middleware's participants are destroyed, after run_node has returned.
        faulthandler.dump_traceback_later(SHUTDOWN_LIMIT_S, exit=True)

    def waiter() -> None:
        while True:
            signal.sigwait(signals)
            begin_stop()

    # Python-level handlers for threads that started with the signals unblocked (e.g. a math
    # library's pool at import); every thread started from here on has them blocked, and a
    # thread of our own takes them with sigwait, so they are seen even while the main thread
    # is inside a call. From the start: a signal while the model loads stops the node after.
    for sig in signals:
        signal.signal(sig, begin_stop)
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    threading.Thread(target=waiter, name='signals', daemon=True).start()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = node_cls()
    executor = make_executor()
    executor.add_node(node)
    try:
        if node.get_parameter('autostart').value and not stop.is_set():
            if node.trigger_configure() == TransitionCallbackReturn.SUCCESS \
                    and not stop.is_set():
                node.trigger_activate()
        # A short wait bounds how long the loop takes to see `stop`.
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.2)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node._active.clear()
        try:
            node._release()
            executor.shutdown(timeout_sec=1.0)
            node.destroy_node()
        finally:
            rclpy.try_shutdown()


#: seconds an orderly stop may take after SIGINT / SIGTERM before run_node gives up (exit 1)
SHUTDOWN_LIMIT_S = 10.0

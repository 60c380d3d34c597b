"""Lifecycle shell shared by the detector and depth nodes: ROS in and out, a runtime inside.

configure reads the parameter table (runtime/parameters.py) and builds a `PerceptionRuntime`
(one backend per inference worker, the adapter, the pipeline; autotune when asked); activate
subscribes each camera (the single `image` topic is the one-camera case of `inputs`) and opens
Nav2's bond; deactivate unsubscribes and lets frames in flight finish; cleanup, shutdown and a
failed transition (on_error) all release through one path, `release`. A failed configure or
activate leaves nothing behind and the reason on /diagnostics.

Every frame received is published, dropped or failed, and counted (runtime/telemetry.py);
results are published in arrival order per camera, one at a time (from the pipeline's delivery
thread, or the worker that ran the frame on the idle fast path), with the source frame's
header. Parameter changes are checked against the table before anything is applied: runtime
ones reach the next frame, the rest are refused while configured.
"""
from __future__ import annotations

from functools import partial
import time
from typing import Any, Callable, Dict, List, Optional

from diagnostic_msgs.msg import DiagnosticStatus
import numpy as np
from rcl_interfaces.msg import SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy

from . import params
from .bond import Bond, close_bond, open_bond
from .camera_inputs import camera_statuses, CameraInput
from .frame_inputs import FrameInputs
from .health import (attach_log_handler, detach_log_handler, diagnostic_status,
                     DiagnosticsPublisher, lifecycle_health)
from ..core.image_codec import ImageCodecError
from ..core.pipeline import FrameResult
from ..runtime import (ParameterError, PerceptionRuntime, RUNTIME, RuntimeConfig, table,
                       TASK_CLASSES, TASKS, Telemetry)
from ..runtime.camera_info import CameraInfoCache
from ..runtime.parameters import review

SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE
#: seconds between two warnings about frames an optional output was skipped for
SKIP_WARN_PERIOD_S = 5.0
_now = time.perf_counter


class PerceptionNode(LifecycleNode):
    """Camera frames in, one result per frame out, through a PerceptionRuntime."""

    #: the task of the node: 'detection' or 'depth' (its parameter table and runtime.tasks)
    TASK = ''

    def __init__(self, node_name: str, **kwargs: Any) -> None:
        super().__init__(node_name, automatically_declare_parameters_from_overrides=True, **kwargs)
        self.parameters = table(self.TASK)
        self.task_parameters = TASKS[self.TASK]
        for problem in params.declare(self, self.parameters):
            self.get_logger().warning(problem)
        self.values: Dict[str, Any] = {}     # the checked values in force since configure
        self.config: Optional[RuntimeConfig] = None
        self.task: Any = None
        self.runtime: Optional[PerceptionRuntime] = None
        self.cameras: List[CameraInput] = []
        self.telemetry = Telemetry(node_name, params.health_limits(self, self.parameters))
        self.configure_error = ''
        self.inputs = FrameInputs(self)
        self._internal_set = False  # configure writing back autotune's choice
        self._bond: Optional[Bond] = None
        self._build_s = 0.0
        self._stamped_subs: List[Any] = []  # camera_info, registered depth (beside each image)
        self.outputs_skipped = 0  # frames an optional output (cloud, 3D) was skipped for
        self.skip_reason = ''
        self._last_skip_warning = 0.0
        self._log_handler = attach_log_handler(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diagnostics = DiagnosticsPublisher(
            self, params.start_value(self, self.parameters, 'diagnostics_period'),
            self.diagnostic_statuses)

    # ---- subclass hooks -------------------------------------------------------------------
    def create_outputs(self, qos: QoSProfile) -> None:
        raise NotImplementedError

    def destroy_outputs(self) -> None:
        """Destroy the publishers create_outputs made (subclasses)."""

    def publish_result(self, result: Any, header, image: Optional[np.ndarray],
                       camera: int = 0) -> None:
        """Publish one frame's result on camera `camera`'s outputs (0: the single camera)."""
        raise NotImplementedError

    def on_parameter_applied(self, name: str, value: Any) -> None:
        """React to a runtime parameter change the task applied (e.g. republish label info)."""

    # ---- what run_node, tools and tests use -----------------------------------------------
    @property
    def lifecycle_state(self) -> str:
        """Return the state's label: 'unconfigured', 'inactive', 'active', 'finalized', ..."""
        return self._state_machine.current_state[1]

    @property
    def is_active(self) -> bool:
        return self.inputs.active.is_set()

    @property
    def health(self):
        return self.telemetry.health

    @property
    def pipeline(self):
        return self.runtime.pipeline if self.runtime is not None else None

    @property
    def adapter(self):
        return self.runtime.adapter if self.runtime is not None else None

    @property
    def backends(self) -> list:
        return self.runtime.backends if self.runtime is not None else []

    @property
    def autotune_choice(self):
        return self.runtime.autotune_choice if self.runtime is not None else None

    def make_adapter(self, backend) -> Any:
        """Return the adapter this node's task makes for `backend` (configured parameters)."""
        cfg = self.config
        return self.task.make_adapter(cfg.model_family, cfg.model_path, backend, cfg.input_size)

    def output_topics(self, name: str) -> List[str]:
        """Return output `name`'s topic per camera (/front/image_raw -> /front/name)."""
        return [c.output(name) for c in self.cameras] or [name]

    def latency_budget(self) -> dict:
        return self.telemetry.latency_budget()

    def stamped_inputs(self, name: str, msg_type: type, what: str,
                       add: Callable[[CameraInfoCache, Any], None]) -> List[CameraInfoCache]:
        """Subscribe topic `name` beside each camera's image; return one stamp cache per camera.

        For what a frame is matched with by stamp at delivery (its camera_info, a registered
        depth image). Best effort, so drivers publishing either reliability match; unsubscribed
        on release.
        """
        tolerance_ns = round(self.values['camera_info_tolerance_ms'] * 1e6)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        caches = []
        for topic in self.output_topics(name):
            cache = CameraInfoCache(depth=10, tolerance_ns=tolerance_ns,
                                    name=self.resolve_topic_name(topic), what=what)
            self._stamped_subs.append(self.create_subscription(
                msg_type, topic, partial(add, cache), qos))
            caches.append(cache)
        return caches

    def output_skipped(self, reason: str) -> None:
        """Count a frame an optional output was skipped for; warn naming why (throttled)."""
        self.outputs_skipped += 1
        self.skip_reason = reason
        now = time.monotonic()
        if now - self._last_skip_warning > SKIP_WARN_PERIOD_S:
            self._last_skip_warning = now
            self.get_logger().warning(f'{reason} [{self.outputs_skipped} frames so far]')

    def destroy_publishers(self, publishers: List[Any]) -> None:
        """Destroy output publishers (lifecycle ones where rclpy knows them: Jazzy on)."""
        destroy = getattr(self, 'destroy_lifecycle_publisher', self.destroy_publisher)
        for pub in publishers:
            destroy(pub)

    def timed_build(self, build, *args):
        """Call `build(*args)` (output message construction), counted in the `build` hop."""
        t0 = _now()
        msg = build(*args)
        self._build_s += _now() - t0
        return msg

    def release(self) -> None:
        """Stop input, close the bond, the runtime (never under a running call) and outputs.

        The one teardown path: cleanup, shutdown, on_error, a failed configure and run_node.
        """
        self._stop_input()
        close_bond(self._bond)
        self._bond = None
        if self.runtime is not None:
            runtime, self.runtime = self.runtime, None
            runtime.close(timeout=2.0)
        self.task = None
        self.destroy_outputs()
        for sub in self._stamped_subs:
            self.destroy_subscription(sub)
        self._stamped_subs = []

    # ---- lifecycle ------------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self.values = values = params.read(self, self.parameters)
            self.task = TASK_CLASSES[self.TASK](values, log=self.get_logger().info)
            self.cameras = self.inputs.resolve_cameras(values)
            per_camera = bool([t for t in values['inputs'] if t])
            self.telemetry.set_cameras([c.name for c in self.cameras], per_camera)
            self.config = RuntimeConfig.from_values(
                values, params.backend_options(self, values['backend']), self.get_name(),
                len(self.cameras) if per_camera else 1)
            logger = self.get_logger()
            self.runtime = PerceptionRuntime(
                self.config, self.make_adapter, self._deliver, decode=self.inputs.decode,
                wants_image=self.task.wants_image, on_drop=self._on_drop,
                log=logger.info, warn=logger.warning)
            self.config = self.runtime.config  # autotune may have chosen the pipeline shape
            self.task.bind(self.runtime.adapter)
            if self.runtime.autotune_choice is not None:
                self._write_back(self.runtime.autotune_choice.params())
            self.create_outputs(QoSProfile(depth=max(values['qos_depth'], 10)))
        except Exception as exc:  # noqa: BLE001 - any failure must leave the node unconfigured
            self.configure_error = str(exc) if isinstance(exc, ParameterError) \
                else f'{type(exc).__name__}: {exc}'
            self.get_logger().error(f'configure failed: {self.configure_error}')
            self.release()
            return FAILURE
        self.configure_error = ''
        cfg = self.config
        self.get_logger().info(
            f'configured: {type(self.adapter).__name__} on {cfg.backend} x{cfg.workers} '
            f'({cfg.model_path}), queue {cfg.queue_size} {cfg.full_policy}')
        return SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._start_input()
        except Exception as exc:  # noqa: BLE001 - undo what started, stay inactive
            self.get_logger().error(f'activate failed: {type(exc).__name__}: {exc}')
            self._stop_input()
            return FAILURE
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        if self.runtime is not None:
            self.runtime.flush(timeout=2.0)
        self.get_logger().info('inactive')
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        self.get_logger().info('cleaned up')
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release everything after a transition raised; the node goes back to unconfigured."""
        self.get_logger().error(f'transition from {state.label} failed: releasing everything '
                                '(configure again to resume)')
        self.release()
        super().on_error(state)
        return SUCCESS

    def destroy_node(self) -> None:
        close_bond(self._bond)
        self._bond = None
        self._diagnostics.destroy()
        detach_log_handler(self._log_handler)
        super().destroy_node()

    # ---- input ----------------------------------------------------------------------------
    def _start_input(self) -> None:
        """Start a stream: counters and per-camera state reset, bond opened, cameras subscribed."""
        self.telemetry.restart()
        self.task.reset()  # no per-camera state (tracks) carries over
        # Nav2's lifecycle_manager watches active nodes through a bond (ros/bond.py)
        self._bond = open_bond(self, self.values['bond_heartbeat_period'], self._bond)
        self.inputs.start()
        self.get_logger().info('active: ' + ', '.join(
            f'{self.resolve_topic_name(c.topic)} -> '
            f'{self.resolve_topic_name(c.output("x"))[:-1]}*' for c in self.cameras))

    def _stop_input(self) -> None:
        self.inputs.stop()
        if self._bond is not None:
            self._bond.break_bond()

    # ---- output ---------------------------------------------------------------------------
    def _on_drop(self, seq: int, header) -> None:
        self.telemetry.dropped()

    def _deliver(self, fr: FrameResult) -> None:
        """Publish one result (the pipeline's on_result); failures and late frames are counted."""
        source = fr.source
        if fr.error is not None:
            reason = f'{type(fr.error).__name__}: {fr.error}'
            if self.telemetry.failed(reason, source):  # throttled
                kind = 'bad frame' if isinstance(fr.error, ImageCodecError) else 'frame failed'
                self.get_logger().error(
                    f'{kind} (stamp {fr.context.stamp.sec}.{fr.context.stamp.nanosec:09d}), '
                    f'dropped: {reason} [{self.telemetry.errors} so far]')
            return
        task = self.task
        if not self.inputs.active.is_set() or not self.context.ok() or task is None:
            self.telemetry.dropped(source, where='output')  # finished after deactivate
            return
        result, image = fr.result
        t0 = _now()
        self._build_s = 0.0
        try:
            self.publish_result(task.finish(result, source or 0), fr.context, image, source or 0)
        except Exception as exc:  # noqa: BLE001 - e.g. the context shut down under us
            if self.context.ok():
                self.telemetry.failed(f'publishing: {type(exc).__name__}: {exc}', source)
                self.get_logger().error(f'publishing failed: {type(exc).__name__}: {exc}')
            else:
                self.telemetry.dropped(source, where='output')
            return
        self.telemetry.delivered(fr.timings, source, t0, self._build_s, _now() - t0)

    # ---- parameters -----------------------------------------------------------------------
    def _on_set_parameters(self, changes: List[Parameter]) -> SetParametersResult:
        """Check every change against the table (and the running model); then apply.

        Runtime parameters of a configured node reach the next frame; others are refused
        while configured (or always, for start-up ones). Nothing is applied unless all pass.
        """
        if self._internal_set:
            return SetParametersResult(successful=True)
        configured = self.runtime is not None
        try:
            accepted = review([(p.name, p.value) for p in changes], self.parameters, configured,
                              params.is_backend_option)
            merged = {**self.values, **accepted}
            applied = [n for n in accepted if n in self.parameters
                       and self.parameters[n].applies == RUNTIME]
            for name in applied if configured else ():
                if name in self.task_parameters:
                    self.task.check_change(name, merged[name], merged, self.runtime.gpu_path)
        except ParameterError as exc:
            self.get_logger().warning(f'parameter change rejected: {exc}')
            return SetParametersResult(successful=False, reason=str(exc))
        for name in applied:
            if name in params.HEALTH_LIMITS:  # in every state
                setattr(self.telemetry.health.limits, params.HEALTH_LIMITS[name], merged[name])
            if configured:
                self.values[name] = merged[name]
                if name in self.task_parameters:
                    self.task.apply(name, merged[name])
                    self.on_parameter_applied(name, merged[name])
                self.get_logger().info(f'{name} = {merged[name]!r} (applies from the next frame)')
        return SetParametersResult(successful=True)

    def _write_back(self, values: Dict[str, Any]) -> None:
        """Set parameters the node itself chose (autotune), bypassing the change checks."""
        self._internal_set = True
        try:
            self.set_parameters([Parameter(k, value=v) for k, v in values.items()])
        finally:
            self._internal_set = False
        self.values.update(values)

    # ---- diagnostics ----------------------------------------------------------------------
    def diagnostic_statuses(self) -> List[DiagnosticStatus]:
        """Return what /diagnostics says about this node (ros.health.lifecycle_health)."""
        runtime, pipeline = self.runtime, self.pipeline
        health = lifecycle_health(self.telemetry.health.status(
            extra_latency_s=self.telemetry.input_age_s(),
            busy_workers=pipeline.busy_workers() if pipeline is not None else None,
            mean_infer_s=pipeline.mean_infer_s if pipeline is not None else None),
            self.lifecycle_state, self.is_active, self.configure_error,
            runtime.fault if runtime is not None else None)
        extra = self.telemetry.values(
            runtime.stats() if runtime else {},
            runtime.autotune_choice.reason if runtime and runtime.autotune_choice else '')
        hardware = self.config.backend if self.config else str(
            self.get_parameter('backend').value)
        return [diagnostic_status(health, f'{self.get_name()}: pipeline', hardware, extra)] \
            + self.camera_diagnostics()

    def camera_diagnostics(self) -> List[DiagnosticStatus]:
        """Return one status per camera of `inputs` (none for the single camera)."""
        runtime = self.runtime
        if not self.telemetry.per_camera or runtime is None:
            return []
        return camera_statuses(self.get_name(), self.cameras, self.telemetry.cameras,
                               runtime.stats().get('sources', {}), self.is_active,
                               self.config.backend if self.config else '')

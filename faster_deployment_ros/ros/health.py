"""ROS side of node health: /diagnostics, middleware losses, library logs on /rosout.

/diagnostics is published in every lifecycle state, and the package's Python logs go to the
node's logger (so they reach /rosout).

The health logic itself (levels, messages, counters) is core/health.py and ROS-free; this module
only turns it into diagnostic_msgs and wires rclpy's events to it.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, List, Optional, Sequence, Tuple

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from ..core.health import ERROR, HealthStatus, STALE

PACKAGE_LOGGER = 'faster_deployment_ros'


def diagnostic_status(status: HealthStatus, name: str, hardware_id: str = '',
                      extra: Sequence[Tuple[str, Any]] = ()) -> DiagnosticStatus:
    values = [KeyValue(key=str(k), value=str(v)) for k, v in list(status.values) + list(extra)]
    return DiagnosticStatus(level=bytes([status.level]), name=name, message=status.message,
                            hardware_id=hardware_id, values=values)


def lifecycle_health(health: HealthStatus, state: str, active: bool, configure_error: str = '',
                     fault: Optional[str] = None) -> HealthStatus:
    """Return what /diagnostics says of a node in lifecycle `state`.

    Active: `health` (what happened to the recent frames, core/health.py), or ERROR when the
    pipeline stopped (`fault`). Otherwise the state itself, STALE, and after a failed configure
    its reason, ERROR. A worker stuck in one call stays ERROR in every state until it returns.
    """
    stuck = health.level == ERROR and health.message.startswith('inference worker')
    if not active and not stuck:
        if state == 'unconfigured' and configure_error:
            return HealthStatus(ERROR, f'unconfigured: {configure_error}', health.values)
        message = {'unconfigured': 'unconfigured (no model loaded)',
                   'inactive': 'inactive (configured, not subscribed)'}.get(state, state)
        return HealthStatus(STALE, message, health.values)
    if fault:
        return HealthStatus(ERROR, f'pipeline stopped: {fault} (reconfigure the node)',
                            health.values)
    return health


class DiagnosticsPublisher:
    """Publishes what `collect()` returns on /diagnostics every `period` s, in every state.

    A plain publisher and timer, not lifecycle-managed: a supervisor sees an unconfigured or
    inactive node too, not silence.
    """

    def __init__(self, node, period: float,
                 collect: Callable[[], Iterable[DiagnosticStatus]]) -> None:
        self._node, self._collect = node, collect
        self._pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._timer = node.create_timer(period, self.publish) if period > 0 else None

    def publish(self) -> None:
        if self._pub is None:
            return
        try:
            statuses: List[DiagnosticStatus] = list(self._collect())
        except Exception as exc:  # noqa: BLE001 - diagnostics must not take the node down
            self._node.get_logger().error(f'diagnostics: {type(exc).__name__}: {exc}')
            return
        msg = DiagnosticArray(status=statuses)
        msg.header.stamp = self._node.get_clock().now().to_msg()
        if self._node.context.ok():
            self._pub.publish(msg)

    def destroy(self) -> None:
        if self._timer is not None:
            self._node.destroy_timer(self._timer)
            self._timer = None
        if self._pub is not None:
            self._node.destroy_publisher(self._pub)
            self._pub = None


#: policy name (rclpy QoSPolicyKind) -> what does not match and how to fix it, for a
#: subscription that requested more than a publisher offers
_QOS_FIXES = {
    'RELIABILITY': ('a publisher is best effort and this subscription requires reliable, so '
                    'none of its messages arrive: set qos_reliability: best_effort (or make '
                    'the publisher reliable)'),
    'DURABILITY': ('a publisher is volatile and this subscription requires transient local: '
                   'make the subscription volatile (or the publisher transient local)'),
    'DEADLINE': ("a publisher's deadline is longer than this subscription's: relax the "
                 "subscription's deadline (or tighten the publisher's)"),
    'LIVELINESS': ("a publisher's liveliness kind is weaker than this subscription requires: "
                   'make them match'),
    'LIVELINESS_LEASE_DURATION': ("a publisher's liveliness lease is longer than this "
                                  "subscription's: make them match"),
}


def incompatible_qos_message(policy: Any, topic: str = '') -> str:
    """Say which QoS policy keeps a publisher from matching our subscription, and the fix.

    `policy` is rclpy's ``QoSPolicyKind`` (or its int, or a policy name).
    """
    name = str(policy)
    try:
        from rclpy.qos import QoSPolicyKind
        name = QoSPolicyKind(int(policy)).name
    except (ImportError, TypeError, ValueError):
        name = getattr(policy, 'name', name)
    where = f' on {topic}' if topic else ''
    fix = _QOS_FIXES.get(name, "make the publisher's QoS and the subscription's compatible "
                               '(`ros2 topic info -v` shows both)')
    return f'incompatible QoS{where} ({name}): {fix}'


def message_lost_event_callbacks(on_lost: Callable[[int], None],
                                 on_incompatible_qos: Optional[Callable[[str], None]] = None,
                                 topic: str = '') -> Optional[Any]:
    """Build SubscriptionEventCallbacks that report what keeps messages from arriving.

    `on_lost(n)`: rclpy's message-lost QoS event (n messages the middleware lost).
    `on_incompatible_qos(reason)`: the requested-incompatible-QoS event, raised when a
    publisher whose QoS cannot match the subscription appears; `reason` names the policy and
    the fix (`incompatible_qos_message`), e.g. `Health.incompatible_qos`. Both events exist in
    Humble, Jazzy and Kilted; None where this rclpy lacks them.
    """
    try:
        from rclpy.event_handler import SubscriptionEventCallbacks
    except ImportError:  # Humble names the module rclpy.qos_event
        try:
            from rclpy.qos_event import SubscriptionEventCallbacks
        except ImportError:
            return None

    def lost(info) -> None:
        on_lost(int(getattr(info, 'total_count_change', 0)))

    kwargs = {'message_lost': lost}
    if on_incompatible_qos is not None:
        def incompatible(info) -> None:
            on_incompatible_qos(incompatible_qos_message(getattr(info, 'last_policy_kind', ''),
                                                         topic))
        kwargs['incompatible_qos'] = incompatible
    try:
        return SubscriptionEventCallbacks(**kwargs)
    except TypeError:
        return None


def _invalid_handle_type() -> type:
    for module, name in (('rclpy.exceptions', 'InvalidHandle'), ('rclpy.handle', 'InvalidHandle'),
                         ('rclpy._rclpy_pybind11', 'InvalidHandle')):
        try:
            return getattr(__import__(module, fromlist=[name]), name)
        except (ImportError, AttributeError):
            continue
    return RuntimeError


def guard_event_handlers(entity):
    """Let `entity`'s QoS event handlers be destroyed while another thread builds a wait set.

    rclpy marks an event handler in use, then enters it a second time to add it to the wait
    set; a subscription destroyed between the two (deactivate from another executor thread)
    makes that second entry raise InvalidHandle out of `spin`, which kills the executor. The
    guarded handler just sits out that one wait. Returns `entity`.
    """
    invalid = _invalid_handle_type()
    for handler in getattr(entity, 'event_handlers', None) or []:
        add = handler.add_to_wait_set

        def guarded(wait_set, _add=add, _handler=handler) -> None:
            try:
                _add(wait_set)
            except invalid:
                _handler._event_index = None  # not in this wait set: never reported ready
        handler.add_to_wait_set = guarded
    return entity


class NodeLogHandler(logging.Handler):
    """Forwards the package's Python log records to the node's rclpy logger.

    Pipeline, model adapters and autotune log through Python logging; forwarded, their records
    reach /rosout under the node's name.
    """

    def __init__(self, node, level: int = logging.INFO) -> None:
        super().__init__(level)
        self._node = node

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) if record.exc_info else record.getMessage()
            if record.exc_info and self.formatter is None:
                text = logging.Formatter().format(record)
            logger = self._node.get_logger()
            if record.levelno >= logging.ERROR:
                logger.error(text)
            elif record.levelno >= logging.WARNING:
                logger.warning(text)
            elif record.levelno >= logging.INFO:
                logger.info(text)
            else:
                logger.debug(text)
        except Exception:  # noqa: BLE001 - logging must never raise (e.g. after shutdown)
            pass


def attach_log_handler(node) -> NodeLogHandler:
    """Route the package's Python logs to `node`'s logger until `detach_log_handler`."""
    handler = NodeLogHandler(node)
    logger = logging.getLogger(PACKAGE_LOGGER)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    logger.propagate = False  # the node's logger prints them; no second copy on stderr
    return handler


def detach_log_handler(handler: Optional[NodeLogHandler]) -> None:
    if handler is None:
        return
    logger = logging.getLogger(PACKAGE_LOGGER)
    logger.removeHandler(handler)
    if not any(isinstance(h, NodeLogHandler) for h in logger.handlers):
        logger.propagate = True


__all__ = ['DiagnosticsPublisher', 'NodeLogHandler', 'attach_log_handler', 'detach_log_handler',
           'diagnostic_status', 'guard_event_handlers', 'incompatible_qos_message',
           'message_lost_event_callbacks']

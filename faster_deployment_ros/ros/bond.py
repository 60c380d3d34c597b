"""The managed node's side of a bond (bond_core's protocol).

So Nav2's lifecycle_manager can watch our nodes with its default `bond_timeout`.

The manager configures and activates a node through the lifecycle services, then opens a bond
whose id is the node's name and waits (bond_timeout / 2) for the node's heartbeat; afterwards a
node silent for bond_timeout counts as crashed and the manager resets the whole system. Nav2's
own nodes open their side on activate and drop it on deactivate
(nav2::LifecycleNode::createBond / destroyBond); this does the same for ours, without bondcpp:

- both sides publish bond/Status on `bond` (id, a random instance_id, active, the two timing
  values), reliable, every heartbeat period;
- the bond forms when a Status with our id and another instance_id arrives (the "sister");
- breaking it publishes active=false, then repeats that every DEAD_PUBLISH_PERIOD until the
  sister answers active=false or DEFAULT_DISCONNECT_TIMEOUT passes;
- the sister's active=false is answered at once with ours, and the bond is dead;
- no sister within DEFAULT_CONNECT_TIMEOUT, or silence for heartbeat_timeout, also ends it
  (logged: the manager will see the same and react).

Timing constants are bond/msg/Constants' values.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, List, Optional
import uuid

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

DEAD_PUBLISH_PERIOD = 0.05
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_DISCONNECT_TIMEOUT = 2.0
#: what a Nav2 node sets as its own side's heartbeat timeout
NAV2_HEARTBEAT_TIMEOUT = 4.0

WAITING, ALIVE, DYING, DEAD = 'waiting_for_sister', 'alive', 'await_sister_death', 'dead'


def status_type() -> Optional[type]:
    """bond/msg/Status, or None where the bond messages are not installed."""
    try:
        from bond.msg import Status
    except ImportError:
        return None
    return Status


class Bond:
    """One bond with id `bond_id` on `topic`, started at construction (see module doc)."""

    def __init__(self, node: Any, bond_id: str, heartbeat_period: float,
                 heartbeat_timeout: float = NAV2_HEARTBEAT_TIMEOUT, topic: str = 'bond',
                 connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 disconnect_timeout: float = DEFAULT_DISCONNECT_TIMEOUT,
                 on_change: Optional[Callable[[str], None]] = None) -> None:
        status = status_type()
        if status is None:
            raise ImportError('the bond messages (bond/msg/Status) are not installed')
        self._status = status
        self._node = node
        self.id = bond_id
        self.instance_id = str(uuid.uuid4())
        self.heartbeat_period = float(heartbeat_period)
        self.heartbeat_timeout = float(heartbeat_timeout)
        self._connect_timeout = float(connect_timeout)
        self._disconnect_timeout = float(disconnect_timeout)
        self._lock = threading.Lock()
        self._on_change = on_change
        self._state = WAITING
        self.history: List[str] = [WAITING]  # every state entered, in order
        self.sister_instance_id = ''
        self._since = time.monotonic()  # state entered / last heard from the sister
        self._pub = node.create_publisher(
            status, topic, QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                                      reliability=ReliabilityPolicy.RELIABLE))
        self._sub = node.create_subscription(
            status, topic, self._on_status,
            QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                       reliability=ReliabilityPolicy.RELIABLE))
        self._timer = node.create_timer(self.heartbeat_period, self._heartbeat)
        self._dead_timer = None
        self._publish(True)

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, value: str) -> None:
        """Enter `value` (with the lock held); on_change hears each change and must be short."""
        if value != self._state:
            self._state = value
            self.history.append(value)
            if self._on_change is not None:
                self._on_change(value)

    @property
    def formed(self) -> bool:
        return bool(self.sister_instance_id)

    def _log(self):
        return self._node.get_logger()

    def _publish(self, active: bool) -> None:
        if self._pub is None:
            return
        msg = self._status()
        msg.header.stamp = self._node.get_clock().now().to_msg()
        msg.id = self.id
        msg.instance_id = self.instance_id
        msg.active = active
        msg.heartbeat_timeout = self.heartbeat_timeout
        msg.heartbeat_period = self.heartbeat_period
        self._pub.publish(msg)

    def _on_status(self, msg) -> None:
        if msg.id != self.id or msg.instance_id == self.instance_id:
            return  # another bond, or our own message
        with self._lock:
            if not self.sister_instance_id:
                self.sister_instance_id = msg.instance_id
                if msg.active and self.state == WAITING:
                    self._log().info(f'bond {self.id!r} formed with the lifecycle manager')
            if msg.active:
                if self.state in (WAITING, ALIVE):
                    self.state, self._since = ALIVE, time.monotonic()
                return
            previous, self.state = self.state, DEAD
        if previous in (WAITING, ALIVE):  # the manager broke it first: acknowledge at once
            self._publish(False)
            self._log().info(f'bond {self.id!r} broken by the lifecycle manager')

    def _heartbeat(self) -> None:
        now = time.monotonic()
        with self._lock:
            state = self.state
            if state == WAITING and now - self._since > self._connect_timeout:
                self.state = state = DEAD  # normal without a manager (e.g. autostart)
                self._log().info(
                    f'bond {self.id!r}: no lifecycle manager answered within '
                    f'{self._connect_timeout:g} s; heartbeat stopped')
            elif state == ALIVE and now - self._since > self.heartbeat_timeout:
                self.state = state = DEAD
                self._log().warning(
                    f'bond {self.id!r}: no heartbeat from the lifecycle manager for '
                    f'{self.heartbeat_timeout:g} s; bond broken')
        if state in (WAITING, ALIVE):
            self._publish(True)
        elif self._timer is not None:
            self._timer.cancel()

    def _dead_heartbeat(self) -> None:
        with self._lock:
            if self.state == DYING and time.monotonic() - self._since > self._disconnect_timeout:
                self.state = DEAD
            state = self.state
        if state == DYING:
            self._publish(False)
        elif self._dead_timer is not None:
            self._dead_timer.cancel()

    def break_bond(self) -> None:
        """Our side ends the bond (deactivate): active=false until the sister agrees."""
        with self._lock:
            previous = self.state
            if previous == DEAD:
                return
            self.state, self._since = (DYING if previous == ALIVE else DEAD), time.monotonic()
        # The heartbeat timer cancels itself on its next tick (it sees the new state): cancelled
        # from this thread while the executor has it ready, Jazzy's executor raises "timer is
        # canceled" and its spin thread dies.
        self._publish(False)
        if previous == ALIVE:
            self._dead_timer = self._node.create_timer(DEAD_PUBLISH_PERIOD, self._dead_heartbeat)

    def destroy(self) -> None:
        """Break (if still alive) and release the publisher, subscription and timers."""
        try:
            self.break_bond()
        except Exception:  # noqa: BLE001 - the context may already be shut down
            pass
        node = self._node
        for timer in (self._timer, self._dead_timer):
            if timer is not None:
                node.destroy_timer(timer)
        self._timer = self._dead_timer = None
        if self._sub is not None:
            node.destroy_subscription(self._sub)
            self._sub = None
        if self._pub is not None:
            node.destroy_publisher(self._pub)
            self._pub = None


_warned_missing = False


def open_bond(node: Any, heartbeat_period: float, previous: Optional[Bond] = None
              ) -> Optional[Bond]:
    """Open a node's bond on activate (id = the node's name, as Nav2 nodes do).

    Replaces `previous`; None when `heartbeat_period` <= 0 or the bond messages are missing
    (said once: the manager then needs `bond_timeout: 0.0`).
    """
    global _warned_missing
    close_bond(previous)
    if heartbeat_period <= 0:
        return None
    if status_type() is None:
        if not _warned_missing:
            _warned_missing = True
            node.get_logger().warning(
                "bond messages not installed: no bond heartbeat, so Nav2's lifecycle_manager "
                'needs bond_timeout: 0.0 (apt-get install ros-$ROS_DISTRO-bond to have one)')
        return None
    return Bond(node, node.get_name(), heartbeat_period)


def close_bond(bond: Optional[Bond]) -> None:
    if bond is not None:
        bond.destroy()

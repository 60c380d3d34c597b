"""ros/bond.py's side of bond_core's protocol against a peer on the real bond/Status topic.

Short timeouts instead of Nav2's 4 s so the protocol's transitions (formed, heartbeat timeout,
broken by the peer and acknowledged, broken by us until the peer agrees) are checked quickly.
"""
from __future__ import annotations

import threading
import time
import uuid

from faster_deployment_ros.ros.bond import ALIVE, Bond, DEAD, DYING, WAITING
from faster_deployment_ros.ros.node_main import make_executor
import pytest
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy
from support.ros_nodes import destroy_node

bond_msg = pytest.importorskip('bond.msg', reason='bond messages not built (make setup)')

pytestmark = pytest.mark.ros

RELIABLE = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)


class Peer:
    """A bond peer (the manager's side) and the node holding our Bond, spinning together."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.ours = rclpy.create_node(f'bond_ours_{uuid.uuid4().hex[:6]}')
        self.theirs = rclpy.create_node(f'bond_theirs_{uuid.uuid4().hex[:6]}')
        self.instance_id = str(uuid.uuid4())
        self.heard = []
        self._cv = threading.Condition()
        self.pub = self.theirs.create_publisher(bond_msg.Status, topic, RELIABLE)
        self.theirs.create_subscription(bond_msg.Status, topic, self._on, RELIABLE)
        self.executor = make_executor()  # one thread (docs/reliability.md, test rigs)
        self.executor.add_node(self.ours)
        self.executor.add_node(self.theirs)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on(self, msg) -> None:
        if msg.instance_id != self.instance_id:
            with self._cv:
                self.heard.append(msg)
                self._cv.notify_all()

    def send(self, bond_id: str, active: bool) -> None:
        self.pub.publish(bond_msg.Status(id=bond_id, instance_id=self.instance_id,
                                         active=active, heartbeat_timeout=1.0,
                                         heartbeat_period=0.05))

    def wait(self, pred, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.05))
            return True

    def changed(self, _state: str) -> None:
        """Bond(on_change=...): wake the waits below."""
        with self._cv:
            self._cv.notify_all()

    def bond(self, *args, **kwargs) -> Bond:
        """Our Bond on the peer's topic, whose state changes wake `wait`."""
        return Bond(self.ours, *args, topic=self.topic, on_change=self.changed, **kwargs)

    def entered(self, bond: Bond, state: str, timeout: float = 5.0) -> bool:
        """Wait until `bond` has entered `state` (even if it has left it since)."""
        return self.wait(lambda: state in bond.history, timeout)

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join(5)
        destroy_node(self.ours)
        destroy_node(self.theirs)


@pytest.fixture
def peer(ros):
    p = Peer(f'bond_test_{uuid.uuid4().hex[:6]}')
    yield p
    p.close()


def test_forms_then_times_out_when_the_peer_goes_silent(peer):
    bond = peer.bond('cam', heartbeat_period=0.05, heartbeat_timeout=0.5)
    try:
        assert peer.wait(lambda: any(m.id == 'cam' and m.active for m in peer.heard))
        first = peer.heard[0]
        assert (first.heartbeat_period, first.heartbeat_timeout) == (
            pytest.approx(0.05), pytest.approx(0.5))
        peer.send('cam', True)
        assert peer.entered(bond, ALIVE) and bond.formed
        peer.send('other_bond', False)  # another bond's status changes nothing
        # silence from the peer: after heartbeat_timeout the bond is dead and heartbeats stop
        assert peer.entered(bond, DEAD)
        assert bond.history == [WAITING, ALIVE, DEAD]
    finally:
        bond.destroy()


def test_peer_breaks_it_and_gets_an_answer(peer):
    bond = peer.bond('cam', heartbeat_period=0.05)
    try:
        peer.send('cam', True)
        assert peer.entered(bond, ALIVE)
        mark = len(peer.heard)
        peer.send('cam', False)
        assert peer.entered(bond, DEAD) and bond.history == [WAITING, ALIVE, DEAD]
        assert peer.wait(lambda: any(not m.active for m in peer.heard[mark:]))
    finally:
        bond.destroy()


def test_we_break_it_until_the_peer_agrees(peer):
    bond = peer.bond('cam', heartbeat_period=0.05, disconnect_timeout=5.0)
    try:
        peer.send('cam', True)
        assert peer.entered(bond, ALIVE)
        mark = len(peer.heard)
        bond.break_bond()
        assert bond.state == DYING
        # active=false repeats (DEAD_PUBLISH_PERIOD) while waiting for the peer's answer
        assert peer.wait(lambda: sum(not m.active for m in peer.heard[mark:]) >= 3)
        after = peer.heard[mark:]
        first_dead = next(i for i, m in enumerate(after) if not m.active)
        assert all(not m.active for m in after[first_dead:]), 'a heartbeat after the break'
        peer.send('cam', False)
        assert peer.entered(bond, DEAD) and bond.history == [WAITING, ALIVE, DYING, DEAD]
    finally:
        bond.destroy()

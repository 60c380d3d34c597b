"""Our detector under Nav2's lifecycle_manager, driven as that manager drives it.

nav2_lifecycle_manager's lifecycle_manager.cpp, with its defaults: the standard lifecycle
services with its service_timeout, a bond opened after each activate (heartbeat period 0.25 s,
bond_timeout 4 s, formed within bond_timeout / 2), dropped on deactivate, and the node's own
bond side (ros/bond.py) heartbeating on /bond with the node's name as id.

The node is the installed console script in its own process; the manager's side of the bond is a
test peer speaking bond_core's protocol on the real bond/Status messages (interfaces/bond where no
ROS provides them).
"""
from __future__ import annotations

import threading
import time
import uuid

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from support.node_harness import console_script
from support.ros_nodes import destroy_node

bond_msg = pytest.importorskip('bond.msg', reason='bond messages not built (make setup)')

pytestmark = pytest.mark.ros

# nav2_lifecycle_manager's parameter defaults
SERVICE_TIMEOUT = 5.0
BOND_TIMEOUT = 4.0
BOND_HEARTBEAT_PERIOD = 0.25
NODE = 'nav_detector'


class ManagerPeer:
    """The parts of nav2's LifecycleManager that touch a managed node.

    Service clients (LifecycleServiceClient) and one bond per node (bond::Bond, manager side).
    """

    def __init__(self, node_name: str) -> None:
        self.node = rclpy.create_node(f'lifecycle_manager_{uuid.uuid4().hex[:8]}')
        self.name = node_name
        self.get_state = self.node.create_client(GetState, f'/{node_name}/get_state')
        self.change_state = self.node.create_client(ChangeState, f'/{node_name}/change_state')
        self.statuses = []  # the managed node's bond/Status messages, in arrival order
        self._cv = threading.Condition()
        self.node.create_subscription(
            bond_msg.Status, '/bond', self._on_status,
            QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                       reliability=ReliabilityPolicy.RELIABLE))
        self._bond_pub = self.node.create_publisher(
            bond_msg.Status, '/bond', QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5,
                                                 reliability=ReliabilityPolicy.RELIABLE))
        self.instance_id = ''
        self._bond_timer = None
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    # ---- lifecycle services (LifecycleServiceClient) ----------------------------------------
    def _call(self, client, request):
        assert client.wait_for_service(timeout_sec=SERVICE_TIMEOUT), \
            f'{client.srv_name} not available within service_timeout'
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _: done.set())
        assert done.wait(SERVICE_TIMEOUT), f'{client.srv_name} did not answer in time'
        return future.result()

    def state(self) -> int:
        """get_state, re-sent each second within the same service_timeout.

        A request can reach a service before the service has matched the client's reply reader
        (rmw_fastrtps then drops the reply: "failed to send response (timeout)", seen once on
        Jazzy), or a future can complete without a response (seen once under load on Kilted);
        get_state changes nothing, so asking again is safe. change_state is never re-sent.
        """
        assert self.get_state.wait_for_service(timeout_sec=SERVICE_TIMEOUT), \
            f'{self.get_state.srv_name} not available within service_timeout'
        deadline = time.monotonic() + SERVICE_TIMEOUT
        while True:
            done = threading.Event()
            future = self.get_state.call_async(GetState.Request())
            future.add_done_callback(lambda _: done.set())
            if done.wait(max(0.0, min(1.0, deadline - time.monotonic()))):
                result = future.result()
                if result is not None:
                    return result.current_state.id
                # a future completed without a response (cancelled under load): ask again
            assert time.monotonic() < deadline, f'{self.get_state.srv_name} did not answer in time'

    def change(self, transition: int, expect: int) -> None:
        """changeStateForNode: change_state, then get_state must be the transition's goal."""
        ok = self._call(self.change_state,
                        ChangeState.Request(transition=Transition(id=transition))).success
        assert ok, f'transition {transition} failed'
        assert self.state() == expect

    # ---- the manager's side of the bond (createBondConnection) ------------------------------
    def _on_status(self, msg) -> None:
        if msg.id == self.name and msg.instance_id != self.instance_id:
            with self._cv:
                self.statuses.append((time.monotonic(), msg))
                self._cv.notify_all()

    def _publish(self, active: bool) -> None:
        msg = bond_msg.Status(id=self.name, instance_id=self.instance_id, active=active,
                              heartbeat_timeout=BOND_TIMEOUT,
                              heartbeat_period=BOND_HEARTBEAT_PERIOD)
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._bond_pub.publish(msg)

    def open_bond(self) -> None:
        self.instance_id = str(uuid.uuid4())
        self._bond_timer = self.node.create_timer(BOND_HEARTBEAT_PERIOD,
                                                  lambda: self._publish(True))
        self._publish(True)

    def drop_bond(self) -> None:
        """bond_map_.erase: the bond's destructor breaks it (active=false) and stops."""
        self.node.destroy_timer(self._bond_timer)
        self._bond_timer = None
        self._publish(False)

    def wait_status(self, pred, timeout: float, since: int = 0):
        """Return the first status after index `since` that satisfies pred, within timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                for i in range(since, len(self.statuses)):
                    if pred(self.statuses[i][1]):
                        return i, self.statuses[i][1]
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, None
                self._cv.wait(min(left, 0.1))

    def close(self) -> None:
        self.executor.shutdown()
        self._thread.join(5)
        destroy_node(self.node)


def managed_node(yolox_model, *extra: str):
    """Run the detector_node console script under this test's node name."""
    return console_script('detector_node', [
        '--ros-args', '-r', f'__node:={NODE}', '-p', f'model_path:={yolox_model}',
        '-p', 'model_family:=yolox', '-p', 'diagnostics_period:=0.0', *extra])


def test_lifecycle_manager_startup_bond_reset_shutdown(ros, yolox_model):
    manager = ManagerPeer(NODE)
    try:
        with managed_node(yolox_model):
            # startup(): configure all, then activate all; a bond after each activate
            assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
            assert not manager.statuses, 'no bond before activate'
            manager.change(Transition.TRANSITION_CONFIGURE, State.PRIMARY_STATE_INACTIVE)
            manager.change(Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE)
            manager.open_bond()
            # waitUntilFormed(bond_timeout / 2): the node's side answers
            i, first = manager.wait_status(lambda m: m.active, BOND_TIMEOUT / 2)
            assert first is not None, 'the node never answered the bond within bond_timeout/2'
            assert first.instance_id and first.heartbeat_period == pytest.approx(0.1)
            assert first.heartbeat_timeout == pytest.approx(4.0)
            node_instance = first.instance_id
            # heartbeats keep coming, well inside bond_timeout (checkBondConnections)
            j, _ = manager.wait_status(lambda m: m.active, BOND_TIMEOUT, since=i + 5)
            assert j is not None, 'heartbeats stopped while active'
            beats = [t for t, m in manager.statuses if m.active]
            assert max(b - a for a, b in zip(beats, beats[1:])) < BOND_TIMEOUT

            # reset(): deactivate (the node breaks its side), drop the bond, cleanup
            mark = len(manager.statuses)
            manager.change(Transition.TRANSITION_DEACTIVATE, State.PRIMARY_STATE_INACTIVE)
            k, broken = manager.wait_status(lambda m: not m.active, SERVICE_TIMEOUT, since=mark)
            assert broken is not None and broken.instance_id == node_instance, \
                'deactivate did not break the bond'
            manager.drop_bond()
            manager.change(Transition.TRANSITION_CLEANUP, State.PRIMARY_STATE_UNCONFIGURED)
            # after the break only active=false may follow (the dying phase), never a heartbeat
            late, _ = manager.wait_status(lambda m: m.active, 1.0, since=k)
            assert late is None, 'heartbeats went on after deactivate'

            # startup() again: a fresh bond (new instance id) forms
            manager.change(Transition.TRANSITION_CONFIGURE, State.PRIMARY_STATE_INACTIVE)
            manager.change(Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE)
            manager.open_bond()
            mark = len(manager.statuses)
            i, again = manager.wait_status(lambda m: m.active, BOND_TIMEOUT / 2, since=mark)
            assert again is not None and again.instance_id != node_instance

            # shutdown(): deactivate, cleanup, shutdown; the heartbeat stops for good
            manager.change(Transition.TRANSITION_DEACTIVATE, State.PRIMARY_STATE_INACTIVE)
            k, broken = manager.wait_status(lambda m: not m.active, SERVICE_TIMEOUT, since=i)
            assert broken is not None and broken.instance_id == again.instance_id
            manager.drop_bond()
            manager.change(Transition.TRANSITION_CLEANUP, State.PRIMARY_STATE_UNCONFIGURED)
            manager.change(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
                           State.PRIMARY_STATE_FINALIZED)
            late, _ = manager.wait_status(lambda m: m.active, 1.0, since=k)
            assert late is None, 'heartbeats went on after shutdown'
    finally:
        manager.close()


def test_bond_heartbeat_period_zero_means_no_bond(ros, yolox_model):
    """`bond_heartbeat_period: 0.0` (Nav2's own switch).

    No bond, for a manager run with bond_timeout: 0.0; the lifecycle services work the same.
    """
    manager = ManagerPeer(NODE)
    try:
        with managed_node(yolox_model, '-p', 'bond_heartbeat_period:=0.0'):
            manager.change(Transition.TRANSITION_CONFIGURE, State.PRIMARY_STATE_INACTIVE)
            manager.change(Transition.TRANSITION_ACTIVATE, State.PRIMARY_STATE_ACTIVE)
            manager.open_bond()
            i, status = manager.wait_status(lambda m: True, 1.0)
            assert status is None, 'a bond status was published with the bond switched off'
            manager.change(Transition.TRANSITION_DEACTIVATE, State.PRIMARY_STATE_INACTIVE)
            manager.drop_bond()
            manager.change(Transition.TRANSITION_CLEANUP, State.PRIMARY_STATE_UNCONFIGURED)
    finally:
        manager.close()

"""One harness for node tests: the node under test and a peer in one real rclpy executor.

The peer publishes frames on the node's input topics and records what comes back on its output
topics; waits are on a condition variable (no sleeps as synchronisation). Node test files build
their own small helpers on top (see test_detector_node.py, test_depth_node.py).
"""
from __future__ import annotations

import contextlib
from pathlib import Path
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from faster_deployment_ros.core.image_codec import fill_image_msg
from faster_deployment_ros.ros.node_main import make_executor
import numpy as np
import rclpy
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from support.ros_nodes import destroy_node

RELIABLE = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
#: what node tests run with unless they say otherwise: every frame processed and delivered
TEST_PARAMETERS = {'qos_reliability': 'reliable', 'full_policy': 'block', 'queue_size': 4,
                   'qos_depth': 50, 'diagnostics_period': 0.0}


def image_msg(frame: np.ndarray, stamp_ns: int, frame_id: str = 'camera',
              encoding: str = 'bgr8') -> Image:
    """Build a sensor_msgs/Image of `frame` with the given stamp and frame_id."""
    msg = fill_image_msg(Image(), frame, encoding)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def header_key(header) -> Tuple[int, int, str]:
    """Return what identifies a frame: (stamp sec, stamp nanosec, frame_id)."""
    return (header.stamp.sec, header.stamp.nanosec, header.frame_id)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Stop a node process as Ctrl-C would (SIGINT), killing it if it does not exit."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def console_script(executable: str, args: Sequence[str] = (),
                   command: Optional[Callable[[str], List[str]]] = None,
                   env: Optional[Dict[str, str]] = None) -> Iterator[subprocess.Popen]:
    """Run an installed console script (e.g. detector_node) as a child process.

    `command(path)` builds the whole command line from the script's path (default: the path,
    then `args`). Its output goes to a file (no pipe to fill) and is added to a failing
    assertion; the process is always stopped on exit.
    """
    exe = Path(sys.executable).with_name(executable)
    assert exe.exists(), f'the {executable} console script is not installed in the venv'
    cmd = command(str(exe)) if command is not None else [str(exe), *args]
    log = tempfile.TemporaryFile(mode='w+')
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=env)
    try:
        yield proc
    except AssertionError as exc:
        stop_process(proc)
        log.seek(0)
        raise AssertionError(f'{exc}\n--- {executable} output ---\n'
                             f'{log.read()[-4000:]}') from None
    finally:
        stop_process(proc)
        log.close()


class NodeHarness:
    """A node and a peer (publishers + recorders) spinning in one executor, the node process's own.

    Not rclpy's MultiThreadedExecutor: while a callback of a mutually exclusive group runs, it
    re-yields that group's other ready entities in a loop that holds the GIL, and other
    Python threads (the test's, the pipeline's) starved for 1.2-2.7 s (docs/reliability.md,
    "Test rigs and the executor").

    `inputs` maps a name to (message type, topic) the peer publishes on; `outputs` maps a name
    to (message type, topic) the peer records into `self.got[name]`.
    """

    def __init__(self, node_cls: type, params: Dict[str, Any], peer_name: str,
                 inputs: Dict[str, Tuple[type, str]], outputs: Dict[str, Tuple[type, str]],
                 qos: QoSProfile = RELIABLE) -> None:
        self.node = node_cls(parameter_overrides=[Parameter(k, value=v)
                                                  for k, v in params.items()])
        self.peer = rclpy.create_node(peer_name)
        self.pubs = {name: self.peer.create_publisher(msg_type, topic, qos)
                     for name, (msg_type, topic) in inputs.items()}
        self.got: Dict[str, List[Any]] = {name: [] for name in outputs}
        self._cv = threading.Condition()
        for name, (msg_type, topic) in outputs.items():
            self.peer.create_subscription(msg_type, topic, self._keeper(self.got[name]), qos)
        self.executor = make_executor()  # as the node's own process spins it
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _keeper(self, into: List[Any]):
        def keep(msg) -> None:
            with self._cv:
                into.append(msg)
                self._cv.notify_all()
        return keep

    def wait_count(self, into: List[Any], n: int, timeout: float = 30.0) -> List[Any]:
        """Wait until `into` (one of self.got's lists) holds `n` messages; return a copy."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(into) < n and time.monotonic() < deadline:
                self._cv.wait(0.1)
            return list(into)

    def wait_matched(self, pub, timeout: float = 10.0) -> None:
        """Wait until the node subscribes to `pub`'s topic."""
        deadline = time.monotonic() + timeout
        while pub.get_subscription_count() == 0:
            assert time.monotonic() < deadline, 'the node never subscribed'
            time.sleep(0.05)

    def start(self, inputs: Optional[Iterable[str]] = None) -> None:
        """Configure and activate the node, then wait until it subscribes to the inputs."""
        assert self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        for name in (inputs if inputs is not None else list(self.pubs)[:1]):
            self.wait_matched(self.pubs[name])

    def state(self) -> str:
        """Return the node's lifecycle state label ('unconfigured', 'inactive', 'active', ...)."""
        return self.node.lifecycle_state

    def close(self) -> None:
        close_rig(self)


def wait_until(predicate, timeout: float = 30.0) -> bool:
    """Poll a node-side counter (no message to wait on) until it holds, bounded."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def wait_status(node, level: int, text: str, timeout: float = 30.0):
    """Poll the node's own status (computed on demand) until it reads `level` with `text`."""
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = node.diagnostic_statuses()[0]
        if status.level == bytes([level]) and text in status.message:
            return status
        time.sleep(0.1)
    raise AssertionError(f'no level {level} "{text}" status within {timeout} s; last: '
                         f'{status.level if status else None} {status.message if status else ""}')


@contextlib.contextmanager
def harnesses(node_cls: type, base: Dict[str, Any], peer_name: str,
              inputs: Dict[str, Tuple[type, str]],
              outputs: Dict[str, Tuple[type, str]]) -> Iterator[Callable[..., 'NodeHarness']]:
    """Yield `make(**params)`: a NodeHarness with TEST_PARAMETERS, `base`, then `params`.

    Every harness made is closed on exit.
    """
    made: List[NodeHarness] = []

    def make(**params: Any) -> NodeHarness:
        h = NodeHarness(node_cls, {**TEST_PARAMETERS, **base, **params}, peer_name, inputs,
                        outputs, RELIABLE)
        made.append(h)
        return h
    try:
        yield make
    finally:
        for h in made:
            h.close()


def close_rig(rig) -> None:
    """Tear down a node rig that has `executor`, `_thread`, `node` and `peer`.

    Stop spinning, release the node's pipeline and backends (a node that has `release`), destroy
    both nodes (bounded, see support.ros_nodes.destroy_node).
    """
    rig.executor.shutdown()
    rig._thread.join(5)
    if hasattr(rig.node, 'release'):
        rig.node.release()
    destroy_node(rig.node, rig.peer)


__all__ = ['NodeHarness', 'close_rig', 'harnesses', 'RELIABLE', 'TEST_PARAMETERS', 'image_msg',
           'wait_until',
           'header_key', 'console_script', 'stop_process', 'wait_status']

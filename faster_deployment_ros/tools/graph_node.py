"""The tools' own node in a ROS graph: created, spun by a thread of its own, torn down.

A ROS tool: rclpy is imported inside the functions so that ``faster_deployment_ros.tools``
stays importable without ROS.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from typing import Any, Callable, Iterator


def destroy_node(node: Any, log: Callable[[str], None], timeout_s: float = 10.0) -> bool:
    """Destroy a tool's node, collecting garbage first; False when it did not finish in time.

    Collecting first leaves no abandoned executor state that still marks its handles in use.
    Seen in full test runs: destroy_node blocked forever in rclpy's destroy_when_not_in_use
    (after rclpy had been shut down and re-initialised in the same process; the tests now keep
    one context). The join timeout covers a teardown that blocks while releasing the GIL; one
    that holds it cannot be interrupted from Python.
    """
    name = node.get_name()
    gc.collect()
    done = threading.Thread(target=node.destroy_node, name='node-teardown', daemon=True)
    done.start()
    done.join(timeout_s)
    if done.is_alive():
        log(f'[{name}] warning: node teardown did not finish in {timeout_s:.0f} s; continuing')
        return False
    return True


@contextlib.contextmanager
def ros_context() -> Iterator[bool]:
    """Hold an rclpy context for the body of a `with`; yield whether it is this one's own.

    rclpy is initialised (and shut down after the body) unless this process already holds a
    context: in-process callers such as tests keep theirs.
    """
    import rclpy
    own = not rclpy.ok()
    if own:
        rclpy.init()
    try:
        yield own
    finally:
        if own:
            rclpy.try_shutdown()


@contextlib.contextmanager
def spinning_node(name: str, log: Callable[[str], None] = print) -> Iterator[Any]:
    """Yield a node named ``name`` whose callbacks a thread of its own runs during the `with`.

    rclpy is initialised here unless this process already holds a context (and then shut down
    again at the end, unless the node's teardown hung). The thread calls spin_once in a loop,
    not executor.spin(): stopping it is then a join, and the node is never destroyed while a
    wait set still uses it (rclpy's shutdown races with spin).
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    own_context = not rclpy.ok()
    if own_context:
        rclpy.init()
    node = rclpy.create_node(name)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()

    def spin_loop() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)
    spinner = threading.Thread(target=spin_loop, name=f'{name}-spin', daemon=True)
    spinner.start()
    try:
        yield node
    finally:
        stop.set()
        spinner.join()
        executor.shutdown()
        torn_down = destroy_node(node, log)
        if own_context and torn_down:
            rclpy.try_shutdown()

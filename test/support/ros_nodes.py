"""rclpy nodes that tests create: calling services reliably, tearing down without hanging."""
from __future__ import annotations

import contextlib


def call_service(node, client, request, timeout: float = 30.0, read_only: bool = False):
    """Call `client` from `node` (spinning it) and return the response; fail if none comes.

    rmw_fastrtps drops a reply when the service has not yet matched the client's reply reader
    ("failed to send response (timeout)", seen on Jazzy): a `read_only` request (one that changes
    nothing: get_state, get_parameters, an empty set_parameters) is re-sent every 2 s within
    `timeout`; other requests are sent once.
    """
    import time

    import rclpy
    deadline = time.monotonic() + timeout
    while True:
        future = client.call_async(request)
        wait = max(0.0, deadline - time.monotonic())
        rclpy.spin_until_future_complete(node, future,
                                         timeout_sec=min(2.0, wait) if read_only else wait)
        if future.done() and future.result() is not None:
            return future.result()
        if not read_only or time.monotonic() >= deadline:
            break
    assert future.done(), f'{client.srv_name} did not answer: the node hangs or died'
    return future.result()


def destroy_node(*nodes) -> None:
    """Destroy test nodes without letting rclpy's teardown hang the run.

    Node.destroy_node waits until no executor holds the node's entities; a generator of a
    spin_once (rclpy's global executor keeps its last one) can hold them indefinitely. The
    garbage is collected first, the global executor forgets its generator, and each destroy
    is bounded: a node still stuck after 10 s is left to the process exit, with a warning.
    """
    import gc
    import threading
    import warnings

    executor = _global_executor()
    if executor is not None:
        for node in nodes:
            with contextlib.suppress(Exception):
                executor.remove_node(node)
        executor._cb_iter = None  # its last wait's generator holds entity handles
    gc.collect()
    for node in nodes:
        t = threading.Thread(target=node.destroy_node, name='test-destroy-node', daemon=True)
        t.start()
        t.join(10.0)
        if t.is_alive():
            warnings.warn(f'destroy_node of {node.get_name()} still blocked after 10 s')


def _global_executor():
    try:
        import rclpy
        return rclpy.get_global_executor() if rclpy.ok() else None
    except Exception:  # noqa: BLE001 - no rclpy, no executor to reset
        return None


__all__ = ['destroy_node']

"""How a perception node process runs: its executor, `autostart`, and an orderly stop on signals.

`run_node(NodeClass)` is the console scripts' entry (detector_node, depth_node).
"""
from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
from typing import Optional

import rclpy
from rclpy.executors import (ExternalShutdownException, MultiThreadedExecutor,
                             SingleThreadedExecutor)
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.signals import SignalHandlerOptions

from ..core.memory import limit_malloc_arenas, reuse_large_buffers


def make_executor(kind: str = ''):
    """Return the executor that spins a perception node.

    Every callback of ours is short (the image callback only queues the frame; results are
    published from the pipeline's thread), so one thread suffices, and it spends less per message
    than rclpy's MultiThreadedExecutor (lower receive latency and CPU; rclpy.experimental's
    EventsExecutor busy-looped and ignored SIGTERM: figures in docs/performance.md). `kind` (or
    FDR_EXECUTOR): single (default) or multi. rclpy's MultiThreadedExecutor also spins while a
    callback of a mutually exclusive group runs and then starves other Python threads of the
    GIL for up to seconds (docs/reliability.md, "Test rigs and the executor").
    """
    kind = (kind or os.environ.get('FDR_EXECUTOR', '') or 'single').lower()
    if kind == 'multi':
        return MultiThreadedExecutor(num_threads=2)
    return SingleThreadedExecutor()


def switch_interval() -> Optional[float]:
    """Return the GIL switch interval (s) FDR_SWITCH_INTERVAL_US asks for; None: Python's own.

    For A/B measurements (docs/performance.md, "outside view"): at 100 us the pre-processing
    thread waits 0.2 ms less for the GIL after the image callback, but the pipeline's thread
    hand-overs took 0.2 ms longer in the quiet run, so the default stays Python's 5 ms.
    """
    text = os.environ.get('FDR_SWITCH_INTERVAL_US', '')
    if not text:
        return None
    try:
        value = float(text) * 1e-6
    except ValueError:
        raise SystemExit(f'FDR_SWITCH_INTERVAL_US={text!r} is not a number of microseconds: '
                         'unset it or give e.g. 100') from None
    if value <= 0:
        raise SystemExit(f'FDR_SWITCH_INTERVAL_US={text!r} must be > 0 (e.g. 100)')
    return value


def run_node(node_cls, args=None) -> None:
    """Console-script entry: one efficient executor (see make_executor); honour `autostart`.

    FDR_SWITCH_INTERVAL_US sets the process's GIL switch interval (switch_interval).

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
    interval = switch_interval()
    if interval is not None:
        sys.setswitchinterval(interval)
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
        try:
            node.release()
            executor.shutdown(timeout_sec=1.0)
            node.destroy_node()
        finally:
            rclpy.try_shutdown()


#: seconds an orderly stop may take after SIGINT / SIGTERM before run_node gives up (exit 1)
SHUTDOWN_LIMIT_S = 10.0

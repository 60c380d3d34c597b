"""A bounded hand-off in front of a blocking consumer, so a producer callback never waits.

Under `full_policy: block` the pipeline's `submit` waits for space. Waiting in a ROS
subscription callback would stall the executor (timers, services, parameter changes, other
subscriptions) and hide the back-pressure inside the middleware, where lost messages are counted
nowhere. `Feeder` keeps the callback short: it appends the frame to a backlog of `capacity`
frames (what the subscription's history depth would have held) and a thread of its own feeds
them to the blocking submit in order. A full backlog drops its oldest frame, reported to
`on_drop`, so the loss is counted; a frame the consumer refuses (closed) is reported to
`on_drop` too, and one whose submit raised to `on_error` with the exception.
"""
from __future__ import annotations

from collections import deque
import threading
from typing import Any, Callable, Deque, Optional, Tuple


class Feeder:
    def __init__(self, submit: Callable[[Any, Any], bool], capacity: int,
                 on_drop: Callable[[Any], None], name: str = 'feeder',
                 on_error: Optional[Callable[[Any, BaseException], None]] = None) -> None:
        if capacity < 1:
            raise ValueError(f'capacity must be >= 1, got {capacity}')
        self._submit, self._on_drop, self.capacity = submit, on_drop, int(capacity)
        self._on_error = on_error
        self._q: Deque[Tuple[Any, Any]] = deque()
        self._cv = threading.Condition()
        self._stop = False
        self._busy = False
        self._thread = threading.Thread(target=self._loop, name=f'{name}-feed', daemon=True)
        self._thread.start()

    def put(self, item: Any, context: Any) -> None:
        """Queue a frame; never blocks. A full backlog drops (and reports) its oldest frame."""
        evicted = None
        with self._cv:
            if self._stop:
                evicted = context
            else:
                if len(self._q) >= self.capacity:
                    evicted = self._q.popleft()[1]
                self._q.append((item, context))
                self._cv.notify()
        if evicted is not None:
            self._on_drop(evicted)

    def __len__(self) -> int:
        with self._cv:
            return len(self._q) + (1 if self._busy else 0)

    def close(self, timeout: float = 2.0) -> None:
        """Stop feeding; frames still in the backlog are dropped (reported).

        The submit call in progress returns once the consumer has room or is closed.
        """
        with self._cv:
            self._stop = True
            left = [ctx for _, ctx in self._q]
            self._q.clear()
            self._cv.notify_all()
        for ctx in left:
            self._on_drop(ctx)
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._q and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                item, ctx = self._q.popleft()
                self._busy = True
            error: Optional[BaseException] = None
            try:
                accepted = self._submit(item, ctx)
            except Exception as exc:  # noqa: BLE001 - counted with its reason; feeding goes on
                accepted, error = False, exc
            with self._cv:
                self._busy = False
            if error is not None and self._on_error is not None:
                self._on_error(ctx, error)
            elif not accepted:
                self._on_drop(ctx)


__all__ = ['Feeder']

"""Frames waiting, in delivery order, for a stamp-matched input that comes after them (ROS-free).

A detector lifts its boxes to 3D with the depth image of the same stamp. From an RGB-D camera
that image is there before the detections are; from a depth model (our depth_node on the same
camera) it usually comes later, since that model is slower. `LateJoin` holds each delivered
frame until `resolve` finds its match, says it will not come, or `wait_s` has passed, and hands
the frames on strictly in the order they were added: a frame whose match is still on its way
holds the ones behind it, so outputs never leave out of order. Every frame ends either emitted
or skipped with a reason (counted by the caller); none is dropped silently: `limit` frames
waiting at most (the oldest is then skipped), and `close` skips what is left.

Thread-safe: the delivery path (on_result) adds and drains, the match's subscription and a
timer drain; `emit` and `skip` run under the lock, so two threads never emit out of order.
"""
from __future__ import annotations

from collections import deque
import threading
from typing import Any, Callable, Deque, Tuple

#: resolve(stamp, item) -> (READY, value) | (WAIT, reason) | (SKIP, reason)
READY, WAIT, SKIP = 'ready', 'wait', 'skip'


class LateJoin:
    """Frames (stamp, item) waiting up to `wait_s` for their match; emitted in order."""

    def __init__(self, wait_s: float, limit: int = 64) -> None:
        if not 0.0 <= wait_s <= 10.0:
            raise ValueError(f'wait {wait_s} s: must lie in 0..10 s')
        if limit < 1:
            raise ValueError(f'limit {limit}: at least 1 frame must be able to wait')
        self.wait_s = float(wait_s)
        self.limit = int(limit)
        self._lock = threading.Lock()
        self._frames: Deque[Tuple[int, Any, float]] = deque()

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)

    def add(self, stamp: int, item: Any, now: float, resolve: Callable[[int, Any], tuple],
            emit: Callable[[int, Any, Any], None], skip: Callable[[int, Any, str], None]) -> None:
        """Queue a delivered frame behind those still waiting, then drain."""
        with self._lock:
            self._frames.append((int(stamp), item, float(now)))
            while len(self._frames) > self.limit:
                old_stamp, old_item, _ = self._frames.popleft()
                skip(old_stamp, old_item, f'{self.limit} frames already waiting for their match')
            self._drain(now, resolve, emit, skip)

    def drain(self, now: float, resolve: Callable[[int, Any], tuple],
              emit: Callable[[int, Any, Any], None],
              skip: Callable[[int, Any, str], None]) -> None:
        """Emit or skip, from the oldest, every frame that no longer waits (a match arrived)."""
        with self._lock:
            self._drain(now, resolve, emit, skip)

    def _drain(self, now, resolve, emit, skip) -> None:
        while self._frames:
            stamp, item, since = self._frames[0]
            kind, value = resolve(stamp, item)
            if kind == WAIT:
                if now - since < self.wait_s:
                    return  # still on its way: it and the frames behind it wait
                kind, value = SKIP, f'{value} (waited {self.wait_s * 1e3:.0f} ms)'
            self._frames.popleft()
            if kind == READY:
                emit(stamp, item, value)
            else:
                skip(stamp, item, value)

    def close(self, skip: Callable[[int, Any, str], None], why: str) -> None:
        """Skip every frame still waiting, with `why`."""
        with self._lock:
            while self._frames:
                stamp, item, _ = self._frames.popleft()
                skip(stamp, item, why)

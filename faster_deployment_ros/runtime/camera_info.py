"""Matching each image to its camera's CameraInfo (or registered depth) by stamp (ROS-free).

A camera driver publishes `camera_info` beside every image with the same stamp. The node keeps
the last few per camera here (`add` from the camera_info subscription) and asks for the one of
a frame when it needs the geometry (`lookup` / `match`, best at delivery, after inference, by
when the CameraInfo of that frame has arrived too). Exact stamps by default; a bounded
approximate window (`tolerance_ns`) for drivers that stamp the two slightly differently. A miss
says why, for a clear WARN: nothing received yet, the nearest stamp and how far it is, the
CameraInfo is not yet there, or it describes another image size / is uncalibrated. Never
another frame's CameraInfo silently. The same cache matches a detector's frames to the
registered depth images of an RGB-D camera (`what='depth image'`, the depth array as info).

Thread-safe: the subscription callback adds while the delivery path (on_result) looks up.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
import threading
from typing import Any, Deque, Optional, Tuple

from ..core.geometry import CameraModel

#: Most CameraInfos kept per camera, and the widest approximate window accepted (1 s).
MAX_DEPTH = 1000
MAX_TOLERANCE_NS = 1_000_000_000


def stamp_ns(stamp: Any) -> int:
    """builtin_interfaces/Time (sec, nanosec) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _ms(ns: int) -> str:
    return f'{ns / 1e6:.3f} ms'


@dataclass(frozen=True)
class InfoMatch:
    """The CameraInfo of a frame (`info`, None when none fits) and, when none, `reason`."""

    info: Any
    reason: str = ''
    offset_ns: int = 0  # info stamp - image stamp of the match (0 for exact)
    pending: bool = False  # none yet, but the image is newer than every one held: may come

    def __bool__(self) -> bool:
        return self.info is not None


class CameraInfoCache:
    """The last `depth` CameraInfos of one camera, matched to image stamps.

    `info` objects are opaque here (a CameraModel, a message, ...); `width` / `height` are the
    image size they describe, checked against the image's. `name` names the camera or topic in
    the reasons, `what` the kind of message (e.g. 'depth image' when the cache holds the
    registered depth images a detector lifts its boxes with).
    """

    def __init__(self, depth: int = 10, tolerance_ns: int = 0, name: str = 'camera_info',
                 what: str = 'CameraInfo') -> None:
        self.what = what
        self.depth = int(depth)
        if not 1 <= self.depth <= MAX_DEPTH:
            raise ValueError(f'CameraInfo cache depth {depth}: must lie in 1..{MAX_DEPTH}')
        self.tolerance_ns = self._check_tolerance(tolerance_ns)
        self.name = name
        self._lock = threading.Lock()
        # (stamp_ns, info, (width, height), error): error is why the info is unusable, or ''
        self._items: Deque[Tuple[int, Any, Tuple[int, int], str]] = deque(maxlen=self.depth)
        self.received = 0

    @staticmethod
    def _check_tolerance(tolerance_ns: int) -> int:
        tolerance_ns = int(tolerance_ns)
        if not 0 <= tolerance_ns <= MAX_TOLERANCE_NS:
            raise ValueError(f'CameraInfo stamp tolerance {tolerance_ns} ns: must lie in '
                             f'0..{MAX_TOLERANCE_NS} ns (0: exact stamps)')
        return tolerance_ns

    def add(self, stamp: int, info: Any, width: int, height: int, error: str = '') -> None:
        """Keep `info` for images stamped `stamp` (ns); `error` marks an unusable one."""
        with self._lock:
            self._items.append((int(stamp), info, (int(width), int(height)), error))
            self.received += 1

    def add_camera_info(self, msg: Any) -> None:
        """Keep a sensor_msgs/CameraInfo as its CameraModel (or why it has none)."""
        try:
            model = CameraModel.from_camera_info(msg)
        except ValueError as exc:
            self.add(stamp_ns(msg.header.stamp), None, msg.width, msg.height, str(exc))
            return
        self.add(stamp_ns(msg.header.stamp), model, model.width, model.height)

    def lookup(self, stamp: int, width: Optional[int] = None, height: Optional[int] = None,
               tolerance_ns: Optional[int] = None) -> InfoMatch:
        """Return the info stamped `stamp` (ns), or the nearest within the tolerance.

        `tolerance_ns` overrides the cache's for this call (0: exact). With `width` and
        `height`, an info for another image size does not match (reason says so).
        """
        tol = self.tolerance_ns if tolerance_ns is None else self._check_tolerance(tolerance_ns)
        stamp = int(stamp)
        with self._lock:
            items = list(self._items)
        if not items:
            return InfoMatch(None, f'no {self.what} received yet on {self.name}: is the camera '
                                   "publishing it (remap the node's topic to the camera's)?")
        best = min(items, key=lambda it: (abs(it[0] - stamp), it[0]))
        offset = best[0] - stamp
        if abs(offset) > tol:
            newest = max(it[0] for it in items)
            oldest = min(it[0] for it in items)
            window = 'the exact stamp' if tol == 0 else f'within {_ms(tol)}'
            if stamp > newest:
                why = (f'none at or after it yet (the newest is {_ms(stamp - newest)} older): '
                       'it has not arrived yet, the driver stamps it earlier than '
                       'the image (a bounded tolerance allows that) or stopped publishing it')
            elif stamp < oldest and len(items) == self.depth:
                why = (f'the image is older than the {self.depth} {self.what}s kept (oldest '
                       f'{_ms(oldest - stamp)} newer): raise the cache depth')
            else:
                side = 'newer' if offset > 0 else 'older'
                why = (f'stamps differ: the nearest is {_ms(abs(offset))} {side}; '
                       'the driver stamps it differently from the image (a bounded '
                       'tolerance allows that) or it is another camera')
            return InfoMatch(None, f'no {self.what} on {self.name} for the image stamped '
                                   f'{stamp / 1e9:.9f} s ({window}): {why}',
                             pending=stamp > newest)
        _, info, size, error = best
        if error:
            return InfoMatch(None, f'{self.what} on {self.name} stamped '
                                   f'{best[0] / 1e9:.9f} s is unusable: {error}', offset)
        if width is not None and height is not None and size != (int(width), int(height)):
            return InfoMatch(None, f'{self.what} on {self.name} stamped {best[0] / 1e9:.9f} s '
                                   f'describes a {size[0]}x{size[1]} image but the image is '
                                   f'{int(width)}x{int(height)}: it belongs to another stream '
                                   'or resolution', offset)
        return InfoMatch(info, '', offset)

    def match(self, stamp: int, tolerance_ns: Optional[int] = None,
              width: Optional[int] = None, height: Optional[int] = None) -> Any:
        """Return the matching info or None (`lookup` gives the reason)."""
        return self.lookup(stamp, width, height, tolerance_ns).info

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

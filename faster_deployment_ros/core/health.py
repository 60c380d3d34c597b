"""Health of one input stream (or a whole node) as a supervisor should see it, without ROS.

`Health` counts what happened to every frame received: published, dropped (queue full),
failed (bad frame, model error) or still in flight, so `frames_in == published + dropped +
failed + in_flight` always holds. Frames lost before they reached us are counted apart:
`lost` (the middleware's message-lost event) and `stamp_gaps` (frames missing from a regular
stamp series). `status()` turns the last `window_s` seconds into a diagnostic_updater-style
level and a message a person understands: ERROR when (nearly) every frame failed, with the
last failure's reason, or when an inference worker is stuck in one call; WARN on a high drop,
loss or failure ratio, on stale results or on a publisher whose QoS cannot match the
subscription; STALE when input stops (fps decays to 0 with the window). One instance per camera
and one for the node give per-input and whole-node statuses alike.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
import math
import threading
import time
from typing import Callable, Deque, List, Mapping, Optional, Tuple

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs/DiagnosticStatus levels
LEVEL_NAMES = {OK: 'OK', WARN: 'WARN', ERROR: 'ERROR', STALE: 'STALE'}

_PUBLISHED, _DROPPED, _FAILED = 0, 1, 2


@dataclass
class HealthLimits:
    """When a stream stops being OK; ratios are over the frames of the last `window_s`."""

    window_s: float = 5.0          # the window rates and ratios are computed over
    stale_s: float = 3.0           # no input for this long: STALE
    error_fail_ratio: float = 0.9  # this share of frames failed: ERROR
    warn_fail_ratio: float = 0.2   # WARN
    warn_drop_ratio: float = 0.5   # dropped (queue full) or lost on the way: WARN
    max_latency_ms: float = 500.0  # median input age + pipeline time above this: WARN; 0 = off
    min_frames: int = 3            # fewer frames in the window decide no ratio
    # an inference call running longer than max(stuck_min_s, stuck_infer_factor x the mean
    # inference time) is a stuck worker: ERROR
    stuck_min_s: float = 5.0
    stuck_infer_factor: float = 20.0

    def validate(self) -> None:
        if self.window_s <= 0 or self.stale_s <= 0:
            raise ValueError('health window and stale time must be > 0')
        for name in ('stuck_min_s', 'stuck_infer_factor'):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f'{name} must be a finite number > 0, got {v!r}')
        for name in ('error_fail_ratio', 'warn_fail_ratio', 'warn_drop_ratio'):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f'{name} must lie in (0, 1]')
        if self.max_latency_ms < 0:
            raise ValueError('max_latency_ms must be >= 0 (0 turns the check off)')

    def stuck_bound_s(self, mean_infer_s: Optional[float]) -> float:
        """Seconds one inference call may take before its worker counts as stuck."""
        mean = mean_infer_s if mean_infer_s is not None and math.isfinite(mean_infer_s) else 0.0
        return max(self.stuck_min_s, self.stuck_infer_factor * max(mean, 0.0))


@dataclass
class HealthStatus:
    level: int
    message: str
    values: List[Tuple[str, str]] = field(default_factory=list)

    @property
    def level_name(self) -> str:
        return LEVEL_NAMES[self.level]


class StampGaps:
    """Frames missing from a stream whose stamps come at a regular period (a camera).

    The period is the median of recent stamp differences; a difference of k periods means
    k - 1 frames never arrived. Such a gap counts (`add` returns it, `missing` sums it) once
    the stream is back at its period, so a lost burst counts when it is over. `confirm`
    consecutive gaps at one steady new period are no loss but a camera that slowed down: the
    period adapts to them and they count nothing (a speed-up adapts through the median).
    Stamps going back, or forward by more than `step_s` beyond the time that passed between
    the two arrivals (a clock step, e.g. NTP after boot), restart the estimate
    (`clock_steps`); so does a forward jump of over 1000 periods when no arrival time is given.
    """

    def __init__(self, history: int = 31, confirm: int = 5, step_s: float = 2.0) -> None:
        self._last: Optional[float] = None
        self._last_arrival: Optional[float] = None
        self._deltas: Deque[float] = deque(maxlen=history)
        self._pending: List[Tuple[float, int]] = []  # (difference, frames missing) unconfirmed
        self.confirm, self.step_s = confirm, step_s
        self.missing = 0
        self.clock_steps = 0
        self.rate_changes = 0

    @property
    def period(self) -> Optional[float]:
        """The current period estimate (s), or None while it has too few differences."""
        if len(self._deltas) < 5:
            return None
        return sorted(self._deltas)[len(self._deltas) // 2]

    def _restart(self) -> None:
        self._deltas.clear()
        self._pending.clear()

    def restart(self) -> None:
        """Start a new series (a new activation): the time in between is no gap; counters kept."""
        self._restart()
        self._last = self._last_arrival = None

    def add(self, stamp_s: float, arrival_s: Optional[float] = None) -> int:
        """Record a stamp and its arrival time (monotonic clock; None: unknown).

        Returns the frames now known missing (0 mostly).
        """
        last, self._last = self._last, stamp_s
        last_arrival, self._last_arrival = self._last_arrival, arrival_s
        if not math.isfinite(stamp_s) or stamp_s <= 0:  # unset stamps carry no series
            self._last = None
            return 0
        if last is None:
            return 0
        delta = stamp_s - last
        period = self.period
        if delta <= 0:  # a restarted or reordered source, or the clock stepped back
            if delta < -self.step_s:
                self.clock_steps += 1
            self._restart()
            return 0
        if arrival_s is not None and last_arrival is not None:
            stepped = delta - (arrival_s - last_arrival) > self.step_s
        else:
            stepped = period is not None and delta > 1000 * period
        if stepped:  # the stamps jumped ahead of time itself: the clock stepped
            self.clock_steps += 1
            self._restart()
            return 0
        if period is None:
            self._deltas.append(delta)
            return 0
        k = round(delta / period)
        if k >= 2 and delta > 1.5 * period:  # k - 1 frames lost, or the camera slowed down
            self._pending.append((delta, k - 1))
            recent = [d for d, _ in self._pending[-self.confirm:]]
            if len(recent) == self.confirm and max(recent) <= 1.2 * min(recent):
                self._deltas.clear()  # a steady new period: the camera's rate dropped
                self._deltas.extend(recent)
                self._pending.clear()
                self.rate_changes += 1
                return 0
            if len(self._pending) < self.confirm:
                return 0
            missing = self._pending.pop(0)[1]  # irregular gaps for a while: losses
        else:
            missing = sum(m for _, m in self._pending)  # back at the period: they were losses
            self._pending.clear()
            self._deltas.append(delta)
        self.missing += missing
        return missing


class Health:
    """Counters and a time window of outcomes for one stream; thread-safe.

    Call `received` for every frame that arrives, then exactly one of `published`, `dropped`
    or `failed` for it; `lost` for frames the middleware reports lost before arrival.
    """

    def __init__(self, name: str = '', limits: Optional[HealthLimits] = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.limits = limits or HealthLimits()
        self.limits.validate()
        self._clock = clock
        self._lock = threading.Lock()
        self.frames_in = self.published_total = self.dropped_total = self.failed_total = 0
        self.lost_total = 0
        self.gaps = StampGaps()
        self._events: Deque[Tuple[float, int]] = deque()   # (t, outcome)
        self._arrivals: Deque[float] = deque()
        self._lost: Deque[Tuple[float, int]] = deque()
        self._gap_events: Deque[Tuple[float, int]] = deque()
        self._latency: Deque[Tuple[float, float]] = deque()  # (t, seconds)
        self._last_input: Optional[float] = None
        self._since = clock()
        self.last_error = ''
        self._last_error_t: Optional[float] = None
        self.incompatible_qos_total = 0
        self._qos_problem = ''
        self._qos_problem_t: Optional[float] = None

    def restart(self) -> None:
        """Return a new activation: the idle time counts from now (counters are kept)."""
        with self._lock:
            self._since = self._clock()
            self._last_input = None
            self._events.clear()
            self._arrivals.clear()
            self._lost.clear()
            self._gap_events.clear()
            self._latency.clear()
            self._qos_problem, self._qos_problem_t = '', None
            self.gaps.restart()

    # ---- events ----------------------------------------------------------------------------
    def received(self, stamp_s: Optional[float] = None) -> None:
        now = self._clock()
        with self._lock:
            self._trim(now)  # bounded without anyone reading the status
            self.frames_in += 1
            self._last_input = now
            self._arrivals.append(now)
            if stamp_s is not None:
                missing = self.gaps.add(stamp_s, now)
                if missing:
                    self._gap_events.append((now, missing))

    def published(self, latency_s: Optional[float] = None) -> None:
        now = self._clock()
        with self._lock:
            self._trim(now)
            self.published_total += 1
            self._events.append((now, _PUBLISHED))
            if latency_s is not None and latency_s >= 0:
                self._latency.append((now, latency_s))

    def dropped(self, n: int = 1) -> None:
        if n <= 0:
            return
        now = self._clock()
        with self._lock:
            self.dropped_total += n
            self._events.extend((now, _DROPPED) for _ in range(n))

    def failed(self, reason: str) -> None:
        now = self._clock()
        with self._lock:
            self.failed_total += 1
            self._events.append((now, _FAILED))
            self.last_error, self._last_error_t = reason, now

    def lost(self, n: int) -> None:
        """Count `n` messages the middleware reports as never delivered to the callback."""
        if n <= 0:
            return
        now = self._clock()
        with self._lock:
            self.lost_total += n
            self._lost.append((now, n))

    def incompatible_qos(self, reason: str) -> None:
        """Record that a publisher's QoS cannot match the subscription.

        `reason` says which policy and how to fix it; `status` reports it as WARN while no input
        came since, and for `window_s` after.
        """
        now = self._clock()
        with self._lock:
            self.incompatible_qos_total += 1
            self._qos_problem, self._qos_problem_t = reason, now

    # ---- reading ---------------------------------------------------------------------------
    @property
    def in_flight(self) -> int:
        return self.frames_in - self.published_total - self.dropped_total - self.failed_total

    def _trim(self, now: float) -> None:
        start = now - self.limits.window_s
        for q in (self._events, self._lost, self._gap_events, self._latency):
            while q and q[0][0] < start:
                q.popleft()
        while self._arrivals and self._arrivals[0] < start:
            self._arrivals.popleft()

    def status(self, extra_latency_s: float = 0.0,
               busy_workers: Optional[Mapping[int, float]] = None,
               mean_infer_s: Optional[float] = None) -> HealthStatus:
        """Level, message and values of an active stream, from the last window.

        `extra_latency_s` is added to the pipeline latency (e.g. the median input age).
        `busy_workers` ({worker: seconds inside its current inference call, 0 when idle}, every
        worker, as `Pipeline.busy_workers()` gives it) and `mean_infer_s`
        (`Pipeline.mean_infer_s`) decide whether a worker is stuck: a call longer than
        `HealthLimits.stuck_bound_s` is ERROR, naming the worker and how long, whatever the
        frames say.
        """
        lim = self.limits
        now = self._clock()
        with self._lock:
            self._trim(now)
            span = min(lim.window_s, max(now - self._since, 1e-3))
            n_pub = sum(1 for _, k in self._events if k == _PUBLISHED)
            n_drop = sum(1 for _, k in self._events if k == _DROPPED)
            n_fail = sum(1 for _, k in self._events if k == _FAILED)
            n_lost = sum(n for _, n in self._lost)
            n_gap = sum(n for _, n in self._gap_events)
            lat = sorted(v for _, v in self._latency)
            fps = n_pub / span
            in_fps = len(self._arrivals) / span
            idle = now - (self._last_input if self._last_input is not None else self._since)
            counters = (self.frames_in, self.published_total, self.dropped_total,
                        self.failed_total, self.lost_total, self.gaps.missing)
            last_error = self.last_error
            qos_problem, qos_t, qos_total = (self._qos_problem, self._qos_problem_t,
                                             self.incompatible_qos_total)
            clock_steps = self.gaps.clock_steps
            last_input = self._last_input
        frames_in, published, dropped, failed, lost, gaps = counters
        latency_ms = (lat[len(lat) // 2] + extra_latency_s) * 1000.0 if lat else None
        values = [('frames_in', frames_in), ('published', published), ('dropped', dropped),
                  ('failed', failed), ('in_flight', frames_in - published - dropped - failed),
                  ('lost_middleware', lost), ('stamp_gaps', gaps),
                  ('fps', f'{fps:.2f}'), ('input_fps', f'{in_fps:.2f}'),
                  ('idle_s', f'{idle:.1f}')]
        if latency_ms is not None:
            values.append(('latency_p50_ms', f'{latency_ms:.1f}'))
        if last_error:
            values.append(('last_error', last_error))
        if clock_steps:
            values.append(('stamp_clock_steps', clock_steps))
        if qos_total:
            values.append(('incompatible_qos', f'{qos_total}: {qos_problem}'))
        bound = lim.stuck_bound_s(mean_infer_s)
        stuck = sorted((i, t) for i, t in (busy_workers or {}).items() if t > bound)
        if busy_workers:
            values.append(('worker_busy_s', ', '.join(f'{i}: {t:.1f}'
                                                      for i, t in sorted(busy_workers.items()))))
        values = [(k, str(v)) for k, v in values]

        def done(level: int, message: str) -> HealthStatus:
            return HealthStatus(level, message, values)

        if stuck:
            names = ', '.join(str(i) for i, _ in stuck)
            times = ', '.join(f'{t:.1f} s' for _, t in stuck)
            free = len(busy_workers) - len(stuck)
            how = (f'max({lim.stuck_min_s:g} s, {lim.stuck_infer_factor:g} x the mean inference '
                   f'{1e3 * mean_infer_s:.0f} ms)' if mean_infer_s else
                   f'{lim.stuck_min_s:g} s, no inference finished yet')
            return done(ERROR, f'inference worker{"s" if len(stuck) > 1 else ""} {names} stuck '
                               f'in one call for {times} (bound {bound:.1f} s = {how}): the '
                               f'backend or its device hangs; '
                               + ('no worker left, nothing is processed' if free <= 0 else
                                  f'the other {free} carry the load')
                               + '. Check the device and driver, then restart the node')
        qos_unanswered = qos_t is not None and (last_input is None or last_input < qos_t)
        if idle >= lim.stale_s:
            what = 'no input yet' if frames_in == 0 or last_input is None else 'no input'
            if qos_unanswered:  # the likely reason: say it instead of plain STALE
                return done(WARN, f'{what} for {idle:.1f} s: {qos_problem}')
            return done(STALE, f'{what} for {idle:.1f} s')
        processed = n_pub + n_fail
        if processed >= lim.min_frames and n_fail / processed >= lim.error_fail_ratio:
            return done(ERROR, f'{n_fail} of {processed} frames failed in the last '
                               f'{lim.window_s:g} s, nothing published: {last_error}'
                        if n_pub == 0 else
                        f'{n_fail} of {processed} frames failed in the last '
                        f'{lim.window_s:g} s: {last_error}')
        if processed >= lim.min_frames and n_fail / processed >= lim.warn_fail_ratio:
            return done(WARN, f'{n_fail} of {processed} frames failed in the last '
                              f'{lim.window_s:g} s: {last_error}')
        arrived = n_pub + n_drop + n_fail
        missing = max(n_lost, n_gap)
        if arrived + missing >= lim.min_frames:
            if n_drop / max(arrived, 1) >= lim.warn_drop_ratio:
                return done(WARN, f'dropping {n_drop} of {arrived} frames (input faster than '
                                  f'the model: {in_fps:.1f} Hz in, {fps:.1f} fps out)')
            if missing / (arrived + missing) >= lim.warn_drop_ratio:
                return done(WARN, f'{missing} of {arrived + missing} frames lost before they '
                                  f'reached the node (middleware: {n_lost}, stamp gaps: {n_gap})')
        if qos_t is not None and (qos_unanswered or now - qos_t < lim.window_s):
            return done(WARN, qos_problem)
        if latency_ms is not None and lim.max_latency_ms and latency_ms > lim.max_latency_ms:
            return done(WARN, f'results are {latency_ms:.0f} ms old (bound '
                              f'{lim.max_latency_ms:g} ms)')
        if processed == 0 and arrived == 0:
            return done(OK, 'active, waiting for input')
        return done(OK, f'active: {fps:.1f} fps, {n_drop} dropped, {n_fail} failed in the last '
                        f'{lim.window_s:g} s')


__all__ = ['OK', 'WARN', 'ERROR', 'STALE', 'LEVEL_NAMES', 'Health', 'HealthLimits',
           'HealthStatus', 'StampGaps']

"""Sliding-window latency percentiles and a windowed rate meter.

The pipeline and the benchmarks share these so they report the same numbers the same way:
samples go in as seconds, summaries come out in milliseconds.
"""
from __future__ import annotations

from collections import deque
import threading
import time
from typing import Deque, Dict, Iterable, Optional

import numpy as np

SUMMARY_KEYS = ('count', 'mean', 'p50', 'p90', 'p99', 'max')


def summarize(values_s: Iterable[float], scale: float = 1000.0) -> Dict[str, float]:
    """count, mean, p50, p90, p99, min, max of `values_s` (seconds), times `scale` (ms)."""
    a = np.asarray(values_s if isinstance(values_s, np.ndarray) else list(values_s),
                   dtype=np.float64).ravel()
    if a.size == 0:
        return {'count': 0, 'mean': 0.0, 'p50': 0.0, 'p90': 0.0, 'p99': 0.0,
                'min': 0.0, 'max': 0.0}
    p50, p90, p99 = np.percentile(a, (50.0, 90.0, 99.0)) * scale
    return {'count': int(a.size), 'mean': float(a.mean() * scale), 'p50': float(p50),
            'p90': float(p90), 'p99': float(p99), 'min': float(a.min() * scale),
            'max': float(a.max() * scale)}


class RollingStats:
    """Percentiles over the last `window` samples; `add` is O(1), the sorting happens in `summary`.

    Thread-safe: one thread adds while another reads. With `max_age_s`, `values` and `summary`
    keep only samples added within that many seconds (recent behaviour, not an old phase's).
    """

    def __init__(self, window: int = 1000, max_age_s: Optional[float] = None) -> None:
        if int(window) < 1:
            raise ValueError(f'window must be >= 1, got {window}')
        self.window = int(window)
        self.max_age_s = max_age_s
        self._buf = np.zeros(self.window, np.float64)
        self._when = np.zeros(self.window, np.float64) if max_age_s is not None else None
        self._total = 0
        self._lock = threading.Lock()

    def add(self, value_s: float) -> None:
        with self._lock:
            self._buf[self._total % self.window] = value_s
            if self._when is not None:
                self._when[self._total % self.window] = time.monotonic()
            self._total += 1

    def __len__(self) -> int:
        return min(self._total, self.window)

    @property
    def total(self) -> int:
        """Samples ever added (the summary's `count` is only those still in the window)."""
        return self._total

    def values(self) -> np.ndarray:
        """Return the window's samples (seconds), oldest first."""
        with self._lock:
            n, w = self._total, self.window
            if self._when is not None:
                fresh = self._when[:min(n, w)] >= time.monotonic() - self.max_age_s
                if n <= w:
                    return self._buf[:n][fresh]
                k = n % w
                return np.concatenate((self._buf[k:][fresh[k:]], self._buf[:k][fresh[:k]]))
            if n <= w:
                return self._buf[:n].copy()
            k = n % w
            return np.concatenate((self._buf[k:], self._buf[:k]))

    def summary(self, scale: float = 1000.0) -> Dict[str, float]:
        out = summarize(self.values(), scale)
        out['total'] = self._total
        return out

    def reset(self) -> None:
        with self._lock:
            self._total = 0


class RateMeter:
    """Events per second over the last `window` events (and, if given, the last `max_age_s`)."""

    def __init__(self, window: int = 1000, max_age_s: Optional[float] = None) -> None:
        if int(window) < 2:
            raise ValueError(f'window must be >= 2 to measure a rate, got {window}')
        self._t: Deque[float] = deque(maxlen=int(window))
        self.max_age_s = max_age_s
        self._lock = threading.Lock()

    def tick(self, t: Optional[float] = None) -> None:
        """Record one event at `t` (time.perf_counter() seconds; now if None)."""
        with self._lock:
            self._t.append(time.perf_counter() if t is None else t)

    def rate(self, now: Optional[float] = None) -> float:
        with self._lock:
            ts = list(self._t)
        if self.max_age_s is not None:
            now = time.perf_counter() if now is None else now
            ts = [t for t in ts if now - t <= self.max_age_s]
        if len(ts) < 2 or ts[-1] <= ts[0]:
            return 0.0
        return (len(ts) - 1) / (ts[-1] - ts[0])

    def reset(self) -> None:
        with self._lock:
            self._t.clear()

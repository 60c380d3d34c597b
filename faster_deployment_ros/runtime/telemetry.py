"""What happened to every frame: health windows, per-camera counters, per-hop latency.

`Telemetry` is the node's bookkeeping without ROS: every frame received is counted published,
dropped or failed (core/health.py), per node and, with several cameras, per camera; the latency
of delivered frames is split into hops (HOPS) over the last 10 s; `values` lists what
/diagnostics shows besides the level. All methods are thread-safe where the pipeline's threads
call them (delivery, drops) and cheap on the subscription callback's path.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..core.health import Health, HealthLimits
from ..core.stats import RateMeter, RollingStats

#: A frame's hops, in order: stamp -> callback (transport, incl. deserialisation, when the stamp
#: is on this machine's clock), the callback until the frame is queued, the input queue, the
#: pipeline's pre / infer / post, the hand-over to the delivery thread, building the output
#: message(s), publishing them; `node` is queued -> published (pipeline total + build + publish).
HOPS = ('transport', 'callback', 'queue', 'pre', 'infer', 'post', 'handover', 'build', 'publish',
        'node')
#: at most one failure log line per this many seconds: one bad stream must not flood the log
FAILURE_LOG_PERIOD_S = 1.0


class CameraStats:
    """What happened to one camera's frames: a Health window (core/health.py), rate, latency.

    Received and failed frames are reported by the node, published ones from the delivery
    thread; queue drops come from the pipeline's per-source counter (sync_drops, called before
    each status), so the pipeline needs no per-camera callback.
    """

    def __init__(self, health: Optional[Health] = None, window: int = 1000) -> None:
        self.health = health if health is not None else Health()
        self.published = 0
        self.dropped_before_queue = 0  # `block`: the feeder's backlog was full
        self.latency = RollingStats(window)
        self.rate = RateMeter(max(2, window))
        self._dropped_seen = 0
        self._lock = threading.Lock()

    def add(self, total_s: float, t: float) -> None:
        """Record one published result (its pipeline time `total_s`, at perf_counter `t`)."""
        self.health.published(total_s)
        with self._lock:
            self.published += 1
            self.latency.add(total_s)
            self.rate.tick(t)

    def sync_drops(self, dropped_total: int) -> None:
        """Report the pipeline's drops of this source since the last call to the health."""
        with self._lock:
            delta, self._dropped_seen = dropped_total - self._dropped_seen, dropped_total
        self.health.dropped(delta)

    def summary(self) -> Dict[str, Any]:
        with self._lock:
            lat = self.latency.summary() if len(self.latency) else {}
            return {'published': self.published, 'fps': self.rate.rate(), 'latency_ms': lat}


class Telemetry:
    """Counters and latency of one node: `health` for the node, `cameras[i]` per camera."""

    def __init__(self, name: str, limits: HealthLimits) -> None:
        self.health = Health(name, limits)
        self.cameras: List[CameraStats] = []
        self.per_camera = False
        self.errors = 0
        self.published = 0
        self.input_age = RollingStats(1000)
        # Over the last 10 s, so /diagnostics shows the current load, not an earlier one.
        self.hops = {name: RollingStats(1000, max_age_s=10.0) for name in HOPS}
        self._last_failure_log = 0.0

    def set_cameras(self, names: Sequence[str], per_camera: bool) -> None:
        """One health window per camera, sharing the node's limits (runtime changes reach all).

        `per_camera` False: a single camera, counted in the node's window only.
        """
        self.per_camera = per_camera
        self.cameras = [CameraStats(Health(n, self.health.limits)) for n in names] \
            if per_camera else []

    def restart(self) -> None:
        self.health.restart()
        for cam in self.cameras:
            cam.health.restart()

    # ---- the callback's path --------------------------------------------------------------
    def received(self, stamp_s: float, source: Optional[int]) -> None:
        """Count a frame from camera `source` (None: the single camera), stamped `stamp_s`."""
        # How old the frame is on arrival (stamp to here: transport and executor), when the
        # stamp is on this machine's clock; a growing value means frames queue before us.
        age = time.time() - stamp_s
        if 0.0 <= age < 10.0:
            self.input_age.add(age)
            self.hops['transport'].add(age)
        # stamp gaps only make sense within one camera's series
        self.health.received(stamp_s if source is None else None)
        if source is not None:
            self.cameras[source].health.received(stamp_s)

    def dropped(self, source: Optional[int] = None, where: str = 'queue') -> None:
        """Count a dropped frame of camera `source`.

        `where`: at the input `queue` (per camera from the pipeline's own counters, see
        CameraStats.sync_drops), by the `feeder`'s full backlog (`block`), or at the `output`
        (finished after deactivate, or refused while closing).
        """
        self.health.dropped()
        if source is not None and where != 'queue':
            cam = self.cameras[source]
            cam.health.dropped()
            if where == 'feeder':
                cam.dropped_before_queue += 1

    def lost(self, count: int, source: Optional[int] = None) -> None:
        self.health.lost(count)
        if source is not None:
            self.cameras[source].health.lost(count)

    def incompatible_qos(self, reason: str, source: Optional[int] = None) -> None:
        """Report a publisher whose QoS cannot match camera `source`'s subscription."""
        self.health.incompatible_qos(reason)
        if source is not None:
            self.cameras[source].health.incompatible_qos(reason)

    # ---- the delivery path (on_result, one call at a time) --------------------------------
    def failed(self, reason: str, source: Optional[int]) -> bool:
        """Count a failed frame; True when it should be logged (throttled)."""
        self.errors += 1
        self.health.failed(reason)
        if source is not None:
            self.cameras[source].health.failed(reason)
        now = time.monotonic()
        if now - self._last_failure_log > FAILURE_LOG_PERIOD_S:
            self._last_failure_log = now
            return True
        return False

    def delivered(self, timings: Dict[str, float], source: Optional[int], t_out: float,
                  build_s: float, out_s: float) -> None:
        """Count a published frame: its pipeline `timings`, output build and publish time."""
        self.published += 1
        total = timings.get('total', 0.0)
        self.health.published(total)
        if source is not None:
            self.cameras[source].add(total, t_out)
        hops = self.hops
        for k in ('queue', 'pre', 'infer', 'post'):
            hops[k].add(timings.get(k, 0.0))
        hops['handover'].add(max(0.0, total - sum(timings.get(k, 0.0)
                                                  for k in ('queue', 'pre', 'infer', 'post'))))
        hops['build'].add(build_s)
        hops['publish'].add(out_s - build_s)
        hops['node'].add(total + out_s)

    # ---- reading --------------------------------------------------------------------------
    def latency_budget(self) -> Dict[str, Dict[str, float]]:
        """Hop -> {'p50', 'p99', 'mean'} in ms over the last delivered frames (HOPS order)."""
        out = {}
        for name in HOPS:
            s = self.hops[name].summary()
            if s['count']:
                out[name] = {q: s[q] for q in ('p50', 'p99', 'mean')}
        return out

    def input_age_s(self) -> float:
        """Median age of arriving frames (s), 0 before any."""
        return self.input_age.summary()['p50'] / 1000.0 if len(self.input_age) else 0.0

    def values(self, stats: Dict[str, Any], autotune_reason: str = '') -> List[Tuple[str, str]]:
        """(key, value) pairs for /diagnostics: pipeline counters, input age, stages, hops."""
        values = [(f'pipeline_{k}', str(stats[k]))
                  for k in ('frames_in', 'frames_out', 'dropped', 'failed', 'in_flight', 'queued')
                  if k in stats]
        if autotune_reason:
            values.append(('autotune', autotune_reason))
        if len(self.input_age):
            age = self.input_age.summary()
            values += [(f'input_age_{q}_ms', f'{age[q]:.2f}') for q in ('p50', 'p99')]
        for stage, s in stats.get('stages', {}).items():
            values += [(f'{stage}_{q}_ms', f'{s[q]:.2f}') for q in ('p50', 'p99') if q in s]
        for hop, s in self.latency_budget().items():
            values += [(f'hop_{hop}_{q}_ms', f'{s[q]:.3f}') for q in ('p50', 'p99', 'mean')]
        return values

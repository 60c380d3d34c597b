"""The cost model: predict configurations from measured stage times, pick one by a policy.

Each (workers, threads) configuration is predicted from the stage times.

Why a model instead of a sweep: running every (workers, threads) pair through the pipeline takes
minutes; measuring pre/post once and one inference per thread count takes seconds, and how a
configuration behaves follows from those closely enough to rank the candidates.

Policy (in this order):
1. among configurations that sustain the camera rate (with headroom) and whose predicted tail
   latency fits the budget, the lowest predicted latency (fewer cores on a tie);
2. if none sustains the rate within the budget: the highest throughput within the budget
   (frames will be dropped, the results stay fresh);
3. if nothing fits the budget at all: the lowest-latency configuration, and the reason says so.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple


def thread_candidates(cores: int) -> List[int]:
    """Return the thread counts per worker worth measuring on `cores` cores.

    Those that split `cores` evenly among 1..cores workers, and (4+ cores) the splits of all
    cores but one: a free core for the pipeline's own threads avoids intra-op stragglers,
    which validation then measures.
    """
    out = {cores // w for w in range(1, cores + 1)}
    if cores >= 4:
        out |= {(cores - 1) // w for w in range(1, cores)}
    return sorted(t for t in out if t > 0)


@dataclass
class StageTimes:
    """Measured stage times in ms (medians, with p90 for the tail)."""

    pre_ms: float
    post_ms: float
    infer_ms: Dict[int, float]                  # threads -> one session alone
    cores: int
    pre_p90_ms: Optional[float] = None
    post_p90_ms: Optional[float] = None
    infer_p90_ms: Dict[int, float] = field(default_factory=dict)
    # (workers, threads) -> per-call ms while `workers` sessions run at once
    concurrent_ms: Dict[Tuple[int, int], float] = field(default_factory=dict)
    overhead_ms: float = 0.0  # per-frame work outside the stages (decode, publish)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d['infer_ms'] = {str(k): round(v, 3) for k, v in self.infer_ms.items()}
        d['infer_p90_ms'] = {str(k): round(v, 3) for k, v in self.infer_p90_ms.items()}
        d['concurrent_ms'] = {f'{w}x{t}': round(v, 3) for (w, t), v in self.concurrent_ms.items()}
        return d


@dataclass
class Candidate:
    workers: int
    threads: int
    queue_size: int
    fps: float               # predicted capacity
    latency_ms: float        # predicted typical latency at the camera rate (queueing included)
    latency_tail_ms: float   # predicted ~p90, compared with the budget
    load: float              # camera rate / capacity (> 1: overloaded, frames dropped)
    sustains: bool
    within_budget: bool

    @property
    def label(self) -> str:
        return f'{self.workers}x{self.threads}'

    def to_dict(self) -> Dict[str, Any]:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Choice:
    workers: int
    threads: int
    queue_size: int
    feasible: bool           # sustains the camera rate within the budget
    reason: str
    predicted: Candidate
    candidates: List[Candidate]
    camera_rate: float
    latency_budget_ms: float
    stage_times: Optional[StageTimes] = None
    measured: List[Dict[str, Any]] = field(default_factory=list)  # validation runs, if any

    def params(self) -> Dict[str, int]:
        return {'workers': self.workers, 'threads': self.threads, 'queue_size': self.queue_size}

    def to_dict(self) -> Dict[str, Any]:
        return {**self.params(), 'feasible': self.feasible, 'reason': self.reason,
                'camera_rate': self.camera_rate, 'latency_budget_ms': self.latency_budget_ms,
                'predicted': self.predicted.to_dict(),
                'candidates': [c.to_dict() for c in self.candidates],
                'stage_times': self.stage_times.to_dict() if self.stage_times else None,
                'measured': self.measured}


def predict(st: StageTimes, workers: int, threads: int, camera_rate: float,
            latency_budget_ms: float = float('inf'), max_load: float = 0.9) -> Candidate:
    """Capacity and latency of `workers` sessions of `threads` threads at `camera_rate` Hz.

    Capacity is the slowest of: the pre and post threads, W workers at their contended call time,
    and the CPU (pre + post + overhead + threads x one inference, in core-ms per frame). Latency
    is one frame's pass (its inference slowed by the workers busy at that rate, Little's law, and
    by oversubscribed cores) plus an M/D/1 queueing wait capped at one bottleneck period; when
    overloaded, the age of the newest frame (the pipeline's just-in-time schedule).
    """
    W, T = int(workers), int(threads)
    t1 = st.infer_ms[T]
    t1_tail = st.infer_p90_ms.get(T, t1)
    measured = (W, T) in st.concurrent_ms
    t_full = st.concurrent_ms[(W, T)] if measured else t1 * max(1.0, W * T / st.cores)
    side = st.pre_ms + st.post_ms + st.overhead_ms
    limits = [1000.0 * W / t_full, 1000.0 * st.cores / (side + T * t1)]
    limits += [1000.0 / v for v in (st.pre_ms, st.post_ms) if v > 0]
    fps = min(limits)

    rate = camera_rate if camera_rate > 0 else fps
    load = rate / fps
    busy = min(float(W), max(1.0, min(rate, fps) * t1 / 1000.0))
    t_at = t1 + (t_full - t1) * (busy - 1.0) / (W - 1) if W > 1 else t_full
    if not measured:
        demand = busy * T + min(rate, fps) * side / 1000.0
        t_at *= max(1.0, demand / st.cores)
    period = 1000.0 / fps
    if load >= 1.0:
        # overloaded, drop_oldest with just-in-time pre-processing takes the newest frame: its
        # age is half a camera period on average
        wait = 500.0 / rate
    else:  # M/D/1 mean wait; the bounded drop_oldest queue caps it near one period
        wait = min(period, load / (2.0 * (1.0 - load)) * period)
    service = st.pre_ms + t_at + st.post_ms + st.overhead_ms
    latency = service + wait
    tail = ((st.pre_p90_ms or st.pre_ms) + t_at * (t1_tail / t1) + (st.post_p90_ms or st.post_ms)
            + st.overhead_ms + 2.0 * wait)
    sustains = camera_rate <= 0 or fps * max_load >= camera_rate
    queue = 1 if (load <= 0.5 or load >= 1.0) else 2
    return Candidate(W, T, queue, fps, latency, tail, load, bool(sustains),
                     bool(tail <= latency_budget_ms))


def candidate_configs(st: StageTimes, max_workers: Optional[int] = None) -> List[Tuple[int, int]]:
    """(workers, threads) with workers x threads <= cores, for every measured thread count."""
    max_w = max_workers or st.cores
    return [(w, t) for t in sorted(st.infer_ms) for w in range(1, max_w + 1) if w * t <= st.cores]


def choose(st: StageTimes, camera_rate: float, latency_budget_ms: float,
           max_workers: Optional[int] = None, max_load: float = 0.9) -> Choice:
    """Rank every candidate configuration and pick one by the module's policy."""
    budget = (float(latency_budget_ms) if latency_budget_ms and latency_budget_ms > 0
              else float('inf'))
    cands = [predict(st, w, t, camera_rate, budget, max_load)
             for w, t in candidate_configs(st, max_workers)]
    if not cands:
        raise ValueError('no candidate configuration: measure at least one thread count')

    def cores_used(c: Candidate) -> int:
        return c.workers * c.threads

    ok = [c for c in cands if c.sustains and c.within_budget]
    in_budget = [c for c in cands if c.within_budget]
    rate_txt = f'{camera_rate:g} Hz' if camera_rate > 0 else 'free-running input'
    budget_txt = f'{budget:g} ms' if budget != float('inf') else 'no latency budget'
    head = f'camera {rate_txt}, {budget_txt}, {st.cores} cores'
    if ok:
        ok.sort(key=lambda c: (c.latency_ms, cores_used(c), c.workers))
        best, feasible = ok[0], True
        runner = f'; next: {ok[1].label} at {ok[1].latency_ms:.1f} ms' if len(ok) > 1 else ''
        why = (f'the lowest predicted latency of {len(ok)} of {len(cands)} configurations that '
               f'sustain the rate within the budget{runner}')
    elif in_budget:
        in_budget.sort(key=lambda c: (-c.fps, c.latency_ms))
        best, feasible = in_budget[0], False
        why = (f'no configuration sustains {rate_txt} within {budget_txt}: the highest throughput '
               f'within the budget; drop_oldest will drop about '
               f'{max(0.0, 100.0 * (1 - best.fps / camera_rate)):.0f}% of the frames')
    else:
        cands_by_lat = sorted(cands, key=lambda c: (c.latency_tail_ms, cores_used(c)))
        best, feasible = cands_by_lat[0], False
        fastest = max(cands, key=lambda c: c.fps)
        why = (f'NO configuration fits {budget_txt} (the fastest, {fastest.label}, gives '
               f'{fastest.fps:.1f} fps at {fastest.latency_tail_ms:.1f} ms): chose the lowest '
               f'latency one' + ('' if best.sustains else
                                 f', which cannot sustain {rate_txt} either'))
    reason = (f'{head}: chose {best.workers} worker(s) x {best.threads} thread(s), queue '
              f'{best.queue_size}: predicted {best.fps:.1f} fps (load {100 * best.load:.0f}%), '
              f'latency {best.latency_ms:.1f} ms, tail {best.latency_tail_ms:.1f} ms; {why}')
    return Choice(best.workers, best.threads, best.queue_size, feasible, reason, best,
                  sorted(cands, key=lambda c: (c.threads, c.workers)), float(camera_rate),
                  budget, st)


def ranked(candidates: List[Candidate]) -> List[Candidate]:
    """Candidates best first: feasible ones before the rest, then lower latency, higher rate."""
    return sorted(candidates, key=lambda c: (not (c.sustains and c.within_budget),
                                             c.latency_ms, -c.fps))


__all__ = ['StageTimes', 'Candidate', 'Choice', 'predict', 'choose', 'candidate_configs',
           'ranked', 'thread_candidates']

"""The one pre -> infer -> post timing loop: a model's own cost per stage, frame after frame.

The benchmark's bare sections and the auto-tuner measure the same thing; they share this loop so
their numbers mean the same. Optionally paced (a camera rate) so a "bare" reference sees the same
idle gaps between frames as a node fed at that rate, and with per-stage CPU time, so what a node
spends outside inference can be told from what the model itself costs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

_now = time.perf_counter

STAGE_NAMES = ('pre', 'infer', 'post', 'frame')


@dataclass
class StageSamples:
    """Seconds per frame for each stage ('frame' = pre + infer + post).

    Plus the run's wall time and this process's CPU seconds over it.
    """

    pre: List[float] = field(default_factory=list)
    infer: List[float] = field(default_factory=list)
    post: List[float] = field(default_factory=list)
    frame: List[float] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: float = 0.0

    def __len__(self) -> int:
        return len(self.infer)

    def as_dict(self) -> Dict[str, List[float]]:
        return {k: getattr(self, k) for k in STAGE_NAMES}


def time_stages(infer: Callable[[Any], Any], adapter: Any, frames: Sequence[Any],
                iters: int = 0, seconds: float = 0.0, warmup: int = 0, rate_hz: float = 0.0,
                prepared: Optional[Sequence[Any]] = None,
                on_frame: Optional[Callable[[int, StageSamples], None]] = None) -> StageSamples:
    """Run `adapter.preprocess` -> `infer` -> `adapter.postprocess` over `frames` (cycled).

    Stops after `iters` frames, or once `seconds` have passed (whichever is given; with both,
    whichever comes last). `warmup` untimed frames go first. `rate_hz` > 0 starts frame k at
    k / rate (a paced camera); 0 runs back to back. `prepared` (a list of (tensors, meta) pairs)
    skips pre/post and times inference alone. `on_frame(k, samples)` is called after each.
    """
    if not frames and not prepared:
        raise ValueError('time_stages needs at least one frame')
    if iters <= 0 and seconds <= 0:
        raise ValueError('give iters or seconds')
    for i in range(warmup):
        x = prepared[i % len(prepared)][0] if prepared else adapter.preprocess(
            frames[i % len(frames)])[0]
        infer(x)
    s = StageSamples()
    t_start, cpu0 = _now(), time.process_time()
    t_end = t_start + seconds
    k = 0
    while k < iters or (seconds > 0 and _now() < t_end):
        if rate_hz > 0:
            due = t_start + k / rate_hz
            wait = due - _now()
            if wait > 0:
                time.sleep(wait)
        t0 = _now()
        if prepared:
            x, meta = prepared[k % len(prepared)]
        else:
            x, meta = adapter.preprocess(frames[k % len(frames)])
        t1 = _now()
        y = infer(x)
        t2 = _now()
        if not prepared:
            adapter.postprocess(y, meta)
        t3 = _now()
        if not prepared:
            s.pre.append(t1 - t0)
            s.post.append(t3 - t2)
        s.infer.append(t2 - t1)
        s.frame.append(t3 - t0)
        k += 1
        if on_frame is not None:
            on_frame(k, s)
    s.wall_s = _now() - t_start
    s.cpu_s = time.process_time() - cpu0
    return s


__all__ = ['StageSamples', 'time_stages', 'STAGE_NAMES']

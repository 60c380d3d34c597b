"""Validation: the cost model's short list run through the real pipeline, chosen again.

The short list runs at the camera rate; the choice is made again by what was measured.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, List, Sequence

import numpy as np

from . import measurement
from .cost_model import Candidate, Choice, ranked

LOG = logging.getLogger('faster_deployment_ros.autotune')


def validate(choice: Choice, make_backend: Callable[[int], Any], adapter: Any,
             frames: Sequence[np.ndarray], seconds: float = 3.0, top: int = 3,
             log: Callable[[str], None] = LOG.info) -> Choice:
    """Run the model's `top` picks at the camera rate and choose again by what was measured.

    The picks' variants that leave one core free run too; the policy is the same, with the
    measured p99 for the tail.
    """
    st = choice.stage_times
    rate = choice.camera_rate if choice.camera_rate > 0 else choice.predicted.fps
    by_cfg = {(c.workers, c.threads): c for c in choice.candidates}
    short: List[Candidate] = []
    for c in ranked(choice.candidates)[:top]:
        short.append(c)
        if st is not None and st.cores >= 4 and c.workers * c.threads >= st.cores:
            spare = by_cfg.get((c.workers, (st.cores - 1) // c.workers))
            if spare is not None and spare not in short:
                short.append(spare)
    rows = []
    for c in short:
        m = measurement.measure_at_rate(make_backend, adapter, frames, c.workers, c.threads,
                                        c.queue_size, rate, seconds)
        m['drop_rate'] = round(m['dropped'] / max(1, m['frames_in']), 4)
        m['sustains'] = bool(m['drop_rate'] <= 0.02)
        m['within_budget'] = bool(m['p99_ms'] <= choice.latency_budget_ms)
        rows.append(m)
        log(f'autotune: measured {c.label} q{c.queue_size} at {rate:g} Hz: p50 {m["p50_ms"]:.1f} '
            f'p99 {m["p99_ms"]:.1f} ms, {m["fps"]:.1f} fps, dropped {m["dropped"]}/'
            f'{m["frames_in"]}')
    ok = [m for m in rows if m['sustains'] and m['within_budget']]
    if ok:
        best = min(ok, key=lambda m: (m['p50_ms'], m['p99_ms']))
        why = 'the lowest measured p50 of those that kept up within the budget'
    elif any(m['within_budget'] for m in rows):
        best = max((m for m in rows if m['within_budget']), key=lambda m: m['fps'])
        why = 'none kept up within the budget: the highest measured rate within it'
    else:
        best = min(rows, key=lambda m: m['p99_ms'])
        why = 'NONE met the budget: the lowest measured p99'
    cand = by_cfg[(best['workers'], best['threads'])]
    table = ', '.join(f'{m["workers"]}x{m["threads"]} p50 {m["p50_ms"]:.1f}/p99 '
                      f'{m["p99_ms"]:.1f} ms drop {100 * m["drop_rate"]:.0f}%' for m in rows)
    reason = (f'{choice.reason.split(": chose", 1)[0]}: chose {cand.workers} worker(s) x '
              f'{cand.threads} thread(s), queue {cand.queue_size}, measured at {rate:g} Hz: '
              f'p50 {best["p50_ms"]:.1f} ms, p99 {best["p99_ms"]:.1f} ms; {why} '
              f'[{table}]; model: {choice.reason.split("; ", 1)[0].split(": ", 1)[-1]}')
    return Choice(cand.workers, cand.threads, cand.queue_size, bool(ok), reason, cand,
                  choice.candidates, choice.camera_rate, choice.latency_budget_ms, st, rows)


__all__ = ['validate']

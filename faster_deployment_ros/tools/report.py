"""Replay report: pure functions over (stamp, frame_id, time) records. No ROS imports.

Frames are identified by their header (stamp in ns, frame_id): the player publishes each input
frame with its bag header, the node under test must copy that header onto its output.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np


@dataclass(frozen=True)
class Record:
    """One message: its header stamp (ns), frame_id, and a local monotonic time in ns.

    The local time is the publish time for inputs, the receipt time for outputs.
    """

    stamp_ns: int
    frame_id: str
    t_ns: int


def percentiles_ms(values_ns: Sequence[float]) -> Optional[Dict[str, float]]:
    """p50/p90/p99/max/mean in milliseconds, or None without data."""
    if len(values_ns) == 0:
        return None
    v = np.asarray(values_ns, dtype=np.float64) / 1e6
    p50, p90, p99 = np.percentile(v, [50, 90, 99])
    return {'p50': round(float(p50), 3), 'p90': round(float(p90), 3),
            'p99': round(float(p99), 3), 'max': round(float(v.max()), 3),
            'mean': round(float(v.mean()), 3), 'n': int(v.size)}


def order_violations(stamps: Sequence[int]) -> int:
    """Count stamps (of outputs, in receipt order) not greater than the one before."""
    if len(stamps) < 2:
        return 0
    return int(np.count_nonzero(np.diff(np.asarray(stamps, np.int64)) <= 0))


def header_mismatches(inputs: Iterable[Record], outputs: Iterable[Record]) -> int:
    """Return outputs whose (stamp, frame_id) equals no input header."""
    known = {(r.stamp_ns, r.frame_id) for r in inputs}
    return sum((r.stamp_ns, r.frame_id) not in known for r in outputs)


def latencies_ns(inputs: Sequence[Record], outputs: Sequence[Record]) -> List[int]:
    """Input publish -> first output receipt, per input frame that got an output (by stamp)."""
    published = {}
    for r in inputs:
        published.setdefault(r.stamp_ns, r.t_ns)
    seen, out = set(), []
    for r in outputs:
        t0 = published.get(r.stamp_ns)
        if t0 is not None and r.stamp_ns not in seen:
            seen.add(r.stamp_ns)
            out.append(r.t_ns - t0)
    return out


def companion_report(outputs: Sequence[Record], companion: Sequence[Record]) -> Dict[str, Any]:
    """How a topic published beside the outputs (e.g. instance masks) matches them by header.

    ``outputs`` and ``companion`` in receipt order. ``stamps_matched``: companion messages whose
    (stamp, frame_id) equals an output's; ``header_mismatches``: the others;
    ``outputs_without``: outputs no companion message carries the header of.
    """
    known = {(r.stamp_ns, r.frame_id) for r in outputs}
    carried = {(r.stamp_ns, r.frame_id) for r in companion}
    matched = sum((r.stamp_ns, r.frame_id) in known for r in companion)
    return {'messages': len(companion), 'stamps_matched': matched,
            'header_mismatches': len(companion) - matched,
            'duplicates': len(companion) - len(carried),
            'order_violations': order_violations([r.stamp_ns for r in companion]),
            'outputs_without': len(known - carried)}


def detection_classes(msg: Any) -> List[str]:
    """Class of each detection of a duck-typed vision_msgs/Detection2DArray (rclpy or rosbags).

    The class_id of its highest-scoring hypothesis.
    """
    names = []
    for det in msg.detections:
        results = list(det.results)
        if not results:
            continue
        best = max(results, key=lambda r: r.hypothesis.score)
        names.append(str(best.hypothesis.class_id))
    return names


def summarize_detections(per_frame: Sequence[Sequence[str]]) -> Dict[str, Any]:
    """per_frame: class names of each output frame -> counts per class and per frame."""
    n = len(per_frame)
    per_class: Counter = Counter()
    frames_with: Counter = Counter()
    for names in per_frame:
        per_class.update(names)
        frames_with.update(set(names))
    with_any = sum(1 for names in per_frame if names)
    return {
        'frames': n,
        'frames_with_detections': with_any,
        'frames_with_detections_pct': round(100.0 * with_any / n, 2) if n else 0.0,
        'detections': int(sum(per_class.values())),
        'per_class': dict(per_class.most_common()),
        'frames_with_class': dict(frames_with.most_common()),
        'frames_with_class_pct': {k: round(100.0 * v / n, 2)
                                  for k, v in frames_with.most_common()} if n else {},
    }


def build_report(inputs: Sequence[Record], outputs: Sequence[Record],
                 detections: Optional[Sequence[Sequence[str]]] = None,
                 lateness_ns: Optional[Sequence[int]] = None,
                 extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Return the report.json dict.

    ``inputs`` in publish order, ``outputs`` in receipt order.

    dropped = input frames whose stamp no output carries (= in - out unless there are
    duplicates or mis-stamped outputs, which are counted separately).

    throughput_fps = outputs / (last output receipt - first input publish): the rate the
    system under test delivered over the whole replay, its latency included once.
    ``lateness_ns``: how late the player published each frame against the bag's schedule.
    """
    n_in, n_out = len(inputs), len(outputs)
    unique_out = len({r.stamp_ns for r in outputs})
    report: Dict[str, Any] = {
        'frames_in': n_in,
        'frames_out': n_out,
        'dropped': n_in - len({r.stamp_ns for r in inputs} & {r.stamp_ns for r in outputs}),
        'duplicates': n_out - unique_out,
        'order_violations': order_violations([r.stamp_ns for r in outputs]),
        'header_mismatches': header_mismatches(inputs, outputs),
        'latency_ms': percentiles_ms(latencies_ns(inputs, outputs)),
    }
    span_in = (inputs[-1].t_ns - inputs[0].t_ns) / 1e9 if n_in > 1 else 0.0
    report['input_fps'] = round((n_in - 1) / span_in, 3) if span_in > 0 else None
    if n_out and n_in:
        span = (outputs[-1].t_ns - inputs[0].t_ns) / 1e9
        report['span_s'] = round(span, 3)
        report['throughput_fps'] = round(n_out / span, 3) if span > 0 else None
    else:
        report['span_s'], report['throughput_fps'] = 0.0, 0.0
    if lateness_ns is not None:
        report['publish_lateness_ms'] = percentiles_ms(lateness_ns)
    if detections is not None:
        report['detections'] = summarize_detections(detections)
    if extra:
        report.update(extra)
    return report


def format_report(report: Dict[str, Any], focus_class: str = 'person') -> str:
    """Return a short human summary of a report dict."""
    nan = float('nan')
    lat = report.get('latency_ms') or {}
    lines = [
        f"frames in {report['frames_in']}, out {report['frames_out']}, "
        f"dropped {report['dropped']}, duplicates {report.get('duplicates', 0)}",
        f"order violations {report['order_violations']}, "
        f"header mismatches {report['header_mismatches']}",
        f"latency p50 {lat.get('p50', nan):.1f} ms, p90 {lat.get('p90', nan):.1f} ms, "
        f"p99 {lat.get('p99', nan):.1f} ms, max {lat.get('max', nan):.1f} ms",
        f"throughput {report.get('throughput_fps') or 0:.1f} fps "
        f"(input {report.get('input_fps') or 0:.1f} fps)",
    ]
    det = report.get('detections')
    if det:
        pct = det.get('frames_with_class_pct', {}).get(focus_class, 0.0)
        top = ', '.join(f'{k} {v}' for k, v in list(det['per_class'].items())[:6])
        lines.append(f"frames with detections {det['frames_with_detections_pct']:.1f}%, "
                     f"with a {focus_class} {pct:.1f}%; detections: {top or 'none'}")
    return '\n'.join(lines)


def save_results(path: Path, summary: Dict[str, Any], **series: Any) -> Path:
    """Print a run's ``summary`` (JSON) and write it with its ``series`` to ``path``.

    The file holds ``{"summary": summary, **series}``; its folder is made when missing.
    """
    print(json.dumps(summary, indent=1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({'summary': summary, **series}, indent=1))
    return path

"""Several cameras into one node: topics in and out per camera, and what each camera got.

Per camera: which topic it is read from, where its results go, and its diagnostic status (its
counters and latency are kept by runtime.telemetry.CameraStats).

The `inputs` parameter lists image topics; each is one camera and one pipeline source (its own
input queue, served in turn with the others, see core/pipeline.py). A camera's results go to
its input's namespace, the way image_transport users expect: `/front/image_raw` ->
`/front/detections` (`/front/depth`, `/front/debug_image`, ...). An entry ending in
`/compressed` is read as sensor_msgs/CompressedImage (the image_transport topic of that name);
`input_type: compressed` reads every entry's `/compressed` topic. Without `inputs` the node reads
the single `image` topic (or `image/compressed`) and publishes next to it: the one-camera case
(`default_input`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from diagnostic_msgs.msg import DiagnosticStatus

from .health import diagnostic_status
from ..core.health import HealthStatus, STALE
from ..runtime.parameters import ParameterError
from ..runtime.telemetry import CameraStats

COMPRESSED_SUFFIX = '/compressed'


@dataclass(frozen=True)
class CameraInput:
    index: int          # the pipeline source key
    name: str           # for logs and diagnostics: the namespace (or topic) without '/'
    topic: str          # the subscribed topic, as given (relative names resolve in the node's)
    compressed: bool    # sensor_msgs/CompressedImage instead of sensor_msgs/Image
    namespace: str      # where this camera's outputs go; '' = the node's own namespace

    def output(self, name: str) -> str:
        """Return the topic of output `name` (e.g. 'detections') for this camera."""
        return f'{self.namespace}/{name}' if self.namespace else name


def default_input(input_type: str) -> CameraInput:
    """Return the single-camera input: `image` (or `image/compressed`), outputs beside it."""
    compressed = input_type == 'compressed'
    return CameraInput(0, '', 'image/compressed' if compressed else 'image', compressed, '')


def resolve_inputs(inputs: Sequence[str], input_type: str = 'raw') -> Optional[List[CameraInput]]:
    """Return the cameras of an `inputs` parameter, or None when it lists none.

    None means the single `image` topic. Raises ParameterError for entries that would publish
    on the same output topics or name the same input twice.
    """
    entries = [str(t).strip() for t in (inputs or []) if str(t).strip()]
    if not entries:
        return None
    cameras: List[CameraInput] = []
    seen_topics: Dict[str, str] = {}
    seen_ns: Dict[str, str] = {}
    for i, entry in enumerate(entries):
        topic = entry.rstrip('/')
        compressed = topic.endswith(COMPRESSED_SUFFIX)
        base = topic[:-len(COMPRESSED_SUFFIX)] if compressed else topic
        if not base or base == '/':
            raise ParameterError(f'inputs[{i}]={entry!r} is not an image topic')
        if input_type == 'compressed' and not compressed:
            compressed, topic = True, base + COMPRESSED_SUFFIX
        namespace = base.rsplit('/', 1)[0] if '/' in base else ''
        if topic in seen_topics:
            raise ParameterError(f'inputs lists {topic!r} twice')
        seen_topics[topic] = entry
        if namespace in seen_ns:
            where = namespace or "the node's namespace"
            raise ParameterError(
                f'inputs {seen_ns[namespace]!r} and {entry!r} would publish their results on '
                f'the same topics (in {where}): give each camera its own namespace, e.g. '
                '/front/image_raw and /rear/image_raw')
        seen_ns[namespace] = entry
        name = namespace.strip('/') or base.strip('/')
        cameras.append(CameraInput(i, name, topic, compressed, namespace))
    return cameras


def camera_statuses(node_name: str, cameras: Sequence[CameraInput],
                    stats: Sequence[CameraStats], sources: Dict[Any, Dict[str, int]],
                    active: bool, hardware_id: str = '') -> List[DiagnosticStatus]:
    """Build one DiagnosticStatus per camera.

    Level and message come from the camera's own health window (STALE when that camera stops
    sending, WARN while it drops or fails too many frames, ERROR when nearly all fail), so one
    dead camera shows even while the others run. Values: its topics, the health counters, the
    pipeline's counters for its source (queued) and its latency p50 / p99.
    """
    out = []
    for cam, st in zip(cameras, stats):
        c = sources.get(cam.index, {})
        st.sync_drops(c.get('dropped', 0))
        health = st.health.status()
        if not active:
            health = HealthStatus(STALE, 'inactive', health.values)
        s = st.summary()
        extra = [('input', cam.topic), ('outputs_in', cam.namespace or '(node namespace)'),
                 ('queued', c.get('queued', 0))]
        if st.dropped_before_queue:
            extra.append(('dropped_before_queue', st.dropped_before_queue))
        for q in ('p50', 'p99'):
            if q in s['latency_ms']:
                extra.append((f'pipeline_latency_{q}_ms', f"{s['latency_ms'][q]:.2f}"))
        out.append(diagnostic_status(health, f'{node_name}: camera {cam.name}', hardware_id,
                                     extra))
    return out

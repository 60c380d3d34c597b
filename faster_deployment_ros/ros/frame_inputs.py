"""A perception node's camera input: subscriptions, hand-over to the runtime, decoding.

One subscription per camera (ros/camera_inputs.py resolves `inputs`), each in its own callback
group. Every frame received is counted (runtime.telemetry) and handed to the runtime with its
header; under `full_policy: block` a feeder thread per camera does the waiting, so a full camera
never holds the executor. Frames are decoded on the pipeline's pre-processing thread (`decode`),
within `max_input_pixels`, checked from the header before decoding. `active` gates everything:
frames that arrive or finish while it is clear are counted, not published.
"""
from __future__ import annotations

from functools import partial
import threading
import time
from typing import Any, Dict, List, Optional

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from .camera_inputs import CameraInput, default_input, resolve_inputs
from .health import guard_event_handlers, message_lost_event_callbacks
from ..core.feeder import Feeder
from ..core.image_codec import (BitDepthHint, check_image_size, decode_compressed, msg_to_numpy,
                                to_bgr8)
from ..runtime import ParameterError

_now = time.perf_counter


class FrameInputs:
    """The camera subscriptions of `node` (a PerceptionNode) and what each frame goes through."""

    def __init__(self, node: Any) -> None:
        self.node = node
        self.active = threading.Event()
        self._subs: List[Any] = []
        self._feeders: Dict[Optional[int], Feeder] = {}
        self._bit_depth_hint = BitDepthHint()

    def resolve_cameras(self, values: Dict[str, Any]) -> List[CameraInput]:
        """Return the cameras of `inputs` (else the single `image` camera); bad names raise."""
        cameras = resolve_inputs(values['inputs'], values['input_type'])
        if not cameras:
            return [default_input(values['input_type'])]
        for cam in cameras:
            for topic in (cam.topic, cam.output('x')):
                try:
                    self.node.resolve_topic_name(topic)
                except Exception as exc:  # noqa: BLE001 - rclpy raises several kinds
                    raise ParameterError(f'inputs: {topic!r} is not a valid topic name '
                                         f'({exc})') from exc
        return cameras

    def source(self, cam: CameraInput) -> Optional[int]:
        """Return the pipeline source of a camera: None for the single camera, else its index."""
        return cam.index if self.node.telemetry.per_camera else None

    def start(self) -> None:
        """Open the gate and subscribe each camera; under `block` one feeder each."""
        node = self.node
        values, runtime, telemetry = node.values, node.runtime, node.telemetry
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=values['qos_depth'],
                         reliability=ReliabilityPolicy.BEST_EFFORT
                         if values['qos_reliability'] == 'best_effort'
                         else ReliabilityPolicy.RELIABLE)
        self.active.set()
        for cam in node.cameras:
            source = self.source(cam)
            if values['full_policy'] == 'block':
                self._feeders[source] = Feeder(
                    partial(runtime.submit, source=source),
                    values['qos_depth'] + values['queue_size'],
                    partial(self._dropped_by_feeder, source),
                    node.get_name() + ('' if source is None else f'-{source}'),
                    on_error=partial(self._feeder_failed, source))
            self._subs.append(guard_event_handlers(node.create_subscription(
                CompressedImage if cam.compressed else Image, cam.topic,
                partial(self.on_image, source=source), qos,
                callback_group=MutuallyExclusiveCallbackGroup(),
                event_callbacks=message_lost_event_callbacks(
                    partial(telemetry.lost, source=source),
                    partial(telemetry.incompatible_qos, source=source),
                    topic=node.resolve_topic_name(cam.topic)))))

    def stop(self) -> None:
        """Close the gate, unsubscribe, close the feeders."""
        self.active.clear()
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []
        for feeder in self._feeders.values():
            feeder.close()
        self._feeders = {}

    def on_image(self, msg, source: Optional[int] = None) -> None:
        """Count a received frame and hand it on (the subscription callback; never waits)."""
        node = self.node
        runtime = node.runtime
        if not self.active.is_set() or runtime is None:
            return
        t0 = _now()
        stamp = msg.header.stamp
        node.telemetry.received(stamp.sec + 1e-9 * stamp.nanosec, source)
        feeder = self._feeders.get(source)
        if feeder is not None:  # block: handed to the feeder thread, never waits here
            feeder.put(msg, msg.header)
        elif not runtime.submit(msg, msg.header, source):
            node.telemetry.dropped(source, where='output')  # closing
        node.telemetry.hops['callback'].add(_now() - t0)

    def _dropped_by_feeder(self, source: Optional[int], header) -> None:
        self.node.telemetry.dropped(source, where='feeder')

    def _feeder_failed(self, source: Optional[int], header, exc: BaseException) -> None:
        reason = f'submitting: {type(exc).__name__}: {exc}'
        self.node.telemetry.failed(reason, source)
        self.node.get_logger().error(
            f'frame (stamp {header.stamp.sec}.{header.stamp.nanosec:09d}) could not be queued: '
            f'{reason}')

    def decode(self, msg) -> np.ndarray:
        """Decode a frame within `max_input_pixels` (header probe, then the decoded size)."""
        values = self.node.values
        limit, bits = values['max_input_pixels'], values['bit_depth']
        if isinstance(msg, CompressedImage):
            array, encoding = decode_compressed(msg.format, msg.data, max_pixels=limit)
        else:
            check_image_size(msg.width, msg.height, limit, f'{msg.encoding!r} image')
            array, encoding = msg_to_numpy(msg), msg.encoding
        hint = self._bit_depth_hint.observe(array, encoding, bits)
        if hint:
            self.node.get_logger().warning(hint)
        return to_bgr8(array, encoding, bits)

"""Video file or image folder -> rosbag2 (MCAP) of sensor_msgs/Image or CompressedImage.

Frames get real timing: header stamp = bag time = start + i / fps, so a replay at rate 1.0
reproduces the camera. ROS-free (rosbags + OpenCV).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
import sys
import time
from typing import Callable, Optional

import cv2
import numpy as np
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import StoragePlugin

from .bag_types import make_typestore
from .frames import iter_frames
from ..core.image_codec import encode_compressed, numpy_to_image_fields

_FROM_BGR = {'bgr8': None, 'rgb8': cv2.COLOR_BGR2RGB, 'mono8': cv2.COLOR_BGR2GRAY,
             'bgra8': cv2.COLOR_BGR2BGRA, 'rgba8': cv2.COLOR_BGR2RGBA}


@dataclass
class BagSummary:
    path: str
    topic: str
    msgtype: str
    frames: int
    fps: float
    width: int
    height: int
    start_ns: int
    duration_s: float
    announced_frames: Optional[int] = None  # what the video header claims, when it says
    warning: Optional[str] = None


def video_to_bag(source: Path, out_bag: Path, topic: str = '/image', frame_id: str = 'camera',
                 encoding: str = 'bgr8', max_frames: Optional[int] = None,
                 compressed: Optional[str] = None, fps: Optional[float] = None,
                 start_ns: Optional[int] = None, jpeg_quality: int = 90,
                 progress: Optional[Callable[[int], None]] = None) -> BagSummary:
    """Write the frames of ``source`` into a new MCAP bag at ``out_bag`` (must not exist).

    ``compressed`` = 'jpeg' or 'png' writes sensor_msgs/CompressedImage instead of Image.
    """
    if encoding not in _FROM_BGR:
        raise ValueError(f'--encoding must be one of {", ".join(_FROM_BGR)}, got {encoding!r}')
    rate, frames, announced = iter_frames(Path(source), fps)
    store = make_typestore(())
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    msgtype = 'sensor_msgs/msg/CompressedImage' if compressed else 'sensor_msgs/msg/Image'
    Msg = store.types[msgtype]
    start = int(time.time_ns() if start_ns is None else start_ns)
    period_ns = 1e9 / rate
    n, shape = 0, (0, 0)
    with Writer(Path(out_bag), version=Writer.VERSION_LATEST,
                storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(topic, msgtype, typestore=store)
        for frame in frames:
            if max_frames is not None and n >= max_frames:
                break
            code = _FROM_BGR[encoding]
            img = frame if code is None else cv2.cvtColor(frame, code)
            stamp = start + round(n * period_ns)
            header = Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9),
                            frame_id=frame_id)
            if compressed:
                fmt, data = encode_compressed(img, compressed, jpeg_quality, encoding=encoding)
                msg = Msg(header=header, format=fmt, data=np.frombuffer(data, np.uint8))
            else:
                msg = Msg(header=header, **numpy_to_image_fields(img, encoding))
            writer.write(conn, stamp, store.serialize_cdr(msg, msgtype))
            shape = img.shape[:2]
            n += 1
            if progress:
                progress(n)
    if n == 0:
        raise ValueError(f'{source}: no frames read')
    warning = None
    if announced and n < 0.9 * announced and (max_frames is None or n < max_frames):
        warning = (f'decoded {n} frames but the video header announces {announced} (AVI '
                   f'null/duplicate frames or a damaged stream); stamps use {rate:g} fps')
    return BagSummary(str(out_bag), topic, msgtype, n, rate, int(shape[1]), int(shape[0]), start,
                      n / rate, announced, warning)


def print_progress(total: Optional[int] = None, every: int = 25) -> Callable[[int], None]:
    """Return a progress callback printing 'frames N[/total]' to stderr every ``every`` frames."""
    t0 = time.perf_counter()

    def cb(n: int) -> None:
        if n % every == 0 or n == total:
            dt = time.perf_counter() - t0
            of = f'/{total}' if total else ''
            print(f'\r[from-video] {n}{of} frames, {n / max(dt, 1e-9):.0f} frames/s',
                  end='', file=sys.stderr, flush=True)
    return cb


def summary_dict(s: BagSummary) -> dict:
    return asdict(s)

"""Frames from a video file or a folder of images, without ROS or bag dependencies.

Also used on machines that have neither, e.g. for GPU benchmarks.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import cv2
import numpy as np

IMAGE_EXTS = {'.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp', '.ppm', '.pgm'}


def iter_frames(source: Path, fps: Optional[float] = None
                ) -> Tuple[float, Iterator[np.ndarray], Optional[int]]:
    """Open a video file or a folder of images (sorted by name).

    Returns (fps, BGR frame iterator, frame count the header announces or None).
    """
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not files:
            raise ValueError(f'no images ({", ".join(sorted(IMAGE_EXTS))}) in {source}')

        def images() -> Iterator[np.ndarray]:
            for p in files:
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is None:
                    raise ValueError(f'cannot read image {p}')
                yield img
        return float(fps or 10.0), images(), len(files)
    if not source.is_file():
        raise FileNotFoundError(f'{source} does not exist')
    cap = cv2.VideoCapture(str(source))
    if not cap.isOpened():
        raise ValueError(f'OpenCV cannot open video {source}')
    video_fps = cap.get(cv2.CAP_PROP_FPS)
    announced = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    rate = float(fps or (video_fps if video_fps and 0 < video_fps < 1000 else 30.0))

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    return
                yield frame
        finally:
            cap.release()
    return rate, frames(), announced


def read_frames(source: Path, count: int, step: int = 1) -> List[np.ndarray]:
    """Read up to `count` frames, every `step`-th: real input for tests and benchmarks."""
    _, frames, _ = iter_frames(source)
    try:
        return list(itertools.islice(frames, 0, count * step, step))
    finally:
        frames.close()

"""Cost of the JPEG header probe on fill-byte runs, against the scan it replaced and OpenCV.

The probe runs on the one pre-processing thread every camera shares, before anything is
decoded, so its cost on hostile input is the cost of an attack. Prints, per input: the
probe's time (median of --repeat) and bytes examined, or why it refused; the same for the
byte-by-byte scan before issue #19 (kept here only for the comparison); and cv2.imdecode's time.

  PYTHONPATH=$PWD .venv/bin/python benchmarks/jpeg_header_scan.py [--repeat 5]
"""
import argparse
from pathlib import Path
import sys
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'test'))
import cv2  # noqa: E402
from faster_deployment_ros.core.image_codec import ImageCodecError, jpeg_header  # noqa: E402
import numpy as np  # noqa: E402
from support import hostile_images as hostile  # noqa: E402


def old_scan(buf: np.ndarray):
    """Scan as before #19: one Python step per fill byte, 0xFF 0x00 taken as a marker."""
    i, n = 2, int(buf.size)
    while i + 3 < n:
        if buf[i] != 0xFF:
            raise ValueError(f'no marker at byte {i}')
        marker = int(buf[i + 1])
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xD9, 0xDA):
            break
        if marker in (0xC0, 0xC1, 0xC2):
            return ((int(buf[i + 7]) << 8) | int(buf[i + 8]),
                    (int(buf[i + 5]) << 8) | int(buf[i + 6]))
        i += 2 + ((int(buf[i + 2]) << 8) | int(buf[i + 3]))
    raise ValueError('no frame header')


def timed(fn, data, repeat):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        try:
            out = fn(data)
        except (ImageCodecError, ValueError) as exc:
            out = exc
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--repeat', type=int, default=5)
    args = ap.parse_args()
    y, x = np.mgrid[0:720, 0:1280]
    scene = np.dstack([x % 256, y % 256, (x + y) % 256]).astype(np.uint8)
    frame = cv2.imencode('.jpg', scene)[1].tobytes()
    cases = [('720p camera jpeg', frame)]
    for mb in (1, 10, 100):
        cases.append((f'{mb} MB fill after SOI', b'\xff\xd8' + b'\xff' * (mb << 20) + frame[2:]))
    cases.append(('stuffed zero hiding 320x240', hostile.stuffed_zero_hides_the_frame()[0]))
    big = cv2.imencode('.jpg', np.full((8192, 8192, 3), 128, np.uint8))[1].tobytes()
    segments, rest = hostile.split_jpeg(big)
    cases.append(('stuffed zero hiding 8192x8192',
                  hostile.join_jpeg([hostile.hidden_sof(16, 16)] + segments, rest)))
    print(f'{"input":30} {"probe ms":>9} {"examined":>9}  {"old scan ms":>11}  '
          f'{"imdecode ms":>11}  result (probe / old scan)')
    for name, data in cases:
        buf = np.frombuffer(data, np.uint8)
        t_new, hdr = timed(jpeg_header, buf, args.repeat)
        examined = hdr.examined
        if len(data) <= (1 << 21):  # the old scan takes seconds per 10 MB: run it up to 2 MB
            t_old, old = timed(old_scan, buf, 1)
            old_ms = f'{1e3 * t_old:11.1f}'
        else:
            old_ms, old = f'{"-":>11}', 'not run'
        if isinstance(old, Exception):
            old = f'refused ({old})'
        t_dec, img = timed(lambda b: cv2.imdecode(b, cv2.IMREAD_UNCHANGED), buf, 1)
        new = f'{hdr.width}x{hdr.height}' if hasattr(hdr, 'width') else \
            f'refused: {str(hdr)[20:75]}...'
        print(f'{name:30} {1e3 * t_new:9.3f} {examined:>9}  {old_ms}  {1e3 * t_dec:11.1f}  '
              f'{new} / {old}; decoder: {None if img is None else img.shape[1::-1]}')


if __name__ == '__main__':
    main()

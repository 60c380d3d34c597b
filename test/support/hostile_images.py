"""Hostile JPEG / PNG byte strings, and a differential fuzz of the header probe against OpenCV.

Builders (used by test_image_codec.py and benchmarks/jpeg_header_scan.py): a real JPEG from
OpenCV's encoder, split at its first scan, then reassembled with what a hostile or broken
sender puts between its header segments.

Run as a script it fuzzes (hypothesis) structure-aware mutations of real JPEGs and PNGs and
checks, for every input OpenCV decodes, that ``compressed_image_size`` either refused it or
named the size OpenCV produced, and that ``decode_compressed(max_pixels=...)`` never returns
more pixels than allowed. Run it with ``OPENCV_IO_MAX_IMAGE_PIXELS`` set low (the test does),
so a mutated header claiming a huge frame costs OpenCV nothing here either.
"""
from __future__ import annotations

import struct
import sys
from typing import List, Tuple
import zlib

import cv2
import numpy as np

PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def jpeg(width: int = 24, height: int = 16, channels: int = 3, progressive: bool = False,
         seed: int = 0) -> bytes:
    """Return a real JPEG of random content from OpenCV's encoder."""
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    img = rng.integers(0, 256, shape, dtype=np.uint8)
    ok, data = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
    assert ok
    return data.tobytes()


def split_jpeg(data: bytes) -> Tuple[List[bytes], bytes]:
    """Split a well-formed JPEG into its header segments and the rest.

    Returns (the segments after SOI, each with its marker; the bytes from the first SOS on).
    """
    assert data[:2] == b'\xff\xd8'
    i, segments = 2, []
    while data[i + 1] != 0xDA:
        assert data[i] == 0xFF
        length = int.from_bytes(data[i + 2:i + 4], 'big')
        segments.append(data[i:i + 2 + length])
        i += 2 + length
    return segments, data[i:]


def join_jpeg(segments: List[bytes], rest: bytes) -> bytes:
    return b'\xff\xd8' + b''.join(segments) + rest


def segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + (len(payload) + 2).to_bytes(2, 'big') + payload


def sof(width: int, height: int, marker: int = 0xC0, components: int = 3) -> bytes:
    """Return a frame header (SOF) segment; component ids 1.., sampling 1x1, table 0."""
    comps = b''.join(bytes((k + 1, 0x11, 0)) for k in range(components))
    return segment(marker, struct.pack('>BHHB', 8, height, width, components) + comps)


def sof_index(segments: List[bytes]) -> int:
    return next(k for k, s in enumerate(segments) if s[1] in (0xC0, 0xC1, 0xC2))


def hidden_sof(width: int, height: int, pad: int = 2) -> bytes:
    """Return a stuffed zero hiding a fake frame header.

    0xFF 0x00 is no marker to libjpeg, which skips it and the next two bytes; a scan that reads
    those two bytes as a segment length lands on a fake `width` x `height` frame header inside
    the comment that follows.
    """
    return (b'\xff\x00' + (6 + pad).to_bytes(2, 'big')
            + segment(0xFE, b'x' * pad + sof(width, height)))


def stuffed_zero_hides_the_frame(small: int = 16) -> Tuple[bytes, Tuple[int, int]]:
    """Return a JPEG whose first bytes after SOI are a stuffed zero (0xFF 0x00) with a 'length'.

    libjpeg skips 0xFF 0x00 as stray data and reads the real frame header; a scan that takes
    0xFF 0x00 for a segment jumps over it into a comment holding a fake `small` x `small` frame
    header. Returns (data, the real (width, height)).
    """
    real = jpeg(320, 240)
    segments, rest = split_jpeg(real)
    return join_jpeg([hidden_sof(small, small)] + segments, rest), (320, 240)


def chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack('>I', len(payload)) + kind + payload
            + struct.pack('>I', zlib.crc32(kind + payload)))


def png(width: int = 16, height: int = 16, ihdr_size: Tuple[int, int] = None) -> bytes:
    """Return a grey 8-bit PNG whose IHDR may claim another size (`ihdr_size`) than its data."""
    w, h = ihdr_size or (width, height)
    raw = b''.join(b'\x00' + bytes(width) for _ in range(height))
    return (PNG_SIGNATURE + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


# ------------------------------------------------------------------ differential fuzz (script)
def _decoded(data: bytes):
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:  # e.g. over OPENCV_IO_MAX_IMAGE_PIXELS
        return None


def _check(data: bytes, limit: int = 100 * 100) -> None:
    from faster_deployment_ros.core.image_codec import (compressed_image_size, decode_compressed,
                                                        ImageCodecError)
    try:
        probe = compressed_image_size(data)
    except ImageCodecError:
        probe = None
    img = _decoded(data)
    if img is not None and probe is not None:
        assert (probe[1], probe[2]) == (img.shape[1], img.shape[0]), (probe, img.shape)
    try:
        out, _ = decode_compressed('', data, max_pixels=limit)
    except ImageCodecError:
        return
    assert probe is not None and out.shape[0] * out.shape[1] <= limit


def _fuzz(examples: int) -> None:
    from hypothesis import given, HealthCheck, settings, strategies as st

    bases = [split_jpeg(jpeg(24, 16)), split_jpeg(jpeg(17, 9, channels=1)),
             split_jpeg(jpeg(40, 24, progressive=True))]
    dims = st.integers(0, 1500)
    pieces = st.one_of(
        st.integers(1, 400).map(lambda k: b'\xff' * k),                       # fill run
        st.binary(min_size=1, max_size=12),                                   # stray bytes
        st.binary(min_size=2, max_size=2).map(lambda b: b'\xff\x00' + b),     # stuffed zero
        st.tuples(dims, dims).map(lambda d: segment(0xFE, b'x' + sof(*d))),   # fake SOF in COM
        st.tuples(dims, dims, st.integers(0, 4)).map(lambda d: hidden_sof(*d)),  # FF 00 jump
        st.tuples(dims, dims, st.sampled_from([0xC0, 0xC2, 0xC1, 0xC5, 0xCF])).map(
            lambda d: sof(*d)),                                                # another SOF
        st.tuples(st.integers(0, 255), st.binary(max_size=8)).map(
            lambda m: segment(m[0], m[1])),                                    # any marker
        st.sampled_from([b'\xff\xd0', b'\xff\x01', b'\xff\xd8', b'\xff\xd9']),
    )
    jpeg_case = st.tuples(
        st.sampled_from(range(len(bases))),
        st.lists(st.tuples(st.integers(0, 20), pieces), max_size=5),
        st.one_of(st.none(), st.tuples(dims, dims)),                           # new SOF size
        st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=3),  # flips
        st.one_of(st.none(), st.integers(0, 600)),                             # truncate
    )

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(jpeg_case)
    def jpegs(case) -> None:
        base, inserts, size, flips, cut = case
        segments, rest = bases[base]
        segments = list(segments)
        if size is not None:
            k = sof_index(segments)
            old = segments[k]
            segments[k] = old[:5] + struct.pack('>HH', size[1], size[0]) + old[9:]
        for pos, piece in inserts:
            segments.insert(min(pos, len(segments)), piece)
        data = bytearray(join_jpeg(segments, rest))
        for pos, value in flips:
            data[min(pos, len(data) - 1)] = value
        _check(bytes(data if cut is None else data[:cut]))

    png_case = st.tuples(
        st.tuples(st.integers(1, 64), st.integers(1, 64)),
        st.one_of(st.none(), st.tuples(st.integers(0, 3000), st.integers(0, 3000))),
        st.lists(st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=3),
        st.one_of(st.none(), st.integers(0, 200)),
    )

    @settings(max_examples=examples // 2, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(png_case)
    def pngs(case) -> None:
        size, claimed, flips, cut = case
        data = bytearray(png(*size, ihdr_size=claimed))
        for pos, value in flips:
            data[min(pos, len(data) - 1)] = value
        _check(bytes(data if cut is None else data[:cut]))

    jpegs()
    pngs()


if __name__ == '__main__':
    cv2.setLogLevel(0) if hasattr(cv2, 'setLogLevel') else None
    _fuzz(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
    print('ok')

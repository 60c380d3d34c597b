"""glibc heap settings for a process that moves camera-sized buffers every frame."""
from __future__ import annotations

import ctypes


def reuse_large_buffers() -> bool:
    """glibc: keep freed multi-MB blocks (camera frames, tensors) in the heap for reuse.

    By default glibc maps every block over its (adaptive) mmap threshold afresh and unmaps it on
    free, so each camera-sized frame costs page faults and, at times, long stalls. This is what
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456 do, but those variables
    only work when set before the process starts. Returns False where it does not apply.
    """
    try:
        libc = ctypes.CDLL('libc.so.6')
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024)
                    and libc.mallopt(m_trim_threshold, 256 * 1024 * 1024))
    except (OSError, AttributeError):
        return False


def trim_heap() -> bool:
    """glibc: give the free memory of every malloc arena back to the system (malloc_trim(0)).

    With the trim threshold above, and with one arena per thread that ever allocated (pipeline
    stages and runtime threads are new threads after each configure), memory freed at cleanup
    stays in the process and the next configure's allocations land in other arenas; the
    resident size then climbs cycle after cycle until the arenas are all in use. A node calls
    this after releasing its models. Returns False where it does not apply.
    """
    try:
        return bool(ctypes.CDLL('libc.so.6').malloc_trim(0))
    except (OSError, AttributeError):
        return False


def limit_malloc_arenas(arenas: int = 4) -> bool:
    """glibc: at most `arenas` malloc arenas (default 8 per core), set before threads start.

    Each configure starts new threads (pipeline stages, runtime thread pools); a new thread that
    finds the arenas busy gets a fresh one, so a node that is cleaned up and configured again
    spreads its memory over ever more arenas until the limit, and freed memory that sits in
    them is not reused by the next configuration. A few arenas keep it in one place
    (benchmarks/cleanup_cycles.py measures it). Returns False where it does not apply.
    """
    try:
        m_arena_max = -8
        return bool(ctypes.CDLL('libc.so.6').mallopt(m_arena_max, int(arenas)))
    except (OSError, AttributeError):
        return False


__all__ = ['limit_malloc_arenas', 'reuse_large_buffers', 'trim_heap']

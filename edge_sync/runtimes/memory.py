"""Keep a long-running runtime's resident memory at its working set (glibc only; a no-op elsewhere).

Every model window allocates and frees tens of MB (crops as float32, the backend's activations). glibc raises
its mmap threshold after the first such buffer is freed, so later ones come from the heap, where freed blocks
fragment and stay resident: a 60 s clip then peaks ~100 MB above its working set. Pinning the threshold makes
large buffers mmap-backed, returned to the OS when freed. Cost: fresh pages for each window (10-40% slower file
sync on a 2-core x86 CPU, run to run). The setting is process-wide, like the ``MALLOC_MMAP_THRESHOLD_`` variable it
mirrors; a variable the user set wins.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import sys

log = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3  # mallopt parameter number, from glibc's malloc.h
LOW_MEMORY_MMAP_THRESHOLD = 256 * 1024
_applied: bool | None = None


def bound_heap_growth(threshold_bytes: int = LOW_MEMORY_MMAP_THRESHOLD) -> bool:
    """Serve allocations of ``threshold_bytes`` or more with mmap; True where it took effect (glibc Linux)."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux") or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return _applied
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return _applied
    _applied = bool(mallopt(M_MMAP_THRESHOLD, int(threshold_bytes)))
    log.info("low-memory mode: allocations >= %d KB are mmap-backed (%s)", threshold_bytes // 1024,
             "applied" if _applied else "mallopt refused")
    return _applied

"""Keep freed memory in the process for the analysis' large temporary arrays.

glibc serves every allocation above its mmap threshold (≤ 32 MiB, adjusted at run time)
with a fresh mmap and unmaps it on free, so each large numpy temporary pays for page
faults on every page again. On this project's VMs a fault costs 10-40 µs and the
analysis of 1M spans spent a third of its CPU time in them. Raising the mmap and trim
thresholds makes freed blocks go back to the heap and be reused. Peak RSS does not grow:
it is set by the largest set of arrays alive at once, which the heap reuses.

Set HOPSCOPE_MALLOC_TUNING=0 to leave the allocator alone. No-op off glibc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # 1 GiB: larger single arrays are still mapped and unmapped

_done = False


def keep_freed_memory() -> bool:
    """Apply once per process; True if the thresholds were set."""
    global _done
    if _done:
        return True
    if os.environ.get("HOPSCOPE_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, 2 * _THRESHOLD) == 1
    _done = ok
    return ok

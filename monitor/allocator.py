"""glibc's allocator, tuned for a process that runs for months.

Why: over a 2-hour soak the daemon's Python objects and SQLite's own memory stayed flat while
its RSS grew +6 to +8 MiB/h. glibc's statistics (mallinfo2) put the growth in the malloc arenas,
most of it free space inside them: fragmentation. Each thread that allocates (the executor
threads of the event log's queries, aiohttp's resolver, SQLite) may get an arena of its own,
up to 8 per core, and free chunks in one arena never serve another; and glibc returns the
free top of the main heap only, never free pages inside an arena. Two arenas bound the first
(the loop does nearly all the work), a periodic malloc_trim(0) the second: it gives back every
free page of every arena (madvise), a few milliseconds at our heap's size.

A fixed mmap threshold for the rest: glibc serves blocks of 128 KiB and more with mmap and
gives them back at free(), but each such free raises the threshold to that block's size (up to
32 MiB), after which the big transient blocks (a dict's table being resized, a large response
body) are carved from the heap and leave holes between long-lived small blocks. Over 35
minutes of a soak run the heap's free space grew from 1.3 to 2.3 MiB; with the threshold fixed
(which turns that adjustment off) it stayed at 0.4-0.5 MiB.

Nothing here on other C libraries (musl has no arenas of this kind). `MALLOC_ARENA_MAX` and
`MALLOC_MMAP_THRESHOLD_` set in the environment win over ours.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

import structlog

log = structlog.get_logger(__name__)

M_ARENA_MAX = -8  # glibc malloc.h
M_MMAP_THRESHOLD = -3
ARENA_MAX = 2
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept
TRIM_EVERY = 300.0  # seconds between malloc_trim calls


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    # gnu_get_libc_version exists only in glibc: musl and others keep their defaults.
    if not all(hasattr(libc, f) for f in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    return libc


class Allocator:
    """The process's glibc allocator, or nothing (every call then does nothing)."""

    def __init__(self) -> None:
        self._libc = _libc()
        self.trims = 0
        self.trim_seconds = 0.0

    @property
    def glibc(self) -> bool:
        return self._libc is not None

    def tune(self) -> int | None:
        """Cap the number of arenas; returns the cap applied, or None (not glibc, or the
        environment's MALLOC_ARENA_MAX chosen by the operator)."""
        return self._set(M_ARENA_MAX, ARENA_MAX, "MALLOC_ARENA_MAX")

    def fix_mmap_threshold(self) -> int | None:
        """Keep blocks of MMAP_THRESHOLD and more in mmap for good; returns the threshold set,
        or None (not glibc, or the environment's MALLOC_MMAP_THRESHOLD_)."""
        return self._set(M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_")

    def _set(self, param: int, value: int, env: str) -> int | None:
        if self._libc is None or env in os.environ:
            return None
        if not self._libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)):
            log.warning("mallopt refused; left to glibc", setting=env)
            return None
        return value

    def trim(self) -> bool:
        """Give free pages back to the kernel; True when some were."""
        if self._libc is None:
            return False
        t0 = time.perf_counter()
        released = bool(self._libc.malloc_trim(ctypes.c_size_t(0)))
        self.trims += 1
        self.trim_seconds += time.perf_counter() - t0
        return released

"""glibc's allocator, tuned for a process that runs for months.

Why: over a 2-hour soak the daemon's Python objects and SQLite's own memory stayed flat while
its RSS grew +6 to +8 MiB/h. glibc's statistics (mallinfo2) put the growth in the malloc arenas,
most of it free space inside them: fragmentation. Each thread that allocates (the executor
threads of the event log's queries, aiohttp's resolver, SQLite) may get an arena of its own,
up to 8 per core, and free chunks in one arena never serve another; and glibc returns the
free top of the main heap only, never free pages inside an arena. Two arenas bound the first
(the loop does nearly all the work), a periodic malloc_trim(0) the second: it gives back every
free page of every arena (madvise), a few milliseconds at our heap's size.

Nothing here on other C libraries (musl has no arenas of this kind). A `MALLOC_ARENA_MAX` set
in the environment wins over ours.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import time

import structlog

log = structlog.get_logger(__name__)

M_ARENA_MAX = -8  # glibc malloc.h
ARENA_MAX = 2
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
        if self._libc is None or "MALLOC_ARENA_MAX" in os.environ:
            return None
        if not self._libc.mallopt(ctypes.c_int(M_ARENA_MAX), ctypes.c_int(ARENA_MAX)):
            log.warning("mallopt(M_ARENA_MAX) refused; arenas left to glibc")
            return None
        return ARENA_MAX

    def trim(self) -> bool:
        """Give free pages back to the kernel; True when some were."""
        if self._libc is None:
            return False
        t0 = time.perf_counter()
        released = bool(self._libc.malloc_trim(ctypes.c_size_t(0)))
        self.trims += 1
        self.trim_seconds += time.perf_counter() - t0
        return released

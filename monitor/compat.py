"""Backports of CPython fixes that a process running for months depends on.

`release_transport_cycles()`: on Python 3.11, every asyncio TCP transport (each HTTP probe's
connection) keeps a bound method of itself (`_read_ready_cb`) after it is closed, a reference
cycle that only the garbage collector frees (CPython gh-100348, fixed in 3.12 by clearing it
when the transport closes). A probe's connection lives seconds, long enough for the cycle to be
moved to an older generation, so closed transports, their sockets and buffers pile up between
full collections: in a soak, ~4 a second were found in the cyclic garbage. The backport clears
the reference once the connection is lost, as 3.12 does; nothing else of asyncio changes.
"""

from __future__ import annotations

import sys
from asyncio import selector_events
from typing import Any

_PATCHED = "_dprk_monitor_releases_read_ready_cb"


def release_transport_cycles() -> bool:
    """Apply the gh-100348 backport on Python < 3.12 (idempotent); True if it is in effect."""
    if sys.version_info >= (3, 12):
        return False
    # private, and not in typeshed
    cls: Any = selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
    if getattr(cls, _PATCHED, False):
        return True
    lost = cls._call_connection_lost

    def _call_connection_lost(self: Any, exc: BaseException | None) -> None:
        try:
            lost(self, exc)
        finally:
            self._read_ready_cb = None  # the connection is over: no reads will come

    cls._call_connection_lost = _call_connection_lost
    setattr(cls, _PATCHED, True)
    return True

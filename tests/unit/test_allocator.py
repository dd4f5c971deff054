"""The glibc allocator tuning (monitor/allocator.py)."""

from __future__ import annotations

import platform

import pytest

from monitor.allocator import ARENA_MAX, Allocator

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")


@glibc
def test_tune_caps_the_arenas_unless_the_operator_chose(monkeypatch: pytest.MonkeyPatch) -> None:
    a = Allocator()
    assert a.glibc
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert a.tune() == ARENA_MAX
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert a.tune() is None  # the environment's choice is glibc's, not ours to override


@glibc
def test_trim_gives_freed_pages_back() -> None:
    a = Allocator()
    # Many small blocks spread over the heap, most freed: free pages inside the heap that
    # only malloc_trim returns (the top chunk alone is returned by free()).
    keep: list[bytearray] = []
    junk: list[bytearray] = []
    for i in range(200_000):
        (keep if i % 64 == 0 else junk).append(bytearray(200))
    del junk
    assert a.trim() is True
    assert a.trims == 1 and a.trim_seconds > 0


def test_not_glibc_does_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("monitor.allocator._libc", lambda: None)
    a = Allocator()
    assert not a.glibc
    assert a.tune() is None and a.trim() is False and a.trims == 0

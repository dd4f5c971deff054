"""The glibc allocator tuning (monitor/allocator.py)."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from monitor.allocator import ARENA_MAX, MMAP_THRESHOLD, Allocator

REPO = Path(__file__).resolve().parents[2]

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


@glibc
def test_fixed_mmap_threshold_keeps_big_blocks_out_of_the_heap() -> None:
    """A freed 1 MiB block raises glibc's threshold to 1 MiB, and the next one is carved from
    the heap; fixed, it is mapped again (and unmapped at free). Apart: mallopt is process-wide."""
    script = textwrap.dedent(
        f"""
        import ctypes, sys
        sys.path.insert(0, {str(REPO)!r})
        from monitor.allocator import Allocator
        class Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in (
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
            ).split()]
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = Info
        fixed = Allocator().fix_mmap_threshold() if sys.argv[1] == "fixed" else None
        block = bytearray(1 << 20)
        del block
        block = bytearray(1 << 20)
        print(fixed, libc.mallinfo2().hblkhd)
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    mapped = {}
    for mode in ("glibc", "fixed"):
        out = subprocess.run(
            [sys.executable, "-c", script, mode],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        threshold, mapped[mode] = out.stdout.split()
        assert threshold == ("None" if mode == "glibc" else str(MMAP_THRESHOLD))
    assert int(mapped["fixed"]) >= 1 << 20  # the second block is mapped
    assert int(mapped["glibc"]) < 1 << 20  # glibc's own way: from the heap


@glibc
def test_the_operators_mmap_threshold_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert Allocator().fix_mmap_threshold() is None

"""Python's small-object allocator of a running daemon, read from outside without stopping it.

    python3 bench/diag/obmalloc_peek.py PID [--every 60]

CPython 3.11's obmalloc hands out objects of up to 512 bytes from 16 KiB pools carved from
1 MiB arenas, which it maps itself (glibc's mallinfo never sees them) and unmaps only when every
pool in one is free. A process whose live objects do not grow can still grow here: objects that
outlive their neighbours keep half-empty pools, and new pools come from a new arena. This
prints, per read: arenas now, the most ever at once, arenas mapped over the process's life,
the bytes of pools carved so far (touched: resident) and how much of that is free pools.

It reads obmalloc's static variables through /proc/PID/mem (root, or the same user with
ptrace allowed) at the addresses libpython's symbol table gives (`nm`; the pyenv build keeps
its symbols), so the daemon is never paused, unlike gdb. The layout of `struct arena_object` is
3.11's; another version needs checking against its Objects/obmalloc.c.
"""

from __future__ import annotations

import argparse
import struct
import subprocess
import sys
import time

ARENA_OBJECT = 48  # sizeof(struct arena_object) on 64-bit: 2 pointers, 2 uints, 3 pointers
POOL = 1 << 14
SYMBOLS = ("narenas_currently_allocated", "narenas_highwater", "ntimes_arena_allocated")


def libpython(pid: int) -> tuple[str, int]:
    """The path of the libpython the process mapped, and its load address."""
    with open(f"/proc/{pid}/maps", encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and "libpython3" in parts[5] and int(parts[2], 16) == 0:
                return parts[5], int(parts[0].split("-")[0], 16)
    raise SystemExit(f"{pid}: no libpython mapped (a static interpreter needs its own symbols)")


def symbols(lib: str) -> dict[str, int]:
    out = subprocess.run(["nm", lib], capture_output=True, text=True, check=True).stdout
    found: dict[str, int] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[2] in (*SYMBOLS, "arenas", "maxarenas"):
            found[parts[2]] = int(parts[0], 16)
    missing = {*SYMBOLS, "arenas", "maxarenas"} - found.keys()
    if missing:
        raise SystemExit(f"{lib}: no symbol {', '.join(sorted(missing))} (stripped?)")
    return found


def read(pid: int, base: int, syms: dict[str, int]) -> str:
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:

        def raw(addr: int, n: int) -> bytes:
            mem.seek(addr)
            return mem.read(n)

        def u64(name: str) -> int:
            return int(struct.unpack("<Q", raw(base + syms[name], 8))[0])

        now, most, ever = (u64(name) for name in SYMBOLS)
        table = u64("arenas")
        count = int(struct.unpack("<I", raw(base + syms["maxarenas"], 4))[0])
        carved = free = 0
        for i in range(count):
            address, pool_address, nfree, _ntotal = struct.unpack(
                "<QQII", raw(table + ARENA_OBJECT * i, 24)
            )
            if address == 0:  # a slot of the table with no arena mapped
                continue
            first_pool = (address + POOL - 1) & ~(POOL - 1)
            carved += pool_address - first_pool
            free += nfree
    return (
        f"arenas={now} most={most} mapped_ever={ever} carved={carved / 2**20:.2f}MiB "
        f"free_pools={free} ({free * POOL / 2**20:.2f}MiB)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pid", type=int)
    ap.add_argument("--every", type=float, default=0.0, help="s between reads (0: once)")
    args = ap.parse_args()
    lib, base = libpython(args.pid)
    syms = symbols(lib)
    while True:
        try:
            line = read(args.pid, base, syms)
        except OSError as e:
            sys.exit(f"{args.pid}: {e}")
        print(f"{time.strftime('%H:%M:%S')} {line}", flush=True)
        if args.every <= 0:
            return
        time.sleep(args.every)


if __name__ == "__main__":
    main()

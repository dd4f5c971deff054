"""Cyclic-garbage census of a running daemon: what the reference cycles it makes are.

Not imported by anything: put this directory on PYTHONPATH of a daemon run, e.g.

    PYTHONPATH=bench/diag DIAG_LOG=/tmp/gc.log \\
        .venv/bin/python bench/bench_soak.py --minutes 30 --kills 0 --no-write

(bench_soak passes PYTHONPATH on to the daemon; it acts only in a process started as
`... run --config ...`). Every minute a thread turns the collector off for 10 s, then collects
with DEBUG_SAVEALL and writes how many objects those 10 s left in cycles, by type (frames by
function, tracebacks and exceptions by where they were raised), and the modules imported since
the last report. Objects freed by reference counting never show: what shows is what only the
collector frees, which piles up in the older generations between full collections.
How the probe cycles fixed in December 2026 were found (docs/BENCHMARKS.md, "Soak").

With DIAG_MEM=1 it reports instead where the process's memory is, every minute (see _memory);
DIAG_TRACE=1 adds tracemalloc: Python's allocations by line that grew since minute 5;
DIAG_BIG=1 lists every 5 minutes the containers of 64 KiB or more (see _big). What neither sees,
the interpreter's own tables, gdb reads from the running daemon (libpython has its symbols),
e.g. the table of interned strings, live entries and slots used:

    gdb -p PID -batch -ex 'p ((PyDictObject*)interned)->ma_used' \
        -ex 'p ((PyDictObject*)interned)->ma_keys->dk_nentries'

and a hardware watchpoint on that dk_nentries shows who takes new slots (how the certificate
keys of monitor/probes/http.py, CERT_KEYS, were found). End such a session with `delete` and
`detach`: a gdb killed while the watchpoint is set leaves it armed, and the daemon dies of a
SIGTRAP at the next write there. Python's small-object arenas (mapped by the interpreter, not
malloc) obmalloc_peek.py beside this file reads from outside, without pausing the daemon.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import os
import sys
import threading
import time
import traceback
import tracemalloc
import types

EVERY = 60.0
WINDOW = 10.0


def _where(tb: types.TracebackType | None) -> str:
    last = "?"
    while tb is not None:
        code = tb.tb_frame.f_code
        last = f"{code.co_filename.rsplit('/', 2)[-1]}:{code.co_name}"
        tb = tb.tb_next
    return last


def describe(o: object) -> str:
    t = type(o)
    if isinstance(o, types.FrameType):
        return f"frame:{o.f_code.co_filename.rsplit('/', 2)[-1]}:{o.f_code.co_name}"
    if isinstance(o, types.TracebackType):
        return f"tb:{_where(o)}"
    if isinstance(o, BaseException):
        return f"exc:{t.__module__}.{t.__qualname__}@{_where(o.__traceback__)}"
    if isinstance(o, types.CoroutineType | types.FunctionType):
        return f"{t.__name__}:{o.__qualname__}"
    if isinstance(o, type):
        return f"type:{o.__module__}.{o.__qualname__}"
    return f"{t.__module__}.{t.__qualname__}"


def _report(log: str) -> None:
    mods = set(sys.modules)
    started = time.time()
    while True:
        time.sleep(EVERY)
        try:
            gc.collect()
            gc.disable()
            time.sleep(WINDOW)
            gc.set_debug(gc.DEBUG_SAVEALL)
            n = gc.collect()
            kinds = collections.Counter(describe(o) for o in gc.garbage)
            gc.garbage.clear()
            new = sorted(set(sys.modules) - mods)
            mods = set(sys.modules)
            with open(log, "a", encoding="utf-8") as f:
                f.write(
                    f"t={time.time() - started:.0f} s: {n} objects in cycles over {WINDOW:g} s; "
                    f"{sys.getallocatedblocks()} blocks; {len(new)} new modules {new[:20]}\n"
                )
                f.writelines(f"  {c:6d} {k}\n" for k, c in kinds.most_common(60))
        except Exception:
            with open(log, "a", encoding="utf-8") as f:
                f.write(traceback.format_exc())
        finally:
            gc.set_debug(0)
            gc.enable()


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


BIG = 64 * 1024  # bytes: containers this large or larger are listed by DIAG_BIG=1


def _big() -> str:
    """DIAG_BIG=1: every container of BIG bytes or more reachable from the modules, the
    threads' frames and the objects not frozen, with its owner (the module, or the class of the
    instance whose attribute holds it). A walk from those roots, not gc.get_objects() alone:
    the daemon gc.freeze()s its state, and frozen objects are not listed there, yet they are
    what grows in place (a dict resized keeps its identity)."""
    seen: set[int] = set()
    stack: list[tuple[object, str]] = [
        (m, f"module {name}") for name, m in list(sys.modules.items())
    ]
    for top in sys._current_frames().values():
        f: types.FrameType | None = top
        while f is not None:  # f_back is made on access: the gc does not see it otherwise
            stack.append((f, f"frame {f.f_code.co_name}"))
            f = f.f_back
    stack += [(o, "young") for o in gc.get_objects()]  # tasks, coroutines: the daemon itself
    found: list[tuple[int, str]] = []
    skip = {id(seen), id(stack)}
    while stack:
        o, owner = stack.pop()
        if id(o) in seen:
            continue
        seen.add(id(o))
        try:
            size = sys.getsizeof(o)
        except Exception:
            continue
        if size >= BIG and id(o) not in skip:
            n = len(o) if hasattr(o, "__len__") else -1
            found.append((size, f"{type(o).__qualname__} len={n} in {owner}"))
        if isinstance(o, types.ModuleType):
            child_owner = f"module {o.__name__}"
        elif isinstance(o, dict | list | tuple | set | frozenset | types.FrameType | type):
            child_owner = owner
        else:
            child_owner = f"{type(o).__module__}.{type(o).__qualname__}"
        for r in gc.get_referents(o):
            if id(r) in seen:
                continue
            if not isinstance(r, int | float | str | bytes) or sys.getsizeof(r) >= BIG:
                stack.append((r, child_owner))
    found.sort(reverse=True)
    return f"  walked {len(seen)} objects\n" + "".join(
        f"  big {size / 1024:9.1f} KiB {what}\n" for size, what in found[:30]
    )


def _memory(log: str) -> None:
    """DIAG_MEM=1: where the memory is, every minute: RSS split (smaps_rollup), glibc's heap
    (in use, free inside it, mmapped), SQLite's own allocations, Python's allocated blocks,
    and every 5 minutes the container types whose counts changed most since the last time."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    try:
        lite = ctypes.CDLL(ctypes.util.find_library("sqlite3") or "libsqlite3.so.0")
        lite.sqlite3_memory_used.restype = ctypes.c_int64
    except OSError:
        lite = None
    started = time.time()
    counts: collections.Counter[str] = collections.Counter()
    base: tracemalloc.Snapshot | None = None
    known_modules: set[str] = set()
    n = 0
    while True:
        time.sleep(EVERY)
        try:
            roll = {}
            with open("/proc/self/smaps_rollup", encoding="ascii") as f:
                for line in f:
                    parts = line.split()
                    if len(parts) == 3 and parts[2] == "kB":
                        roll[parts[0].rstrip(":")] = int(parts[1])
            mi = libc.mallinfo2()
            mib = 1 / (1 << 20)
            used = lite.sqlite3_memory_used() * mib if lite is not None else -1.0
            line = (
                f"t={time.time() - started:.0f} rss={roll.get('Rss', 0) / 1024:.2f} "
                f"anon={roll.get('Anonymous', 0) / 1024:.2f} heap_used={mi.uordblks * mib:.2f} "
                f"heap_free={mi.fordblks * mib:.2f} arena={mi.arena * mib:.2f} "
                f"mmapped={mi.hblkhd * mib:.2f}({mi.hblks}) sqlite={used:.2f} "
                f"pyblocks={sys.getallocatedblocks()} threads={threading.active_count()} "
                f"modules={len(sys.modules)}\n"
            )
            mods = set(sys.modules)
            if known_modules and mods - known_modules:
                line += f"  imported: {' '.join(sorted(mods - known_modules))}\n"
            known_modules = mods
            n += 1
            if tracemalloc.is_tracing() and n % 5 == 0:
                snap = tracemalloc.take_snapshot().filter_traces(
                    [tracemalloc.Filter(False, tracemalloc.__file__)]
                )
                if base is None:
                    base = snap
                else:
                    line += f"  traced {tracemalloc.get_traced_memory()[0] * mib:.2f} MiB\n"
                    for st in snap.compare_to(base, "lineno")[:25]:
                        kib = st.size_diff / 1024
                        line += f"  {kib:+9.1f} KiB {st.count_diff:+7d} {st.traceback}\n"
            if n % 5 == 1 and os.environ.get("DIAG_BIG") == "1":
                line += _big()
            if n % 5 == 1:
                now = collections.Counter(describe(o) for o in gc.get_objects())
                diff = now.copy()
                diff.subtract(counts)
                counts = now
                moved = sorted(diff.items(), key=lambda kv: -abs(kv[1]))[:25]
                line += "".join(f"  {d:+7d} {now[k]:7d} {k}\n" for k, d in moved)
            with open(log, "a", encoding="utf-8") as f:
                f.write(line)
        except Exception:
            with open(log, "a", encoding="utf-8") as f:
                f.write(traceback.format_exc())


if "run" in sys.argv and "--config" in sys.argv:
    _log = os.environ.get("DIAG_LOG", "/tmp/diag-gc.log")
    _what = _memory if os.environ.get("DIAG_MEM") == "1" else _report
    if os.environ.get("DIAG_TRACE") == "1":
        # Python's allocations by line, compared every 5 minutes with the first snapshot.
        tracemalloc.start(1)
    threading.Thread(target=_what, args=(_log,), daemon=True).start()

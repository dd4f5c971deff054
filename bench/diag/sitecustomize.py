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
"""

from __future__ import annotations

import collections
import gc
import os
import sys
import threading
import time
import traceback
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


if "run" in sys.argv and "--config" in sys.argv:
    threading.Thread(
        target=_report, args=(os.environ.get("DIAG_LOG", "/tmp/diag-gc.log"),), daemon=True
    ).start()

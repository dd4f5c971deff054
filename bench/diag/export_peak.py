"""What a client polling the whole event list costs the process as its log grows.

    .venv/bin/python bench/diag/export_peak.py LOG_DIR CHUNK

Reads the events of an existing log (LOG_DIR/events.sqlite3, e.g. a soak's `var/`; copy it
with SQLite's backup first if a daemon is writing it), then writes them one by one into a
fresh log in /tmp, exporting the whole list three times after each (as bench_soak's poll of
`/api/v1/outages` does every 2 s) in pieces of CHUNK events, and prints RSS and Python's
small-object arenas (obmalloc_peek.py, read on this process) along the way. How the export's
pieces were found to raise the soak's RSS: with a soak's 224 events, pieces of 200 took RSS
from 37.7 to 40.6 MiB between 51 and 224 events; pieces of 50 from 37.7 to 38.3 MiB, flat
from 101 on (docs/BENCHMARKS.md, "Soak").
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

# The project (monitor) and bench/ (benchlib); this directory (obmalloc_peek) is sys.path[0].
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import benchlib
import obmalloc_peek

from monitor.events import EventStore, Query


async def grow(source: Path, chunk: int) -> None:
    events = EventStore(source, readonly=True).records()
    where = Path(tempfile.mkdtemp(prefix="export_peak."))
    lib, base = obmalloc_peek.libpython(os.getpid())
    syms = obmalloc_peek.symbols(lib)
    store = EventStore(where)
    q = Query.parse(None, None, None, None)
    marks = {10, 50, 100, 150, 200, len(events) - 1}
    try:
        for i, ev in enumerate(events):
            store.import_events([ev])
            for _ in range(3):
                async for _piece in store.render_all(q, "json", time.time(), chunk=chunk):
                    pass
            if i in marks:
                peek = obmalloc_peek.read(os.getpid(), base, syms)
                print(
                    f"chunk={chunk} events={i + 1} rss={benchlib.memory_mb(os.getpid())['VmRSS']:.1f}MiB {peek}",
                    flush=True,
                )
    finally:
        store.close()
        shutil.rmtree(where, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    asyncio.run(grow(Path(sys.argv[1]), int(sys.argv[2])))

"""Thread pools started whole, with what each thread keeps, when the daemon starts.

Why: `ThreadPoolExecutor` starts a thread only when a task finds none idle, so a pool grows
when its work first overlaps, which may be hours into a run; each reader thread then opens its
own SQLite connections (file descriptors, page cache). The 2-hour soak saw the daemon's
threads go 6 -> 7 -> 8 over its uninterrupted hour, fds and RSS stepping with them: a bounded
working set reached late, which looks like a leak and hides one. Started at once, the working
set is what the process holds from its first minute.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

WAIT = 5.0  # seconds for the pool's threads to meet; a busy machine only leaves some unstarted


def prestart(pool: ThreadPoolExecutor, n: int, init: Callable[[], object] | None = None) -> int:
    """Make `pool` start `n` threads now (each runs `init` once, e.g. opening its connection);
    returns how many met. Each task waits at a barrier until all `n` run, so no thread can take
    two of them and the pool has to start one per task. Call it while the pool is idle (at
    start): a busy thread cannot meet the others, who then wait the barrier out (WAIT)."""
    if n <= 0:
        return 0
    barrier = threading.Barrier(n)

    def meet() -> bool:
        ok = True
        try:
            if init is not None:
                init()
        except Exception:  # the pool's first real task meets (and reports) it again
            ok = False
        try:  # even after a failed init: the others must not wait out the barrier's timeout
            barrier.wait(WAIT)
        except threading.BrokenBarrierError:
            return False
        return ok

    futures = [pool.submit(meet) for _ in range(n)]
    done, _ = wait(futures, timeout=WAIT + 1)
    return sum(1 for f in done if f.exception() is None and f.result())

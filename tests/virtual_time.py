"""A virtual-time asyncio event loop, for tests of timer-driven code.

`VirtualTimeLoop.time()` is a virtual clock: it stands still while callbacks run and, when the
loop has nothing ready to run, no I/O event waiting and no executor job in flight, it jumps
straight to the next scheduled timer. Timers (`asyncio.sleep`, `call_later`, `wait_for`,
`asyncio.timeout`) then fire in their exact order at their exact virtual times, whatever the
speed or load of the machine, and a test of an hour of a 1 s ticker takes milliseconds.

What stays real:
- I/O: the selector is polled (without waiting) before every jump, so a ready socket is served
  before time moves. A peer that answers later than that (another process, a thread, a kernel
  that defers loopback delivery) sees time jump past it: use this loop for code whose waits are
  timers, and keep tests whose point is a real peer's timing on the real clock.
- Executor jobs (`run_in_executor`, `asyncio.to_thread`, `getaddrinfo`): time does not move while
  one is in flight; the loop waits for it in real time, as a real loop would.

Code that reads `time.monotonic()` itself instead of `loop.time()` does not see the virtual
clock; `use_loop_clock` points such a module's `time` at the running loop's clock for a test.

Use `run(coro)` from a synchronous test (like `asyncio.run`, on a fresh virtual loop), or
decorate an `async def` test with `virtual_test` to run its body on a fresh virtual loop.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import time as _real_time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

import pytest

T = TypeVar("T")
P = ParamSpec("P")


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock is virtual and skips idle time (see the module doc)."""

    def __init__(self, start: float = 0.0) -> None:
        super().__init__()
        self._virtual_now = start
        self._executor_jobs = 0
        self.jumps = 0  # how many times the clock jumped to a timer (for tests of the loop)

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by `seconds` at once (timers now due run at the next step)."""
        if seconds < 0:
            raise ValueError("virtual time only moves forward")
        self._virtual_now += seconds

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        fut = super().run_in_executor(executor, func, *args)
        self._executor_jobs += 1
        fut.add_done_callback(self._executor_job_done)
        return fut

    def _executor_job_done(self, _fut: asyncio.Future[Any]) -> None:
        self._executor_jobs -= 1

    def _run_once(self) -> None:
        # (private attributes of BaseEventLoop / BaseSelectorEventLoop, not in typeshed)
        if not self._ready and not self._stopping and self._executor_jobs == 0:  # type: ignore[attr-defined]
            events = self._selector.select(0)  # type: ignore[attr-defined]
            if events:
                self._process_events(events)  # type: ignore[attr-defined]
            else:
                self._jump_to_next_timer()
        super()._run_once()  # type: ignore[misc]

    def _jump_to_next_timer(self) -> None:
        scheduled = self._scheduled  # type: ignore[attr-defined]
        # A cancelled timer at the head is dropped first (as the base loop does): jumping to it
        # would leave the loop waiting in real time for the live timer behind it.
        while scheduled and scheduled[0]._cancelled:
            self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
            heapq.heappop(scheduled)._scheduled = False
        if scheduled and scheduled[0]._when > self._virtual_now:
            self._virtual_now = scheduled[0]._when
            self.jumps += 1


def run(coro: Coroutine[Any, Any, T], *, start: float = 0.0) -> T:
    """Run `coro` to completion on a new VirtualTimeLoop whose clock starts at `start`."""
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(start)) as runner:
        return runner.run(coro)


def virtual_test(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run an `async def` test on a fresh VirtualTimeLoop (starting at 0) instead of
    pytest-asyncio's loop. Its fixtures must be synchronous: an async fixture would live on
    another loop."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return run(fn(*args, **kwargs))

    return wrapper


def loop_clock() -> float:
    """The running loop's clock (virtual under VirtualTimeLoop)."""
    return asyncio.get_running_loop().time()


class _LoopTime(ModuleType):
    """Stands in for the `time` module inside one production module: monotonic() and
    perf_counter() read the running loop's clock, everything else is the real `time`."""

    def __init__(self) -> None:
        super().__init__("time")

    def monotonic(self) -> float:
        return loop_clock()

    def perf_counter(self) -> float:
        return loop_clock()

    def __getattr__(self, name: str) -> Any:
        return getattr(_real_time, name)


def use_loop_clock(monkeypatch: pytest.MonkeyPatch, *modules: ModuleType) -> None:
    """For the test: `time.monotonic()` in each of `modules` reads the running loop's clock.

    Only the name `time` in those modules is replaced: a default argument bound to
    `time.monotonic` at import time (e.g. `clock=time.monotonic`) still reads the real clock and
    must be passed or patched by the test.
    """
    for module in modules:
        monkeypatch.setattr(module, "time", _LoopTime())


def scheduler_on_loop_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """For the test: monitor.scheduler times everything by the running loop's clock.

    The scheduler reads time.monotonic() itself and its RateLimiter's default clock is bound at
    import, so both are pointed at the loop (until the scheduler reads `loop.time()` itself).
    """
    from monitor import scheduler

    use_loop_clock(monkeypatch, scheduler)
    monkeypatch.setattr(
        scheduler, "RateLimiter", functools.partial(scheduler.RateLimiter, clock=loop_clock)
    )

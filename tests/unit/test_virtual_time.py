"""tests/virtual_time.py: the virtual-time loop that the timer-driven tests run on."""

from __future__ import annotations

import asyncio
import socket
import time
import types

import pytest

from tests import virtual_time
from tests.virtual_time import VirtualTimeLoop


def test_an_hour_of_sleep_is_skipped_to_the_exact_time() -> None:
    """A sleep moves the clock by exactly its length, however long (an hour here)."""

    async def main() -> tuple[float, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(3600)
        return t0, loop.time()

    assert virtual_time.run(main(), start=50.0) == (50.0, 3650.0)


def test_timers_fire_in_order_at_their_virtual_times() -> None:
    """call_later, sleeps and a ticker run in time order, each at its exact due time."""

    async def main() -> list[tuple[float, str]]:
        loop = asyncio.get_running_loop()
        seen: list[tuple[float, str]] = []
        loop.call_later(2.5, lambda: seen.append((loop.time(), "later")))

        async def ticker() -> None:
            for _ in range(4):
                await asyncio.sleep(1.0)
                seen.append((loop.time(), "tick"))

        await asyncio.gather(ticker(), asyncio.sleep(3.5))
        seen.append((loop.time(), "end"))
        return seen

    assert virtual_time.run(main()) == [
        (1.0, "tick"),
        (2.0, "tick"),
        (2.5, "later"),
        (3.0, "tick"),
        (4.0, "tick"),
        (4.0, "end"),
    ]


def test_a_cancelled_timer_is_not_jumped_to() -> None:
    """A timeout that was cancelled (wait_for finished early) is skipped: the clock jumps
    straight to the next live timer, with no stop at the dead one (and no real-time wait)."""

    async def main() -> tuple[float, int]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        await asyncio.wait_for(asyncio.sleep(1.0), 3.0)  # leaves a cancelled timer at t=3
        jumps = loop.jumps
        await asyncio.sleep(5.0)
        return loop.time(), loop.jumps - jumps

    assert virtual_time.run(main()) == (6.0, 1)


def test_timeouts_fire_at_virtual_time() -> None:
    """asyncio.timeout() over a wait that never ends raises at exactly its deadline."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30.0):
                await asyncio.Event().wait()
        return loop.time()

    assert virtual_time.run(main()) == 30.0


def test_time_stands_still_while_an_executor_job_runs() -> None:
    """A thread job (to_thread) is awaited in real time; a pending timer is not jumped to
    meanwhile, so a timeout around the job cannot fire because of the jump."""

    async def main() -> tuple[float, bool]:
        loop = asyncio.get_running_loop()
        timer = asyncio.create_task(asyncio.sleep(1.0))
        async with asyncio.timeout(0.5):
            await asyncio.to_thread(time.sleep, 0.05)
        done = timer.done()
        await timer
        return loop.time(), done

    # At t=0 when the job ends (not after a jump to 0.5 or 1.0), and the timer still pending.
    assert virtual_time.run(main()) == (1.0, False)


def test_ready_io_is_served_before_the_clock_jumps() -> None:
    """Data that becomes readable while a read waits is delivered at the current time, not
    after a jump to the pending timeout."""

    async def main() -> tuple[bytes, float]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        try:
            loop.call_soon(b.sendall, b"ping")  # sent once the read below waits on the socket
            async with asyncio.timeout(10.0):
                data = await loop.sock_recv(a, 16)
            return data, loop.time()
        finally:
            a.close()
            b.close()

    assert virtual_time.run(main()) == (b"ping", 0.0)


def test_advance_moves_the_clock_forward_only() -> None:
    """advance() makes the timers it passes due at once; going back is refused."""

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        fired: list[float] = []
        loop.call_later(10.0, lambda: fired.append(loop.time()))
        loop.advance(15.0)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        with pytest.raises(ValueError):
            loop.advance(-1.0)
        return fired

    assert virtual_time.run(main()) == [15.0]


def test_use_loop_clock_points_a_modules_monotonic_at_the_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A module that reads time.monotonic() itself sees the virtual clock while patched, and
    the rest of its `time` is the real module."""
    mod = types.ModuleType("clocked")
    exec("import time\ndef now():\n    return time.monotonic()\n", mod.__dict__)
    virtual_time.use_loop_clock(monkeypatch, mod)

    async def main() -> tuple[float, float]:
        before = mod.now()
        await asyncio.sleep(42.0)
        return before, mod.now()

    assert virtual_time.run(main(), start=1000.0) == (1000.0, 1042.0)
    assert mod.time.time is time.time
    monkeypatch.undo()
    assert mod.time is time


@virtual_time.virtual_test
async def test_virtual_test_runs_an_async_test_on_a_virtual_loop(tmp_path: object) -> None:
    """The decorator gives the test body a VirtualTimeLoop (fixtures still injected)."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop) and tmp_path is not None
    await asyncio.sleep(86400)
    assert loop.time() == 86400.0

"""The scheduler's sample jobs (sampled blocks) and its background share (a census)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Sequence

from monitor.config import ProbingConfig
from monitor.probes.base import IcmpTarget, Kind, Target
from monitor.scheduler import Scheduler
from tests.unit.test_scheduler import FakeProber, Sink, max_in_any_window, run_for, targets
from tests.virtual_time import loop_clock, virtual_test


def block_label(net: str) -> IcmpTarget:
    return IcmpTarget(ipaddress.IPv4Network(net).network_address)


@virtual_test
async def test_sample_job_probes_what_pick_returns_each_round(vclock: None) -> None:
    """A sample job calls `pick` once per interval and probes exactly what it returns."""
    prober, sink = FakeProber(), Sink()
    p = ProbingConfig(interval=0.5, timeout=0.2, max_rate=100, reprobes=2, min_timeout=0.2)
    sched = Scheduler({Kind.ICMP: prober}, sink, p)
    sched.set_targets([], p)
    calls: list[float] = []
    picks = targets(2, "198.18.176.0")

    def pick() -> Sequence[Target]:
        calls.append(loop_clock())
        return picks

    sched.set_samplers([("e", block_label("198.18.176.0/24"), pick)])
    await run_for(sched, 1.6)
    assert 3 <= len(calls) <= 4, calls
    keys = [k for _, k in prober.sent]
    assert set(keys) == {"198.18.176.1", "198.18.176.2"}
    assert len(keys) == 2 * len(calls)
    # the block's label address itself is never probed
    assert "198.18.176.0" not in keys


@virtual_test
async def test_sample_probes_are_inside_max_rate(vclock: None) -> None:
    """Sample probes of many blocks share the one budget with the scheduled targets."""
    prober, sink = FakeProber(), Sink()
    p = ProbingConfig(interval=1.0, timeout=0.2, max_rate=10, reprobes=2, min_timeout=0.2)
    sched = Scheduler({Kind.ICMP: prober}, sink, p)
    sched.set_targets([("e", t, False) for t in targets(5)], p)
    many = targets(20, "198.18.177.0")
    sched.set_samplers(
        [("e", block_label(f"198.18.{b}.0/24"), lambda: many) for b in range(100, 103)]
    )
    await run_for(sched, 2.5)
    assert max_in_any_window([t for t, _ in prober.sent]) <= 10
    assert len(prober.sent) >= 15


@virtual_test
async def test_background_takes_at_most_its_share_and_yields_to_urgent(vclock: None) -> None:
    """acquire_background grants at most share x max_rate, and the scheduled targets still
    get their probes while a census runs flat out."""
    prober, sink = FakeProber(), Sink()
    sched = Scheduler(
        {Kind.ICMP: prober},
        sink,
        ProbingConfig(interval=1.0, timeout=0.2, max_rate=20, reprobes=2, min_timeout=0.2),
        background_share=0.25,
    )
    sched.set_targets(
        [("e", t, False) for t in targets(10)],
        ProbingConfig(interval=1.0, timeout=0.2, max_rate=20, reprobes=2, min_timeout=0.2),
    )
    grants: list[float] = []

    async def census() -> None:
        while True:
            await sched.acquire_background()
            grants.append(loop_clock())

    task = asyncio.create_task(census())
    await run_for(sched, 3.0)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert max_in_any_window(grants) <= 5
    assert len(grants) >= 8, "and the census does proceed"
    combined = [t for t, _ in prober.sent] + grants
    assert max_in_any_window(combined) <= 20
    assert len(prober.sent) >= 25, "every target probed each round"

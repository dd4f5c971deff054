"""TCP and HTTP probes across a path slower than the kernel's first SYN resend (1.2 s RTT).

The vantage reaches star-jv's web host through China Unicom's delay line set to 1.2 s RTT
without jitter or loss (a satellite hop in congestion). The SYN-ACK then comes after the kernel
resent the SYN at ~1 s: a connect that must end before that resend (SYN_LIMIT, the daemon
without a SYN budget) can never succeed; with the scheduler's budget (the daemon's wiring:
Scheduler.acquire_resend) the resend takes a send and the probe waits for its answer.

Path latency does not scale with time: the probes use the real RTT (a few seconds in all).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable

import pytest

from monitor.config import ProbingConfig
from monitor.probes.base import HttpTarget, ProbeResult, Reason, TcpTarget
from monitor.probes.http import HttpProber
from monitor.probes.tcp import TcpProber
from monitor.scheduler import RoundCollector, Scheduler
from monitor.sim.world import World

netns = pytest.mark.netns
V = 0
RTT = 1.2


@pytest.fixture
def slow_world(world_factory: Callable[..., World]) -> World:
    """A realistic world whose unicom link (star-jv's 198.18.176.0/24) has 1.2 s RTT, no loss."""
    w = world_factory(profile="realistic")
    w.path_profile("unicom", rtt=RTT, jitter=0.0, loss=0.0, burst=None)
    return w


def probe_all(budgeted: bool, web: str) -> tuple[ProbeResult, ProbeResult]:
    """One TCP and one HTTP probe of `web` (run inside the vantage's namespace)."""

    async def main() -> tuple[ProbeResult, ProbeResult]:
        sched = Scheduler(
            {},
            RoundCollector(expected=1),
            ProbingConfig(interval=10.0, timeout=3.0, max_rate=20, reprobes=2, min_timeout=3.0),
        )
        acquire = sched.acquire_resend if budgeted else None
        addr = ipaddress.ip_address(web)
        tcp = await TcpProber(acquire).probe(TcpTarget(addr, 80), timeout=3.0)
        http = HttpProber(acquire)
        try:
            # Two round trips at least (handshake, request): 4 s rather than the default 3 s.
            page = await http.probe(
                HttpTarget(url="http://airkoryo.com.kp/", address=addr), timeout=4.0
            )
        finally:
            await http.close()
        return tcp, page

    return asyncio.run(main())


@netns
def test_probes_succeed_across_a_path_slower_than_the_syn_resend(slow_world: World) -> None:
    """With the scheduler's SYN budget, a TCP connect and an HTTP fetch succeed across 1.2 s
    RTT (the handshake takes the RTT); without it both fail with a timeout before the resend."""
    web = slow_world.sites["airkoryo.com.kp"][0]
    tcp, page = slow_world.call_in(V, lambda: probe_all(True, web), timeout=30)
    assert tcp.ok, tcp
    assert tcp.rtt is not None and RTT - 0.05 <= tcp.rtt < 2.0, tcp.rtt
    assert page.ok and page.extra.get("status") == 200, page
    assert page.rtt is not None and page.rtt >= 2 * RTT - 0.05
    old_tcp, old_page = slow_world.call_in(V, lambda: probe_all(False, web), timeout=30)
    assert old_tcp.reason is Reason.TIMEOUT and old_page.reason is Reason.TIMEOUT

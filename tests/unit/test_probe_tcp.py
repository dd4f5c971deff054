"""TCP prober against real loopback sockets: success, refusal, a real timeout, errno mapping."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import time

import pytest

from monitor.probes.base import IcmpTarget, Reason, TcpTarget
from monitor.probes.tcp import SYN_LIMIT, TcpProber, classify_oserror

LOOPBACK = ipaddress.ip_address("127.0.0.1")


async def test_connect_success_measures_rtt() -> None:
    """A listening port gives ok=True with a small positive rtt and the send time in `started`."""
    accepted = asyncio.Event()

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    prober = TcpProber()
    before = time.time()
    try:
        res = await prober.probe(TcpTarget(LOOPBACK, port), timeout=2.0)
        await asyncio.wait_for(accepted.wait(), 2.0)
    finally:
        server.close()
        await server.wait_closed()
        await prober.close()
    assert res.ok, res
    assert res.reason is None
    assert res.rtt is not None and 0 < res.rtt < 1.0
    assert before <= res.started <= time.time()


async def test_ipv6_loopback_success(ipv6_loopback: bool) -> None:
    """IPv6 targets connect over AF_INET6."""
    if not ipv6_loopback:
        pytest.skip("no ::1 here")
    server = await asyncio.start_server(lambda r, w: w.close(), "::1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        res = await TcpProber().probe(TcpTarget(ipaddress.ip_address("::1"), port), timeout=2.0)
    finally:
        server.close()
        await server.wait_closed()
    assert res.ok, res


async def test_closed_port_is_refused(closed_tcp_port: int) -> None:
    """A port with nothing listening answers RST: REFUSED, immediately."""
    t0 = time.perf_counter()
    res = await TcpProber().probe(TcpTarget(LOOPBACK, closed_tcp_port), timeout=30.0)
    assert not res.ok
    assert res.reason is Reason.REFUSED
    assert res.rtt is None
    # Far from the 30 s timeout (a margin no load can eat), so: at the RST, not at the timeout.
    assert time.perf_counter() - t0 < 10.0


async def test_silent_syn_gives_up_before_the_kernel_resends(full_backlog: int) -> None:
    """With a long timeout, an unanswered SYN ends the attempt at SYN_LIMIT, before 1 s (the
    kernel's first SYN resend, a packet the rate limiter never granted): TIMEOUT, left to the
    re-probes."""
    assert SYN_LIMIT < 1.0, "below the kernel's initial SYN retransmission timeout"
    t0 = time.perf_counter()
    res = await TcpProber().probe(TcpTarget(LOOPBACK, full_backlog), timeout=30.0)
    elapsed = time.perf_counter() - t0
    assert res.reason is Reason.TIMEOUT and "SYN-ACK" in res.detail
    # Given up at SYN_LIMIT, not at the 30 s timeout; the upper margin is wide (a loaded
    # machine fires the timer late: a bound just above SYN_LIMIT would flake).
    assert SYN_LIMIT - 0.05 <= elapsed < 10.0


async def test_dropped_syn_is_timeout_within_the_timeout(full_backlog: int) -> None:
    """A SYN that is never answered gives TIMEOUT, and the probe returns at the timeout."""
    t0 = time.perf_counter()
    res = await TcpProber().probe(TcpTarget(LOOPBACK, full_backlog), timeout=0.3)
    elapsed = time.perf_counter() - t0
    assert not res.ok
    assert res.reason is Reason.TIMEOUT
    assert 0.25 <= elapsed < 10.0, "at the timeout (the upper bound only catches a hang)"


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), Reason.REFUSED),
        (OSError(errno.EHOSTUNREACH, "No route to host"), Reason.UNREACHABLE),
        (OSError(errno.ENETUNREACH, "Network is unreachable"), Reason.UNREACHABLE),
        (OSError(errno.EHOSTDOWN, "Host is down"), Reason.UNREACHABLE),
        (TimeoutError(errno.ETIMEDOUT, "Connection timed out"), Reason.TIMEOUT),
        (OSError(errno.EMFILE, "Too many open files"), Reason.OTHER),
    ],
)
def test_oserror_classification(exc: OSError, reason: Reason) -> None:
    """Socket errnos map onto the fixed reason set (unreachable cannot be produced on loopback)."""
    got, detail = classify_oserror(exc)
    assert got is reason
    assert detail


async def test_close_is_idempotent() -> None:
    """close() holds nothing and may be called repeatedly."""
    prober = TcpProber()
    await prober.close()
    await prober.close()


async def test_a_target_of_another_kind_is_a_failed_probe() -> None:
    """Given an ICMP target, probe() returns a failed `other` result instead of raising."""
    res = await TcpProber().probe(IcmpTarget(ipaddress.ip_address("127.0.0.1")), 1.0)
    assert (res.ok, res.reason) == (False, Reason.OTHER)
    assert res.detail == "icmp target given to the tcp prober"

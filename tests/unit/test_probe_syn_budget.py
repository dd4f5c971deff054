"""SYN resends under the scheduler's budget: a TCP or HTTP connect waits past SYN_LIMIT only with
a send of the budget per kernel SYN resend, counted at the receiver (loopback only)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from monitor.config import ProbingConfig
from monitor.probes.base import HttpTarget, Kind, ProbeResult, Reason, Target, TcpTarget
from monitor.probes.http import HttpProber
from monitor.probes.tcp import SYN_LIMIT, SynGuard, TcpProber
from monitor.scheduler import RoundCollector, Scheduler

LOOPBACK = ipaddress.ip_address("127.0.0.1")
_ETH_P_ALL = 0x0003
_PACKET_OUTGOING = 4
_SO_TIMESTAMPNS = 35  # Linux (asm-generic); not exported by Python's socket module
_SO_RCVBUFFORCE = 33  # ditto (root may exceed rmem_max)


@dataclass
class Budget:
    """An acquire callback that grants `grant` sends, then refuses; records every call."""

    grant: int
    calls: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def granted(self) -> int:
        return min(self.grant, len(self.calls))

    async def __call__(self, deadline: float, send_by: float) -> bool:
        self.calls.append((time.monotonic(), deadline, send_by))
        return len(self.calls) <= self.grant


class SlowPeer:
    """A listener whose accept queue is full, so SYNs are dropped (no RST) until `open()`
    makes room; then it answers the next SYN, and an HTTP request if one comes. `syns()`
    counts the SYNs that reached the port, read off the wire (AF_PACKET on lo)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        try:
            self.tap = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
        except PermissionError:
            pytest.skip("no AF_PACKET here (not root)")
        self.tap.bind(("lo", 0))
        self.tap.setblocking(False)
        # The kernel's arrival time of each frame, not the time the test got round to reading it.
        self.tap.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        # lo carries the whole host's loopback traffic: room for seconds of it between reads.
        self.tap.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 32 << 20)
        self.srv = socket.socket()
        # "0.0.0.0": one full accept queue drops SYNs to every loopback address 127.x.y.z.
        self.srv.bind((host, 0))
        self.srv.listen(0)
        self.port: int = self.srv.getsockname()[1]
        self.fillers: list[socket.socket] = []
        self._syns = 0
        self.arrivals: list[float] = []  # wall-clock arrival time of every SYN counted

    async def fill(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(16):
            s = socket.socket()
            s.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", self.port)), 0.2)
            except TimeoutError:
                s.close()
                break
            self.fillers.append(s)
        else:
            pytest.skip("accept queue never filled up on this kernel")
        self.syns()  # the fillers' SYNs are not the probe's
        self._syns = 0
        self.arrivals.clear()

    def open(self) -> None:
        """Make room in the accept queue: the next SYN is answered."""
        self.srv.accept()[0].close()

    async def serve_http(self, open_after: float) -> None:
        """Open after `open_after` seconds, then answer one request."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(open_after)
        self.open()
        self.srv.setblocking(False)
        conn, _ = await loop.sock_accept(self.srv)
        with conn:
            await loop.sock_recv(conn, 65536)
            await loop.sock_sendall(
                conn, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            )

    def syns(self) -> int:
        """SYNs (without ACK) to the port seen arriving since the last call, plus before."""
        while True:
            try:
                frame, anc, _, addr = self.tap.recvmsg(65536, socket.CMSG_SPACE(16))
            except BlockingIOError:
                return self._syns
            if addr[2] == _PACKET_OUTGOING or len(frame) < 14 + 20 + 20:
                continue  # loopback shows each packet twice: count the arrival only
            ip = frame[14:]
            if ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
                continue
            tcp = ip[(ip[0] & 0x0F) * 4 :]
            dport = struct.unpack_from("!H", tcp, 2)[0]
            flags = tcp[13]
            if dport == self.port and flags & 0x02 and not flags & 0x10:
                self._syns += 1
                self.arrivals.extend(
                    sec + nsec / 1e9
                    for level, kind, data in anc
                    if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS
                    for sec, nsec in [struct.unpack("qq", data[:16])]
                )

    def close(self) -> None:
        for s in self.fillers:
            s.close()
        self.srv.close()
        self.tap.close()


@pytest.fixture
async def slow_peer() -> AsyncIterator[SlowPeer]:
    peer = SlowPeer()
    try:
        await peer.fill()
        yield peer
    finally:
        peer.close()


async def test_without_budget_gives_up_at_syn_limit(slow_peer: SlowPeer) -> None:
    """A refused send: the connect ends before the kernel's first resend, one SYN on the wire."""
    budget = Budget(grant=0)
    t0 = time.perf_counter()
    res = await TcpProber(budget).probe(TcpTarget(LOOPBACK, slow_peer.port), timeout=3.0)
    elapsed = time.perf_counter() - t0
    await asyncio.sleep(1.2)  # a resend that escaped would arrive by now
    assert res.reason is Reason.TIMEOUT and "SYN-ACK" in res.detail, res
    assert len(budget.calls) == 1
    assert SYN_LIMIT - 0.2 <= elapsed < 10.0
    assert slow_peer.syns() == 1


async def test_with_budget_succeeds_on_the_resent_syn(slow_peer: SlowPeer) -> None:
    """With a send granted, the probe waits past SYN_LIMIT and the resent SYN connects."""
    budget = Budget(grant=5)
    loop = asyncio.get_running_loop()
    loop.call_later(0.4, slow_peer.open)
    res = await TcpProber(budget).probe(TcpTarget(LOOPBACK, slow_peer.port), timeout=3.0)
    assert res.ok, res
    assert res.rtt is not None and res.rtt > SYN_LIMIT  # answered to the resend, not the first
    assert len(budget.calls) == 1  # one resend, one send taken
    assert slow_peer.syns() <= budget.granted + 1


async def test_one_send_per_resend_until_the_timeout(slow_peer: SlowPeer) -> None:
    """A silent peer and a 2.5 s timeout: a send per kernel resend (two here), never more SYNs
    on the wire than sends granted + the first."""
    budget = Budget(grant=5)
    res = await TcpProber(budget).probe(TcpTarget(LOOPBACK, slow_peer.port), timeout=2.5)
    await asyncio.sleep(1.2)
    assert res.reason is Reason.TIMEOUT, res
    # tcpi_rto says when: 1 s each with tcp_syn_linear_timeouts, 1 s then 2 s without.
    assert 1 <= len(budget.calls) <= 2
    assert slow_peer.syns() == len(budget.calls) + 1


async def test_budget_runs_out_mid_wait(slow_peer: SlowPeer) -> None:
    """One send granted, the next refused: two SYNs, then the connect is dropped silently."""
    budget = Budget(grant=1)
    res = await TcpProber(budget).probe(TcpTarget(LOOPBACK, slow_peer.port), timeout=6.0)
    await asyncio.sleep(1.5)
    assert res.reason is Reason.TIMEOUT and "budget" in res.detail, res
    assert len(budget.calls) == 2
    assert slow_peer.syns() == 2


async def test_http_connect_waits_under_the_budget(slow_peer: SlowPeer) -> None:
    """HTTP: the same connect path, a late SYN-ACK to the resent SYN gives the page."""
    budget = Budget(grant=5)
    loop = asyncio.get_running_loop()
    server = loop.create_task(slow_peer.serve_http(0.4))
    prober = HttpProber(budget)
    try:
        url = f"http://127.0.0.1:{slow_peer.port}/"
        res = await prober.probe(HttpTarget(url=url, address=LOOPBACK), timeout=3.0)
    finally:
        await prober.close()
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await server
    assert res.ok, res
    assert len(budget.calls) == 1
    assert slow_peer.syns() <= budget.granted + 1


async def test_http_without_budget_gives_up_at_syn_limit(slow_peer: SlowPeer) -> None:
    """HTTP with a refused send: TIMEOUT before the first resend, one SYN on the wire."""
    budget = Budget(grant=0)
    prober = HttpProber(budget)
    try:
        url = f"http://127.0.0.1:{slow_peer.port}/"
        res = await prober.probe(HttpTarget(url=url, address=LOOPBACK), timeout=3.0)
    finally:
        await prober.close()
    await asyncio.sleep(1.2)
    assert res.reason is Reason.TIMEOUT, res
    assert len(budget.calls) == 1
    assert slow_peer.syns() == 1


async def test_guarded_probes_leave_no_reference_cycles() -> None:
    """A budgeted HTTP or TCP probe is freed by reference counting, its socket, transport and
    guard included: a SynGuard held its task, whose context (the HTTP prober's context var)
    held the guard, so every probe's objects waited for a full garbage collection (a soak
    found ~10 such probes a second in its cyclic garbage)."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http, tcp = HttpProber(Budget(grant=5)), TcpProber(Budget(grant=5))
    try:
        url = f"http://127.0.0.1:{port}/"
        assert (await http.probe(HttpTarget(url=url, address=LOOPBACK), timeout=3.0)).ok
        gc.collect()
        gc.disable()  # from here on only reference counting frees
        try:
            for _ in range(5):
                res = await http.probe(HttpTarget(url=url, address=LOOPBACK), timeout=3.0)
                assert res.ok, res
                assert (await tcp.probe(TcpTarget(LOOPBACK, port), timeout=3.0)).ok
            for _ in range(5):  # the cancelled guard tasks end, the server's handlers too
                await asyncio.sleep(0.01)
            left = [o for o in gc.get_objects() if isinstance(o, SynGuard)]
        finally:
            gc.enable()
    finally:
        await http.close()
        server.close()
        await server.wait_closed()
    assert left == []


async def test_refused_connects_leave_no_reference_cycles(closed_tcp_port: int) -> None:
    """A failed connect is freed by reference counting: its exception's traceback held the
    frames of the connect (the future, aiohappyeyeballs' list of errors), which held the
    exception again, a cycle per failed probe for as long as a target is down."""
    url = f"http://127.0.0.1:{closed_tcp_port}/"
    https = [HttpProber(Budget(grant=5)), HttpProber()]
    tcps = [TcpProber(Budget(grant=5)), TcpProber()]
    http_target, tcp_target = (
        HttpTarget(url=url, address=LOOPBACK),
        TcpTarget(LOOPBACK, closed_tcp_port),
    )

    async def fail_each() -> None:
        for res in [
            *[await p.probe(http_target, timeout=3.0) for p in https],
            *[await p.probe(tcp_target, timeout=3.0) for p in tcps],
        ]:
            assert res.reason is Reason.REFUSED, res

    try:
        await fail_each()  # warm up: sessions, connectors
        gc.collect()
        gc.disable()
        try:
            before = sum(isinstance(o, BaseException) for o in gc.get_objects())
            for _ in range(5):
                await fail_each()
            for _ in range(5):
                await asyncio.sleep(0.01)
            after = sum(isinstance(o, BaseException) for o in gc.get_objects())
        finally:
            gc.enable()
    finally:
        for p in https:
            await p.close()
    assert after <= before, f"{after - before} exceptions kept alive by cycles"


# --- wired to the scheduler: the cap holds at the receiver, resends included ----------------------


class CountingTcp:
    """The real TcpProber with the scheduler's resend budget; counts probes and granted resends."""

    def __init__(self) -> None:
        self.sched: Scheduler | None = None  # set once made: it needs the prober, and vice versa
        self.probes = 0
        self.grants = 0
        self.prober = TcpProber(self.acquire)

    async def acquire(self, deadline: float, send_by: float) -> bool:
        assert self.sched is not None
        ok = await self.sched.acquire_resend(deadline, send_by)
        self.grants += ok
        return ok

    async def probe(self, target: Target, timeout: float) -> ProbeResult:
        self.probes += 1
        return await self.prober.probe(target, timeout)

    async def close(self) -> None:
        pass


def max_in_any_second(times: list[float]) -> int:
    times = sorted(times)
    best, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        best = max(best, i - j + 1)
    return best


async def test_scheduler_caps_first_syns_and_resends_together_at_the_receiver() -> None:
    """Twenty TCP targets whose SYNs are dropped, max_rate 5, probes waiting up to 3 s with
    their resends budgeted by the scheduler: the kernel resends SYNs (more SYNs than probes),
    yet no one-second window at the receiver holds more than 5 SYNs, and every SYN on the wire
    was a probe's first or a granted resend."""
    peer = SlowPeer(host="0.0.0.0")
    try:
        await peer.fill()
        targets = [
            ("e", TcpTarget(ipaddress.ip_address(f"127.0.0.{i}"), peer.port), False)
            for i in range(2, 22)
        ]
        sink = RoundCollector(expected=10**6)
        tcp = CountingTcp()
        sched = Scheduler(
            {Kind.TCP: tcp},
            sink,
            ProbingConfig(interval=4.0, timeout=3.0, max_rate=5, reprobes=2, min_timeout=3.0),
        )
        tcp.sched = sched
        sched.set_targets(
            targets,
            ProbingConfig(interval=4.0, timeout=3.0, max_rate=5, reprobes=2, min_timeout=3.0),
        )
        run = asyncio.get_running_loop().create_task(sched.run())
        for _ in range(36):
            await asyncio.sleep(0.25)
            peer.syns()  # read as we go: the tap's buffer is finite
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        await sched.close()
        await asyncio.sleep(1.5)  # a resend that escaped the budget would arrive by now
        syns = peer.syns()
    finally:
        peer.close()
    assert tcp.grants > 0 and syns > tcp.probes, (syns, tcp.probes, tcp.grants)
    assert syns <= tcp.probes + tcp.grants
    assert len(peer.arrivals) == syns
    assert max_in_any_second(peer.arrivals) <= 5, sorted(peer.arrivals)

"""The ICMP echo engine against the real kernel, each test in its own throw-away network namespace.

Only loopback (127.0.0.0/8, ::1) and 198.18.0.0/15 inside the namespace are ever addressed, so no
packet can leave the machine. Forged replies and ICMP errors are crafted with raw sockets by a
"forger" that first captures the engine's real echo request (the namespace's kernel is told not to
answer echoes itself where the forger plays the target).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
import time
import types
from collections.abc import Callable, Sequence
from typing import Any, Literal

import pytest

from monitor.probes.base import IcmpTarget, ProbeResult, Reason
from monitor.probes.icmp import IcmpProber
from tests.netns_util import ip, netns_unavailable, run_in_netns, sysctl

pytestmark = pytest.mark.netns

Mode = Literal["dgram", "raw"]
MODES: list[Mode] = ["dgram", "raw"]
SILENT4 = "198.18.98.7"  # behind a veth whose peer drops everything: a silent host


@pytest.fixture(autouse=True)
def _need_netns() -> None:
    reason = netns_unavailable()
    if reason is not None:
        if os.environ.get("REQUIRE_NETNS") == "1":
            pytest.fail(f"REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)


def allow_ping_sockets() -> None:
    sysctl("net.ipv4.ping_group_range", "0 2147483647")


def quiet_kernel() -> None:
    """The namespace's kernel stops answering echoes, so the forger can play the target."""
    allow_ping_sockets()
    sysctl("net.ipv4.icmp_echo_ignore_all", "1")
    sysctl("net.ipv6.icmp.echo_ignore_all", "1")


def silent_host() -> None:
    """198.18.98.7 routes out of a veth to a static MAC nobody has: packets vanish silently."""
    allow_ping_sockets()
    ip("link", "add", "sv0", "type", "veth", "peer", "name", "sv1")
    ip("link", "set", "sv0", "up")
    ip("link", "set", "sv1", "up")
    ip("addr", "add", "198.18.98.1/24", "dev", "sv0")
    ip("neigh", "add", SILENT4, "lladdr", "02:00:00:00:98:07", "dev", "sv0", "nud", "permanent")


def reject_routes() -> None:
    allow_ping_sockets()
    ip("route", "add", "unreachable", "198.18.99.0/24")
    ip("route", "add", "prohibit", "198.18.97.0/24")


def target(addr: str) -> IcmpTarget:
    return IcmpTarget(ipaddress.ip_address(addr))


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


class Forger:
    """Raw sockets that see the engine's echo requests and inject crafted ICMP packets."""

    def __init__(self, v6: bool = False) -> None:
        self.v6 = v6
        if v6:
            self.cap = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
            self.out = self.cap  # the kernel fills in ICMPv6 checksums; source is ::1
        else:
            self.cap = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
            # IPPROTO_RAW implies IP_HDRINCL: we write the IP header, source address included.
            self.out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.cap.settimeout(2.0)

    def close(self) -> None:
        self.cap.close()
        self.out.close()

    def capture(self, dst: str) -> tuple[bytes, bytes, int, int, bytes]:
        """The next echo request to dst: (ip header or b"", icmp message, ident, seq, token)."""
        while True:
            data, _ = self.cap.recvfrom(4096)
            if self.v6:
                iph, icmp = b"", data
                if icmp[0] != 128:
                    continue
                # The raw ICMPv6 socket hides the IPv6 header; only ::1 -> ::1 is used here.
                if dst != "::1":
                    continue
            else:
                ihl = (data[0] & 0x0F) * 4
                iph, icmp = data[:ihl], data[ihl:]
                if icmp[0] != 8 or socket.inet_ntoa(iph[16:20]) != dst:
                    continue
            ident, seq = struct.unpack_from("!HH", icmp, 4)
            return iph, icmp, ident, seq, icmp[8:16]

    def send4(self, src: str, dst: str, icmp: bytes) -> None:
        icmp = icmp[:2] + b"\0\0" + icmp[4:]
        icmp = icmp[:2] + struct.pack("!H", checksum(icmp)) + icmp[4:]
        iph = struct.pack(
            "!BBHHHBBH4s4s",
            0x45, 0, 20 + len(icmp), 0, 0, 64, socket.IPPROTO_ICMP, 0,
            socket.inet_aton(src), socket.inet_aton(dst),
        )  # fmt: skip
        self.out.sendto(iph + icmp, (dst, 0))

    def reply(self, src: str, ident: int, seq: int, token: bytes, to: str = "127.0.0.1") -> None:
        if self.v6:
            self.out.sendto(struct.pack("!BBHHH", 129, 0, 0, ident, seq) + token, ("::1", 0))
        else:
            self.send4(src, to, struct.pack("!BBHHH", 0, 0, 0, ident, seq) + token)


async def gather_submits(
    prober: IcmpProber,
    addrs: Sequence[str | ipaddress.IPv4Address | ipaddress.IPv6Address],
    timeout: float,
    check: Callable[[], None] | None = None,
) -> list[ProbeResult]:
    """Submit one probe per address through the callback API and wait for every result."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    results: list[ProbeResult] = []

    def cb(r: ProbeResult) -> None:
        results.append(r)
        if len(results) == len(addrs) and not done.done():
            done.set_result(None)

    for a in addrs:
        prober.submit(a, timeout, cb)
    if check is not None:
        check()
    await asyncio.wait_for(done, timeout + 5)
    return results


# -- success -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("addr", ["127.0.0.1", "::1"])
def test_echo_loopback_succeeds(mode: Mode, addr: str) -> None:
    """An echo to 127.0.0.1 / ::1 succeeds with rtt > 0 through the forced socket kind."""

    async def body() -> None:
        p = IcmpProber(mode)
        r = await p.probe(target(addr), 2.0)
        assert r.ok, r
        assert r.reason is None
        assert r.rtt is not None and 0 < r.rtt < 2.0
        assert r.target == target(addr)
        assert abs(r.started - time.time()) < 5
        version = ipaddress.ip_address(addr).version
        assert p.modes == {version: mode}
        assert (p.sent, p.received, sum(p.ignored.values())) == (1, 1, 0)
        if mode == "raw" and version == 4:
            assert r.extra["ttl"] == 64  # read from the reply's IP header
        await p.close()

    run_in_netns(body, setup=allow_ping_sockets)


def test_auto_mode_follows_ping_group_range() -> None:
    """Auto mode uses ping sockets when ping_group_range allows our gid, raw sockets otherwise."""

    async def body() -> list[dict[int, str]]:
        seen = []
        for value in ("1 0", "0 2147483647"):
            sysctl("net.ipv4.ping_group_range", value)
            p = IcmpProber("auto")
            assert (await p.probe(target("127.0.0.1"), 2.0)).ok
            assert (await p.probe(target("::1"), 2.0)).ok
            seen.append(p.modes)
            await p.close()
        return seen

    assert run_in_netns(body) == [{4: "raw", 6: "raw"}, {4: "dgram", 6: "dgram"}]


def test_submit_accepts_strings_and_builds_target() -> None:
    """submit() takes a string or ipaddress object; without a target it reports IcmpTarget(addr)."""

    async def body() -> None:
        p = IcmpProber("raw")
        rs = await gather_submits(p, ["127.0.0.2", "::1"], 2.0)
        assert sorted(r.target.key for r in rs) == ["127.0.0.2", "::1"]
        assert all(r.ok and isinstance(r.target, IcmpTarget) for r in rs)
        await p.close()

    run_in_netns(body)


# -- silence and errors --------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_silent_ipv4_host_times_out(mode: Mode) -> None:
    """A host that never answers fails with Reason.TIMEOUT after (not before) the timeout."""

    async def body() -> None:
        p = IcmpProber(mode)
        t0 = time.monotonic()
        r = await p.probe(target(SILENT4), 0.2)
        elapsed = time.monotonic() - t0
        assert not r.ok and r.reason is Reason.TIMEOUT, r
        assert r.detail == "no reply within 0.2s"
        assert elapsed >= 0.2
        assert p.in_flight == 0 and p.sent == 1 and p.received == 0
        await p.close()

    run_in_netns(body, setup=silent_host)


@pytest.mark.parametrize("mode", MODES)
def test_silent_ipv6_host_times_out(mode: Mode) -> None:
    """An IPv6 echo nobody answers (::1 with echo_ignore_all) fails with Reason.TIMEOUT."""

    async def body() -> None:
        p = IcmpProber(mode)
        r = await p.probe(target("::1"), 0.2)
        assert not r.ok and r.reason is Reason.TIMEOUT, r
        await p.close()

    run_in_netns(body, setup=quiet_kernel)


def test_mixed_timeouts_expire_in_deadline_order() -> None:
    """Probes with different timeouts each expire on their own deadline (one sweeper for all)."""

    async def body() -> list[float]:
        p = IcmpProber("raw")
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        seen: list[tuple[float, float, Reason | None]] = []
        fut: asyncio.Future[None] = loop.create_future()

        def cb_for(timeout: float) -> Callable[[ProbeResult], None]:
            def cb(r: ProbeResult) -> None:
                seen.append((timeout, time.monotonic() - t0, r.reason))
                if len(seen) == 3:
                    fut.set_result(None)

            return cb

        for timeout in (0.5, 0.1, 0.3):
            p.submit(SILENT4, timeout, cb_for(timeout))
        await asyncio.wait_for(fut, 5)
        await p.close()
        assert all(reason is Reason.TIMEOUT and elapsed >= t for t, elapsed, reason in seen), seen
        return [t for t, _, _ in seen]

    assert run_in_netns(body, setup=silent_host) == [0.1, 0.3, 0.5]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("addr", "errname"), [("198.18.99.5", "EHOSTUNREACH"), ("198.18.97.5", "EACCES")]
)
def test_rejecting_route_is_unreachable(mode: Mode, addr: str, errname: str) -> None:
    """An unreachable/prohibit route makes sendto fail: Reason.UNREACHABLE, no exception."""

    async def body() -> ProbeResult:
        p = IcmpProber(mode)
        r = await p.probe(target(addr), 1.0)
        assert p.sent == 0 and p.send_errors == 1 and p.in_flight == 0
        await p.close()
        return r

    r = run_in_netns(body, setup=reject_routes)
    assert not r.ok and r.reason is Reason.UNREACHABLE, r
    assert r.detail.startswith(f"sendto: {errname}")


@pytest.mark.parametrize("mode", MODES)
def test_icmp4_destination_unreachable_fails_probe(mode: Mode) -> None:
    """An ICMP host-unreachable quoting our request fails it with Reason.UNREACHABLE at once."""

    async def body() -> ProbeResult:
        p = IcmpProber(mode)
        f = Forger()
        task = asyncio.ensure_future(p.probe(target("127.0.0.5"), 3.0))
        await asyncio.sleep(0)
        iph, icmp, _, _, _ = f.capture("127.0.0.5")
        # From a "router" 127.0.0.9: type 3 code 1, unused word, then the offending packet.
        f.send4("127.0.0.9", "127.0.0.1", bytes([3, 1, 0, 0, 0, 0, 0, 0]) + iph + icmp)
        r = await asyncio.wait_for(task, 2.0)
        assert p.errors == 1 and p.in_flight == 0
        f.close()
        await p.close()
        return r

    r = run_in_netns(body, setup=quiet_kernel)
    assert not r.ok and r.reason is Reason.UNREACHABLE, r
    assert r.detail == "ICMP destination unreachable (type 3 code 1) from 127.0.0.9"
    assert r.extra == {"icmp_type": 3, "icmp_code": 1, "from": "127.0.0.9"}


@pytest.mark.parametrize("mode", MODES)
def test_icmp6_destination_unreachable_fails_probe(mode: Mode) -> None:
    """An ICMPv6 destination-unreachable quoting our request fails it with Reason.UNREACHABLE."""

    async def body() -> ProbeResult:
        p = IcmpProber(mode)
        f = Forger(v6=True)
        task = asyncio.ensure_future(p.probe(target("::1"), 3.0))
        await asyncio.sleep(0)
        _, icmp, _, _, _ = f.capture("::1")
        lo = socket.inet_pton(socket.AF_INET6, "::1")
        ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(icmp), socket.IPPROTO_ICMPV6, 64, lo, lo)
        f.out.sendto(bytes([1, 3, 0, 0, 0, 0, 0, 0]) + ip6 + icmp, ("::1", 0))
        r = await asyncio.wait_for(task, 2.0)
        f.close()
        await p.close()
        return r

    r = run_in_netns(body, setup=quiet_kernel)
    assert not r.ok and r.reason is Reason.UNREACHABLE, r
    assert r.detail == "ICMPv6 destination unreachable (type 1 code 3) from ::1"


def test_error_with_wrong_token_is_ignored() -> None:
    """An ICMP error quoting our id/seq but another token is counted as spoofed_error, not obeyed."""

    async def body() -> None:
        p = IcmpProber("raw")
        f = Forger()
        task = asyncio.ensure_future(p.probe(target("127.0.0.5"), 3.0))
        await asyncio.sleep(0)
        iph, icmp, ident, seq, token = f.capture("127.0.0.5")
        forged = icmp[:8] + bytes(b ^ 0xFF for b in token)
        f.send4("127.0.0.9", "127.0.0.1", bytes([3, 1, 0, 0, 0, 0, 0, 0]) + iph + forged)
        f.reply("127.0.0.5", ident, seq, token)
        r = await asyncio.wait_for(task, 2.0)
        assert r.ok, r
        assert p.ignored == {"spoofed_error": 1}
        f.close()
        await p.close()

    run_in_netns(body, setup=quiet_kernel)


# -- forged, stray and late replies --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_forged_replies_are_ignored_and_counted(mode: Mode) -> None:
    """Replies with a wrong id, seq, token or source are ignored and counted; the real one wins."""

    async def body() -> tuple[ProbeResult, dict[str, int]]:
        p = IcmpProber(mode)
        f = Forger()
        task = asyncio.ensure_future(p.probe(target("127.0.0.5"), 3.0))
        await asyncio.sleep(0)
        _, _, ident, seq, token = f.capture("127.0.0.5")
        wrong = bytes(b ^ 0x5A for b in token)
        f.reply("127.0.0.5", ident ^ 0x8001, seq, token)  # wrong id (dgram: kernel drops it)
        f.reply("127.0.0.5", ident, seq ^ 0x8001, wrong)  # wrong seq, unknown token: stray
        f.reply("127.0.0.5", ident, seq ^ 0x8001, token)  # wrong seq but our token: forged
        f.reply("127.0.0.5", ident, seq, wrong)  # right id/seq, forged payload
        f.reply("127.0.0.5", ident, seq, token[:4])  # truncated payload
        f.reply("127.0.0.6", ident, seq, token)  # from the wrong address
        await asyncio.sleep(0.05)
        assert not task.done()
        f.reply("127.0.0.5", ident, seq, token)  # the genuine reply
        f.reply("127.0.0.5", ident, seq, token)  # and a duplicate of it
        r = await asyncio.wait_for(task, 2.0)
        await asyncio.sleep(0.05)
        assert p.received == 1
        f.close()
        await p.close()
        return r, dict(p.ignored)

    r, ignored = run_in_netns(body, setup=quiet_kernel)
    assert r.ok and r.rtt is not None and r.rtt > 0.05, r
    expected = {"stray": 3 if mode == "raw" else 2, "spoofed": 3, "wrong_source": 1}
    assert ignored == expected


@pytest.mark.parametrize("mode", MODES)
def test_forged_ipv6_reply_is_ignored(mode: Mode) -> None:
    """ICMPv6 replies with a forged token or unknown seq are ignored and counted; the real one wins."""

    async def body() -> tuple[ProbeResult, dict[str, int]]:
        p = IcmpProber(mode)
        f = Forger(v6=True)
        task = asyncio.ensure_future(p.probe(target("::1"), 3.0))
        await asyncio.sleep(0)
        _, _, ident, seq, token = f.capture("::1")
        f.reply("::1", ident, seq, bytes(8))
        f.reply("::1", ident, (seq + 1) & 0xFFFF, bytes(8))
        await asyncio.sleep(0.05)
        assert not task.done()
        f.reply("::1", ident, seq, token)
        r = await asyncio.wait_for(task, 2.0)
        f.close()
        await p.close()
        return r, dict(p.ignored)

    r, ignored = run_in_netns(body, setup=quiet_kernel)
    assert r.ok, r
    assert ignored == {"spoofed": 1, "stray": 1}


def test_reply_after_timeout_is_counted_late() -> None:
    """A reply arriving after its probe timed out changes nothing and is counted as late."""

    async def body() -> None:
        p = IcmpProber("raw")
        f = Forger()
        task = asyncio.ensure_future(p.probe(target("127.0.0.5"), 0.05))
        await asyncio.sleep(0)
        _, _, ident, seq, token = f.capture("127.0.0.5")
        r = await asyncio.wait_for(task, 2.0)
        assert r.reason is Reason.TIMEOUT
        f.reply("127.0.0.5", ident, seq, token)
        await asyncio.sleep(0.05)
        assert p.ignored == {"late": 1} and p.received == 0
        f.close()
        await p.close()

    run_in_netns(body, setup=quiet_kernel)


@pytest.mark.parametrize("mode", MODES)
def test_late_reply_reaches_on_late_and_forged_ones_do_not(mode: Mode) -> None:
    """A genuine reply after the timeout calls on_late once with the probe's target, started
    time and the real round trip; late replies with a wrong token, sequence or source do not."""

    async def body() -> tuple[list[tuple[IcmpTarget, float, float]], ProbeResult, float]:
        late: list[tuple[IcmpTarget, float, float]] = []
        p = IcmpProber(mode, on_late=lambda t, started, rtt: late.append((t, started, rtt)))
        f = Forger()
        tgt = target("127.0.0.5")
        t0 = time.monotonic()
        task = asyncio.ensure_future(p.probe(tgt, 0.05))
        await asyncio.sleep(0)
        _, _, ident, seq, token = f.capture("127.0.0.5")
        r = await asyncio.wait_for(task, 2.0)
        assert r.reason is Reason.TIMEOUT
        await asyncio.sleep(0.1)
        f.reply("127.0.0.5", ident, seq, bytes(b ^ 0x5A for b in token))  # forged payload
        f.reply("127.0.0.5", ident, (seq + 1) & 0xFFFF, token)  # another sequence
        f.reply("127.0.0.6", ident, seq, token)  # from another address
        f.reply("127.0.0.5", ident ^ 0x8001, seq, token)  # another identifier
        await asyncio.sleep(0.05)
        assert late == []
        f.reply("127.0.0.5", ident, seq, token)  # the genuine late reply
        f.reply("127.0.0.5", ident, seq, token)  # and a duplicate of it
        await asyncio.sleep(0.05)
        elapsed = time.monotonic() - t0
        assert p.ignored["late"] == 2 and p.received == 0
        f.close()
        await p.close()
        return late, r, elapsed

    late, r, elapsed = run_in_netns(body, setup=quiet_kernel)
    assert len(late) == 1, late
    tgt, started, rtt = late[0]
    assert tgt == target("127.0.0.5") and started == r.started
    assert 0.15 < rtt < elapsed, "the round trip of the probe: sent before, answered after 0.2 s"


def test_timed_out_probes_are_remembered_for_a_while_not_forever() -> None:
    """Timed-out probes (kept to tell late replies) are forgotten once long past: rounds of
    timeouts minutes apart leave only the latest round's, not every timeout since start."""

    async def body() -> list[int]:
        import monitor.probes.icmp as icmp_mod

        # The engine's monotonic clock jumps 10 minutes between rounds (no real waiting).
        skew = [0.0]
        icmp_mod._monotonic = lambda: time.monotonic() + skew[0]
        p = IcmpProber("raw")
        loop = asyncio.get_running_loop()
        sizes = []
        for _ in range(4):
            done: asyncio.Future[None] = loop.create_future()
            left = [40]

            def cb(
                _r: ProbeResult, left: list[int] = left, done: asyncio.Future[None] = done
            ) -> None:
                left[0] -= 1
                if left[0] == 0:
                    done.set_result(None)

            for _ in range(40):
                p.submit(SILENT4, 0.05, cb)
            await asyncio.wait_for(done, 5)
            sizes.append(len(p._expired))
            skew[0] += 600.0
        await p.close()
        return sizes

    assert run_in_netns(body, setup=silent_host) == [40, 40, 40, 40]


def test_other_processes_pings_are_stray() -> None:
    """A raw-mode engine counts other programs' echo replies as stray and completes nothing."""

    async def body() -> None:
        p = IcmpProber("raw")
        ours = await p.probe(target("127.0.0.1"), 2.0)  # opens the socket
        assert ours.ok
        other = IcmpProber("raw")
        assert (await other.probe(target("127.0.0.1"), 2.0)).ok
        await asyncio.sleep(0.05)
        assert p.ignored == {"stray": 1} and p.received == 1
        await other.close()
        await p.close()

    run_in_netns(body)


# -- scale and structure -------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_many_concurrent_probes_all_complete(mode: Mode) -> None:
    """5,000 probes in flight at once over 127.0.0.0/8 all succeed and nothing stays in flight."""

    async def body() -> tuple[int, int, int, int]:
        p = IcmpProber(mode)
        addrs = [f"127.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(1, 5001)]
        rs = await gather_submits(p, addrs, 5.0)
        assert sorted(r.target.key for r in rs) == sorted(addrs)
        ok = sum(r.ok for r in rs)
        await p.close()
        return ok, p.sent, p.received, p.in_flight

    assert run_in_netns(body, setup=allow_ping_sockets) == (5000, 5000, 5000, 0)


def test_no_task_or_timer_per_probe() -> None:
    """Submitting thousands of probes creates no asyncio task and at most one timer."""

    async def body() -> None:
        p = IcmpProber("raw")
        loop = asyncio.get_running_loop()
        tasks_before = len(asyncio.all_tasks())
        scheduled: list[Any] = getattr(loop, "_scheduled", [])
        timers_before = len(scheduled)

        def check() -> None:
            assert len(asyncio.all_tasks()) == tasks_before
            assert len(scheduled) <= timers_before + 1  # the one sweeper
            assert p.in_flight == 3000

        addrs = [f"127.0.{i >> 8}.{i & 255}" for i in range(1, 3001)]
        rs = await gather_submits(p, addrs, 5.0, check)
        assert all(r.ok for r in rs)
        assert len(asyncio.all_tasks()) == tasks_before
        await p.close()

    run_in_netns(body)


def test_sequence_space_exhaustion_fails_cleanly() -> None:
    """65,536 probes to one address use every sequence number once; one more fails, no hang."""

    async def body() -> None:
        p = IcmpProber("dgram")
        results: list[ProbeResult] = []
        for _ in range(65537):
            p.submit(SILENT4, 30.0, results.append)
        assert p.in_flight == 65536 and p.sent == 65536
        assert len({seq for _, seq in p._inflight}) == 65536
        await asyncio.sleep(0)
        assert [(r.reason, r.detail) for r in results] == [
            (Reason.OTHER, "65536 probes to this address in flight")
        ]
        await p.close()
        assert len(results) == 65537

    run_in_netns(body, setup=silent_host)


def test_ipv4_raw_requests_carry_valid_checksums() -> None:
    """The incrementally computed IPv4 checksum is right for every sequence number and token."""

    async def body() -> None:
        p = IcmpProber("raw")
        f = Forger()
        loop = asyncio.get_running_loop()
        n = 3000
        left = [n]
        fut: asyncio.Future[None] = loop.create_future()

        def cb(r: ProbeResult) -> None:
            left[0] -= 1
            if not left[0]:
                fut.set_result(None)

        for i in range(n):
            p.submit("127.0.0.5", 5.0, cb)
            _, icmp, *_ = f.capture("127.0.0.5")
            assert checksum(icmp) == 0, (i, icmp.hex())
        await p.close()  # the quiet kernel answers nothing; close fails them all
        await fut
        f.close()

    run_in_netns(body, setup=quiet_kernel)


def test_close_fails_probes_in_flight() -> None:
    """close() fails every probe still in flight with Reason.OTHER, and the engine reopens later."""

    async def body() -> None:
        p = IcmpProber("raw")
        task = asyncio.ensure_future(p.probe(target(SILENT4), 10.0))
        await asyncio.sleep(0.01)
        await p.close()
        r = await asyncio.wait_for(task, 1.0)
        assert r.reason is Reason.OTHER and r.detail == "prober closed"
        assert (await p.probe(target("127.0.0.1"), 2.0)).ok
        await p.close()

    run_in_netns(body, setup=silent_host)


def test_callback_exception_does_not_stop_the_engine() -> None:
    """A callback that raises goes to the loop's exception handler; other probes still complete."""

    async def body() -> None:
        p = IcmpProber("raw")
        loop = asyncio.get_running_loop()
        errors: list[dict[str, Any]] = []
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))

        def bad(_r: ProbeResult) -> None:
            raise RuntimeError("boom")

        p.submit("127.0.0.1", 2.0, bad)
        rs = await gather_submits(p, ["127.0.0.2", "127.0.0.3"], 2.0)
        assert all(r.ok for r in rs)
        assert [str(e["exception"]) for e in errors] == ["boom"]
        await p.close()

    run_in_netns(body)


def test_no_socket_permission_fails_probes_without_raising() -> None:
    """Forced dgram mode outside ping_group_range fails probes with Reason.OTHER and a hint."""

    async def body() -> ProbeResult:
        sysctl("net.ipv4.ping_group_range", "1 0")
        p = IcmpProber("dgram")
        r = await p.probe(target("127.0.0.1"), 1.0)
        assert p.modes == {}
        await p.close()
        return r

    r = run_in_netns(body)
    assert not r.ok and r.reason is Reason.OTHER
    assert "ping_group_range" in r.detail


def test_bad_arguments_raise() -> None:
    """Programming errors raise: an unknown mode, or an address that is not an IP address."""
    with pytest.raises(ValueError, match="mode"):
        IcmpProber("icmp")  # type: ignore[arg-type]

    async def body() -> None:
        with pytest.raises(ValueError):
            IcmpProber().submit("dprk.example", 1.0, lambda _r: None)

    asyncio.run(body())


# -- what an outsider cannot make us believe -------------------------------------------------

ATTACKER = "127.0.0.5"  # a monitored host: it sees our probes to it
CONTROL = "127.0.0.6"  # a control probe the attacker would like to fail


def fixed_randomness(values: list[int]) -> None:
    """In the (forked) netns child: the engine's random draws come from `values`, in order."""
    import monitor.probes.icmp as icmp_mod

    draws = iter(values)
    icmp_mod.secrets = types.SimpleNamespace(randbits=lambda _bits: next(draws))  # type: ignore[assignment,attr-defined]


def error4(
    f: Forger, src: str, quoted_dst: str, ident: int, seq: int, payload: bytes = b""
) -> None:
    """Send an ICMP host-unreachable from src quoting an echo request to quoted_dst.

    With an empty payload it quotes just the 8-byte ICMP header, RFC 792's minimum.
    """
    inner_icmp = struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload
    inner_ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 20 + len(inner_icmp), 0, 0, 64, socket.IPPROTO_ICMP, 0,
        socket.inet_aton("127.0.0.1"), socket.inet_aton(quoted_dst),
    )  # fmt: skip
    f.send4(src, "127.0.0.1", bytes([3, 1, 0, 0, 0, 0, 0, 0]) + inner_ip + inner_icmp)


@pytest.mark.parametrize("mode", MODES)
def test_sequences_run_per_destination(mode: Mode) -> None:
    """Probes to one address take consecutive sequences whatever is sent to other addresses."""

    async def body() -> list[int]:
        p = IcmpProber(mode)
        f = Forger()
        seqs = []
        for dst in (ATTACKER, CONTROL, CONTROL, ATTACKER):
            p.submit(dst, 5.0, lambda _r: None)
            seqs.append(f.capture(dst)[3])
        f.close()
        await p.close()
        return seqs

    a1, c1, c2, a2 = run_in_netns(body, setup=quiet_kernel)
    assert c2 == (c1 + 1) & 0xFFFF
    assert a2 == (a1 + 1) & 0xFFFF, "probes to another address moved this one's sequence"


@pytest.mark.parametrize("mode", MODES)
def test_monitored_host_cannot_fail_a_control_probe(mode: Mode) -> None:
    """A host that sees our probe to it cannot forge a header-only error for our probe elsewhere.

    The draws are fixed so that the outcome does not depend on luck: the old global counter
    put the control probe right after the attacker's, where the forged error guesses it.
    """

    async def body() -> tuple[ProbeResult, dict[str, int]]:
        fixed_randomness([1000, 20000, 40000, 60000])
        p = IcmpProber(mode)
        f = Forger()
        attacked = asyncio.ensure_future(p.probe(target(ATTACKER), 0.5))
        await asyncio.sleep(0)
        control = asyncio.ensure_future(p.probe(target(CONTROL), 0.5))
        await asyncio.sleep(0)
        _, _, ident, seq_a, _ = f.capture(ATTACKER)
        for guess in range(seq_a + 1, seq_a + 4):  # header-only quotes: no token to check
            error4(f, ATTACKER, CONTROL, ident, guess & 0xFFFF)
        r = await asyncio.wait_for(control, 2.0)
        await attacked
        f.close()
        await p.close()
        return r, dict(p.ignored)

    r, ignored = run_in_netns(body, setup=quiet_kernel)
    assert r.reason is Reason.TIMEOUT, r
    assert ignored == {"unmatched_error": 3}


@pytest.mark.parametrize("mode", MODES)
def test_header_only_error_quoting_a_live_probe_fails_it(mode: Mode) -> None:
    """An error quoting only the 8-byte header (RFC 792) with a live probe's id, seq and
    destination fails that probe: such routers exist, and they name what only they saw."""

    async def body() -> ProbeResult:
        p = IcmpProber(mode)
        f = Forger()
        task = asyncio.ensure_future(p.probe(target(CONTROL), 3.0))
        await asyncio.sleep(0)
        _, _, ident, seq, _ = f.capture(CONTROL)
        error4(f, "127.0.0.9", CONTROL, ident, seq)
        r = await asyncio.wait_for(task, 2.0)
        assert p.errors == 1 and not p.ignored
        f.close()
        await p.close()
        return r

    r = run_in_netns(body, setup=quiet_kernel)
    assert r.reason is Reason.UNREACHABLE, r
    assert r.detail == "ICMP destination unreachable (type 3 code 1) from 127.0.0.9"


@pytest.mark.parametrize("mode", MODES)
def test_error_must_quote_the_probes_own_destination(mode: Mode) -> None:
    """A live probe's id and seq quoted for another destination fail nothing (unmatched_error)."""

    async def body() -> tuple[ProbeResult, ProbeResult, dict[str, int]]:
        p = IcmpProber(mode)
        f = Forger()
        attacked = asyncio.ensure_future(p.probe(target(ATTACKER), 0.5))
        await asyncio.sleep(0)
        control = asyncio.ensure_future(p.probe(target(CONTROL), 0.5))
        await asyncio.sleep(0)
        _, _, ident, seq_a, token_a = f.capture(ATTACKER)
        _, _, _, seq_c, token_c = f.capture(CONTROL)
        error4(f, "127.0.0.9", CONTROL, ident, seq_a, token_a)  # A's probe, quoted toward C
        if seq_c != seq_a:
            error4(f, "127.0.0.9", ATTACKER, ident, seq_c, token_c)  # and C's toward A
        results = await asyncio.gather(attacked, control)
        ignored = dict(p.ignored)
        if seq_c == seq_a:  # the two random starts met (1 in 65536): one forgery only
            ignored["unmatched_error"] += 1
        f.close()
        await p.close()
        return results[0], results[1], ignored

    a, c, ignored = run_in_netns(body, setup=quiet_kernel)
    assert a.reason is Reason.TIMEOUT and c.reason is Reason.TIMEOUT, (a, c)
    assert ignored == {"unmatched_error": 2}


@pytest.mark.parametrize("mode", MODES)
def test_error_quoting_part_of_a_wrong_token_is_spoofed(mode: Mode) -> None:
    """An error quoting a few payload bytes that differ from the token fails nothing."""

    async def body() -> tuple[ProbeResult, dict[str, int]]:
        p = IcmpProber(mode)
        f = Forger()
        task = asyncio.ensure_future(p.probe(target(CONTROL), 0.5))
        await asyncio.sleep(0)
        _, _, ident, seq, token = f.capture(CONTROL)
        error4(f, "127.0.0.9", CONTROL, ident, seq, bytes(b ^ 0xFF for b in token[:4]))
        r = await asyncio.wait_for(task, 2.0)
        f.close()
        await p.close()
        return r, dict(p.ignored)

    r, ignored = run_in_netns(body, setup=quiet_kernel)
    assert r.reason is Reason.TIMEOUT, r
    assert ignored == {"spoofed_error": 1}


@pytest.mark.parametrize("mode", MODES)
def test_error_quoting_part_of_the_right_token_counts(mode: Mode) -> None:
    """An error quoting the first bytes of the right token fails its probe."""

    async def body() -> ProbeResult:
        p = IcmpProber(mode)
        f = Forger()
        task = asyncio.ensure_future(p.probe(target(CONTROL), 3.0))
        await asyncio.sleep(0)
        _, _, ident, seq, token = f.capture(CONTROL)
        error4(f, "127.0.0.9", CONTROL, ident, seq, token[:4])
        r = await asyncio.wait_for(task, 2.0)
        f.close()
        await p.close()
        return r

    assert run_in_netns(body, setup=quiet_kernel).reason is Reason.UNREACHABLE


def test_echo_reply_without_the_token_is_not_ours() -> None:
    """A reply with the right id, seq and source but no payload is spoofed: replies echo it all."""

    async def body() -> tuple[ProbeResult, dict[str, int]]:
        p = IcmpProber("raw")
        f = Forger()
        task = asyncio.ensure_future(p.probe(target(CONTROL), 0.3))
        await asyncio.sleep(0)
        _, _, ident, seq, _ = f.capture(CONTROL)
        f.reply(CONTROL, ident, seq, b"")
        r = await asyncio.wait_for(task, 2.0)
        f.close()
        await p.close()
        return r, dict(p.ignored)

    r, ignored = run_in_netns(body, setup=quiet_kernel)
    assert r.reason is Reason.TIMEOUT, r
    assert ignored == {"spoofed": 1}


def test_probe_and_start_contain_a_target_of_another_kind() -> None:
    """Given a TCP target, probe() and start() return a failed `other` result instead of raising."""
    from monitor.probes.base import CallbackProber, TcpTarget

    async def body() -> list[ProbeResult]:
        p = IcmpProber()
        assert isinstance(p, CallbackProber)
        tcp = TcpTarget(ipaddress.ip_address("127.0.0.1"), 80)
        got: list[ProbeResult] = [await p.probe(tcp, 1.0)]
        fut: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()
        p.start(tcp, 1.0, fut.set_result)
        assert not fut.done()  # never called from inside start()
        got.append(await fut)
        await p.close()
        return got

    for r in asyncio.run(body()):
        assert (r.ok, r.reason) == (False, Reason.OTHER)
        assert r.detail == "tcp target given to the icmp prober"


def test_prepared_addresses_take_no_new_table_entries_when_probed() -> None:
    """prepare() gives addresses their per-address entries up front (a census's, at start):
    probing them later answers as usual and adds nothing to the tables (the soak saw RSS step
    up at a process's first census); preparing them again adds nothing."""

    async def body() -> tuple[int, int, int, int, list[bool]]:
        p = IcmpProber("raw")
        addrs = [ipaddress.IPv4Address(f"127.0.0.{i}") for i in range(2, 12)]
        added = p.prepare(addrs)
        before = (len(p._addrs), len(p._seqs))
        rs = await gather_submits(p, addrs, 2.0)
        after = (len(p._addrs), len(p._seqs))
        again = p.prepare(addrs)
        await p.close()
        assert before == after, (before, after)
        return added, again, before[0], before[1], [r.ok for r in rs]

    added, again, n_addrs, n_seqs, oks = run_in_netns(body)
    assert (added, again, n_addrs, n_seqs) == (10, 0, 10, 10)
    assert oks == [True] * 10

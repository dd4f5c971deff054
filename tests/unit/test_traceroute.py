"""Path localisation: the traceroute over the ICMP engine, the owner map, the routers seen
answering unreachable to ordinary probes, and the `path` evidence built from them.

Fake engines script whole paths without privileges; the real engine is exercised in throw-away
network namespaces on loopback only (127.0.0.0/8, and 198.18.0.0/15 routes that never leave
the namespace), with a raw-socket "forger" playing the routers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import struct
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import pytest

from monitor.config import ProbingConfig
from monitor.detect.evidence import Evidence
from monitor.detect.model import EventKind, EventRecord
from monitor.detect.path import OwnerMap, Sighting, UnreachableRouters, path_evidence
from monitor.probes.base import IcmpTarget, IPAddress, Kind, ProbeResult, Reason, Target, TcpTarget
from monitor.probes.icmp import IcmpProber
from monitor.probes.traceroute import Hop, Trace, traceroute
from monitor.scheduler import Scheduler
from tests import virtual_time
from tests.netns_util import ip, netns_unavailable, run_in_netns, sysctl
from tests.virtual_time import loop_clock, scheduler_on_loop_clock, virtual_test


def path_doc(
    trace: Trace, owners: OwnerMap | None = None, seen: Sequence[Sighting] = ()
) -> dict[str, Any]:
    """The JSON form of the `path` evidence (what the API and the event log hold)."""
    return path_evidence(trace, owners, seen).to_json()


CORE, UNICOM, BORDER = "198.18.0.1", "198.18.0.38", "198.18.0.130"
DST = "198.18.176.15"
OWNERS = OwnerMap(
    [
        (ipaddress.ip_network("198.18.0.38/32"), "China Unicom", 4837),
        (ipaddress.ip_network("198.18.0.42/32"), "TransTelecom", 20485),
        (ipaddress.ip_network("198.18.176.0/22"), "star-jv", 131279),
    ]
)

# What a fake router does with a probe: ("te", addr) time exceeded, ("unreach", addr, code),
# ("reply",) the target answers, ("error", detail) the local send fails; None: silence.
Action = tuple[Any, ...] | None


class FakeEngine:
    """Scripted path: `actions[ttl]` (beyond the list: the last entry) answered after `delay`."""

    def __init__(self, actions: list[Action], delay: float = 0.002) -> None:
        self.actions = actions
        self.delay = delay
        self.sent: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def submit(
        self,
        address: IPAddress | str,
        timeout: float,
        callback: Callable[[ProbeResult], None],
        target: IcmpTarget | None = None,
        ttl: int | None = None,
    ) -> None:
        assert ttl is not None and target is not None
        self.sent.append(ttl)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        action = self.actions[min(ttl, len(self.actions)) - 1]
        now = time.time()
        loop = asyncio.get_running_loop()
        if action is None:
            result = ProbeResult.failure(target, now, Reason.TIMEOUT, "no reply")
            delay = timeout
        elif action[0] == "reply":
            result = ProbeResult.success(target, now, 0.004)
            delay = self.delay
        elif action[0] == "error":
            result = ProbeResult.failure(target, now, Reason.UNREACHABLE, action[1])
            delay = 0.0
        else:
            kind, src = action[0], action[1]
            icmp_type, code = (11, 0) if kind == "te" else (3, action[2])
            extra = {"icmp_type": icmp_type, "icmp_code": code, "from": src}
            result = ProbeResult.failure(target, now, Reason.UNREACHABLE, "icmp error", extra)
            delay = self.delay

        def deliver() -> None:
            self.in_flight -= 1
            callback(result)

        loop.call_later(delay, deliver)


def run(coro: Any) -> Any:
    """On a virtual-time loop: the fake engine's answers and timeouts are timers, so each trace
    sees them in their exact order whatever the machine's load."""
    return virtual_time.run(coro)


def unreachable(target: str, src: str, code: int = 1, started: float = 1000.0) -> ProbeResult:
    t = IcmpTarget(ipaddress.ip_address(target))
    extra = {"icmp_type": 3, "icmp_code": code, "from": src}
    return ProbeResult.failure(t, started, Reason.UNREACHABLE, "icmp error", extra)


# --- the trace, with a fake engine -------------------------------------------------------------


def test_trace_ends_at_the_first_unreachable_and_sends_nothing_beyond() -> None:
    """A host-unreachable at TTL 3 ends the path: hops 1-3, no TTL above the window sent."""
    eng = FakeEngine([("te", CORE), ("te", UNICOM), ("unreach", BORDER, 1)])
    trace = run(traceroute(eng, DST, parallel=2, timeout=0.5))
    assert [h.address for h in trace.hops] == [CORE, UNICOM, BORDER]
    assert [h.kind for h in trace.hops] == ["time_exceeded", "time_exceeded", "unreachable"]
    assert trace.hops[2].note == "!H" and not trace.reached
    assert max(eng.sent) <= 4, "only the window in flight when the path ended"
    assert trace.last_answer == trace.hops[2]
    assert all(h.rtt is not None and h.rtt >= 0 for h in trace.hops)


def test_silent_hop_then_reply_is_reached() -> None:
    """A silent router in the middle is a hop without an address; the target's reply ends it."""
    eng = FakeEngine([("te", CORE), None, ("reply",)])
    trace = run(traceroute(eng, DST, timeout=0.2))
    assert [h.address for h in trace.hops] == [CORE, None, DST]
    assert trace.reached and trace.hops[1] == Hop(2)
    assert path_doc(trace, OWNERS)["summary"] == f"reached {DST} at hop 3"


def test_all_silent_probes_every_ttl_and_reports_no_answer() -> None:
    """Nothing answers: every TTL up to max_hops is probed once, and the evidence says so."""
    eng = FakeEngine([None])
    trace = run(traceroute(eng, DST, max_hops=16, parallel=8, timeout=0.05))
    assert sorted(eng.sent) == list(range(1, 17)) and len(trace.hops) == 16
    assert trace.last_answer is None
    doc = path_doc(trace, OWNERS)
    assert doc["hops"] == [] and doc["silent_after"] == 16 and doc["last_answer"] is None
    assert doc["summary"] == "no hop answered (TTL 1-16 silent)"


def test_local_send_failure_ends_the_trace_without_raising() -> None:
    """A send error (no local route) is the trace's error, not an exception."""
    eng = FakeEngine([("error", "sendto: EHOSTUNREACH (No route to host)")])
    trace = run(traceroute(eng, DST, parallel=1, timeout=0.2))
    assert trace.error == "sendto: EHOSTUNREACH (No route to host)"
    assert trace.hops == (Hop(1),)
    assert path_doc(trace)["summary"] == "no answer: sendto: EHOSTUNREACH (No route to host)"


def test_every_probe_waits_for_the_budget_and_the_window_holds() -> None:
    """Each probe sent spends a grant of its own from acquire(), and no more than `parallel` are
    in flight. The path may end while a grant is awaited: that grant goes unused (at most one)."""
    eng = FakeEngine([("te", CORE), None, None, None, None, ("unreach", UNICOM, 1)], delay=0.01)
    grants = 0
    grants_at_send: list[int] = []
    submit = eng.submit

    async def acquire() -> None:
        nonlocal grants
        await asyncio.sleep(0.001)
        grants += 1

    def counted_submit(*args: Any, **kwargs: Any) -> None:
        grants_at_send.append(grants)
        submit(*args, **kwargs)

    eng.submit = counted_submit  # type: ignore[method-assign]
    trace = run(traceroute(eng, DST, parallel=3, timeout=0.05, acquire=acquire))
    assert grants_at_send == list(range(1, len(eng.sent) + 1)), "one fresh grant per probe"
    assert len(eng.sent) <= grants <= len(eng.sent) + 1 and eng.max_in_flight <= 3
    assert trace.last_answer is not None and trace.last_answer.address == UNICOM


def test_bad_arguments_are_programming_errors() -> None:
    """max_hops outside 1..64 or a zero window raise ValueError (not network outcomes)."""
    with pytest.raises(ValueError, match="max_hops"):
        run(traceroute(FakeEngine([None]), DST, max_hops=0))
    with pytest.raises(ValueError, match="parallel"):
        run(traceroute(FakeEngine([None]), DST, parallel=0))


@virtual_test
async def test_traceroute_shares_the_scheduler_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Traceroute probes (Scheduler.acquire) and scheduled probes together stay within max_rate."""
    scheduler_on_loop_clock(monkeypatch)
    sent: list[float] = []

    class Prober:
        async def probe(self, target: Target, timeout: float) -> ProbeResult:
            sent.append(loop_clock())
            return ProbeResult.success(target, time.time(), 0.001)

        async def close(self) -> None:
            pass

    class Sink:
        def on_result(self, entity: str, result: ProbeResult, control: bool) -> None:
            pass

        def on_round(self, entity: str, target: Target, ok: bool, control: bool) -> None:
            pass

        def on_skipped(self, entity: str, target: Target, late: bool) -> None:
            pass

    targets = [TcpTarget(ipaddress.ip_address("198.18.176.1") + i, 80) for i in range(40)]
    p = ProbingConfig(interval=1.0, timeout=0.5, max_rate=20, reprobes=0, min_timeout=0.5)
    sched = Scheduler({Kind.TCP: Prober()}, Sink(), p)
    sched.set_targets([("e", t, False) for t in targets], p)
    task = asyncio.create_task(sched.run())
    traced: list[float] = []

    async def trace_probes() -> None:
        while True:
            await sched.acquire()
            traced.append(loop_clock())

    tracer = asyncio.create_task(trace_probes())
    await asyncio.sleep(2.6)
    for t in (task, tracer):
        t.cancel()
    await asyncio.gather(task, tracer, return_exceptions=True)
    times = sorted(sent + traced)
    assert traced and sent, "both got a share"
    worst = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert worst <= 20, worst


# --- owners, sightings, evidence --------------------------------------------------------------


def test_owner_map_longest_prefix_first_entry_on_ties() -> None:
    """The most specific entry owns an address; equal prefixes: the first one listed."""
    m = OwnerMap(
        [
            (ipaddress.ip_network("198.18.0.0/24"), "Internet core", None),
            (ipaddress.ip_network("198.18.0.36/30"), "China Unicom", 4837),
            (ipaddress.ip_network("198.18.0.36/30"), "shadowed", 1),
            (ipaddress.ip_network("2001:db8::/32"), "v6 transit", 64500),
        ]
    )
    unicom = m.lookup("198.18.0.38")
    assert unicom is not None and (unicom.label, unicom.prefix) == (
        "China Unicom AS4837",
        "198.18.0.36/30",
    )
    core = m.lookup(ipaddress.ip_address("198.18.0.1"))
    assert core is not None and core.label == "Internet core"
    assert m.lookup("198.19.0.1") is None and m.lookup("::ffff:198.18.0.38") is None
    assert m.lookup("not an address") is None and m.lookup(None) is None
    v6 = m.lookup("2001:db8::1")
    assert v6 is not None and v6.asn == 64500


def test_unreachable_routers_keep_only_unreachable_answers_per_block() -> None:
    """Only ICMP destination-unreachable answers count, per (router, /24), since a time."""
    log = UnreachableRouters()
    log.observe("star-jv", unreachable("198.18.176.15", UNICOM, started=100.0))
    log.observe("star-jv", unreachable("198.18.176.16", UNICOM, started=101.0))
    log.observe("star-jv", unreachable("198.18.177.1", "198.18.0.42", started=99.0))
    te = unreachable("198.18.176.15", CORE, started=102.0)
    log.observe(
        "star-jv",
        ProbeResult.failure(
            te.target,
            102.0,
            Reason.UNREACHABLE,
            "",
            {"icmp_type": 11, "icmp_code": 0, "from": CORE},
        ),
    )
    ok = ProbeResult.success(te.target, 103.0, 0.01)
    log.observe("star-jv", ok)
    seen = log.sightings("star-jv", [ipaddress.ip_network("198.18.176.0/24")])
    assert [(x.address, x.block, x.answers, x.first, x.last, x.note) for x in seen] == [
        (UNICOM, "198.18.176.0/24", 2, 100.0, 101.0, "!H")
    ]
    every = log.sightings("star-jv", [ipaddress.ip_network("198.18.176.0/22")])
    assert [x.address for x in every] == [UNICOM, "198.18.0.42"], "most recent first"
    assert (
        log.sightings("star-jv", [ipaddress.ip_network("198.18.176.0/22")], since=100.5)[0].address
        == UNICOM
    )
    assert log.sightings("other", [ipaddress.ip_network("198.18.176.0/22")]) == []
    log.retain(["other"])
    assert log.sightings("star-jv", [ipaddress.ip_network("198.18.176.0/22")]) == []


def test_unreachable_routers_are_bounded() -> None:
    """At most `per_entity` sightings per entity; the least recently seen go first."""
    log = UnreachableRouters(per_entity=3)
    for i in range(5):
        log.observe("e", unreachable("198.18.176.1", f"198.18.0.{i + 1}", started=float(i)))
    seen = log.sightings("e", [ipaddress.ip_network("198.18.176.0/24")])
    assert [x.address for x in seen] == ["198.18.0.5", "198.18.0.4", "198.18.0.3"]


def test_rate_limited_router_is_named_from_the_ordinary_probes() -> None:
    """A trace silent after the core: the router that answered unreachable to probes is named."""
    trace = Trace(
        ipaddress.ip_address(DST),
        1000.0,
        0.5,
        (Hop(1, CORE, 0.0002, "time_exceeded"), *(Hop(t) for t in range(2, 17))),
        16,
    )
    log = UnreachableRouters()
    for t in (1001.0, 1002.0, 1003.0):
        log.observe("star-jv", unreachable(DST, UNICOM, started=t))
    doc = path_doc(
        trace, OWNERS, log.sightings("star-jv", [ipaddress.ip_network("198.18.176.0/24")])
    )
    assert doc["last_answer"] == {
        "ttl": None,
        "address": UNICOM,
        "answer": "unreachable",
        "note": "!H",
        "owner": {"name": "China Unicom", "asn": 4837, "prefix": "198.18.0.38/32"},
        "source": "probes",
    }
    assert doc["summary"] == (
        "last answer: China Unicom AS4837 router 198.18.0.38 (host unreachable to 3 probes "
        "toward 198.18.176.0/24; traceroute: hop 1 198.18.0.1 answered, then silence)"
    )
    assert doc["hops"] == [
        {"ttl": 1, "address": CORE, "rtt_ms": 0.2, "answer": "time_exceeded", "owner": None}
    ]
    assert doc["silent_after"] == 15


def test_traced_end_of_path_wins_and_known_hops_are_not_beyond() -> None:
    """A traced unreachable wins; a router already on the traced hops is not one beyond them."""
    ended = Trace(
        ipaddress.ip_address("198.18.177.10"),
        1000.0,
        0.01,
        (Hop(1, CORE, 0.0001, "time_exceeded"), Hop(2, "198.18.0.42", 0.0002, "unreachable", "!H")),
        16,
    )
    log = UnreachableRouters()
    log.observe("star-jv", unreachable("198.18.177.10", "198.18.0.99"))
    seen = log.sightings("star-jv", [ipaddress.ip_network("198.18.177.0/24")])
    doc = path_doc(ended, OWNERS, seen)
    last = doc["last_answer"]
    assert isinstance(last, dict) and last["source"] == "traceroute" and last["ttl"] == 2
    assert (
        doc["summary"]
        == "last answer: TransTelecom AS20485 router 198.18.0.42 (hop 2, host unreachable)"
    )
    assert [x["address"] for x in doc["unreachable_from"]] == ["198.18.0.99"]

    silent = Trace(ended.target, 1000.0, 0.5, (Hop(1, CORE, 0.0001, "time_exceeded"), Hop(2)), 16)
    log2 = UnreachableRouters()
    log2.observe("star-jv", unreachable("198.18.177.10", CORE))
    doc2 = path_doc(
        silent, OWNERS, log2.sightings("star-jv", [ipaddress.ip_network("198.18.177.0/24")])
    )
    assert (
        doc2["summary"]
        == "last answer: 198.18.0.1 (owner unknown) (hop 1, time exceeded; 1 hop after it silent)"
    )


def test_path_evidence_document_shape() -> None:
    """The `path` evidence a reached trace gives (the README's example), field by field."""
    trace = Trace(
        ipaddress.ip_address("198.18.177.10"),
        1_763_773_200.0,
        0.0123,
        (
            Hop(1, CORE, 0.00021, "time_exceeded"),
            Hop(2, "198.18.0.42", 0.00032, "time_exceeded"),
            Hop(3, "198.18.177.10", 0.00041, "reply"),
        ),
        16,
    )
    assert path_doc(trace, OWNERS) == {
        "target": "198.18.177.10",
        "started": "2025-11-22T01:00:00Z",
        "duration_seconds": 0.012,
        "reached": True,
        "hops": [
            {"ttl": 1, "address": CORE, "rtt_ms": 0.21, "answer": "time_exceeded", "owner": None},
            {
                "ttl": 2,
                "address": "198.18.0.42",
                "rtt_ms": 0.32,
                "answer": "time_exceeded",
                "owner": {"name": "TransTelecom", "asn": 20485, "prefix": "198.18.0.42/32"},
            },
            {
                "ttl": 3,
                "address": "198.18.177.10",
                "rtt_ms": 0.41,
                "answer": "reply",
                "owner": {"name": "star-jv", "asn": 131279, "prefix": "198.18.176.0/22"},
            },
        ],
        "silent_after": 0,
        "max_hops": 16,
        "error": None,
        "unreachable_from": [],
        "last_answer": {
            "ttl": 3,
            "address": "198.18.177.10",
            "rtt_ms": 0.41,
            "answer": "reply",
            "owner": {"name": "star-jv", "asn": 131279, "prefix": "198.18.176.0/22"},
            "source": "traceroute",
        },
        "summary": "reached 198.18.177.10 at hop 3",
    }


def test_daemon_traces_toward_a_target_in_a_block_still_down() -> None:
    """The path tracer aims at an ICMP target in a block still down (the first failed)."""
    from monitor import config
    from monitor.pathtrace import trace_target

    cfg = config.parse(
        "entities:\n  - name: e\n    prefixes: [198.18.176.0/22]\n"
        "    icmp: [198.18.176.1, 198.18.177.1, 198.18.177.10]\n",
        "c.yaml",
    )

    def event(blocks: list[dict[str, Any]], first: str | None) -> EventRecord:
        failed = {"target": first, "time": "2025-01-01T00:00:00Z"}
        kinds = {"icmp": {"first_failed": failed}} if first else {}
        evidence = Evidence.from_json({"blocks": blocks, "kinds": kinds})
        return EventRecord("x", "e", EventKind.PARTIAL, 0.0, None, {}, evidence)

    down177: list[dict[str, Any]] = [
        {"block": "198.18.177.0/24", "recovered": None},
        {"block": "198.18.176.0/24", "recovered": "2025-01-01T00:00:00Z"},
    ]
    got = trace_target(cfg, event(down177, "198.18.177.10"))
    assert got is not None and str(got[0]) == "198.18.177.10"
    assert [str(n) for n in got[1]] == ["198.18.177.0/24"]
    got = trace_target(cfg, event(down177, "198.18.176.1"))  # recovered block: not it
    assert got is not None and str(got[0]) == "198.18.177.1"
    got = trace_target(cfg, event([], None))
    assert got is not None and str(got[0]) == "198.18.176.1"
    assert [str(n) for n in got[1]] == ["198.18.176.0/22"]


# --- the real engine in a network namespace --------------------------------------------------

Mode = Literal["dgram", "raw"]
MODES: list[Mode] = ["dgram", "raw"]
ROUTER1, ROUTER2, FAR = "127.0.0.11", "127.0.0.12", "127.0.0.5"


@pytest.fixture
def _need_netns() -> None:
    reason = netns_unavailable()
    if reason is not None:
        if os.environ.get("REQUIRE_NETNS") == "1":
            pytest.fail(f"REQUIRE_NETNS=1 but {reason}")
        pytest.skip(reason)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _ip4(src: str, dst: str, icmp: bytes) -> bytes:
    icmp = icmp[:2] + b"\0\0" + icmp[4:]
    icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
    return struct.pack(
        "!BBHHHBBH4s4s",
        0x45, 0, 20 + len(icmp), 0, 0, 64, socket.IPPROTO_ICMP, 0,
        socket.inet_aton(src), socket.inet_aton(dst),
    ) + icmp  # fmt: skip


def _allow_ping_and_quiet() -> None:
    sysctl("net.ipv4.ping_group_range", "0 2147483647")
    sysctl("net.ipv4.icmp_echo_ignore_all", "1")


async def _forged_path(mode: Mode) -> tuple[list[int], Trace]:
    """Routers played by raw sockets: TTL 1 time exceeded from .11, TTL 2 silent, TTL 3+
    host unreachable from .12 (only the first copy: the others stay silent)."""
    loop = asyncio.get_running_loop()
    cap = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    out = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    cap.setblocking(False)
    ttls: list[int] = []
    answered_unreach = False

    def on_packet() -> None:
        nonlocal answered_unreach
        while True:
            try:
                data = cap.recv(4096)
            except BlockingIOError:
                return
            ihl = (data[0] & 0x0F) * 4
            iph, icmp = data[:ihl], data[ihl:]
            if icmp[0] != 8 or socket.inet_ntoa(iph[16:20]) != FAR:
                continue
            ttl = iph[8]
            ttls.append(ttl)
            quoted = iph + icmp[:16]
            if ttl == 1:
                out.sendto(
                    _ip4(ROUTER1, "127.0.0.1", bytes([11, 0, 0, 0, 0, 0, 0, 0]) + quoted),
                    ("127.0.0.1", 0),
                )
            elif ttl >= 3 and not answered_unreach:
                answered_unreach = True
                out.sendto(
                    _ip4(ROUTER2, "127.0.0.1", bytes([3, 1, 0, 0, 0, 0, 0, 0]) + quoted),
                    ("127.0.0.1", 0),
                )

    loop.add_reader(cap.fileno(), on_packet)
    prober = IcmpProber(mode)
    try:
        trace = await traceroute(prober, FAR, parallel=2, timeout=0.3)
    finally:
        loop.remove_reader(cap.fileno())
        cap.close()
        out.close()
        await prober.close()
    return ttls, trace


@pytest.mark.netns
@pytest.mark.usefixtures("_need_netns")
@pytest.mark.parametrize("mode", MODES)
def test_real_engine_sends_each_ttl_and_assembles_the_routers(mode: Mode) -> None:
    """Via the real engine each probe carries its TTL; router answers become the hops."""
    ttls, trace = run_in_netns(_forged_path, mode, setup=_allow_ping_and_quiet)
    assert sorted(ttls) == [1, 2, 3], "TTL 1, 2, 3 once each; nothing past the end of the path"
    assert [(h.ttl, h.address, h.kind, h.note) for h in trace.hops] == [
        (1, ROUTER1, "time_exceeded", ""),
        (2, None, None, ""),
        (3, ROUTER2, "unreachable", "!H"),
    ]


async def _trace_local(dst: str, mode: Mode) -> Trace:
    prober = IcmpProber(mode)
    try:
        return await traceroute(prober, dst, timeout=0.5)
    finally:
        await prober.close()


def _reject() -> None:
    sysctl("net.ipv4.ping_group_range", "0 2147483647")
    ip("route", "add", "unreachable", "198.18.99.0/24")


@pytest.mark.netns
@pytest.mark.usefixtures("_need_netns")
@pytest.mark.parametrize("mode", MODES)
def test_loopback_target_is_reached_at_the_first_hop(mode: Mode) -> None:
    """A local address answers the TTL-1 probe itself: reached at hop 1, one hop."""
    trace = run_in_netns(_trace_local, "127.0.0.1", mode, setup=_reject)
    assert trace.reached and len(trace.hops) == 1
    assert trace.hops[0].address == "127.0.0.1" and trace.hops[0].kind == "reply"


@pytest.mark.netns
@pytest.mark.usefixtures("_need_netns")
@pytest.mark.parametrize("mode", MODES)
def test_local_unreachable_route_ends_the_trace_as_an_error(mode: Mode) -> None:
    """No route at all (an `unreachable` route here): the trace returns with the send error."""
    trace = run_in_netns(_trace_local, "198.18.99.7", mode, setup=_reject)
    assert trace.error is not None and trace.error.startswith("sendto: EHOSTUNREACH"), trace
    assert trace.hops == (Hop(1),) and trace.last_answer is None

"""DNS prober against an in-process server on loopback (tests/unit/dnsserver.py)."""

from __future__ import annotations

import gc
import ipaddress
import socket
import time
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.rrset
import pytest

from monitor.probes.base import DnsTarget, ProbeResult, Reason, TcpTarget
from monitor.probes.dns import DnsProber
from tests.unit.dnsserver import FakeDnsServer, running

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def target(srv: FakeDnsServer, **kw: object) -> DnsTarget:
    return DnsTarget(server=ipaddress.ip_address(srv.host), name="kp", port=srv.port, **kw)  # type: ignore[arg-type]


async def test_soa_answer_records_serial(dns_server: FakeDnsServer) -> None:
    """A NOERROR SOA answer is ok, with soa_serial, rcode, answer count and transport udp."""
    dns_server.serial = 2025061501
    before = time.time()
    res = await DnsProber().probe(target(dns_server), timeout=2.0)
    assert res.ok, res
    assert res.extra["soa_serial"] == 2025061501
    assert res.extra["rcode"] == "NOERROR"
    assert res.extra["answers"] == 1
    assert res.extra["aa"] is True
    assert res.extra["transport"] == "udp"
    assert res.rtt is not None and 0 < res.rtt < 1.0
    assert before <= res.started <= time.time()
    assert [t for t, _ in dns_server.queries] == ["udp"]


async def test_queries_use_random_ids(dns_server: FakeDnsServer) -> None:
    """Every query carries a fresh id (not a counter starting at 0)."""
    prober = DnsProber()
    for _ in range(5):
        assert (await prober.probe(target(dns_server), timeout=2.0)).ok
    ids = {q.id for _, q in dns_server.queries}
    assert len(ids) == 5


async def test_truncated_udp_falls_back_to_tcp(dns_server: FakeDnsServer) -> None:
    """A UDP reply with TC set is retried over TCP, whose full answer is used."""
    dns_server.mode = "truncate"
    res = await DnsProber().probe(target(dns_server), timeout=2.0)
    assert res.ok, res
    assert res.extra["transport"] == "tcp"
    assert res.extra["soa_serial"] == dns_server.serial
    assert [t for t, _ in dns_server.queries] == ["udp", "tcp"]


async def test_garbage_tcp_answer_is_dns_error(dns_server: FakeDnsServer) -> None:
    """Unparsable bytes over the TCP fallback give DNS_ERROR at once, without raising."""
    dns_server.mode = "tcp_garbage"
    res = await DnsProber().probe(target(dns_server), timeout=2.0)
    assert not res.ok
    assert res.reason is Reason.DNS_ERROR
    assert "malformed TCP reply" in res.detail


async def test_garbage_only_is_dns_error_at_the_deadline(dns_server: FakeDnsServer) -> None:
    """Only unparsable UDP replies: not accepted; DNS_ERROR naming them once the timeout ends."""
    dns_server.mode = "garbage"
    t0 = time.perf_counter()
    res = await DnsProber().probe(target(dns_server), timeout=0.3)
    assert not res.ok
    assert res.reason is Reason.DNS_ERROR
    assert "malformed reply" in res.detail
    assert time.perf_counter() - t0 < 10.0, "not a hang (a loaded machine may be late)"


async def test_garbage_then_real_answer_is_ok(dns_server: FakeDnsServer) -> None:
    """A malformed datagram does not end the wait: the real answer behind it is accepted."""
    dns_server.mode = "garbage_then_normal"
    res = await DnsProber().probe(target(dns_server), timeout=2.0)
    assert res.ok, res
    assert res.extra["soa_serial"] == dns_server.serial


async def test_wrong_id_is_never_accepted(dns_server: FakeDnsServer) -> None:
    """A well-formed answer with the wrong id is not accepted: DNS_ERROR at the deadline."""
    dns_server.mode = "wrong_id"
    res = await DnsProber().probe(target(dns_server), timeout=0.3)
    assert not res.ok
    assert res.reason is Reason.DNS_ERROR
    assert "does not match" in res.detail
    assert "soa_serial" not in res.extra


async def test_wrong_id_then_right_id_is_ok(dns_server: FakeDnsServer) -> None:
    """A wrong-id reply is skipped and the matching one that follows is used."""
    dns_server.mode = "wrong_id_then_normal"
    res = await DnsProber().probe(target(dns_server), timeout=2.0)
    assert res.ok, res


@pytest.mark.parametrize(("mode", "rcode"), [("nxdomain", "NXDOMAIN"), ("servfail", "SERVFAIL")])
async def test_unexpected_rcode_is_dns_error(
    dns_server: FakeDnsServer, mode: str, rcode: str
) -> None:
    """An rcode other than expect_rcode is DNS_ERROR with the rcode in the detail and extra."""
    dns_server.mode = mode  # type: ignore[assignment]
    res = await DnsProber().probe(target(dns_server), timeout=2.0)
    assert not res.ok
    assert res.reason is Reason.DNS_ERROR
    assert rcode in res.detail
    assert res.extra["rcode"] == rcode


async def test_expected_nxdomain_is_ok(dns_server: FakeDnsServer) -> None:
    """expect_rcode may ask for NXDOMAIN (e.g. a name that must not exist)."""
    t = DnsTarget(LOOPBACK, "nonexistent.kp", port=dns_server.port, expect_rcode="NXDOMAIN")
    res = await DnsProber().probe(t, timeout=2.0)
    assert res.ok, res
    assert res.extra["rcode"] == "NXDOMAIN"


async def test_empty_answer_fails_only_when_an_answer_is_expected(
    dns_server: FakeDnsServer,
) -> None:
    """NOERROR with no records (NODATA) is DNS_ERROR with expect_answer, ok without it."""
    prober = DnsProber()
    res = await prober.probe(target(dns_server, type="TXT"), timeout=2.0)
    assert not res.ok
    assert res.reason is Reason.DNS_ERROR
    assert res.extra["answers"] == 0
    res = await prober.probe(target(dns_server, type="TXT", expect_answer=False), timeout=2.0)
    assert res.ok, res


async def test_silence_is_timeout(dns_server: FakeDnsServer) -> None:
    """A server that never answers gives TIMEOUT, returned at the timeout."""
    dns_server.mode = "silent"
    t0 = time.perf_counter()
    res = await DnsProber().probe(target(dns_server), timeout=0.3)
    elapsed = time.perf_counter() - t0
    assert not res.ok
    assert res.reason is Reason.TIMEOUT
    assert 0.25 <= elapsed < 10.0, "at the timeout (the upper bound only catches a hang)"


async def test_closed_udp_port_is_refused() -> None:
    """ICMP port unreachable on the connected socket is REFUSED, not a silent timeout."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing bound there now: the kernel answers port unreachable
    res = await DnsProber().probe(DnsTarget(LOOPBACK, "kp", port=port), timeout=2.0)
    assert not res.ok
    assert res.reason is Reason.REFUSED


async def test_refused_queries_leave_no_reference_cycles() -> None:
    """A refused query is freed by reference counting: the error, re-raised from the frame
    that held it in a local, held that frame through its traceback (a cycle per failed query,
    for as long as a name server is down)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    prober, t = DnsProber(), DnsTarget(LOOPBACK, "kp", port=port)
    assert (await prober.probe(t, timeout=2.0)).reason is Reason.REFUSED
    gc.collect()
    gc.disable()
    try:
        before = sum(isinstance(o, BaseException) for o in gc.get_objects())
        for _ in range(10):
            assert (await prober.probe(t, timeout=2.0)).reason is Reason.REFUSED
        after = sum(isinstance(o, BaseException) for o in gc.get_objects())
    finally:
        gc.enable()
    assert after <= before, f"{after - before} exceptions kept alive by cycles"


async def test_ipv6_server(ipv6_loopback: bool) -> None:
    """An IPv6 server address is queried over AF_INET6."""
    if not ipv6_loopback:
        pytest.skip("no ::1 here")
    async with running(host="::1") as srv:
        res = await DnsProber().probe(target(srv), timeout=2.0)
    assert res.ok, res


# -- an answer must answer the question -------------------------------------------------------


@dataclass
class ScriptedServer(FakeDnsServer):
    """A FakeDnsServer whose NOERROR answer section is the given records (zone-file lines)."""

    records: list[str] = field(default_factory=list)

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        r = dns.message.make_response(query)
        r.flags |= dns.flags.AA
        for line in self.records:
            name, rdtype, rdata = line.split(" ", 2)
            r.answer.append(dns.rrset.from_text(name, 300, "IN", rdtype, rdata))
        return r


async def scripted(records: list[str], name: str = "kp", rdtype: str = "SOA") -> ProbeResult:
    """Probe a server that answers every query with `records` (NOERROR)."""
    srv = await ScriptedServer(records=records).start()
    try:
        t = DnsTarget(LOOPBACK, name, type=rdtype, port=srv.port)
        return await DnsProber().probe(t, timeout=2.0)
    finally:
        await srv.stop()


SOA_DATA = "ns1.kptc.kp. root.kptc.kp. 7 3600 900 604800 86400"


@pytest.mark.parametrize(
    ("records", "detail"),
    [
        (["kp. A 175.45.176.1"], "the answer does not answer kp. SOA: it holds kp. IN A"),
        (
            [f"elsewhere. SOA {SOA_DATA}"],
            "the answer does not answer kp. SOA: it holds elsewhere. IN SOA",
        ),
        (
            ["a.kp. A 1.2.3.4", "b.kp. A 1.2.3.5", "c.kp. A 1.2.3.6", "d.kp. A 1.2.3.7"],
            "the answer does not answer kp. SOA: it holds a.kp. IN A, b.kp. IN A, c.kp. IN A, ...",
        ),
    ],
)
async def test_noerror_with_unrelated_records_is_dns_error(records: list[str], detail: str) -> None:
    """A NOERROR answer holding only records of another name or type is DNS_ERROR, saying so."""
    res = await scripted(records)
    assert (res.ok, res.reason, res.detail) == (False, Reason.DNS_ERROR, detail)
    assert "soa_serial" not in res.extra


async def test_unrelated_soa_does_not_set_the_serial() -> None:
    """soa_serial comes from the SOA answering the question, not from another name's SOA."""
    res = await scripted(
        [f"elsewhere. SOA {SOA_DATA.replace(' 7 ', ' 99 ')}", f"kp. SOA {SOA_DATA}"]
    )
    assert res.ok, res
    assert res.extra["soa_serial"] == 7


@pytest.mark.parametrize(
    ("records", "ok"),
    [
        (["www.kp. CNAME web.kp.", "web.kp. A 175.45.176.71"], True),  # a chain to the type
        (["www.kp. CNAME web.kp.", "web.kp. CNAME srv.kp.", "srv.kp. A 175.45.176.71"], True),
        (["www.kp. CNAME www.elsewhere."], True),  # aliased out of the zone: the chain is it
        (["www.kp. CNAME web.kp.", "web.kp. AAAA ::1"], True),  # chain leaves at web.kp A
        (["web.kp. CNAME www.kp.", "other.kp. A 175.45.176.71"], False),  # not from our name
        (["www.kp. CNAME a.kp.", "a.kp. CNAME www.kp."], False),  # a loop
    ],
)
async def test_cname_chains_from_the_question_name(records: list[str], ok: bool) -> None:
    """A CNAME chain from the question's name answers it; records off the chain do not."""
    res = await scripted(records, name="www.kp", rdtype="A")
    assert res.ok is ok, res


@pytest.mark.parametrize("name", ["a\\999.kp", "ü" * 60 + ".kp", "a..kp", "x" * 64 + ".kp"])
async def test_names_dnspython_refuses_are_failed_probes(name: str) -> None:
    """A name dnspython cannot encode is a failed probe (other), not an exception; no query sent."""
    async with running() as srv:
        res = await DnsProber().probe(DnsTarget(LOOPBACK, name, port=srv.port), timeout=1.0)
        assert (res.ok, res.reason) == (False, Reason.OTHER), res
        assert res.detail.startswith("cannot build the query: ")
        assert srv.queries == []


async def test_a_target_of_another_kind_is_a_failed_probe() -> None:
    """Given a TCP target, probe() returns a failed `other` result instead of raising."""
    res = await DnsProber().probe(TcpTarget(LOOPBACK, 53), 1.0)
    assert (res.ok, res.reason) == (False, Reason.OTHER)

"""DNS probe: one query to one server over UDP, retried over TCP when the reply is truncated.

Semantics (the contract the tests pin):
- The query has a random id (dnspython) and RD set (harmless to authoritative servers, needed by
  the recursive resolvers used as controls); no EDNS, for the oldest servers' sake.
- UDP goes through a *connected* socket: the kernel drops datagrams from any other source, and
  an ICMP port unreachable comes back as REFUSED instead of a silent timeout. (Plain asyncio
  rather than dnspython's UDP helpers, which cannot keep waiting after noting a bad reply.)
- A reply that does not parse, or does not match the query (wrong id, question or opcode), is not
  accepted: like a stub resolver we keep waiting for the real answer until the deadline, since a
  stray or forged datagram must not decide the outcome. If only such replies came, the result is
  DNS_ERROR naming the bad reply (the server is there but speaks nonsense); if nothing came at
  all, TIMEOUT.
- A reply with TC set (and matching the query) is retried over TCP within the same deadline.
- Judging: rcode must equal `expect_rcode`, and with `expect_answer` a NOERROR reply must
  answer the question: an RRset in the answer section with the question's name, class and type,
  reached directly or through a chain of CNAMEs starting at the question's name (at most
  `MAX_CHAIN` links). A CNAME chain that leaves the answer section before reaching the type also
  counts: that is how an authoritative server answers for a name aliased out of its zone (RFC
  1034 4.3.2), and the alias is about our name. For type ANY, any RRset owned by the name
  counts. Records about other names or of other types answer nothing: DNS_ERROR saying what the
  answer held instead. A wrong rcode is DNS_ERROR with the rcode in the detail.
- A name, type or rcode dnspython refuses (config validation rejects them too) is a failed
  probe, reason OTHER, naming dnspython's objection: never an exception.
- `extra`: `rcode`, `answers` (records in the answer section), `aa`, `transport` (udp/tcp) and
  `soa_serial` when the RRset answering the question is an SOA.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

import dns.asyncbackend
import dns.asyncquery
import dns.exception
import dns.flags
import dns.inet
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.ANY.SOA import SOA

from monitor.probes.base import (
    DnsTarget,
    Kind,
    ProbeResult,
    Reason,
    Target,
    now,
    release_tracebacks,
    wrong_kind,
)
from monitor.probes.tcp import classify_oserror

MAX_CHAIN = 8  # CNAME links followed inside one answer section (dnspython's own limit is 16)


class _BadReply(Exception):
    """The server answered, but with something we cannot accept."""


class _Seen:
    """Notes taken during the exchange, kept outside it so that the deadline does not lose them."""

    __slots__ = ("bad", "transport")

    def __init__(self) -> None:
        self.bad: str | None = None
        self.transport = "udp"


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.replies: asyncio.Queue[bytes | OSError] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self.replies.put_nowait(data)

    def error_received(self, exc: Exception) -> None:
        # On a connected socket this is the ICMP error of our own query (port unreachable...).
        if isinstance(exc, OSError):
            self.replies.put_nowait(exc)


class DnsProber:
    """Stateless; one socket per probe."""

    def __init__(self) -> None:
        self._backend = dns.asyncbackend.get_backend("asyncio")  # skip sniffio on every query

    async def probe(self, target: Target, timeout: float) -> ProbeResult:
        if not isinstance(target, DnsTarget):
            return wrong_kind(target, Kind.DNS)
        started = now()
        try:
            # Config validation rejects what dnspython refuses; this keeps a probe from raising
            # should anything slip through (a name that is text to YAML, escapes, IDNA, ...).
            q = dns.message.make_query(dns.name.from_text(target.name), target.type)
            expect = dns.rcode.from_text(target.expect_rcode)
        except Exception as e:
            detail = f"cannot build the query: {type(e).__name__}: {e}"
            return ProbeResult.failure(target, started, Reason.OTHER, detail[:300])
        where = str(target.server)
        seen = _Seen()
        t0 = time.perf_counter()
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                r = await self._udp(q, where, target.port, seen)
                if r is None:
                    seen.transport = "tcp"
                    r = await self._tcp(q, where, target.port)
        except (OSError, EOFError, _BadReply) as e:
            release_tracebacks(e)  # `item` in _udp's frame held it: a cycle per failed query
            extra = {"transport": seen.transport}
            if deadline.expired():
                if seen.bad is not None:
                    detail = f"{seen.bad}; no valid reply in {timeout:g}s"
                    return ProbeResult.failure(target, started, Reason.DNS_ERROR, detail, extra)
                detail = f"no reply in {timeout:g}s"
                return ProbeResult.failure(target, started, Reason.TIMEOUT, detail, extra)
            if isinstance(e, _BadReply):
                return ProbeResult.failure(target, started, Reason.DNS_ERROR, str(e), extra)
            if isinstance(e, EOFError):
                detail = "connection closed before a reply"
                return ProbeResult.failure(target, started, Reason.DNS_ERROR, detail, extra)
            reason, detail = classify_oserror(e)
            return ProbeResult.failure(target, started, reason, detail, extra)
        rtt = time.perf_counter() - t0
        return _judge(target, expect, r, started, rtt, seen.transport)

    async def _udp(
        self, q: dns.message.Message, where: str, port: int, seen: _Seen
    ) -> dns.message.Message | None:
        """The matching reply, or None when it is truncated and TCP must take over."""
        loop = asyncio.get_running_loop()
        family = (
            socket.AF_INET6 if dns.inet.af_for_address(where) == socket.AF_INET6 else socket.AF_INET
        )
        transport, proto = await loop.create_datagram_endpoint(
            _UdpClient, remote_addr=(where, port), family=family
        )
        try:
            transport.sendto(q.to_wire())
            while True:
                item = await proto.replies.get()
                if isinstance(item, OSError):
                    raise item
                try:
                    # Header and question first: enough to tell whether it answers our query
                    # and whether it is truncated (a truncated tail may not parse at all).
                    head = dns.message.from_wire(item, question_only=True)
                    if not q.is_response(head):
                        seen.bad = "reply that does not match the query (id or question)"
                        continue
                    if head.flags & dns.flags.TC:
                        return None
                    return dns.message.from_wire(item)
                except Exception as e:
                    # Parsing hostile bytes can fail in many ways (dnspython's own ignore_errors
                    # mode catches Exception too); any of them just means "not our answer".
                    seen.bad = f"malformed reply ({type(e).__name__})"
        finally:
            transport.close()

    async def _tcp(self, q: dns.message.Message, where: str, port: int) -> dns.message.Message:
        try:
            return await dns.asyncquery.tcp(q, where, port=port, backend=self._backend)
        except (OSError, EOFError):
            raise
        except dns.query.BadResponse:
            raise _BadReply("TCP reply that does not match the query") from None
        except Exception as e:  # as above: a stream can be garbage in many ways
            raise _BadReply(f"malformed TCP reply ({type(e).__name__})") from e

    async def close(self) -> None:
        """Nothing to release: every probe owns and closes its socket."""


def _judge(
    target: DnsTarget,
    expect: dns.rcode.Rcode,
    r: dns.message.Message,
    started: float,
    rtt: float,
    transport: str,
) -> ProbeResult:
    rcode = r.rcode()
    extra: dict[str, object] = {
        "rcode": dns.rcode.to_text(rcode),
        "answers": sum(len(rrset) for rrset in r.answer),
        "aa": bool(r.flags & dns.flags.AA),
        "transport": transport,
    }
    match = _answering(r) if r.question else None
    if match is not None and match.rdtype == dns.rdatatype.SOA and len(match) > 0:
        soa = match[0]
        if isinstance(soa, SOA):
            extra["soa_serial"] = soa.serial
    if rcode != expect:
        detail = f"rcode {extra['rcode']}, expected {dns.rcode.to_text(expect)}"
        return ProbeResult.failure(target, started, Reason.DNS_ERROR, detail, extra)
    if target.expect_answer and rcode == dns.rcode.NOERROR:
        if extra["answers"] == 0:
            detail = f"no {target.type} records in the answer"
            return ProbeResult.failure(target, started, Reason.DNS_ERROR, detail, extra)
        if match is None:
            question = r.question[0] if r.question else None
            asked = (
                f"{question.name} {dns.rdatatype.to_text(question.rdtype)}"
                if question is not None
                else f"{target.name} {target.type}"
            )
            held = ", ".join(
                f"{rrset.name} {dns.rdataclass.to_text(rrset.rdclass)} "
                f"{dns.rdatatype.to_text(rrset.rdtype)}"
                for rrset in r.answer[:3]
            )
            more = ", ..." if len(r.answer) > 3 else ""
            detail = f"the answer does not answer {asked}: it holds {held}{more}"
            return ProbeResult.failure(target, started, Reason.DNS_ERROR, detail[:300], extra)
    return ProbeResult.success(target, started, rtt, extra)


def _answering(r: dns.message.Message) -> dns.rrset.RRset | None:
    """The RRset of the answer section that answers the (single) question, if any: the
    question's name, class and type, directly or at the end of a CNAME chain from the name;
    else the chain's last CNAME when the chain leaves the section; else None (also for a
    CNAME loop or a chain longer than MAX_CHAIN)."""
    question = r.question[0]
    name, rdclass, rdtype = question.name, question.rdclass, question.rdtype
    if rdtype == dns.rdatatype.ANY:
        return next((x for x in r.answer if x.name == name and x.rdclass == rdclass), None)
    last_cname: dns.rrset.RRset | None = None
    for _ in range(MAX_CHAIN + 1):
        found = r.get_rrset(r.answer, name, rdclass, rdtype)
        if found is not None:
            return found
        if rdtype == dns.rdatatype.CNAME:
            break
        cname = r.get_rrset(r.answer, name, rdclass, dns.rdatatype.CNAME)
        if cname is None or len(cname) == 0 or not isinstance(cname[0], CNAME):
            break
        last_cname = cname
        name = cname[0].target
    else:
        return None  # a loop, or a chain longer than MAX_CHAIN: broken, not an answer
    return last_cname

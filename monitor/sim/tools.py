"""Small clients used from inside a namespace: ping, traceroute, HTTP(S), DNS, TCP connect.

They run in the calling thread (the World enters the namespace first, see `netns.call_in`) and
refuse any destination outside 198.18.0.0/15 and 127.0.0.0/8, so a mistake in a test can never
send a packet anywhere real.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import random
import select
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from monitor.sim.spec import LOOPBACK, SIM_RANGE


class OutsideSimRange(ValueError):
    pass


def check_destination(address: str) -> ipaddress.IPv4Address:
    """The one guard: only the benchmarking range and loopback are ever contacted."""
    try:
        addr = ipaddress.IPv4Address(address)
    except ValueError:
        raise OutsideSimRange(f"{address!r} is not an IPv4 address of the simulation") from None
    if addr not in SIM_RANGE and addr not in LOOPBACK:
        raise OutsideSimRange(f"{address} is outside {SIM_RANGE}: refusing to send to it")
    return addr


# --- ICMP ---------------------------------------------------------------------------------

ICMP_ECHO_REPLY, ICMP_UNREACH, ICMP_ECHO, ICMP_TIME_EXCEEDED = 0, 3, 8, 11


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def _echo(ident: int, seq: int, payload: bytes = b"dprk-sim") -> bytes:
    hdr = struct.pack("!BBHHH", ICMP_ECHO, 0, 0, ident, seq)
    return struct.pack("!BBHHH", ICMP_ECHO, 0, _checksum(hdr + payload), ident, seq) + payload


@dataclass(frozen=True)
class IcmpMessage:
    source: str
    type: int
    code: int
    seq: int
    at: float


def _parse(packet: bytes, ident: int, now: float) -> IcmpMessage | None:
    """An echo reply for `ident`, or an ICMP error quoting one of our echo requests."""
    ihl = (packet[0] & 0x0F) * 4
    src = socket.inet_ntoa(packet[12:16])
    icmp = packet[ihl:]
    if len(icmp) < 8:
        return None
    typ, code = icmp[0], icmp[1]
    if typ == ICMP_ECHO_REPLY:
        rid, seq = struct.unpack("!HH", icmp[4:8])
        return IcmpMessage(src, typ, code, seq, now) if rid == ident else None
    if typ in (ICMP_UNREACH, ICMP_TIME_EXCEEDED):
        inner = icmp[8:]
        if len(inner) < 28:
            return None
        iihl = (inner[0] & 0x0F) * 4
        q = inner[iihl:]
        if len(q) < 8 or q[0] != ICMP_ECHO:
            return None
        rid, seq = struct.unpack("!HH", q[4:8])
        return IcmpMessage(src, typ, code, seq, now) if rid == ident else None
    return None


SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)


def _big_rcvbuf(s: socket.socket, size: int = 16 << 20) -> None:
    """Room for thousands of replies arriving at once (root may exceed net.core.rmem_max)."""
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


@dataclass
class PingResult:
    sent: int
    received: int
    rtts: list[float] = field(default_factory=list)
    errors: list[IcmpMessage] = field(default_factory=list)  # unreachable etc.
    rounds: list[int] = field(default_factory=list)  # which requests (0-based) got a reply

    def lost_runs(self) -> list[int]:
        """Lengths of the runs of consecutive unanswered requests (bursts of loss)."""
        got = set(self.rounds)
        runs, n = [], 0
        for i in range(self.sent):
            if i in got:
                if n:
                    runs.append(n)
                n = 0
            else:
                n += 1
        return runs + ([n] if n else [])

    @property
    def loss(self) -> float:
        return 1.0 - self.received / self.sent if self.sent else 0.0

    @property
    def ok(self) -> bool:
        return self.received > 0


def ping(
    dst: str, count: int = 3, interval: float = 0.01, timeout: float = 1.0, ttl: int = 64
) -> PingResult:
    """Send `count` echo requests (spaced by `interval`), wait `timeout` after the last one."""
    return ping_many([dst], count, interval, timeout, ttl)[dst]


def ping_many(
    dsts: list[str], count: int = 1, interval: float = 0.01, timeout: float = 1.0, ttl: int = 64
) -> dict[str, PingResult]:
    """Ping several addresses at once (round-robin, one raw socket): `count` echo requests
    each, `interval` between rounds; wait `timeout` after the last one or until all answered."""
    for d in dsts:
        check_destination(d)
    if count < 1 or not dsts:
        raise ValueError("need at least one destination and count >= 1")
    if count * len(dsts) > 0xFFFF:
        raise ValueError("at most 65535 echo requests per call")
    ident = random.randrange(1, 0xFFFF)
    sent_at: dict[int, tuple[str, float, int]] = {}
    res = {d: PingResult(sent=0, received=0) for d in dsts}
    expected = count * len(dsts)
    received = 0
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        _big_rcvbuf(s)
        s.setblocking(False)
        deadline: float | None = None
        rounds = 0
        seq = 0
        next_send = time.monotonic()
        while True:
            now = time.monotonic()
            if rounds < count and now >= next_send:
                rounds += 1
                for d in dsts:
                    seq += 1
                    sent_at[seq] = (d, now, rounds - 1)
                    try:
                        s.sendto(_echo(ident, seq), (d, 0))
                    except OSError as e:  # e.g. ENETUNREACH: no route, nothing was sent
                        res[d].errors.append(IcmpMessage("local", -1, e.errno or 0, seq, now))
                    res[d].sent += 1
                next_send = now + interval
                if rounds == count:
                    deadline = now + timeout
            if deadline is not None and (now >= deadline or received == expected):
                break
            wait = (next_send if rounds < count else deadline or now) - now
            r, _, _ = select.select([s], [], [], max(0.0, wait))
            if not r:
                continue
            while True:
                try:
                    packet = s.recv(65535)
                except BlockingIOError:
                    break
                msg = _parse(packet, ident, time.monotonic())
                if msg is None or msg.seq not in sent_at:
                    continue
                d, t_sent, rnd = sent_at[msg.seq]
                if msg.type == ICMP_ECHO_REPLY:
                    del sent_at[msg.seq]
                    received += 1
                    res[d].received += 1
                    res[d].rtts.append(msg.at - t_sent)
                    res[d].rounds.append(rnd)
                else:
                    res[d].errors.append(msg)
    return res


@dataclass(frozen=True)
class Hop:
    ttl: int
    address: str | None  # None: no answer at this TTL
    note: str = ""  # "!N" net unreachable, "!H" host unreachable, "!X" other unreachable


def traceroute(dst: str, max_hops: int = 12, timeout: float = 1.0, probes: int = 2) -> list[Hop]:
    """ICMP traceroute: all TTLs at once (`probes` each), one shared timeout. Trailing silent
    hops beyond the last answer are dropped; the last hop is `dst` when it was reached."""
    check_destination(dst)
    ident = random.randrange(1, 0xFFFF)
    answers: dict[int, IcmpMessage] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as s:
        s.setblocking(False)
        for p in range(probes):
            for ttl in range(1, max_hops + 1):
                s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
                try:
                    s.sendto(_echo(ident, p * 256 + ttl), (dst, 0))
                except OSError:
                    break
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            r, _, _ = select.select([s], [], [], left)
            if not r:
                break
            while True:
                try:
                    packet = s.recv(65535)
                except BlockingIOError:
                    break
                msg = _parse(packet, ident, time.monotonic())
                if msg is not None:
                    answers.setdefault(msg.seq % 256, msg)
            ends = [t for t, m in answers.items() if m.type in (ICMP_ECHO_REPLY, ICMP_UNREACH)]
            if ends and all(t in answers for t in range(1, min(ends))):
                break  # the path is complete: no need to wait for the timeout
    hops: list[Hop] = []
    for ttl in range(1, max_hops + 1):
        m = answers.get(ttl)
        if m is None:
            hops.append(Hop(ttl, None))
            continue
        note = ""
        if m.type == ICMP_UNREACH:
            note = {0: "!N", 1: "!H"}.get(m.code, "!X")
        hops.append(Hop(ttl, m.source, note))
        if m.type in (ICMP_ECHO_REPLY, ICMP_UNREACH):
            break
    while hops and hops[-1].address is None:
        hops.pop()
    return hops


# --- TCP, HTTP, DNS -------------------------------------------------------------------------


def tcp_connect(address: str, port: int, timeout: float = 1.0) -> str | None:
    """None when the three-way handshake completes, else the error (`timeout`, `refused`...)."""
    check_destination(address)
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return None
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return os.strerror(e.errno) if e.errno else str(e)


@dataclass
class HttpResult:
    status: int | None
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # "timeout", "no response", "tls: ...", "refused", ...

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def http_get(
    url: str,
    address: str,
    timeout: float = 2.0,
    host: str | None = None,
    ca_file: str | None = None,
    sni: str | None = None,
) -> HttpResult:
    """GET `url` from `address` (pinned), sending Host (and SNI) from the URL unless overridden.

    `host=""` sends no Host header at all; `sni=""` sends no SNI.
    """
    check_destination(address)
    parts = urlsplit(url)
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    hostname = parts.hostname or ""
    host_header = hostname if host is None else host
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        sock = socket.create_connection((address, port), timeout=timeout)
    except TimeoutError:
        return HttpResult(None, error="timeout")
    except ConnectionRefusedError:
        return HttpResult(None, error="refused")
    except OSError as e:
        return HttpResult(None, error=f"connect: {e}")
    try:
        if https:
            ctx = ssl.create_default_context(cafile=ca_file)
            server_name = hostname if sni is None else sni
            if not server_name:
                ctx.check_hostname = False
            try:
                sock = ctx.wrap_socket(sock, server_hostname=server_name or None)
            except TimeoutError:
                sock.close()
                return HttpResult(None, error="timeout")
            except (ssl.SSLError, OSError) as e:
                sock.close()
                return HttpResult(None, error=f"tls: {e}")
        conn = http.client.HTTPConnection(address, port, timeout=timeout)
        conn.sock = sock
        conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
        if host_header:
            conn.putheader("Host", host_header)
        conn.putheader("User-Agent", "dprk-sim-test")
        conn.putheader("Connection", "close")
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        return HttpResult(resp.status, body, {k.lower(): v for k, v in resp.getheaders()})
    except TimeoutError:
        return HttpResult(None, error="timeout")
    except (http.client.RemoteDisconnected, ConnectionResetError, http.client.BadStatusLine):
        return HttpResult(None, error="no response")
    except OSError as e:
        return HttpResult(None, error=str(e))
    finally:
        sock.close()


@dataclass
class DnsResult:
    rcode: str | None
    answers: list[str] = field(default_factory=list)
    error: str | None = None
    authoritative: bool = False


def dns_query(
    server: str,
    name: str,
    rdtype: str = "SOA",
    port: int = 53,
    timeout: float = 1.0,
    tcp: bool = False,
) -> DnsResult:
    check_destination(server)
    q = dns.message.make_query(name, dns.rdatatype.from_text(rdtype))
    try:
        if tcp:
            r = dns.query.tcp(q, server, timeout=timeout, port=port)
        else:
            r = dns.query.udp(q, server, timeout=timeout, port=port)
    except dns.exception.Timeout:
        return DnsResult(None, error="timeout")
    except ConnectionRefusedError:
        return DnsResult(None, error="refused")
    except OSError as e:
        return DnsResult(None, error=str(e))
    answers = [rr.to_text() for rrset in r.answer for rr in rrset]
    return DnsResult(
        dns.rcode.to_text(r.rcode()), answers, authoritative=bool(r.flags & dns.flags.AA)
    )

"""A small in-process DNS server for tests: UDP and TCP on the same loopback port, chosen by the OS.

It serves one zone's SOA and misbehaves on request (`mode`), so probers can be tested against real
sockets without any packet leaving the host:

- "normal":        authoritative answers: SOA at the apex, NODATA for other apex types,
                   NXDOMAIN below the apex, REFUSED outside the zone
- "truncate":      UDP replies carry only the header/question with TC set; TCP answers normally
- "tcp_garbage":   like "truncate", but the TCP answer is unparsable junk
- "garbage":       UDP replies with the query's id and unparsable junk after it
- "garbage_then_normal", "wrong_id_then_normal": a bad reply, then the real one
- "wrong_id":      the right answer with the wrong message id
- "nxdomain", "servfail": that rcode for every query
- "silent":        never answers (UDP or TCP)

`queries` records (transport, query) for every well-formed query received.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Mode = Literal[
    "normal",
    "truncate",
    "tcp_garbage",
    "garbage",
    "garbage_then_normal",
    "wrong_id",
    "wrong_id_then_normal",
    "nxdomain",
    "servfail",
    "silent",
]


@dataclass
class FakeDnsServer:
    zone: str = "kp."
    serial: int = 2024010101
    mode: Mode = "normal"
    host: str = "127.0.0.1"
    port: int = 0
    queries: list[tuple[str, dns.message.Message]] = field(default_factory=list)
    _udp: asyncio.DatagramTransport | None = None
    _tcp: asyncio.Server | None = None
    _conns: dict[asyncio.Task[Any], asyncio.StreamWriter] = field(default_factory=dict)

    async def start(self) -> FakeDnsServer:
        loop = asyncio.get_running_loop()
        # UDP on port 0, then TCP on the same number; retry if that TCP port happens to be taken.
        for _ in range(50):
            transport, _proto = await loop.create_datagram_endpoint(
                lambda: _UdpHandler(self), local_addr=(self.host, 0)
            )
            port = transport.get_extra_info("sockname")[1]
            try:
                self._tcp = await asyncio.start_server(self._handle_tcp, self.host, port)
            except OSError as e:
                transport.close()
                if e.errno != errno.EADDRINUSE:
                    raise
                continue
            self._udp = transport
            self.port = port
            return self
        raise RuntimeError("no free UDP+TCP port pair on loopback")

    async def stop(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            # Closing the connections ends their handlers; let them finish rather than be
            # cancelled at loop teardown, which 3.11's start_server logs as an error.
            for w in list(self._conns.values()):
                w.close()
            pending = [t for t in self._conns if not t.done()]
            if pending:
                await asyncio.wait(pending, timeout=2.0)
            await self._tcp.wait_closed()

    # -- answers ---------------------------------------------------------------------------

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        """The correct (mode-independent apart from forced rcodes) reply to `query`."""
        r = dns.message.make_response(query)
        r.flags |= dns.flags.AA
        if self.mode == "nxdomain":
            r.set_rcode(dns.rcode.NXDOMAIN)
            return r
        if self.mode == "servfail":
            r.flags &= ~dns.flags.AA
            r.set_rcode(dns.rcode.SERVFAIL)
            return r
        zone = dns.name.from_text(self.zone)
        qname = query.question[0].name
        qtype = query.question[0].rdtype
        if not qname.is_subdomain(zone):
            r.flags &= ~dns.flags.AA
            r.set_rcode(dns.rcode.REFUSED)
        elif qname != zone:
            r.set_rcode(dns.rcode.NXDOMAIN)
            r.authority.append(self._soa())
        elif qtype == dns.rdatatype.SOA:
            r.answer.append(self._soa())
        else:
            r.authority.append(self._soa())  # NODATA
        return r

    def _soa(self) -> dns.rrset.RRset:
        return dns.rrset.from_text(
            self.zone,
            3600,
            dns.rdataclass.IN,
            dns.rdatatype.SOA,
            f"ns1.kptc.{self.zone} root.kptc.{self.zone} {self.serial} 3600 900 604800 86400",
        )

    def udp_replies(self, query: dns.message.Message) -> list[bytes]:
        good = self.answer(query).to_wire()
        if self.mode == "silent":
            return []
        if self.mode == "garbage":
            return [_garbage(query.id)]
        if self.mode == "garbage_then_normal":
            return [_garbage(query.id), good]
        if self.mode == "wrong_id":
            return [_with_id(good, query.id ^ 0x5A5A)]
        if self.mode == "wrong_id_then_normal":
            return [_with_id(good, query.id ^ 0x5A5A), good]
        if self.mode in ("truncate", "tcp_garbage"):
            r = dns.message.make_response(query)
            r.flags |= dns.flags.TC | dns.flags.AA
            return [r.to_wire()]
        return [good]

    def tcp_reply(self, query: dns.message.Message) -> bytes | None:
        if self.mode == "silent":
            return None
        if self.mode == "tcp_garbage":
            return _garbage(query.id)
        return self.answer(query).to_wire()

    # -- TCP -------------------------------------------------------------------------------

    async def _handle_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns[task] = writer
        try:
            while True:
                (n,) = struct.unpack("!H", await reader.readexactly(2))
                query = dns.message.from_wire(await reader.readexactly(n))
                self.queries.append(("tcp", query))
                reply = self.tcp_reply(query)
                if reply is None:
                    await reader.read()  # hold the connection open until the client gives up
                    return
                writer.write(struct.pack("!H", len(reply)) + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._conns.pop(task, None)
            writer.close()


class _UdpHandler(asyncio.DatagramProtocol):
    def __init__(self, server: FakeDnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector transport does not subclass DatagramTransport on 3.11: cast, not assert.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            query = dns.message.from_wire(data)
        except Exception:
            return
        self.server.queries.append(("udp", query))
        assert self.transport is not None
        for reply in self.server.udp_replies(query):
            self.transport.sendto(reply, addr)


def _garbage(qid: int) -> bytes:
    # Our id, then junk that cannot parse (65535 questions in 38 bytes): deterministic garbage.
    return _with_id(b"\xff" * 40, qid)


def _with_id(wire: bytes, qid: int) -> bytes:
    return struct.pack("!H", qid & 0xFFFF) + wire[2:]


@contextlib.asynccontextmanager
async def running(**kwargs: Any) -> AsyncIterator[FakeDnsServer]:
    """`async with running(mode="truncate") as srv:` — a started server, stopped afterwards."""
    srv = await FakeDnsServer(**kwargs).start()
    try:
        yield srv
    finally:
        await srv.stop()


__all__ = ["FakeDnsServer", "Mode", "running"]

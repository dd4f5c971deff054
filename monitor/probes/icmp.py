"""ICMP echo engine: one socket per address family, a reply demultiplexer, one timeout sweeper.

Why this shape: at tens of thousands of probes per second, an asyncio task, a timer or a socket
per probe costs more CPU than the probe itself. Here an in-flight probe is a tuple in a dict, sent
with one `sendto()`; replies are read in batches by a `loop.add_reader` callback and matched on
(source address, identifier, sequence), and a random per-probe token in the payload tells our
replies from forged or stray ones. Timeouts are found by one sweeper walking per-timeout deques,
which are in deadline order because they are in submission order.

Sockets (chosen per address family, lazily, on the first probe of that family):
- "dgram": the unprivileged ping socket (SOCK_DGRAM + IPPROTO_ICMP/ICMPV6), allowed when
  net.ipv4.ping_group_range contains one of our groups ("auto" tries it first, then raw).
  The kernel rewrites the echo identifier to the socket's bound "port", computes checksums
  and only hands us replies carrying that identifier; ICMP errors arrive on the error queue
  (IP_RECVERR / IPV6_RECVERR).
- "raw": SOCK_RAW (needs CAP_NET_RAW). It sees every ICMP packet reaching the host, so a kernel
  type filter drops what can never be ours and the rest is checked here; ICMP errors arrive as
  ordinary packets quoting our request.

Probes never raise for network outcomes: a send error, an ICMP error or silence is a failed
`ProbeResult`. Callbacks are never called from inside `submit()` itself.

What a third party (a monitored host, or anyone who can send us packets) must not be able to
do is fail our probes, above all the control probes that decide whether our vantage is
healthy: forged errors would blind detection. So nothing is believed unless it names a live
probe with values an outsider cannot guess:
- the echo identifier is random per process (raw sockets). On ping sockets the kernel owns it
  (the socket's bound "port": we ask for the same random value, else it picks a free one) and
  delivers to us only replies and errors quoting it, so there it is as guessable as the
  kernel's choice; the sequence and the token below are ours in both modes;
- sequence numbers run per destination from a random start, so the sequences a monitored host
  sees tell it nothing about those of probes to any other address;
- every request carries a random 8-byte token. An echo reply counts only when its identifier,
  sequence and source match a live probe to that source and it echoes the token (RFC 792
  replies echo the whole payload, so a reply without it is not ours);
- an ICMP error counts only when it quotes a live probe: the identifier, the sequence and the
  quoted packet's destination must be those of a probe in flight to that very address, and
  whatever of the token the error quotes must match. Routers that quote just the 8-byte ICMP
  header (RFC 792's minimum; RFC 1812 routers and Linux quote far more) leave only the
  identifier and the per-destination sequence to check. Anything else is ignored and counted.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import ipaddress
import os
import secrets
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterable
from typing import Final, Literal

import structlog

from monitor.probes.base import (
    IcmpTarget,
    IPAddress,
    Kind,
    ProbeResult,
    Reason,
    ResultCallback,
    Target,
    wrong_kind,
)

__all__ = ["IcmpProber", "LateHook", "Mode"]

log = structlog.get_logger("monitor.probes.icmp")

Mode = Literal["auto", "dgram", "raw"]
Callback = Callable[[ProbeResult], None]
# A late echo reply to a probe that had timed out: (its target, its started time (epoch), the
# round-trip time it took). The probe's result stays a timeout; this says the path answered.
LateHook = Callable[[IcmpTarget, float, float], None]

# Linux constants the socket module does not export on every Python version.
_SOL_IPV6: Final = 41
_SOL_RAW: Final = 255
_IP_TTL: Final = 2
_IPV6_HOPLIMIT: Final = 52
_IP_RECVERR: Final = 11
_IPV6_RECVERR: Final = 25
_ICMP_FILTER: Final = 1
_ICMP6_FILTER: Final = 1
_MSG_ERRQUEUE: Final = 0x2000
_SO_RCVBUFFORCE: Final = 33
_SO_SNDBUFFORCE: Final = 32
_SO_EE_ORIGIN_ICMP: Final = 2
_SO_EE_ORIGIN_ICMP6: Final = 3

# Big buffers: a burst of thousands of submits on a fast path gets its replies queued before the
# reader runs; a too-small receive buffer would silently turn them into timeouts.
_RCVBUF: Final = 8 << 20
_SNDBUF: Final = 2 << 20
_BUFSIZE: Final = 2048  # echo replies are tiny; ICMP errors quote at most 576 (v4) / 1280 (v6)
_BATCH: Final = 4096  # packets per reader call, so one busy socket cannot starve the loop
_SLACK: Final = 0.005  # the sweeper may fire this late, to coalesce wake-ups
_TOKENS: Final = 8 * 8192  # bytes of urandom fetched at once for the per-probe tokens
_EXPIRED_MAX: Final = 65536  # timed-out probes remembered, to tell their late replies
# ... and for how long after their timeout (s): a reply later than this is counted as stray
# and reaches no `on_late` hook (30 s is ten times the default timeout; a path that slow is
# not one a probe can speak of). Without it the table filled up to _EXPIRED_MAX (~20 MiB)
# over hours of outages and stayed there: the daemon's RSS grew ~10 MiB/h in a soak.
_LATE_FOR: Final = 30.0
_ADDR_CACHE_MAX: Final = 1 << 17

# type(8) code(8) checksum(16) identifier(16) sequence(16) token(64); types packed as one word.
_PKT = struct.Struct("!HHHH8s")
_ID_SEQ = struct.Struct("!HH")
_EE = struct.Struct("=IBBBBII")  # struct sock_extended_err
_INT = struct.Struct("=i")
_ECHO4: Final = 8 << 8
_ECHO6: Final = 128 << 8

_UNREACH_ERRNOS: Final = frozenset(
    {
        errno.ENETUNREACH,
        errno.EHOSTUNREACH,
        errno.ENETDOWN,
        errno.EHOSTDOWN,
        errno.EACCES,  # `ip route add prohibit`
        errno.EPERM,  # a local firewall rejected it
        errno.EADDRNOTAVAIL,
    }
)

_ICMP4_NAMES: Final = {3: "destination unreachable", 11: "time exceeded", 12: "parameter problem"}
_ICMP6_NAMES: Final = {
    1: "destination unreachable",
    2: "packet too big",
    3: "time exceeded",
    4: "parameter problem",
}

# An in-flight probe: (callback, target, token, t_send, started, key, deadline). A tuple, not an
# object, because it is created and read once per probe on the hot path.
_Rec = tuple[Callback, IcmpTarget, bytes, float, float, tuple[str, int], float]
_CB: Final = 0
_TARGET: Final = 1
_TOKEN: Final = 2
_T0: Final = 3
_STARTED: Final = 4
_KEY: Final = 5
_DEADLINE: Final = 6

# A timed-out probe: (token, when it timed out (monotonic), target, t_send, started); the
# target is None once a late reply was reported (a duplicate is still counted, not reported).
_Gone = tuple[bytes, float, IcmpTarget | None, float, float]

_monotonic = time.monotonic
_wall = time.time


class _Family:
    """The socket of one address family and what the hot path needs to know about it."""

    __slots__ = ("base_sum", "csum", "ident", "mode", "reply_type", "sock", "v6", "word0")

    def __init__(self, v6: bool) -> None:
        self.v6 = v6
        self.sock: socket.socket | None = None
        self.mode: str = ""
        self.ident = 0
        self.word0 = _ECHO6 if v6 else _ECHO4
        self.reply_type = 129 if v6 else 0
        self.csum = False  # we compute the checksum (IPv4 raw only)
        self.base_sum = 0  # word0 + ident, for the incremental IPv4 raw checksum


# What an address resolves to: (family, key address as the kernel reports it, target). Kept
# small (one entry per monitored address): the sockaddr tuple is made per send instead.
_Addr = tuple[_Family, str, IcmpTarget]


class IcmpProber:
    """ICMP echo prober: `probe()` for the shared `Prober` signature, `submit()` for the hot path.

    `on_late` (optional, set by the scheduler): called for an echo reply that arrives after its
    probe timed out (within _LATE_FOR), checked as an on-time reply is (identifier, sequence,
    source and token of that very probe), once per probe: the path answered, only slower than
    the timeout. The probe's result stays a timeout.

    Counters (read by metrics.py): `sent` (echo requests handed to the kernel), `received`
    (matching echo replies), `errors` (ICMP errors that failed a probe), `send_errors` (sendto
    failures) and `ignored` (packets dropped by the demultiplexer, by reason):
    - echo replies: `stray` (another identifier, or ours with a sequence and token of no probe:
      someone else's ping or a guess), `late` (the probe had timed out), `spoofed` (a live
      probe's identifier and sequence without its token), `wrong_source` (our token from an
      address the probe did not go to);
    - ICMP errors: `stray_error` (about someone else's packet: not an echo request, or another
      identifier), `unmatched_error` (our identifier, but no live probe with that sequence to
      the quoted destination: a guess, or about a probe already finished), `spoofed_error`
      (quotes a live probe, but the quoted token differs), `local_error` (ping sockets: an
      error of the local stack);
    - `malformed`, `unexpected_type`, `socket_error`.
    """

    def __init__(self, mode: Mode = "auto", on_late: LateHook | None = None) -> None:
        if mode not in ("auto", "dgram", "raw"):
            raise ValueError(f"mode must be auto, dgram or raw, not {mode!r}")
        self.mode: Mode = mode
        self.on_late: LateHook | None = on_late
        self.sent = 0
        self.received = 0
        self.errors = 0
        self.send_errors = 0
        self.ignored: collections.Counter[str] = collections.Counter()
        # Raw sockets use this identifier; ping sockets try to bind it (the kernel may refuse).
        self._ident = secrets.randbits(16)
        # The last sequence number sent per destination (as the kernel spells the address).
        self._seqs: dict[str, int] = {}
        self._v4 = _Family(False)
        self._v6 = _Family(True)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: dict[tuple[str, int], _Rec] = {}
        self._by_token: dict[bytes, _Rec] = {}  # only to classify unmatched replies
        # Timed-out probes, oldest first (see _Gone, _LATE_FOR).
        self._expired: collections.OrderedDict[tuple[str, int], _Gone] = collections.OrderedDict()
        self._queues: dict[float, collections.deque[_Rec]] = {}
        self._sweep_at = float("inf")
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._addrs: dict[object, _Addr] = {}
        self._pool = b""
        self._pool_pos = 0
        self._open_errors: dict[bool, str] = {}

    # -- public API -------------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def modes(self) -> dict[int, str]:
        """The socket kind in use per IP version, e.g. {4: "raw", 6: "dgram"} (opened ones only)."""
        return {6 if f.v6 else 4: f.mode for f in (self._v4, self._v6) if f.sock is not None}

    async def probe(self, target: Target, timeout: float) -> ProbeResult:
        if not isinstance(target, IcmpTarget):
            return wrong_kind(target, Kind.ICMP)
        fut: asyncio.Future[ProbeResult] = asyncio.get_running_loop().create_future()

        def done(result: ProbeResult) -> None:
            if not fut.done():
                fut.set_result(result)

        self.submit(target.address, timeout, done, target)
        return await fut

    def start(self, target: Target, timeout: float, callback: ResultCallback) -> None:
        """`base.CallbackProber`: `submit()` for a scheduled target (what the scheduler calls)."""
        if isinstance(target, IcmpTarget):
            self.submit(target.address, timeout, callback, target)
        else:
            asyncio.get_running_loop().call_soon(
                self._deliver, callback, wrong_kind(target, Kind.ICMP)
            )

    def submit(
        self,
        address: IPAddress | str,
        timeout: float,
        callback: Callback,
        target: IcmpTarget | None = None,
        ttl: int | None = None,
    ) -> None:
        """Send one echo request; `callback(result)` runs later on the loop, exactly once.

        No task, future or timer is created per probe. Raises only for programming errors
        (no running loop, an address that is not an IP address, a ttl outside 1..255).

        `ttl` (traceroute): the request's IP TTL / IPv6 hop limit, sent as ancillary data so
        the shared socket keeps its default. An ICMP error then fails the probe with its
        `extra` holding `icmp_type`, `icmp_code` and `from` (the router that answered).
        """
        if ttl is not None and not 1 <= ttl <= 255:
            raise ValueError(f"ttl must be between 1 and 255, not {ttl}")
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._bind_loop(loop)
        addr = self._addrs.get(address)
        if addr is None:
            addr = self._resolve(address, target)
        fam, host, default_target = addr
        if target is None:
            target = default_target
        sock = fam.sock
        if sock is None:
            sock = self._open(fam)
            if sock is None:
                result = ProbeResult.failure(
                    target, _wall(), Reason.OTHER, self._open_errors.get(fam.v6, "no socket")
                )
                self.send_errors += 1
                loop.call_soon(self._deliver, callback, result)
                return
        inflight = self._inflight
        seqs = self._seqs
        seq = seqs.get(host)
        if seq is None:
            # A destination's first probe starts at a random sequence: nobody who sees our
            # probes to other addresses can tell which sequence this one is at.
            if len(seqs) >= _ADDR_CACHE_MAX:
                seqs.clear()  # restarting elsewhere is harmless: collisions are checked below
            seq = secrets.randbits(16)
        else:
            seq = (seq + 1) & 0xFFFF
        key = (host, seq)
        if key in inflight:  # only after 65536 probes to one address within one timeout
            seq = self._free_seq(host, seq)
            if seq < 0:
                result = ProbeResult.failure(
                    target, _wall(), Reason.OTHER, "65536 probes to this address in flight"
                )
                self.send_errors += 1
                loop.call_soon(self._deliver, callback, result)
                return
            key = (host, seq)
        seqs[host] = seq
        pos = self._pool_pos
        if pos >= len(self._pool):
            self._pool = os.urandom(_TOKENS)
            pos = 0
        token = self._pool[pos : pos + 8]
        self._pool_pos = pos + 8
        if fam.csum:
            # Only IPv4 raw needs our checksum (the kernel does ICMPv6 and ping sockets). The
            # token's 16-bit words sum, in one's complement, to its value mod 0xFFFF.
            s = fam.base_sum + seq + int.from_bytes(token, "big") % 0xFFFF
            s = (s & 0xFFFF) + (s >> 16)
            s = (s & 0xFFFF) + (s >> 16)
            packet = _PKT.pack(fam.word0, ~s & 0xFFFF, fam.ident, seq, token)
        else:
            packet = _PKT.pack(fam.word0, 0, fam.ident, seq, token)
        t0 = _monotonic()
        try:
            if ttl is None:
                sock.sendto(packet, (host, 0))
            else:
                level, opt = (_SOL_IPV6, _IPV6_HOPLIMIT) if fam.v6 else (socket.SOL_IP, _IP_TTL)
                sock.sendmsg([packet], [(level, opt, _INT.pack(ttl))], 0, (host, 0))
        except OSError as exc:
            self._send_failed(loop, callback, target, exc)
            return
        deadline = t0 + timeout
        rec: _Rec = (callback, target, token, t0, _wall(), key, deadline)
        inflight[key] = rec
        self._by_token[token] = rec
        queue = self._queues.get(timeout)
        if queue is None:
            queue = self._queues[timeout] = collections.deque()
        queue.append(rec)
        if deadline < self._sweep_at:
            self._arm(deadline)
        self.sent += 1

    async def close(self) -> None:
        """Close the sockets; probes still in flight fail with Reason.OTHER."""
        self._shutdown("prober closed")

    # -- sockets ----------------------------------------------------------------------------

    def _bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        # Readers and the sweeper live on one loop; a new loop (e.g. a second asyncio.run)
        # starts afresh.
        if self._loop is not None:
            self._shutdown("event loop changed")
        self._loop = loop

    def _shutdown(self, why: str) -> None:
        loop = self._loop
        for fam in (self._v4, self._v6):
            if fam.sock is not None:
                if loop is not None and not loop.is_closed():
                    loop.remove_reader(fam.sock.fileno())
                fam.sock.close()
                fam.sock = None
                fam.mode = ""
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        self._sweep_at = float("inf")
        pending = list(self._inflight.values())
        self._inflight.clear()
        self._by_token.clear()
        self._queues.clear()
        self._expired.clear()
        for rec in pending:
            self._deliver(
                rec[_CB], ProbeResult.failure(rec[_TARGET], rec[_STARTED], Reason.OTHER, why)
            )

    def _open(self, fam: _Family) -> socket.socket | None:
        # "auto" just tries the ping socket (EACCES when ping_group_range excludes us) rather
        # than read /proc, which a sandbox (systemd's ProcSubset=pid) may hide.
        modes = ["dgram", "raw"] if self.mode == "auto" else [self.mode]
        problems = []
        for mode in modes:
            try:
                sock = self._make_socket(fam, mode)
            except OSError as exc:
                problems.append(f"{mode}: {exc.strerror or exc}")
                continue
            assert self._loop is not None
            reader = self._read_raw4 if mode == "raw" and not fam.v6 else self._read_icmp
            self._loop.add_reader(sock.fileno(), reader, fam)
            fam.sock, fam.mode = sock, mode
            self._open_errors.pop(fam.v6, None)
            return sock
        why = (
            f"cannot open an ICMPv{6 if fam.v6 else 4} socket ({'; '.join(problems)}): "
            "grant CAP_NET_RAW or widen net.ipv4.ping_group_range"
        )
        if fam.v6 not in self._open_errors:  # once per family until it works again
            log.warning("icmp_socket_unavailable", detail=why)
        self._open_errors[fam.v6] = why
        return None

    def _make_socket(self, fam: _Family, mode: str) -> socket.socket:
        af = socket.AF_INET6 if fam.v6 else socket.AF_INET
        proto = socket.IPPROTO_ICMPV6 if fam.v6 else socket.IPPROTO_ICMP
        kind = socket.SOCK_DGRAM if mode == "dgram" else socket.SOCK_RAW
        sock = socket.socket(af, kind, proto)
        try:
            sock.setblocking(False)
            for force, opt, size in (
                (_SO_RCVBUFFORCE, socket.SO_RCVBUF, _RCVBUF),
                (_SO_SNDBUFFORCE, socket.SO_SNDBUF, _SNDBUF),
            ):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, force, size)  # CAP_NET_ADMIN
                except OSError:
                    sock.setsockopt(socket.SOL_SOCKET, opt, size)  # capped by rmem/wmem_max
            if mode == "dgram":
                anyaddr = "::" if fam.v6 else "0.0.0.0"
                try:
                    sock.bind((anyaddr, self._ident))
                except OSError:
                    sock.bind((anyaddr, 0))  # identifier taken: let the kernel pick one
                fam.ident = sock.getsockname()[1]
                if fam.v6:
                    sock.setsockopt(_SOL_IPV6, _IPV6_RECVERR, 1)
                else:
                    sock.setsockopt(socket.SOL_IP, _IP_RECVERR, 1)
            else:
                fam.ident = self._ident
                # Drop in the kernel every type that can never concern us (a set bit blocks),
                # notably the echo requests we and others send, which loop back to raw sockets.
                if fam.v6:
                    words = [0xFFFFFFFF] * 8
                    for t in (1, 2, 3, 4, 129):
                        words[t >> 5] &= ~(1 << (t & 31)) & 0xFFFFFFFF
                    sock.setsockopt(
                        socket.IPPROTO_ICMPV6, _ICMP6_FILTER, struct.pack("=8I", *words)
                    )
                else:
                    allow = (1 << 0) | (1 << 3) | (1 << 11) | (1 << 12)
                    sock.setsockopt(_SOL_RAW, _ICMP_FILTER, struct.pack("=I", ~allow & 0xFFFFFFFF))
        except BaseException:
            sock.close()
            raise
        fam.base_sum = fam.word0 + fam.ident
        fam.csum = mode == "raw" and not fam.v6
        return sock

    def prepare(self, addresses: Iterable[IPAddress]) -> int:
        """Give addresses that will be probed later (a census's) their entries in the
        per-address tables now: the memory is taken at start, not at the first census hours
        into the run (a 2 MiB step of RSS in the soak, for 1,536 addresses, that stayed).
        Up to half the tables' bound, leaving room for the scheduled targets; returns how
        many were added."""
        added = 0
        for address in addresses:
            if len(self._addrs) >= _ADDR_CACHE_MAX // 2:
                break
            if address in self._addrs:
                continue
            _, host, _ = self._resolve(address, None)
            if host not in self._seqs:
                # As a first probe's: a random start (the next probe sends this plus one).
                self._seqs[host] = secrets.randbits(16)
            added += 1
        return added

    def _free_seq(self, host: str, seq: int) -> int:
        """The next sequence number with no probe to host in flight, or -1 if there is none."""
        for _ in range(0xFFFF):
            seq = (seq + 1) & 0xFFFF
            if (host, seq) not in self._inflight:
                return seq
        return -1

    def _resolve(self, address: IPAddress | str, target: IcmpTarget | None) -> _Addr:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if target is None:
            target = IcmpTarget(ip)  # (the scheduler's own target is shared, not copied)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # probe the IPv4 address it stands for
        if isinstance(ip, ipaddress.IPv4Address):
            host = str(ip)
            fam = self._v4
        else:
            # The spelling recvfrom() reports (inet_ntop), so that reply lookups hit the dict.
            host = socket.inet_ntop(socket.AF_INET6, ip.packed)
            if ip.scope_id:
                host = f"{host}%{ip.scope_id}"
            fam = self._v6
        if len(self._addrs) >= _ADDR_CACHE_MAX:
            self._addrs.clear()
        addr: _Addr = (fam, host, target)
        self._addrs[address] = addr
        return addr

    # -- completion -------------------------------------------------------------------------

    def _deliver(self, callback: Callback, result: ProbeResult) -> None:
        try:
            callback(result)
        except Exception as exc:  # a caller's bug must not kill the reader or the sweeper
            self._callback_failed(exc)

    def _callback_failed(self, exc: Exception) -> None:
        if self._loop is not None:
            self._loop.call_exception_handler(
                {"message": "IcmpProber result callback failed", "exception": exc}
            )

    def _send_failed(
        self,
        loop: asyncio.AbstractEventLoop,
        callback: Callback,
        target: IcmpTarget,
        exc: OSError,
    ) -> None:
        self.send_errors += 1
        code = exc.errno or 0
        reason = Reason.UNREACHABLE if code in _UNREACH_ERRNOS else Reason.OTHER
        detail = f"sendto: {errno.errorcode.get(code, str(code))} ({exc.strerror})"
        loop.call_soon(
            self._deliver, callback, ProbeResult.failure(target, _wall(), reason, detail)
        )

    def _unmatched(self, key: tuple[str, int], token: bytes, t1: float) -> None:
        # Cold path: say why an echo reply with our identifier matched no probe.
        rec = self._by_token.get(token)
        if rec is not None:
            self.ignored["wrong_source" if rec[_KEY][0] != key[0] else "spoofed"] += 1
        elif (gone := self._expired.get(key)) is not None and gone[0] == token:
            # The key holds the reply's source and sequence, the token is the probe's own: as
            # much proof as an on-time reply gives.
            self.ignored["late"] += 1
            target = gone[2]
            hook = self.on_late
            if target is not None and hook is not None:
                self._expired[key] = (gone[0], gone[1], None, gone[3], gone[4])
                try:
                    hook(target, gone[4], t1 - gone[3])
                except Exception as exc:  # a caller's bug must not kill the reader
                    self._callback_failed(exc)
        else:
            self.ignored["stray"] += 1

    def _fail_from_error(
        self,
        key: tuple[str, int],
        token: bytes,
        v6: bool,
        icmp_type: int,
        icmp_code: int,
        offender: str,
    ) -> None:
        """An ICMP error quoting one of our requests: fail that probe if it is a live one.

        `key` is (the quoted packet's destination, the quoted sequence); the identifier was
        checked by the caller (raw) or by the kernel (ping sockets). `token` is whatever of the
        request's payload the error quotes: 0 to 8 bytes, all of which must match.
        """
        rec = self._inflight.get(key)
        if rec is None:
            self.ignored["unmatched_error"] += 1
            return
        if token and token != rec[_TOKEN][: len(token)]:
            self.ignored["spoofed_error"] += 1
            return
        del self._inflight[key]
        self._by_token.pop(rec[_TOKEN], None)
        self.errors += 1
        names = _ICMP6_NAMES if v6 else _ICMP4_NAMES
        unreach = (icmp_type in (1, 3)) if v6 else (icmp_type in (3, 11))
        name = names.get(icmp_type, "error")
        result = ProbeResult.failure(
            rec[_TARGET],
            rec[_STARTED],
            Reason.UNREACHABLE if unreach else Reason.OTHER,
            f"ICMP{'v6' if v6 else ''} {name} (type {icmp_type} code {icmp_code}) from {offender}",
            {"icmp_type": icmp_type, "icmp_code": icmp_code, "from": offender},
        )
        self._deliver(rec[_CB], result)

    # -- readers (hot path) -----------------------------------------------------------------

    def _read_raw4(self, fam: _Family) -> None:
        """IPv4 raw socket: every packet starts with the IP header."""
        sock = fam.sock
        if sock is None:
            return
        recvfrom = sock.recvfrom
        inflight = self._inflight
        by_token = self._by_token
        ident = fam.ident
        unpack_id_seq = _ID_SEQ.unpack_from
        for _ in range(_BATCH):
            try:
                data, src = recvfrom(_BUFSIZE)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError:
                if fam.sock is sock:  # else a callback closed the engine under us
                    self.ignored["socket_error"] += 1
                return
            t1 = _monotonic()
            n = len(data)
            o = (data[0] & 0x0F) << 2 if n else 0
            if n < o + 8 or o < 20:
                self.ignored["malformed"] += 1
                continue
            if data[o] == 0:
                rid, seq = unpack_id_seq(data, o + 4)
                if rid != ident:
                    self.ignored["stray"] += 1  # another process's ping
                    continue
                key = (src[0], seq)
                token = data[o + 8 : o + 16]
                rec = inflight.pop(key, None)
                if rec is None:
                    self._unmatched(key, token, t1)
                    continue
                if token != rec[_TOKEN]:
                    inflight[key] = rec  # forged: the real reply may still come
                    self.ignored["spoofed"] += 1
                    continue
                del by_token[token]
                self.received += 1
                try:
                    rec[_CB](
                        ProbeResult(
                            rec[_TARGET], True, rec[_STARTED], t1 - rec[_T0], None, "",
                            {"ttl": data[8]},
                        )
                    )  # fmt: skip
                except Exception as exc:
                    self._callback_failed(exc)
            else:
                self._error4(data, o, src[0])

    def _error4(self, data: bytes, o: int, src: str) -> None:
        icmp_type, icmp_code = data[o], data[o + 1]
        if icmp_type not in _ICMP4_NAMES:
            self.ignored["unexpected_type"] += 1
            return
        i = o + 8  # the quoted IP header of the offending packet
        if len(data) < i + 20 or data[i] >> 4 != 4:
            self.ignored["malformed"] += 1
            return
        j = i + ((data[i] & 0x0F) << 2)
        if data[i + 9] != socket.IPPROTO_ICMP or len(data) < j + 8 or data[j] != 8:
            self.ignored["stray_error"] += 1  # about someone else's TCP, UDP, ...
            return
        rid, seq = _ID_SEQ.unpack_from(data, j + 4)
        if rid != self._v4.ident:
            self.ignored["stray_error"] += 1
            return
        dst = socket.inet_ntop(socket.AF_INET, data[i + 16 : i + 20])
        self._fail_from_error((dst, seq), data[j + 8 : j + 16], False, icmp_type, icmp_code, src)

    def _read_icmp(self, fam: _Family) -> None:
        """Ping sockets (both families) and IPv6 raw: every packet starts with the ICMP header."""
        sock = fam.sock
        if sock is None:
            return
        recvfrom = sock.recvfrom
        inflight = self._inflight
        by_token = self._by_token
        ident = fam.ident
        reply_type = fam.reply_type
        raw = fam.mode == "raw"
        unpack_id_seq = _ID_SEQ.unpack_from
        for _ in range(_BATCH):
            try:
                data, src = recvfrom(_BUFSIZE)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            except OSError:
                if fam.sock is not sock:  # a callback closed the engine under us
                    return
                if raw:
                    self.ignored["socket_error"] += 1
                    break
                # A ping socket with RECVERR reports a pending ICMP error once as a recv error;
                # the details are on the error queue, drained below.
                continue
            t1 = _monotonic()
            if len(data) < 8:
                self.ignored["malformed"] += 1
                continue
            if data[0] == reply_type:
                rid, seq = unpack_id_seq(data, 4)
                if rid != ident:
                    self.ignored["stray"] += 1
                    continue
                key = (src[0], seq)
                token = data[8:16]
                rec = inflight.pop(key, None)
                if rec is None:
                    self._unmatched(key, token, t1)
                    continue
                if token != rec[_TOKEN]:
                    inflight[key] = rec
                    self.ignored["spoofed"] += 1
                    continue
                del by_token[token]
                self.received += 1
                try:
                    rec[_CB](
                        ProbeResult(rec[_TARGET], True, rec[_STARTED], t1 - rec[_T0], None, "", {})
                    )
                except Exception as exc:
                    self._callback_failed(exc)
            elif raw:
                self._error6(data, src[0])
            else:
                self.ignored["unexpected_type"] += 1
        if not raw and fam.sock is sock:
            # Errors wait on the error queue and keep the socket readable (EPOLLERR) until read.
            self._drain_errqueue(fam, sock)

    def _error6(self, data: bytes, src: str) -> None:
        icmp_type, icmp_code = data[0], data[1]
        if icmp_type not in _ICMP6_NAMES:
            self.ignored["unexpected_type"] += 1
            return
        i = 8  # the quoted IPv6 header; we never send extension headers
        if len(data) < i + 48 or data[i] >> 4 != 6:
            self.ignored["malformed"] += 1
            return
        j = i + 40
        if data[i + 6] != socket.IPPROTO_ICMPV6 or data[j] != 128:
            self.ignored["stray_error"] += 1
            return
        rid, seq = _ID_SEQ.unpack_from(data, j + 4)
        if rid != self._v6.ident:
            self.ignored["stray_error"] += 1
            return
        dst = socket.inet_ntop(socket.AF_INET6, data[i + 24 : i + 40])
        self._fail_from_error((dst, seq), data[j + 8 : j + 16], True, icmp_type, icmp_code, src)

    def _drain_errqueue(self, fam: _Family, sock: socket.socket) -> None:
        level, opt = (_SOL_IPV6, _IPV6_RECVERR) if fam.v6 else (socket.SOL_IP, _IP_RECVERR)
        while True:
            try:
                data, ancdata, _flags, dst = sock.recvmsg(_BUFSIZE, 512, _MSG_ERRQUEUE)
            except BlockingIOError:
                return
            except InterruptedError:
                continue
            except OSError:
                return
            ee: tuple[int, int, int, int, int, int, int] | None = None
            offender = "?"
            for cmsg_level, cmsg_type, cdata in ancdata:
                if cmsg_level == level and cmsg_type == opt and len(cdata) >= _EE.size:
                    ee = _EE.unpack_from(cdata)
                    offender = _sockaddr_host(cdata[_EE.size :])
            if ee is None or len(data) < 8 or not dst:
                self.ignored["malformed"] += 1
                continue
            if ee[1] not in (_SO_EE_ORIGIN_ICMP, _SO_EE_ORIGIN_ICMP6):
                self.ignored["local_error"] += 1  # e.g. EMSGSIZE from the local stack
                continue
            # The queued packet is our own echo request (identifier as rewritten by the kernel).
            seq = int.from_bytes(data[6:8], "big")
            self._fail_from_error((dst[0], seq), data[8:16], fam.v6, ee[2], ee[3], offender)

    # -- timeouts ---------------------------------------------------------------------------

    def _arm(self, at: float) -> None:
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        assert self._loop is not None
        self._sweep_at = at
        self._sweep_handle = self._loop.call_later(max(0.0, at - _monotonic()), self._sweep)

    def _sweep(self) -> None:
        """Fail every probe whose deadline has passed; re-arm for the earliest one left."""
        self._sweep_handle = None
        self._sweep_at = float("inf")
        now = _monotonic()
        inflight = self._inflight
        expired = self._expired
        cut = now - _LATE_FOR
        while expired and next(iter(expired.values()))[1] < cut:
            expired.popitem(last=False)
        nxt = float("inf")
        for timeout, queue in list(self._queues.items()):
            while queue:
                rec = queue[0]
                if rec[_DEADLINE] > now:
                    break
                queue.popleft()
                key = rec[_KEY]
                if inflight.get(key) is not rec:
                    continue  # answered already
                del inflight[key]
                self._by_token.pop(rec[_TOKEN], None)
                if len(expired) >= _EXPIRED_MAX:
                    expired.popitem(last=False)
                expired.pop(key, None)  # a reused sequence: to the end, to keep time order
                expired[key] = (rec[_TOKEN], now, rec[_TARGET], rec[_T0], rec[_STARTED])
                self._deliver(
                    rec[_CB],
                    ProbeResult.failure(
                        rec[_TARGET], rec[_STARTED], Reason.TIMEOUT, f"no reply within {timeout:g}s"
                    ),
                )
            if queue:
                nxt = min(nxt, queue[0][_DEADLINE])
            elif self._queues.get(timeout) is queue:
                del self._queues[timeout]
        if nxt < float("inf"):
            at = max(nxt, now + _SLACK)
            if at < self._sweep_at:
                self._arm(at)


def _sockaddr_host(raw: bytes) -> str:
    """The address in a struct sockaddr_in/sockaddr_in6 (the offender of an ICMP error)."""
    if len(raw) >= 8 and int.from_bytes(raw[:2], sys.byteorder) == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, raw[4:8])
    if len(raw) >= 24 and int.from_bytes(raw[:2], sys.byteorder) == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24])
    return "?"

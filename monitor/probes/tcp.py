"""TCP connect probe: does the address complete a handshake on the port within the timeout?

The connection is closed as soon as it is established (a normal FIN, no data sent), so the probe
costs the target one handshake and nothing else.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import time
from collections.abc import Awaitable, Callable

from monitor.probes.base import (
    Kind,
    ProbeResult,
    Reason,
    Target,
    TcpTarget,
    now,
    release_tracebacks,
    wrong_kind,
)

# errnos meaning "no path to the host" as opposed to "the host said no".
_UNREACHABLE = frozenset(
    {
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
        # An ICMP "administratively prohibited" (a filtering router) arrives as EACCES/EPERM.
        errno.EACCES,
        errno.EPERM,
    }
)


def classify_oserror(exc: OSError) -> tuple[Reason, str]:
    """Map a socket error to the fixed reason set; shared by the TCP, HTTP and DNS probers."""
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return Reason.REFUSED, "connection refused"
    if exc.errno in _UNREACHABLE:
        return Reason.UNREACHABLE, exc.strerror or errno.errorcode.get(
            exc.errno or 0, "unreachable"
        )
    # The kernel's own SYN retry limit ran out before ours: still a timeout.
    if isinstance(exc, TimeoutError) or exc.errno == errno.ETIMEDOUT:
        return Reason.TIMEOUT, "timed out"
    text = exc.strerror or str(exc) or type(exc).__name__
    return Reason.OTHER, text


# Linux resends an unanswered SYN once its initial RTO (TCP_TIMEOUT_INIT, 1 s) runs out, then
# every second or so. Those resends are packets the rate limiter never granted: measured at the
# receiver, a silent target cost three SYNs per probe at a 3 s timeout (docs/BENCHMARKS.md,
# "Politeness cap"). So a connect attempt gives up just before the first resend; a lost SYN is
# retried by the scheduler's re-probes, which the limiter counts.
SYN_LIMIT = 0.95


def connect_timeout(timeout: float) -> float:
    """How long one connect attempt may wait for its SYN-ACK."""
    return min(timeout, SYN_LIMIT)


# `acquire(deadline, send_by)`: take one send of the scheduler's entity budget for a SYN the
# kernel will resend no later than `send_by`, counted there; False when none can be had by
# `deadline` (both time.monotonic()). With one, a connect may wait for its SYN-ACK up to the
# probe's timeout: every resend the kernel makes in that time has a send of its own.
SynBudget = Callable[[float, float], Awaitable[bool]]

# The kernel arms its SYN timer in whole jiffies (up to 4 ms early at HZ=250) and the timer
# wheel fires it late, by up to an eighth of the delay (measured here: 10 to 30 ms per 1 s RTO).
# The decision for a resend is taken MARGIN before its earliest time, as SYN_LIMIT always was.
_MARGIN = 1.0 - SYN_LIMIT
_LATE = 0.125
# The send is asked for this long before the decision: long enough for the scheduler to hold
# its other sends back and free one at a small max_rate (a send every 200 ms at 5/s); asked
# 0.1 s ahead, a saturated budget refused almost every resend (a new send was never due in
# time). A send granted for a SYN-ACK that then comes first is lost budget, never a packet.
_ASK_AHEAD = 0.3
_TCP_SYN_SENT = 2  # tcpi_state
_TCP_INFO_LEN = 104  # up to tcpi_total_retrans


def _syn_info(sock: socket.socket) -> tuple[int, float, int]:
    """(tcpi_state, tcpi_rto in seconds, tcpi_total_retrans) of a socket."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    return raw[0], struct.unpack_from("I", raw, 8)[0] / 1e6, struct.unpack_from("I", raw, 100)[0]


def limit_resends(sock: socket.socket) -> None:
    """The fewest SYN resends the kernel allows (TCP_SYNCNT 1; 0 is refused): a backstop for a
    stalled event loop. With tcp_syn_linear_timeouts (4 by default) the kernel still resends at
    ~1 s and ~2 s and gives up at ~3 s, so SynGuard, not this, keeps each resend budgeted."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_SYNCNT, 1)


class SynGuard:
    """Watches one connecting socket: shortly before each SYN resend the kernel has armed, takes
    a send of the budget for it, or, without one, shuts the socket down before it leaves
    (a SYN_SENT socket closes without a packet). `gave_up` tells the prober why the connect
    failed. The resend times are read from the kernel (tcpi_rto), not assumed.
    """

    def __init__(self, sock: socket.socket, acquire: SynBudget, end: float) -> None:
        self.sock = sock
        self.end = end  # time.monotonic() at which the probe ends anyway
        self.gave_up = False
        self.granted = 0
        self._acquire = acquire
        # The first SYN left inside connect(), after this and before the task first runs.
        self._sent_lo = time.monotonic()
        self._task: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        # Let go of the task: it runs in the prober's context, which may hold (a context var)
        # what holds this guard, and a guard -> task -> context -> guard cycle would keep the
        # socket, transport and TLS objects of every probe until a full garbage collection.
        task, self._task = self._task, None
        if task is not None:
            task.cancel()

    async def _run(self) -> None:
        sent_hi = time.monotonic()
        sent_lo = self._sent_lo
        try:
            while True:
                state, rto, resent = _syn_info(self.sock)
                if state != _TCP_SYN_SENT:
                    return  # connected or failed
                if resent != self.granted:
                    self._give_up()  # a resend we did not expect: stop the next one
                    return
                next_lo = sent_lo + rto - 0.004
                decide_at = next_lo - (_MARGIN - 0.004)
                if decide_at >= self.end:
                    return  # the probe's timeout comes first and closes the socket
                await asyncio.sleep(max(0.0, decide_at - _ASK_AHEAD - time.monotonic()))
                if _syn_info(self.sock)[0] != _TCP_SYN_SENT:
                    return
                send_by = sent_hi + rto * (1 + _LATE) + 0.02
                if not await self._acquire(decide_at, send_by):
                    # No send for the resend: the SYN-ACK to the SYNs sent may still come
                    # until the kernel would resend, so the socket waits for it till then.
                    await asyncio.sleep(max(0.0, decide_at - time.monotonic()))
                    self._give_up()
                    return
                if time.monotonic() > next_lo:
                    self._give_up()
                    return
                self.granted += 1
                # Until the kernel shows the resend (its rto for the next one comes with it).
                await asyncio.sleep(max(0.0, send_by - time.monotonic()))
                while True:
                    state, _, resent = _syn_info(self.sock)
                    if state != _TCP_SYN_SENT or resent >= self.granted:
                        break
                    await asyncio.sleep(0.01)
                sent_lo, sent_hi = next_lo, time.monotonic()
        except OSError:
            return  # the socket was closed under us: the probe is over

    def _give_up(self) -> None:
        if _syn_info(self.sock)[0] != _TCP_SYN_SENT:
            return  # the SYN-ACK came while we asked
        self.gave_up = True
        self.sock.shutdown(socket.SHUT_RDWR)


class TcpProber:
    """Connects, measures the handshake time, closes. One short-lived socket per probe.

    With `acquire` (the daemon's scheduler) a connect waits for its SYN-ACK up to the timeout,
    each SYN resend under a send of the budget (SynGuard); without it, at most SYN_LIMIT.
    """

    def __init__(self, acquire: SynBudget | None = None) -> None:
        self.acquire = acquire

    async def probe(self, target: Target, timeout: float) -> ProbeResult:
        if not isinstance(target, TcpTarget):
            return wrong_kind(target, Kind.TCP)
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if target.address.version == 6 else socket.AF_INET
        started = now()
        t0 = time.perf_counter()
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as e:  # fd exhaustion and the like: ours, not the target's
            return ProbeResult.failure(target, started, Reason.OTHER, f"socket: {e}")
        if self.acquire is not None:
            return await self._probe_budgeted(target, sock, timeout, started, t0, self.acquire)
        try:
            sock.setblocking(False)
            limit = connect_timeout(timeout)
            async with asyncio.timeout(limit):
                await loop.sock_connect(sock, (str(target.address), target.port))
            rtt = time.perf_counter() - t0
        except TimeoutError as e:
            release_tracebacks(e)
            return ProbeResult.failure(target, started, Reason.TIMEOUT, f"no SYN-ACK in {limit:g}s")
        except OSError as e:
            release_tracebacks(e)  # the connect's future <-> its exception's frames
            reason, detail = classify_oserror(e)
            return ProbeResult.failure(target, started, reason, detail)
        finally:
            sock.close()
        return ProbeResult.success(target, started, rtt)

    async def _probe_budgeted(
        self,
        target: TcpTarget,
        sock: socket.socket,
        timeout: float,
        started: float,
        t0: float,
        acquire: SynBudget,
    ) -> ProbeResult:
        loop = asyncio.get_running_loop()
        guard: SynGuard | None = None
        try:
            sock.setblocking(False)
            limit_resends(sock)
            async with asyncio.timeout(timeout):
                connecting = loop.sock_connect(sock, (str(target.address), target.port))
                guard = SynGuard(sock, acquire, time.monotonic() + timeout)
                await connecting
            rtt = time.perf_counter() - t0
        except TimeoutError as e:
            release_tracebacks(e)
            detail = f"no SYN-ACK in {timeout:g}s"
            return ProbeResult.failure(target, started, Reason.TIMEOUT, detail)
        except OSError as e:
            release_tracebacks(e)  # the connect's future <-> its exception's frames
            if guard is not None and guard.gave_up:
                waited = time.perf_counter() - t0
                detail = f"no SYN-ACK in {waited:.2f}s and no budget for a SYN resend"
                return ProbeResult.failure(target, started, Reason.TIMEOUT, detail)
            reason, detail = classify_oserror(e)
            return ProbeResult.failure(target, started, reason, detail)
        finally:
            if guard is not None:
                guard.stop()
            sock.close()
        return ProbeResult.success(target, started, rtt)

    async def close(self) -> None:
        """Nothing to release: every probe owns and closes its socket."""

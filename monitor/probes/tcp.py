"""TCP connect probe: does the address complete a handshake on the port within the timeout?

The connection is closed as soon as it is established (a normal FIN, no data sent), so the probe
costs the target one handshake and nothing else.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import time

from monitor.probes.base import Kind, ProbeResult, Reason, Target, TcpTarget, now, wrong_kind

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


class TcpProber:
    """Connects, measures the handshake time, closes. One short-lived socket per probe."""

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
        try:
            sock.setblocking(False)
            limit = connect_timeout(timeout)
            async with asyncio.timeout(limit):
                await loop.sock_connect(sock, (str(target.address), target.port))
            rtt = time.perf_counter() - t0
        except TimeoutError:
            return ProbeResult.failure(target, started, Reason.TIMEOUT, f"no SYN-ACK in {limit:g}s")
        except OSError as e:
            reason, detail = classify_oserror(e)
            return ProbeResult.failure(target, started, reason, detail)
        finally:
            sock.close()
        return ProbeResult.success(target, started, rtt)

    async def close(self) -> None:
        """Nothing to release: every probe owns and closes its socket."""

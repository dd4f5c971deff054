"""HTTP(S) probe: fetch a URL, optionally from a pinned address, and judge the status.

Semantics (the contract the tests pin):
- With `target.address` set, the TCP connection goes to that address while the Host header, the
  TLS SNI and certificate verification all use the URL's host, also when that host is an IP
  literal (then the request goes to the pin with `Host:` the literal, and the certificate is
  checked against the literal; no SNI, as TLS sends none for addresses).
- Redirects are followed by hand, at most `MAX_REDIRECTS`, only while they stay on the same
  site: the same host with the same scheme and port, or the one upgrade from http to https on
  its default port 443 (`http://h:8080/` -> `https://h/`). Anything else (another host, another
  port, https -> http) is not followed: its 3xx status is judged against `expect_status` like
  any other. Following to any port would let a site steer our probes at any service of its
  address. More on-site redirects than `MAX_REDIRECTS` is an HTTP_STATUS failure.
- The final response's body is read up to `target.max_body` bytes, then the connection is
  dropped; a body cut at the cap is still a success (`extra["truncated"] = True`). Bytes are
  counted as they come off the wire (no decompression: we accept gzip to spare a thin link, but
  never inflate it).
- The whole probe (connect, TLS, redirects, body) is bounded by `timeout`: a server that never
  sends headers, or dribbles a body that neither ends nor reaches the cap in time, is TIMEOUT.
- `extra`: `status`, `bytes`, `redirects`, `truncated`, and for HTTPS `tls_not_after` (epoch
  seconds of the last certificate seen, verified or not), `tls_version` (as OpenSSL names it:
  "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3") and `tls_cipher` of the last handshake.
- Legacy TLS: the question is whether the site answers, not whether its TLS is modern, so by
  default (`min_tls_version` "1.0") the prober speaks whatever the server offers down to TLS 1.0,
  with the old ciphers (SHA-1 MACs, RSA key exchange, CBC) such servers have. That takes
  OpenSSL's security level 0: TLS 1.0/1.1 sign the handshake with MD5+SHA-1, which every higher
  level refuses. A target that sets "1.2" or "1.3" gets Python's default context with that
  floor, as before; a server below it fails TLS_ERROR with a detail naming the floor.
- `tls_verify: true` stays exactly as strict as Python's default context: trust chain, names,
  dates through OpenSSL, and, since level 0 would also drop the key-size and digest floor of
  the chain, that floor (level 2: RSA/DSA keys >= 2048 bits, EC >= 224, no SHA-1 or MD5
  signatures below the trust anchor) is checked by the prober itself right after OpenSSL
  verified the chain (certtime.chain_weakness). A legacy protocol is not a certificate problem;
  a weak certificate still is.
- `rtt` is the time of the whole exchange up to the end of the (capped) body.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import socket
import ssl
import sys
import time
import warnings

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from monitor import __version__
from monitor.probes import certtime
from monitor.probes.base import (
    TLS_VERSIONS,
    HttpTarget,
    IPAddress,
    Kind,
    ProbeResult,
    Reason,
    Target,
    now,
    release_tracebacks,
    wrong_kind,
)
from monitor.probes.tcp import SynBudget, SynGuard, classify_oserror, connect_timeout, limit_resends

MAX_REDIRECTS = 5
_REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
# The keys of the dict that asyncio asks `_ssl` for at every verified handshake
# (getpeercert(), kept in the transport's extra info). `_ssl` interns each key as it builds the
# dict; a key nothing else holds dies with the dict and is interned again at the next handshake,
# each time in a new slot of the interpreter's table of interned strings (a freed slot is only
# reclaimed when the table is rebuilt). The rebuild sizes the table for the strings alive then,
# twice the start-up size here: a one-off +0.9 MiB step of RSS a quarter of an hour into the
# soak (bench/diag, DIAG_MEM=1), from "notBefore" and "notAfter" alone. Held here, they stay
# interned: no new slots, no rebuild.
CERT_KEYS = tuple(
    sys.intern(k)
    for k in (
        "subject",
        "issuer",
        "version",
        "serialNumber",
        "notBefore",
        "notAfter",
        "subjectAltName",
        "OCSP",
        "caIssuers",
        "crlDistributionPoints",
    )
)

_USER_AGENT = f"dprk-outage-monitor/{__version__} (outage monitoring; one request per interval)"

# min_tls_version -> OpenSSL's protocol floor.
_TLS_FLOOR: dict[str, ssl.TLSVersion] = {
    "1.0": ssl.TLSVersion.TLSv1,
    "1.1": ssl.TLSVersion.TLSv1_1,
    "1.2": ssl.TLSVersion.TLSv1_2,
    "1.3": ssl.TLSVersion.TLSv1_3,
}
assert tuple(_TLS_FLOOR) == TLS_VERSIONS
# Below TLS 1.2: every cipher that authenticates the server and encrypts (no aNULL: a cipher
# without a certificate would pass a verifying context unverified; no eNULL), PSK and SRP left
# out as they need keys we do not have. Level 0 is what TLS 1.0/1.1's MD5+SHA-1 handshake
# signatures need on OpenSSL 3 (at level 1 ECDHE-RSA on TLS 1.0 fails with
# LEGACY_SIGALG_DISALLOWED_OR_UNSUPPORTED); this build has no RC4 or 3DES left to offer.
_LEGACY_CIPHERS = "ALL:!aNULL:!eNULL:!PSK:!SRP:@SECLEVEL=0"
# Servers that old may predate RFC 5746 (secure renegotiation), which OpenSSL 3 refuses by
# default; we never renegotiate, so the attack it guards against has nothing to inject into.
_OP_LEGACY_SERVER_CONNECT = 0x4  # ssl.OP_LEGACY_SERVER_CONNECT from Python 3.12 on
# OpenSSL's reasons for "no protocol version in common".
_PROTOCOL_REASONS = frozenset(
    {
        "TLSV1_ALERT_PROTOCOL_VERSION",
        "UNSUPPORTED_PROTOCOL",
        "WRONG_SSL_VERSION",
        "VERSION_TOO_LOW",
        "NO_PROTOCOLS_AVAILABLE",
    }
)

# The (URL host, address) pin of the probe running in the current task. A context variable rather
# than shared state: concurrent probes that pin the same host name to different addresses each
# see their own pin, because every asyncio task runs in its own copy of the context.
_PIN: contextvars.ContextVar[tuple[str, IPAddress] | None] = contextvars.ContextVar(
    "http_pin", default=None
)
# Where the TLS handshake of the current probe's connections writes what it learned.
_TLS_SINK: contextvars.ContextVar[dict[str, object] | None] = contextvars.ContextVar(
    "http_tls_sink", default=None
)


class _PinningResolver(AbstractResolver):
    """Answers the pinned host with the pinned address; everything else goes to the system."""

    def __init__(self) -> None:
        self._system = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        pin = _PIN.get()
        if pin is not None and _norm_host(host) == pin[0]:
            addr = pin[1]
            fam = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
            return [
                ResolveResult(
                    hostname=host,
                    host=str(addr),
                    port=port,
                    family=fam,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
            ]
        return await self._system.resolve(host, port, family)

    async def close(self) -> None:
        await self._system.close()


def _norm_host(host: str | None) -> str:
    return (host or "").rstrip(".").lower()


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def may_follow(current: URL, nxt: URL) -> bool:
    """Whether a redirect from `current` to `nxt` stays on the site (see the module docstring)."""
    if nxt.scheme not in ("http", "https") or _norm_host(nxt.host) != _norm_host(current.host):
        return False
    if nxt.scheme == current.scheme:
        return nxt.port == current.port
    return current.scheme == "http" and nxt.scheme == "https" and nxt.port == 443


class _Outcome:
    """What the fetch learned so far; kept outside the fetch so a timeout does not lose it."""

    __slots__ = ("end", "extra", "guards", "problem", "status")

    def __init__(self, end: float = 0.0) -> None:
        self.extra: dict[str, object] = {"redirects": 0, "bytes": 0}
        self.status: int | None = None
        self.problem: str | None = None
        self.end = end  # time.monotonic() at which the probe ends
        self.guards: list[SynGuard] = []  # one per connection opened (SYN budget)

    def stop_guards(self) -> bool:
        """Stop watching; True if a guard gave a connect up for want of budget."""
        for g in self.guards:
            g.stop()
        return any(g.gave_up for g in self.guards)


# The probe whose connections the socket factory is opening (set only with a SYN budget).
_CONNECTING: contextvars.ContextVar[_Outcome | None] = contextvars.ContextVar(
    "http_connecting", default=None
)


class HttpProber:
    """One shared aiohttp session; a fresh connection per request (no pooling across probes).

    Pooling is off on purpose: a probe must prove the server reachable now, not reuse a socket
    opened minutes ago, and a pooled socket must never carry a request for a different pin.
    """

    def __init__(self, acquire: SynBudget | None = None) -> None:
        # With `acquire` a connect waits up to the timeout, each SYN resend budgeted (tcp.py).
        self.acquire = acquire
        self._session: aiohttp.ClientSession | None = None
        # One context per (tls_verify, ca_file, min_tls_version): building one per probe
        # costs more than the handshake (the system roots are parsed again each time).
        self._ssl_contexts: dict[tuple[bool, str | None, str], ssl.SSLContext] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                resolver=_PinningResolver(),
                use_dns_cache=False,  # a cached answer would outlive the pin of its request
                force_close=True,
                limit=0,  # the scheduler bounds concurrency; queueing here would fake timeouts
                socket_factory=None if self.acquire is None else self._guarded_socket,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,  # probe directly, never through an environment proxy
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None),  # the probe's own deadline rules
                headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "gzip, deflate"},
            )
        return self._session

    def _guarded_socket(self, addr_info: tuple[object, ...]) -> socket.socket:
        """aiohappyeyeballs' socket, watched by a SynGuard while it connects."""
        family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
        assert isinstance(family, int) and isinstance(type_, int) and isinstance(proto, int)
        sock = socket.socket(family, type_, proto)
        out = _CONNECTING.get()
        if out is not None and self.acquire is not None:
            try:
                limit_resends(sock)
                out.guards.append(SynGuard(sock, self.acquire, out.end))
            except BaseException:
                sock.close()
                raise
        return sock

    def _ssl_for(self, target: HttpTarget) -> ssl.SSLContext:
        key = (target.tls_verify, target.ca_file, target.min_tls_version)
        ctx = self._ssl_contexts.get(key)
        if ctx is None:
            ctx = build_ssl_context(*key)
            self._ssl_contexts[key] = ctx
        return ctx

    async def probe(self, target: Target, timeout: float) -> ProbeResult:
        if not isinstance(target, HttpTarget):
            return wrong_kind(target, Kind.HTTP)
        started = now()
        t0 = time.perf_counter()
        try:
            ssl_arg = self._ssl_for(target)
        except (OSError, ValueError) as e:  # unreadable/invalid CA file: not the target's fault
            return ProbeResult.failure(target, started, Reason.OTHER, _short(f"ca_file: {e}"))
        out = _Outcome(time.monotonic() + timeout)
        deadline = asyncio.timeout(timeout)
        connecting = _CONNECTING.set(out if self.acquire is not None else None)
        try:
            async with deadline:
                await self._fetch(target, ssl_arg, out, timeout)
        except (aiohttp.ClientError, OSError, ValueError) as e:
            no_budget = out.stop_guards()
            if deadline.expired():  # an error raised while being cancelled is still our timeout
                reason, detail = Reason.TIMEOUT, f"no complete answer in {timeout:g}s"
            elif no_budget and isinstance(e, aiohttp.ClientConnectorError):
                reason, detail = Reason.TIMEOUT, "no SYN-ACK and no budget for a SYN resend"
            else:
                reason, detail = _classify(e)
                refused = _ssl_error(e)
                if refused is not None and refused.reason in _PROTOCOL_REASONS:
                    floor = f"TLS {target.min_tls_version}"
                    detail = f"tls: no TLS version in common at or above {floor}: {refused}"
            release_tracebacks(e)  # aiohttp's and aiohappyeyeballs' frames hold it again
            return ProbeResult.failure(target, started, reason, _short(detail), out.extra)
        finally:
            out.stop_guards()
            _CONNECTING.reset(connecting)
        rtt = time.perf_counter() - t0
        if out.problem is not None:
            return ProbeResult.failure(target, started, Reason.HTTP_STATUS, out.problem, out.extra)
        if out.status not in target.expect_status:
            detail = f"status {out.status}, expected {sorted(target.expect_status)}"
            return ProbeResult.failure(target, started, Reason.HTTP_STATUS, detail, out.extra)
        return ProbeResult.success(target, started, rtt, out.extra)

    async def _fetch(
        self, target: HttpTarget, ssl_arg: ssl.SSLContext, out: _Outcome, timeout: float
    ) -> None:
        session = self._get_session()
        # Without a SYN budget a connect must end before the kernel's first SYN resend (tcp.py).
        syn_limit = None if self.acquire is not None else connect_timeout(timeout)
        connect_limit = aiohttp.ClientTimeout(total=None, sock_connect=syn_limit)
        url = URL(target.url)
        home = _norm_host(url.host)
        pin = target.address
        token = _PIN.set((home, pin) if pin is not None else None)
        sink_token = _TLS_SINK.set(out.extra)
        try:
            for hop in range(MAX_REDIRECTS + 1):
                request_url, headers, server_hostname = url, None, None
                if pin is not None and _is_ip_literal(home):
                    # No resolver runs for an address, so the pin is applied to the URL itself;
                    # the server still sees (and TLS still checks) the URL's own host.
                    request_url = url.with_host(str(pin))
                    headers = {aiohttp.hdrs.HOST: url.host_port_subcomponent or home}
                    if url.scheme == "https":
                        server_hostname = url.host
                # Each hop opens a new connection: its SYN must not outlive SYN_LIMIT (tcp.py).
                async with session.get(
                    request_url,
                    allow_redirects=False,
                    ssl=ssl_arg,
                    timeout=connect_limit,
                    headers=headers,
                    server_hostname=server_hostname,
                ) as resp:
                    out.status = resp.status
                    out.extra["status"] = resp.status
                    location = resp.headers.get(aiohttp.hdrs.LOCATION)
                    if resp.status in _REDIRECT_CODES and location:
                        nxt = url.join(URL(location))
                        if not may_follow(url, nxt):
                            out.extra["location"] = str(nxt)
                            return  # off-site: judged by the 3xx itself, never followed
                        if hop == MAX_REDIRECTS:
                            out.problem = f"more than {MAX_REDIRECTS} redirects on {home}"
                            return
                        out.extra["redirects"] = hop + 1
                        url = nxt
                        continue
                    if resp.status in target.expect_status:
                        await _read_capped(resp, target.max_body, out)
                    return
        finally:
            _TLS_SINK.reset(sink_token)
            _PIN.reset(token)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._ssl_contexts.clear()


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, out: _Outcome) -> None:
    # Counted, not kept: memory stays at aiohttp's read buffer whatever the server sends.
    n = 0
    while n < cap:
        chunk = await resp.content.read(min(_CHUNK, cap - n))
        if not chunk:
            out.extra["truncated"] = False
            return
        n += len(chunk)
        out.extra["bytes"] = n
    # Reached the cap: stop here. Ending exactly at the cap counts as truncated too, unless the
    # stream already knows it is over.
    out.extra["truncated"] = not resp.content.at_eof()


def build_ssl_context(verify: bool, ca_file: str | None, min_version: str) -> ssl.SSLContext:
    """The client context of one (tls_verify, ca_file, min_tls_version); see the module docstring.

    Raises OSError or ValueError for an unreadable or invalid CA file.
    """
    if verify:
        ctx = ssl.create_default_context()
        if ca_file is not None:
            ctx.load_verify_locations(cafile=ca_file)  # added to the system roots
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # SNI is still sent
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    floor = _TLS_FLOOR[min_version]
    with warnings.catch_warnings():
        # Python deprecates the names TLSv1 and TLSv1_1; talking to such servers is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = floor
    legacy = floor < ssl.TLSVersion.TLSv1_2
    if legacy:
        ctx.set_ciphers(_LEGACY_CIPHERS)
        ctx.options |= _OP_LEGACY_SERVER_CONNECT
    # Level 0 dropped the chain's strength floor too: a verifying context puts it back.
    ctx.sslobject_class = _StrengthCheckedSSLObject if verify and legacy else _RecordingSSLObject
    return ctx


class _RecordingSSLObject(ssl.SSLObject):
    """Notes the protocol, the cipher and the peer certificate's expiry the moment the
    handshake completes.

    aiohttp hands the connection back to its pool (and drops it from the response) as soon as a
    short body has arrived, so the certificate cannot be read from the response afterwards.
    The handshake runs in transport callbacks, which carry a copy of the probing task's
    context: `_TLS_SINK` there is the running probe's `extra`.
    """

    def do_handshake(self) -> None:
        super().do_handshake()
        sink = _TLS_SINK.get()
        if sink is None:
            return
        if (version := self.version()) is not None:
            sink["tls_version"] = version
        if (cipher := self.cipher()) is not None:
            sink["tls_cipher"] = cipher[0]
        if (not_after := _not_after(self)) is not None:
            sink["tls_not_after"] = not_after


class _StrengthCheckedSSLObject(_RecordingSSLObject):
    """Refuses, after OpenSSL verified it, a chain that security level 2 would have refused.

    The error is the one OpenSSL raises for it (a certificate verification error, so the probe
    fails TLS_ERROR with "certificate: ..."); the handshake is complete but no byte of the
    request has been sent.
    """

    def do_handshake(self) -> None:
        super().do_handshake()
        chain = _verified_chain(self)
        why = (
            "the verified chain is not available to check its strength"
            if chain is None
            else certtime.chain_weakness(chain)
        )
        if why is not None:
            err = ssl.SSLCertVerificationError(
                1, f"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {why}"
            )
            err.reason = "CERTIFICATE_VERIFY_FAILED"
            err.library = "SSL"
            err.verify_message = why
            raise err


def _verified_chain(sslobj: ssl.SSLObject) -> list[bytes] | None:
    """The DER certificates of the verified chain, leaf first, trust anchor last."""
    public = getattr(sslobj, "get_verified_chain", None)  # Python >= 3.13
    if public is not None:
        return [bytes(c) for c in public()]
    # 3.10 to 3.12 have it on the private object only, as certificate objects.
    private = getattr(getattr(sslobj, "_sslobj", None), "get_verified_chain", None)
    if private is None:
        return None
    return [bytes(c.public_bytes(_ENCODING_DER)) for c in private()]


_ENCODING_DER = 2  # _ssl.ENCODING_DER


def _not_after(sslobj: ssl.SSLObject) -> float | None:
    # The DER form, verified chain or not: the decoded form is a dict of the whole certificate
    # built per probe (and its keys interned) for one field.
    der = sslobj.getpeercert(binary_form=True)
    return None if der is None else certtime.not_after(der)


def _classify(exc: BaseException) -> tuple[Reason, str]:
    # Order matters: aiohttp's TLS errors are also connector errors, which are also OSErrors.
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return Reason.TLS_ERROR, f"certificate: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError | ssl.SSLError | ssl.CertificateError):
        return Reason.TLS_ERROR, f"tls: {exc}"
    if isinstance(exc, aiohttp.ServerFingerprintMismatch):
        return Reason.TLS_ERROR, "certificate fingerprint mismatch"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return Reason.DNS_ERROR, f"resolve: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return classify_oserror(exc.os_error)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return Reason.TIMEOUT, "no SYN-ACK before the kernel would resend the SYN"
    if isinstance(exc, TimeoutError):  # aiohttp's ServerTimeoutError included
        return Reason.TIMEOUT, "timed out"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return Reason.OTHER, "server closed the connection without a response"
    if isinstance(exc, aiohttp.ClientResponseError):
        return Reason.OTHER, f"bad response: {exc.message}"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return Reason.OTHER, f"bad body: {exc}"
    if isinstance(exc, OSError):
        return classify_oserror(exc)
    return Reason.OTHER, f"{type(exc).__name__}: {exc}"


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """OpenSSL's own error inside one aiohttp wrapped (whose classes are SSLErrors too)."""
    inner = exc.os_error if isinstance(exc, aiohttp.ClientConnectorError) else exc
    return inner if isinstance(inner, ssl.SSLError) and inner.reason is not None else None


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"

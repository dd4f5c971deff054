"""HTTP prober against real servers on loopback: pinning, Host/SNI, TLS, redirects, deadlines."""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from aiohttp import web
from cryptography import x509
from yarl import URL

from monitor.probes import http
from monitor.probes.base import HttpTarget, Reason, TcpTarget
from monitor.probes.http import MAX_REDIRECTS, HttpProber, may_follow
from monitor.probes.tcp import SYN_LIMIT
from tests.netns_util import netns_unavailable, run_in_netns

V4 = ipaddress.ip_address("127.0.0.1")
V6 = ipaddress.ip_address("::1")


@dataclass
class Site:
    """A running test site and what it saw."""

    port: int
    hosts: list[str] = field(default_factory=list)  # Host header of every request
    sni: list[str | None] = field(default_factory=list)  # TLS server name of every handshake
    paths: list[str] = field(default_factory=list)


def build_app(site: Site, off_site_url: str = "http://127.0.0.1:9/") -> web.Application:
    async def record(request: web.Request) -> None:
        site.hosts.append(request.headers.get("Host", ""))
        site.paths.append(request.path)

    async def root(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="hello from the site")

    async def status(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=int(request.match_info["code"]))

    async def big(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=b"x" * 100_000)

    async def redirect(request: web.Request) -> web.Response:
        await record(request)
        where = {
            "relative": "/",
            "absolute": f"{request.scheme}://{request.headers['Host']}/",
            "to-https": f"https://{request.host.split(':')[0]}:{request.query.get('port', '')}/",
            "to-https-default": f"https://{request.host.split(':')[0]}/",
            "other-port": f"http://{request.host.split(':')[0]}:{request.query.get('port', '')}/",
            "off-site": off_site_url,
            "loop": "/redirect/loop",
        }[request.match_info["kind"]]
        return web.Response(status=302, headers={"Location": where})

    app = web.Application()
    app.router.add_get("/", root)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/big", big)
    app.router.add_get("/redirect/{kind}", redirect)
    return app


SiteFactory = Callable[..., Awaitable[Site]]


@pytest.fixture
async def start_site() -> AsyncIterator[SiteFactory]:
    """Starts aiohttp sites on loopback port 0 (optionally TLS with a given cert); stops them all."""
    runners: list[web.AppRunner] = []

    async def start(
        cert: trustme.LeafCert | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        off_site_url: str = "http://127.0.0.1:9/",
        app: web.Application | None = None,
    ) -> Site:
        site = Site(port=0)
        ctx: ssl.SSLContext | None = None
        if cert is not None:
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            cert.configure_cert(ctx)

            def on_sni(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
                site.sni.append(name)

            ctx.sni_callback = on_sni
        runner = web.AppRunner(app or build_app(site, off_site_url), access_log=None)
        await runner.setup()
        runners.append(runner)
        await web.TCPSite(runner, host, port, ssl_context=ctx).start()
        site.port = runner.addresses[0][1]
        return site

    yield start
    for r in runners:
        await r.cleanup()


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[RawHandler], Awaitable[int]]]:
    """A hand-written TCP server on 127.0.0.1:0 for misbehaviour aiohttp's server won't produce."""
    servers: list[asyncio.Server] = []
    writers: set[asyncio.StreamWriter] = set()
    handlers: set[asyncio.Task[None]] = set()

    async def start(handler: RawHandler) -> int:
        async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.add(writer)
            handlers.add(asyncio.current_task())  # type: ignore[arg-type]
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        srv = await asyncio.start_server(wrapped, "127.0.0.1", 0)
        servers.append(srv)
        return int(srv.sockets[0].getsockname()[1])

    yield start
    for s in servers:
        s.close()
    # Closing the connections ends every handler (EOF or is_closing()); let them finish rather
    # than be cancelled at loop teardown, which 3.11's start_server logs as an error.
    for w in writers:
        w.close()
    pending = [t for t in handlers if not t.done()]
    if pending:
        await asyncio.wait(pending, timeout=2.0)
    for s in servers:
        await s.wait_closed()


@pytest.fixture
async def prober() -> AsyncIterator[HttpProber]:
    p = HttpProber()
    yield p
    await p.close()


def pinned(url: str, **kw: object) -> HttpTarget:
    return HttpTarget(url, address=V4, **kw)  # type: ignore[arg-type]


# -- pinning, Host and SNI ------------------------------------------------------------------


async def test_pinned_https_sends_url_host_as_host_and_sni(
    prober: HttpProber,
    start_site: SiteFactory,
    site: str,
    site_cert: trustme.LeafCert,
    ca_file: str,
) -> None:
    """Pinned to 127.0.0.1, the request carries the URL's Host header and SNI, and verifies."""
    srv = await start_site(site_cert)
    before = time.time()
    res = await prober.probe(pinned(f"https://{site}:{srv.port}/", ca_file=ca_file), 2.0)
    assert res.ok, res
    assert srv.hosts == [f"{site}:{srv.port}"]
    assert srv.sni == [site]
    assert res.extra["status"] == 200
    assert res.extra["bytes"] == len("hello from the site")
    assert res.extra["truncated"] is False
    assert res.rtt is not None and 0 < res.rtt < 2.0
    assert before <= res.started <= time.time()


async def test_tls_not_after_matches_the_certificate(
    prober: HttpProber,
    start_site: SiteFactory,
    site: str,
    site_cert: trustme.LeafCert,
    ca_file: str,
) -> None:
    """extra["tls_not_after"] is the server certificate's notAfter, in epoch seconds."""
    srv = await start_site(site_cert)
    res = await prober.probe(pinned(f"https://{site}:{srv.port}/", ca_file=ca_file), 2.0)
    cert = x509.load_pem_x509_certificate(site_cert.cert_chain_pems[0].bytes())
    assert res.extra["tls_not_after"] == cert.not_valid_after_utc.timestamp()


async def test_pinned_http_sends_url_host(
    prober: HttpProber, start_site: SiteFactory, site: str
) -> None:
    """Plain HTTP: pinned connection, Host header from the URL, no TLS facts."""
    srv = await start_site()
    res = await prober.probe(pinned(f"http://{site}:{srv.port}/"), 2.0)
    assert res.ok, res
    assert srv.hosts == [f"{site}:{srv.port}"]
    assert "tls_not_after" not in res.extra


async def test_pin_is_honoured_for_an_ip_literal_url(
    prober: HttpProber, start_site: SiteFactory
) -> None:
    """An IP-literal URL with a pin connects to the pin and sends the literal as Host."""
    srv = await start_site()  # on 127.0.0.1 only: 127.0.0.2 refuses
    url = f"http://127.0.0.2:{srv.port}/redirect/relative"
    res = await prober.probe(HttpTarget(url, address=V4, expect_status=frozenset({200})), 2.0)
    assert res.ok, res
    assert res.extra["redirects"] == 1
    assert srv.hosts == [f"127.0.0.2:{srv.port}"] * 2


async def test_pinned_https_ip_literal_checks_the_literal(
    prober: HttpProber, start_site: SiteFactory, ca: trustme.CA, ca_file: str
) -> None:
    """HTTPS to an IP-literal URL on a pin verifies the certificate against the literal."""
    srv = await start_site(ca.issue_cert("127.0.0.2"))
    res = await prober.probe(
        HttpTarget(f"https://127.0.0.2:{srv.port}/", address=V4, ca_file=ca_file), 2.0
    )
    assert res.ok, res
    assert srv.hosts == [f"127.0.0.2:{srv.port}"]
    wrong = await start_site(ca.issue_cert("127.0.0.3"))
    res = await prober.probe(
        HttpTarget(f"https://127.0.0.2:{wrong.port}/", address=V4, ca_file=ca_file), 2.0
    )
    assert res.reason is Reason.TLS_ERROR, res


async def test_a_target_of_another_kind_is_a_failed_probe(prober: HttpProber) -> None:
    """Given a TCP target, probe() returns a failed `other` result instead of raising."""
    res = await prober.probe(TcpTarget(V4, 80), 1.0)
    assert (res.ok, res.reason) == (False, Reason.OTHER)


async def test_unpinned_ip_literal_url(prober: HttpProber, start_site: SiteFactory) -> None:
    """Without a pin the URL's own host is used (an IP literal needs no resolution)."""
    srv = await start_site()
    res = await prober.probe(HttpTarget(f"http://127.0.0.1:{srv.port}/"), 2.0)
    assert res.ok, res
    assert srv.hosts == [f"127.0.0.1:{srv.port}"]


async def test_same_host_pinned_to_two_addresses_concurrently(
    prober: HttpProber, start_site: SiteFactory, site: str, ipv6_loopback: bool
) -> None:
    """Concurrent probes pinning one host name to different addresses each reach their own."""
    if not ipv6_loopback:
        pytest.skip("needs ::1 for a second loopback address")

    def app_answering(code: int) -> web.Application:
        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(0.05)  # keep requests in flight together
            return web.Response(status=code)

        app = web.Application()
        app.router.add_get("/", slow)
        return app

    v4 = await start_site(app=app_answering(200))
    try:
        await start_site(host="::1", port=v4.port, app=app_answering(203))
    except OSError:
        pytest.skip("the same port is taken on ::1")
    url = f"http://{site}:{v4.port}/"
    to_v4 = HttpTarget(url, address=V4, expect_status=frozenset({200}))
    to_v6 = HttpTarget(url, address=V6, expect_status=frozenset({203}))
    results = await asyncio.gather(*(prober.probe(t, 2.0) for t in [to_v4, to_v6] * 8))
    assert all(r.ok for r in results), [r for r in results if not r.ok]
    assert [r.extra["status"] for r in results] == [200, 203] * 8


# -- TLS failures -----------------------------------------------------------------------------


async def test_unknown_ca_is_tls_error(
    prober: HttpProber,
    start_site: SiteFactory,
    site: str,
    site_cert: trustme.LeafCert,
    other_ca_file: str,
) -> None:
    """A certificate from a CA we do not trust is TLS_ERROR."""
    srv = await start_site(site_cert)
    res = await prober.probe(pinned(f"https://{site}:{srv.port}/", ca_file=other_ca_file), 2.0)
    assert not res.ok
    assert res.reason is Reason.TLS_ERROR


async def test_certificate_for_another_name_is_tls_error(
    prober: HttpProber, start_site: SiteFactory, site_cert: trustme.LeafCert, ca_file: str
) -> None:
    """A trusted certificate that does not name the URL's host is TLS_ERROR."""
    srv = await start_site(site_cert)
    res = await prober.probe(pinned(f"https://rodong.rep.kp:{srv.port}/", ca_file=ca_file), 2.0)
    assert not res.ok
    assert res.reason is Reason.TLS_ERROR
    assert srv.sni == ["rodong.rep.kp"]


async def test_tls_verify_off_accepts_and_still_records_expiry(
    prober: HttpProber,
    start_site: SiteFactory,
    site: str,
    site_cert: trustme.LeafCert,
    other_ca_file: str,
) -> None:
    """tls_verify=False accepts an untrusted certificate and still reports its notAfter."""
    srv = await start_site(site_cert)
    t = pinned(f"https://{site}:{srv.port}/", ca_file=other_ca_file, tls_verify=False)
    res = await prober.probe(t, 2.0)
    assert res.ok, res
    cert = x509.load_pem_x509_certificate(site_cert.cert_chain_pems[0].bytes())
    assert res.extra["tls_not_after"] == cert.not_valid_after_utc.timestamp()


async def test_tls_to_a_plain_http_server_is_tls_error(
    prober: HttpProber, start_site: SiteFactory, site: str, ca_file: str
) -> None:
    """A handshake the server cannot speak (HTTPS to a plain HTTP port) is TLS_ERROR."""
    srv = await start_site()
    res = await prober.probe(pinned(f"https://{site}:{srv.port}/", ca_file=ca_file), 2.0)
    assert not res.ok
    assert res.reason is Reason.TLS_ERROR, res


async def test_missing_ca_file_is_a_failure_not_an_exception(prober: HttpProber, site: str) -> None:
    """An unreadable ca_file gives OTHER without sending anything."""
    res = await prober.probe(pinned(f"https://{site}:1/", ca_file="/nonexistent/ca.pem"), 2.0)
    assert not res.ok
    assert res.reason is Reason.OTHER
    assert "ca_file" in res.detail


# -- status and redirects ------------------------------------------------------------------


async def test_unexpected_status_is_http_status(
    prober: HttpProber, start_site: SiteFactory, site: str
) -> None:
    """A status outside expect_status is HTTP_STATUS with the status in detail and extra."""
    srv = await start_site()
    res = await prober.probe(pinned(f"http://{site}:{srv.port}/status/503"), 2.0)
    assert not res.ok
    assert res.reason is Reason.HTTP_STATUS
    assert "503" in res.detail
    assert res.extra["status"] == 503


async def test_expected_status_set_is_honoured(
    prober: HttpProber, start_site: SiteFactory, site: str
) -> None:
    """Any status listed in expect_status is a success, even a 404."""
    srv = await start_site()
    t = pinned(f"http://{site}:{srv.port}/status/404", expect_status=frozenset({404}))
    res = await prober.probe(t, 2.0)
    assert res.ok, res


@pytest.mark.parametrize("kind", ["relative", "absolute"])
async def test_on_site_redirect_is_followed_on_the_pin(
    prober: HttpProber, start_site: SiteFactory, site: str, kind: str
) -> None:
    """A redirect that stays on the URL's host is followed (still pinned), judged by the end."""
    srv = await start_site()
    t = pinned(f"http://{site}:{srv.port}/redirect/{kind}", expect_status=frozenset({200}))
    res = await prober.probe(t, 2.0)
    assert res.ok, res
    assert res.extra["redirects"] == 1
    assert srv.paths == [f"/redirect/{kind}", "/"]
    assert srv.hosts == [f"{site}:{srv.port}"] * 2


async def test_redirect_to_https_on_another_port_is_not_followed(
    prober: HttpProber,
    start_site: SiteFactory,
    site: str,
    site_cert: trustme.LeafCert,
    ca_file: str,
) -> None:
    """http -> https on the same host but not on port 443 is not followed: the 302 is judged."""
    tls = await start_site(site_cert)
    plain = await start_site()
    t = pinned(f"http://{site}:{plain.port}/redirect/to-https?port={tls.port}", ca_file=ca_file)
    res = await prober.probe(t, 2.0)
    assert res.ok, res
    assert res.extra["status"] == 302 and res.extra["redirects"] == 0
    assert res.extra["location"] == f"https://{site}:{tls.port}/"
    assert tls.sni == [] and tls.hosts == []


async def test_same_host_redirect_to_another_port_is_not_followed(
    prober: HttpProber, start_site: SiteFactory, site: str
) -> None:
    """A redirect to the same host on another port is not followed; the 3xx itself is judged."""
    other = await start_site()
    srv = await start_site()
    url = f"http://{site}:{srv.port}/redirect/other-port?port={other.port}"
    res = await prober.probe(pinned(url, expect_status=frozenset({200})), 2.0)
    assert (res.ok, res.reason, res.extra["status"]) == (False, Reason.HTTP_STATUS, 302)
    assert res.detail == "status 302, expected [200]"
    assert res.extra["location"] == f"http://{site}:{other.port}/"
    assert other.hosts == []


@pytest.mark.parametrize(
    ("current", "nxt", "follow"),
    [
        ("http://h.kp/a", "http://h.kp/b", True),
        ("http://h.kp:8080/a", "http://H.KP.:8080/b", True),  # host compared case- and dot-blind
        ("https://h.kp/", "https://h.kp:443/x", True),  # explicit default port
        ("http://h.kp/", "https://h.kp/", True),  # the upgrade
        ("http://h.kp:8080/", "https://h.kp/", True),  # the upgrade, to its default port
        ("http://h.kp/", "https://h.kp:8443/", False),  # an upgrade, but to another port
        ("http://h.kp/", "http://h.kp:8080/", False),
        ("http://h.kp:8080/", "http://h.kp/", False),
        ("https://h.kp/", "http://h.kp/", False),  # never downgrade
        ("https://h.kp:8443/", "https://h.kp/", False),
        ("http://h.kp/", "http://www.h.kp/", False),
        ("http://h.kp/", "ftp://h.kp/", False),
        ("http://175.45.176.71/", "http://175.45.176.71/x", True),
        ("http://175.45.176.71/", "http://175.45.176.72/", False),
    ],
)
def test_redirect_rule(current: str, nxt: str, follow: bool) -> None:
    """Follow only the same scheme, host and port, or http -> https on 443 of the same host."""
    assert may_follow(URL(current), URL(nxt)) is follow


def test_on_site_upgrade_to_https_on_443_is_followed(
    site: str, site_cert: trustme.LeafCert, ca_file: str
) -> None:
    """http://site:8080/ -> https://site/ (443) is followed on the pin, with TLS facts from it.

    In a throw-away network namespace, where this test may listen on 127.0.0.1:443.
    """
    if (why := netns_unavailable()) is not None:
        pytest.skip(why)

    async def body() -> tuple[bool, int, int, list[str | None], bool]:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        site_cert.configure_cert(ctx)
        seen = Site(port=443)

        def on_sni(_obj: ssl.SSLObject, name: str | None, _ctx: ssl.SSLContext) -> None:
            seen.sni.append(name)

        ctx.sni_callback = on_sni
        runners = []
        for port, tls in ((8080, None), (443, ctx)):
            runner = web.AppRunner(build_app(seen), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
            runners.append(runner)
        prober = HttpProber()
        target = pinned(
            f"http://{site}:8080/redirect/to-https-default",
            ca_file=ca_file,
            expect_status=frozenset({200}),
        )
        res = await prober.probe(target, 2.0)
        await prober.close()
        for runner in runners:
            await runner.cleanup()
        redirects = res.extra["redirects"]
        assert isinstance(redirects, int)
        return (
            res.ok,
            int(str(res.extra["status"])),
            redirects,
            seen.sni,
            "tls_not_after" in res.extra,
        )

    assert run_in_netns(body) == (True, 200, 1, [site], True)


async def test_off_site_redirect_is_not_followed(
    prober: HttpProber, start_site: SiteFactory, site: str
) -> None:
    """A redirect to another host is never followed; the 3xx itself is judged."""
    elsewhere = await start_site()
    off_url = f"http://127.0.0.1:{elsewhere.port}/"
    srv = await start_site(off_site_url=off_url)
    url = f"http://{site}:{srv.port}/redirect/off-site"
    res = await prober.probe(pinned(url), 2.0)  # default expect_status includes 302
    assert res.ok, res
    assert res.extra["status"] == 302
    assert res.extra["location"] == off_url
    res = await prober.probe(pinned(url, expect_status=frozenset({200})), 2.0)
    assert not res.ok
    assert res.reason is Reason.HTTP_STATUS
    assert elsewhere.hosts == []


async def test_redirect_loop_stops(prober: HttpProber, start_site: SiteFactory, site: str) -> None:
    """An on-site redirect loop stops after MAX_REDIRECTS with HTTP_STATUS."""
    srv = await start_site()
    res = await prober.probe(pinned(f"http://{site}:{srv.port}/redirect/loop"), 2.0)
    assert not res.ok
    assert res.reason is Reason.HTTP_STATUS
    assert "redirects" in res.detail
    assert len(srv.paths) == MAX_REDIRECTS + 1


# -- body cap and deadlines ----------------------------------------------------------------


async def test_body_read_stops_at_max_body(
    prober: HttpProber, start_site: SiteFactory, site: str
) -> None:
    """A body longer than max_body is read up to the cap only: success, marked truncated."""
    srv = await start_site()
    res = await prober.probe(pinned(f"http://{site}:{srv.port}/big", max_body=10_000), 2.0)
    assert res.ok, res
    assert res.extra["bytes"] == 10_000
    assert res.extra["truncated"] is True


async def _read_request(reader: asyncio.StreamReader) -> None:
    await reader.readuntil(b"\r\n\r\n")


async def test_endless_fast_body_is_capped_success(
    prober: HttpProber, raw_server: Callable[[RawHandler], Awaitable[int]], site: str
) -> None:
    """An endless body sent fast is cut at max_body: success, truncated, bounded memory."""

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n")
        chunk = b"y" * 16384
        while not writer.is_closing():
            writer.write(chunk)
            await writer.drain()

    port = await raw_server(endless)
    t0 = time.perf_counter()
    res = await prober.probe(pinned(f"http://{site}:{port}/", max_body=200_000), 30.0)
    assert res.ok, res
    assert res.extra["bytes"] == 200_000
    assert res.extra["truncated"] is True
    assert time.perf_counter() - t0 < 10.0, "cut at max_body, not read until the 30 s timeout"


async def test_dribbled_endless_body_is_timeout(
    prober: HttpProber, raw_server: Callable[[RawHandler], Awaitable[int]], site: str
) -> None:
    """A body that neither ends nor reaches max_body before the deadline is TIMEOUT, on time."""

    async def dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
        while not writer.is_closing():
            writer.write(b"z")
            await writer.drain()
            await asyncio.sleep(0.02)

    port = await raw_server(dribble)
    t0 = time.perf_counter()
    res = await prober.probe(pinned(f"http://{site}:{port}/"), 0.3)
    assert not res.ok
    assert res.reason is Reason.TIMEOUT
    assert res.extra["status"] == 200
    assert 0.25 <= time.perf_counter() - t0 < 10.0, "at the timeout (upper bound: not a hang)"


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_server_that_never_answers_is_timeout(
    prober: HttpProber,
    raw_server: Callable[[RawHandler], Awaitable[int]],
    site: str,
    ca_file: str,
    scheme: str,
) -> None:
    """Accepting but never sending headers (or a TLS hello) is TIMEOUT, within the timeout."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the prober gives up and closes

    port = await raw_server(hang)
    t0 = time.perf_counter()
    res = await prober.probe(pinned(f"{scheme}://{site}:{port}/", ca_file=ca_file), 0.3)
    assert not res.ok
    assert res.reason is Reason.TIMEOUT
    assert 0.25 <= time.perf_counter() - t0 < 10.0, "at the timeout (upper bound: not a hang)"


async def test_connection_closed_without_response_is_other(
    prober: HttpProber, raw_server: Callable[[RawHandler], Awaitable[int]], site: str
) -> None:
    """A server that reads the request and hangs up is OTHER, not a timeout or a success."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)

    port = await raw_server(hang_up)
    res = await prober.probe(pinned(f"http://{site}:{port}/"), 2.0)
    assert not res.ok
    assert res.reason is Reason.OTHER


async def test_refused_port_is_refused(prober: HttpProber, site: str, closed_tcp_port: int) -> None:
    """Nothing listening on the pinned address and port: REFUSED."""
    res = await prober.probe(pinned(f"http://{site}:{closed_tcp_port}/"), 2.0)
    assert not res.ok
    assert res.reason is Reason.REFUSED


async def test_close_then_reuse(prober: HttpProber, start_site: SiteFactory, site: str) -> None:
    """close() releases the session; a later probe opens a new one."""
    srv = await start_site()
    assert (await prober.probe(pinned(f"http://{site}:{srv.port}/"), 2.0)).ok
    await prober.close()
    await prober.close()
    assert (await prober.probe(pinned(f"http://{site}:{srv.port}/"), 2.0)).ok


async def test_silent_syn_gives_up_before_the_kernel_resends(
    prober: HttpProber, full_backlog: int, closed_tcp_port: int, site: str
) -> None:
    """With a long timeout, a connection whose SYN is never answered ends at SYN_LIMIT, before
    the kernel's first SYN resend (1 s): TIMEOUT, so no packet escapes the rate limiter."""
    # Warm up first (session, TLS context with the system roots): only the connect is timed.
    await prober.probe(pinned(f"http://{site}:{closed_tcp_port}/"), 30.0)
    t0 = time.perf_counter()
    res = await prober.probe(pinned(f"http://{site}:{full_backlog}/"), 30.0)
    elapsed = time.perf_counter() - t0
    assert res.reason is Reason.TIMEOUT and "SYN" in res.detail
    # Given up at SYN_LIMIT (< 1 s, tcp.py), not at the 30 s timeout; a bound just above
    # SYN_LIMIT would flake when a loaded machine fires the timer late.
    assert SYN_LIMIT - 0.05 <= elapsed < 10.0


def test_the_keys_of_a_decoded_certificate_stay_interned(
    site_cert: trustme.LeafCert, tmp_path: Path
) -> None:
    # asyncio decodes the peer's certificate at every verified handshake; each key of that dict
    # must be the string the module holds, not one interned anew (and freed) per handshake.
    pem = tmp_path / "leaf.pem"
    site_cert.cert_chain_pems[0].write_to_path(str(pem))
    decoded = ssl._ssl._test_decode_cert(str(pem))  # type: ignore[attr-defined]
    assert {"subject", "issuer", "notBefore", "notAfter"} <= set(decoded)
    for key in decoded:
        assert any(key is held for held in http.CERT_KEYS), key

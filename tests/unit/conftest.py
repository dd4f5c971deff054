"""Shared fixtures for the prober tests: a test CA and certificates, loopback-only helpers.

Everything here binds to 127.0.0.1 (or ::1) on port 0; no test packet leaves the host.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
from collections.abc import AsyncIterator, Iterator

import pytest
import trustme

from tests.unit.dnsserver import FakeDnsServer
from tests.virtual_time import scheduler_on_loop_clock

SITE = "www.kcna.kp"
# A fixed, recognisable expiry so the recorded tls_not_after can be checked exactly.
CERT_NOT_AFTER = dt.datetime(2031, 7, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="session")
def site() -> str:
    """The host name the HTTPS tests serve and pin to 127.0.0.1."""
    return SITE


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """The CA the tests' HTTPS servers are signed by."""
    return trustme.CA()


@pytest.fixture(scope="session")
def other_ca() -> trustme.CA:
    """A CA that signed nothing the servers present: trusting only it must fail verification."""
    return trustme.CA()


@pytest.fixture(scope="session")
def site_cert(ca: trustme.CA) -> trustme.LeafCert:
    """The site's certificate, signed by `ca`, expiring at CERT_NOT_AFTER."""
    return ca.issue_cert(SITE, not_after=CERT_NOT_AFTER)


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`ca` as a PEM bundle, as a target's ca_file."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="session")
def other_ca_file(other_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`other_ca` as a PEM bundle."""
    path = tmp_path_factory.mktemp("other-ca") / "ca.pem"
    other_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def closed_tcp_port() -> Iterator[int]:
    """A loopback port that is bound but not listening: connects to it get an RST, every time."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    try:
        yield s.getsockname()[1]
    finally:
        s.close()


@pytest.fixture
def ipv6_loopback() -> bool:
    """Whether ::1 can be bound here (some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
async def dns_server() -> AsyncIterator[FakeDnsServer]:
    """A fake authoritative server for kp. on 127.0.0.1; tests switch its `mode`."""
    srv = await FakeDnsServer().start()
    try:
        yield srv
    finally:
        await srv.stop()


@pytest.fixture
async def full_backlog() -> AsyncIterator[int]:
    """A listener that never accepts, with its accept queue filled: new SYNs are dropped.

    Linux drops a SYN when the accept queue is full (no RST), so a connect to this port hangs
    until the client gives up: a real timeout without leaving loopback.
    """
    loop = asyncio.get_running_loop()
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(16):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                await asyncio.wait_for(loop.sock_connect(s, ("127.0.0.1", port)), 0.2)
            except TimeoutError:
                s.close()
                break  # the queue is full: this connect already hung
            fillers.append(s)
        else:
            pytest.skip("accept queue never filled up on this kernel")
        yield port
    finally:
        for s in fillers:
            s.close()
        srv.close()


@pytest.fixture
def vclock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler reads the running loop's clock (virtual in a `virtual_test`)."""
    scheduler_on_loop_clock(monkeypatch)

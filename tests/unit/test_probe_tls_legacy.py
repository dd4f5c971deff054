"""HTTP prober against real TLS 1.0/1.1-only servers on loopback: up, version exported, floors,
and `tls_verify: true` exactly as strict as Python's default context."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import threading
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from monitor.probes import http
from monitor.probes.base import HttpTarget, Reason
from monitor.probes.http import HttpProber

SITE = "legacy.kcna.kp"
LOOPBACK = ipaddress.ip_address("127.0.0.1")
TLS1 = (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1)
TLS1_1 = (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1)
TLS1_2 = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
MODERN = (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.MAXIMUM_SUPPORTED)
# The suites of kcna.kp's kind of server (and of the simulated world's LEGACY_TLS): RSA key
# exchange, and ECDHE-RSA, whose TLS 1.0 handshake signature (MD5+SHA-1) needs security level 0.
LEGACY_SUITES = ("AES128-SHA", "ECDHE-RSA-AES128-SHA")


@pytest.fixture(scope="module")
def rsa_ca() -> trustme.CA:
    """An RSA CA (TLS 1.0's RSA key exchange needs an RSA leaf)."""
    return trustme.CA(key_type=trustme.KeyType.RSA)


@pytest.fixture(scope="module")
def rsa_ca_file(rsa_ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> str:
    """`rsa_ca` as a target's ca_file."""
    path = tmp_path_factory.mktemp("rsa-ca") / "ca.pem"
    rsa_ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def legacy_cert(rsa_ca: trustme.CA) -> trustme.LeafCert:
    """The legacy site's RSA certificate for SITE, signed by `rsa_ca`."""
    return rsa_ca.issue_cert(SITE, key_type=trustme.KeyType.RSA)


def server_context(
    versions: tuple[ssl.TLSVersion, ssl.TLSVersion], ciphers: str = "AES128-SHA"
) -> ssl.SSLContext:
    """A server context speaking only `versions` with `ciphers`, as an old server would."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Level 0 before loading: the level also decides which certificates the server may load.
    ctx.set_ciphers(f"{ciphers}:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSVersion.TLSv1 is deprecated
        ctx.minimum_version, ctx.maximum_version = versions
    return ctx


Serve = Callable[[ssl.SSLContext], int]
_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nkcna"


class TlsSite:
    """A blocking TLS server in a thread, one connection at a time, like an old web server:
    a refused handshake gets OpenSSL's alert on the wire (asyncio's server resets instead)."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    with self.ctx.wrap_socket(conn, server_side=True) as tls:
                        head = b""
                        while b"\r\n\r\n" not in head and (chunk := tls.recv(4096)):
                            head += chunk
                        tls.sendall(_RESPONSE)
                        # close_notify, as a web server sends: without it the client's
                        # transport waits for one and outlives the test's event loop.
                        tls.unwrap()
                except OSError:  # ssl.SSLError included: the client refused, or we did
                    pass

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Starts TLS sites with a given server context on 127.0.0.1:0; returns the port."""
    sites: list[TlsSite] = []

    def start(ctx: ssl.SSLContext) -> int:
        sites.append(TlsSite(ctx))
        return sites[-1].port

    yield start
    for site in sites:
        site.stop()
    # The server's side is closed now and its close_notify or FIN is in the client's socket:
    # a few loop turns let the client's TLS transports finish closing before the loop ends.
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.fixture
async def prober() -> AsyncIterator[HttpProber]:
    """A prober, closed after the test."""
    p = HttpProber()
    yield p
    await p.close()


def target(port: int, **kw: object) -> HttpTarget:
    return HttpTarget(f"https://{SITE}:{port}/", address=LOOPBACK, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("verify", [True, False], ids=["verify", "no-verify"])
@pytest.mark.parametrize("suite", LEGACY_SUITES)
async def test_tls10_only_site_is_up_and_exports_its_version(
    serve: Serve,
    prober: HttpProber,
    legacy_cert: trustme.LeafCert,
    rsa_ca_file: str,
    suite: str,
    verify: bool,
) -> None:
    """A TLS 1.0-only site with an old suite answers up, verified or not, with version and suite."""
    ctx = server_context(TLS1, suite)
    legacy_cert.configure_cert(ctx)
    port = serve(ctx)
    t = target(port, tls_verify=verify, ca_file=rsa_ca_file if verify else None)
    res = await prober.probe(t, 5.0)
    assert res.ok, res.detail
    assert res.extra["tls_version"] == "TLSv1"
    assert res.extra["tls_cipher"] == suite
    assert isinstance(res.extra["tls_not_after"], float)


async def test_tls11_only_site_is_up_as_tlsv1_1(
    serve: Serve, prober: HttpProber, legacy_cert: trustme.LeafCert, rsa_ca_file: str
) -> None:
    """A TLS 1.1-only site answers up (verified) and its version reads TLSv1.1."""
    ctx = server_context(TLS1_1, "ECDHE-RSA-AES256-SHA")
    legacy_cert.configure_cert(ctx)
    res = await prober.probe(target(serve(ctx), ca_file=rsa_ca_file), 5.0)
    assert res.ok, res.detail
    assert (res.extra["tls_version"], res.extra["tls_cipher"]) == (
        "TLSv1.1",
        "ECDHE-RSA-AES256-SHA",
    )


async def test_modern_site_still_negotiates_tls13(
    serve: Serve, prober: HttpProber, legacy_cert: trustme.LeafCert, rsa_ca_file: str
) -> None:
    """Accepting TLS 1.0 takes nothing away from a modern server: it still gets TLS 1.3."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    legacy_cert.configure_cert(ctx)
    res = await prober.probe(target(serve(ctx), ca_file=rsa_ca_file), 5.0)
    assert res.ok, res.detail
    assert res.extra["tls_version"] == "TLSv1.3"


@pytest.mark.parametrize(
    ("versions", "floor"),
    [(TLS1, "1.2"), (TLS1, "1.1"), (TLS1_1, "1.2"), (TLS1_2, "1.3")],
    ids=[
        "tls1.0-site-min-1.2",
        "tls1.0-site-min-1.1",
        "tls1.1-site-min-1.2",
        "tls1.2-site-min-1.3",
    ],
)
async def test_site_below_min_tls_version_fails_tls_error_naming_the_floor(
    serve: Serve,
    prober: HttpProber,
    legacy_cert: trustme.LeafCert,
    rsa_ca_file: str,
    versions: tuple[ssl.TLSVersion, ssl.TLSVersion],
    floor: str,
) -> None:
    """A server below the target's min_tls_version fails tls_error, the detail naming the floor."""
    suites = "AES128-SHA" if versions != TLS1_2 else "ECDHE-RSA-AES128-GCM-SHA256"
    ctx = server_context(versions, suites)
    legacy_cert.configure_cert(ctx)
    t = target(serve(ctx), ca_file=rsa_ca_file, min_tls_version=floor)
    res = await prober.probe(t, 5.0)
    assert not res.ok
    assert res.reason == Reason.TLS_ERROR
    assert res.detail.startswith(f"tls: no TLS version in common at or above TLS {floor}: [SSL: ")


async def test_min_tls_version_at_the_servers_version_is_up(
    serve: Serve, prober: HttpProber, legacy_cert: trustme.LeafCert, rsa_ca_file: str
) -> None:
    """min_tls_version 1.1 accepts a TLS 1.1-only site: the floor is inclusive."""
    ctx = server_context(TLS1_1)
    legacy_cert.configure_cert(ctx)
    t = target(serve(ctx), ca_file=rsa_ca_file, min_tls_version="1.1")
    res = await prober.probe(t, 5.0)
    assert res.ok, res.detail
    assert res.extra["tls_version"] == "TLSv1.1"


async def test_verify_refuses_a_wrong_host_on_a_legacy_site(
    serve: Serve, prober: HttpProber, rsa_ca: trustme.CA, rsa_ca_file: str
) -> None:
    """tls_verify on a TLS 1.0 site still checks the name: another host's certificate fails."""
    ctx = server_context(TLS1)
    rsa_ca.issue_cert("www.example.org", key_type=trustme.KeyType.RSA).configure_cert(ctx)
    res = await prober.probe(target(serve(ctx), ca_file=rsa_ca_file), 5.0)
    assert not res.ok
    assert res.reason == Reason.TLS_ERROR
    assert "Hostname mismatch" in res.detail, res.detail


async def test_verify_refuses_an_untrusted_ca_on_a_legacy_site(
    serve: Serve, prober: HttpProber, legacy_cert: trustme.LeafCert, tmp_path: Path
) -> None:
    """tls_verify on a TLS 1.0 site still checks the chain: a CA we do not trust fails."""
    ctx = server_context(TLS1)
    legacy_cert.configure_cert(ctx)
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    res = await prober.probe(target(serve(ctx), ca_file=str(other)), 5.0)
    assert not res.ok
    assert res.reason == Reason.TLS_ERROR
    assert "unable to get local issuer certificate" in res.detail, res.detail


# --- the chain's strength floor (security level 2) stays with tls_verify ---------------------

_NOW = dt.datetime.now(dt.UTC)
_SHA256_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")  # sha256WithRSAEncryption, NULL
_SHA1_RSA = bytes.fromhex("300d06092a864886f70d0101050500")  # sha1WithRSAEncryption, NULL


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _sign(builder: x509.CertificateBuilder, key: rsa.RSAPrivateKey, sha1: bool) -> x509.Certificate:
    """Signs with SHA-256, or with SHA-1 by hand (cryptography no longer signs certificates
    with SHA-1, and old sites still have such chains)."""
    cert = builder.sign(key, hashes.SHA256())
    if not sha1:
        return cert
    tbs = cert.tbs_certificate_bytes
    assert tbs.count(_SHA256_RSA) == 1
    tbs = tbs.replace(_SHA256_RSA, _SHA1_RSA)  # the same length: no length to fix
    sig = key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    bits = b"\x00" + sig
    body = tbs + _SHA1_RSA + b"\x03" + _der_len(len(bits)) + bits
    return x509.load_der_x509_certificate(b"\x30" + _der_len(len(body)) + body)


def _cert(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None,
    sha1: bool = False,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    ca = subject != SITE
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOW - dt.timedelta(days=1))
        .not_valid_after(_NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
        b = b.add_extension(usage, critical=True)
    else:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(SITE)]), critical=False)
    return _sign(b, issuer[1] if issuer else key, sha1)


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _key(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.fixture(scope="module")
def keys() -> dict[int, rsa.RSAPrivateKey]:
    """One RSA key per size (generating them is the slow part)."""
    return {1024: _key(1024), 2048: _key(2048)}


def _chain_site(
    tmp: Path,
    keys: dict[int, rsa.RSAPrivateKey],
    root_sha1: bool = False,
    mid_bits: int | None = None,
    leaf_bits: int = 2048,
    leaf_sha1: bool = False,
) -> tuple[ssl.SSLContext, str]:
    """A TLS 1.0-only server context with root -> [intermediate ->] leaf, and the root's file."""
    root_key = keys[2048]
    root = _cert("Legacy Root", root_key, None, sha1=root_sha1)
    issuer, chain = (root, root_key), []
    if mid_bits is not None:
        mid = _cert("Legacy Intermediate", keys[mid_bits], issuer)
        issuer, chain = (mid, keys[mid_bits]), [mid]
    leaf_key = keys[leaf_bits]
    leaf = _cert(SITE, leaf_key, issuer, sha1=leaf_sha1)
    (tmp / "root.pem").write_bytes(_pem(root))
    (tmp / "chain.pem").write_bytes(_pem(leaf, *chain))
    (tmp / "key.pem").write_bytes(
        leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    ctx = server_context(TLS1)
    ctx.load_cert_chain(str(tmp / "chain.pem"), str(tmp / "key.pem"))
    return ctx, str(tmp / "root.pem")


@pytest.mark.parametrize(
    ("chain", "why"),
    [
        ({"leaf_bits": 1024}, "EE certificate key too weak"),
        ({"leaf_sha1": True}, "CA signature digest algorithm too weak"),
        ({"mid_bits": 1024}, "CA certificate key too weak"),
    ],
    ids=["1024-bit-leaf", "sha1-signed-leaf", "1024-bit-intermediate"],
)
async def test_verify_refuses_a_weak_chain_unverified_takes_it(
    serve: Serve,
    prober: HttpProber,
    keys: dict[int, rsa.RSAPrivateKey],
    tmp_path: Path,
    chain: dict[str, int | bool],
    why: str,
) -> None:
    """Level 0 for TLS 1.0 does not loosen tls_verify: a chain level 2 refuses still fails,
    in OpenSSL's words; with tls_verify false the same site is up."""
    ctx, root = _chain_site(tmp_path, keys, **chain)  # type: ignore[arg-type]
    port = serve(ctx)
    res = await prober.probe(target(port, ca_file=root), 5.0)
    assert not res.ok
    assert res.reason == Reason.TLS_ERROR
    assert (
        res.detail
        == f"certificate: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: {why}"
    )
    unverified = await prober.probe(target(port, tls_verify=False), 5.0)
    assert unverified.ok, unverified.detail
    assert unverified.extra["tls_version"] == "TLSv1"


async def test_verify_accepts_a_sha1_signed_trust_anchor(
    serve: Serve, prober: HttpProber, keys: dict[int, rsa.RSAPrivateKey], tmp_path: Path
) -> None:
    """As in OpenSSL, the trust anchor's own signature is not judged: a SHA-1 root is fine."""
    ctx, root = _chain_site(tmp_path, keys, root_sha1=True, mid_bits=2048)
    res = await prober.probe(target(serve(ctx), ca_file=root), 5.0)
    assert res.ok, res.detail


async def test_one_context_per_verify_ca_and_floor(
    serve: Serve,
    prober: HttpProber,
    legacy_cert: trustme.LeafCert,
    rsa_ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SSL contexts are built once per (tls_verify, ca_file, min_tls_version), not per probe."""
    built: list[tuple[bool, str | None, str]] = []
    real = http.build_ssl_context

    def counting(verify: bool, ca_file: str | None, min_version: str) -> ssl.SSLContext:
        built.append((verify, ca_file, min_version))
        return real(verify, ca_file, min_version)

    monkeypatch.setattr(http, "build_ssl_context", counting)
    ctx = server_context(TLS1)
    legacy_cert.configure_cert(ctx)
    port = serve(ctx)
    kinds = [
        target(port, ca_file=rsa_ca_file),
        target(port, ca_file=rsa_ca_file, min_tls_version="1.2"),
        target(port, tls_verify=False),
    ]
    for _ in range(3):
        for t in kinds:
            await prober.probe(t, 5.0)
    assert built == [(True, rsa_ca_file, "1.0"), (True, rsa_ca_file, "1.2"), (False, None, "1.0")]

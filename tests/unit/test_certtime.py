"""certtime.not_after against cryptography's parser, and on bytes that are not certificates."""

from __future__ import annotations

import datetime as dt
import functools

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.probes.certtime import not_after


@functools.cache
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _cert(not_before: dt.datetime, expires: dt.datetime, cn: str = "www.kcna.kp") -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(_key().public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(expires)
        .sign(_key(), hashes.SHA256())
    )
    return cert.public_bytes(Encoding.DER)


def test_trustme_leaf_certificate() -> None:
    expires = dt.datetime(2031, 7, 1, 12, 0, 0, tzinfo=dt.UTC)
    leaf = trustme.CA().issue_cert("www.kcna.kp", not_after=expires)
    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(Encoding.DER)
    assert not_after(der) == expires.timestamp()


# cryptography writes UTCTime up to 2049 and GeneralizedTime from 2050 on: both are covered.
_times = st.datetimes(min_value=dt.datetime(1951, 1, 1), max_value=dt.datetime(9998, 12, 31)).map(
    lambda t: t.replace(microsecond=0, tzinfo=dt.UTC)
)


# X.520 caps a common name at 64 UTF-8 bytes and cryptography enforces it; 16 characters of at
# most 4 bytes each always fit, and an issuer plus subject of that size already needs long-form
# DER lengths.
_cns = st.text(min_size=1, max_size=16).filter(lambda s: "\x00" not in s) | st.just("k" * 64)


@settings(max_examples=150, deadline=None)
@given(expires=_times, cn=_cns)
def test_matches_cryptography(expires: dt.datetime, cn: str) -> None:
    der = _cert(dt.datetime(1950, 1, 1, tzinfo=dt.UTC), expires, cn)
    assert not_after(der) == x509.load_der_x509_certificate(der).not_valid_after_utc.timestamp()


def _der(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        return bytes([tag, n]) + value
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(raw)]) + raw + value


def test_version_1_certificate_without_version_field() -> None:
    validity = _der(0x30, _der(0x17, b"200101000000Z") + _der(0x17, b"491231235959Z"))
    tbs = _der(
        0x30,
        _der(0x02, b"\x01") + _der(0x30, b"") + _der(0x30, b"") + validity + _der(0x30, b""),
    )
    der = _der(0x30, tbs + _der(0x30, b"") + _der(0x03, b"\x00"))
    assert not_after(der) == dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC).timestamp()


def test_utctime_before_1950_window() -> None:
    # RFC 5280: YY >= 50 is 19YY.
    validity = _der(0x30, _der(0x17, b"500101000000Z") + _der(0x17, b"991231000000Z"))
    tbs = _der(0x30, _der(0x02, b"\x01") + _der(0x30, b"") + _der(0x30, b"") + validity)
    assert not_after(_der(0x30, tbs)) == dt.datetime(1999, 12, 31, tzinfo=dt.UTC).timestamp()


def test_bad_time_values() -> None:
    for tag, text in [
        (0x17, b"491331000000Z"),  # month 13
        (0x17, b"4912310000Z"),  # too short
        (0x17, b"491231000000+0100"),  # offsets are not DER
        (0x18, b"20491231000000.5Z"),  # fractions are not allowed in certificates
        (0x13, b"491231000000Z"),  # not a time type
    ]:
        validity = _der(0x30, _der(0x17, b"200101000000Z") + _der(tag, text))
        tbs = _der(0x30, _der(0x02, b"\x01") + _der(0x30, b"") + _der(0x30, b"") + validity)
        assert not_after(_der(0x30, tbs)) is None, text


def test_truncated_certificate_is_none() -> None:
    der = _cert(dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    for cut in range(len(der)):
        assert not_after(der[:cut]) is None


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_garbage_never_raises(data: bytes) -> None:
    assert not_after(data) is None or isinstance(not_after(data), float)


@settings(max_examples=300, deadline=None)
@given(pos=st.integers(min_value=0), value=st.integers(min_value=0, max_value=255))
def test_corrupted_certificate_never_raises(pos: int, value: int) -> None:
    der = bytearray(
        _cert(dt.datetime(2020, 1, 1, tzinfo=dt.UTC), dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
    )
    der[pos % len(der)] = value
    result = not_after(bytes(der))
    assert result is None or isinstance(result, float)

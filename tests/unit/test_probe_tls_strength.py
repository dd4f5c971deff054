"""certtime.strength / chain_weakness: OpenSSL 3's security bits of keys and signatures, read
from DER without a crypto library, and level 2's verdict on a verified chain."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.x509.oid import NameOID

from monitor.probes import certtime

_NOW = dt.datetime.now(dt.UTC)
Digest = hashes.SHA224 | hashes.SHA256 | hashes.SHA384 | hashes.SHA512
Key = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | dsa.DSAPrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


def _der(key: Key, digest: Digest | None, pss: bool = False) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(_NOW)
        .not_valid_after(_NOW + dt.timedelta(days=1))
    )
    if pss:
        assert isinstance(key, rsa.RSAPrivateKey) and digest is not None
        pad = padding.PSS(padding.MGF1(digest), 32)
        return b.sign(key, digest, rsa_padding=pad).public_bytes(serialization.Encoding.DER)
    return b.sign(key, digest).public_bytes(serialization.Encoding.DER)


def _rsa(bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


@pytest.fixture(scope="module")
def rsa_keys() -> dict[int, rsa.RSAPrivateKey]:
    """RSA keys of the sizes on either side of OpenSSL's thresholds."""
    return {bits: _rsa(bits) for bits in (1024, 2048, 3072)}


@pytest.mark.parametrize(("bits", "secbits"), [(1024, 80), (2048, 112), (3072, 128)])
def test_rsa_key_bits_follow_openssl(
    rsa_keys: dict[int, rsa.RSAPrivateKey], bits: int, secbits: int
) -> None:
    """RSA keys count as OpenSSL's BN_security_bits says: 1024 -> 80, 2048 -> 112, 3072 -> 128."""
    assert certtime.strength(_der(rsa_keys[bits], hashes.SHA256())) == (secbits, 128)


@pytest.mark.parametrize(
    ("curve", "secbits"),
    [(ec.SECP192R1(), 80), (ec.SECP224R1(), 112), (ec.SECP256R1(), 128), (ec.SECP521R1(), 256)],
    ids=["p192", "p224", "p256", "p521"],
)
def test_ec_key_bits_follow_openssl(curve: ec.EllipticCurve, secbits: int) -> None:
    """EC keys count as OpenSSL rounds the curve's order: P-192 80 ... P-521 256."""
    key = ec.generate_private_key(curve)
    assert certtime.strength(_der(key, hashes.SHA384())) == (secbits, 192)


def test_edwards_and_dsa_keys() -> None:
    """Ed25519/Ed448 keys and signatures are 128/224 bits; a 2048-bit DSA key with a 256-bit q
    is 112."""
    assert certtime.strength(_der(ed25519.Ed25519PrivateKey.generate(), None)) == (128, 128)
    assert certtime.strength(_der(ed448.Ed448PrivateKey.generate(), None)) == (224, 224)
    key = dsa.generate_private_key(2048)
    assert certtime.strength(_der(key, hashes.SHA256())) == (112, 128)


@pytest.mark.parametrize(
    ("digest", "secbits"),
    [(hashes.SHA224(), 112), (hashes.SHA256(), 128), (hashes.SHA512(), 256)],
    ids=["sha224", "sha256", "sha512"],
)
def test_signature_bits_are_the_digests(
    rsa_keys: dict[int, rsa.RSAPrivateKey], digest: Digest, secbits: int
) -> None:
    """A signature counts its digest's size x 4, for PKCS#1 v1.5 and RSA-PSS alike."""
    key = rsa_keys[2048]
    assert certtime.strength(_der(key, digest)) == (112, secbits)
    assert certtime.strength(_der(key, digest, pss=True)) == (112, secbits)


def _with_sig_oid(der: bytes, old: str, new: str) -> bytes:
    """The certificate with its signature algorithm OID swapped (same encoded length)."""
    a, b = bytes.fromhex(old), bytes.fromhex(new)
    assert len(a) == len(b) and der.count(a) == 2  # in the TBS and in the outer structure
    return der.replace(a, b)


SHA256_RSA = "06092a864886f70d01010b"
SHA1_RSA = "06092a864886f70d010105"
MD5_RSA = "06092a864886f70d010104"


@pytest.mark.parametrize(("oid", "secbits"), [(SHA1_RSA, 64), (MD5_RSA, 39)], ids=["sha1", "md5"])
def test_sha1_and_md5_signatures_count_below_80(
    rsa_keys: dict[int, rsa.RSAPrivateKey], oid: str, secbits: int
) -> None:
    """SHA-1 and MD5 signatures count 64 and 39 bits, as OpenSSL marks them broken."""
    der = _with_sig_oid(_der(rsa_keys[2048], hashes.SHA256()), SHA256_RSA, oid)
    assert certtime.strength(der) == (112, secbits)


def test_not_a_certificate_is_none() -> None:
    """Garbage, a truncated certificate or an unknown signature algorithm give None."""
    der = _der(_rsa(2048), hashes.SHA256())
    assert certtime.strength(b"") is None
    assert certtime.strength(b"\x30\x03\x02\x01\x00") is None
    assert certtime.strength(der[:-10]) is None
    assert certtime.strength(_with_sig_oid(der, SHA256_RSA, "06092a864886f70d0101ff")) is None


def test_chain_weakness_applies_level_2(rsa_keys: dict[int, rsa.RSAPrivateKey]) -> None:
    """Every key needs 112 bits; every signature but the trust anchor's too; unknown is refused."""
    good = _der(rsa_keys[2048], hashes.SHA256())
    weak_key = _der(rsa_keys[1024], hashes.SHA256())
    sha1 = _with_sig_oid(good, SHA256_RSA, SHA1_RSA)
    assert certtime.chain_weakness([good, good, good]) is None
    assert certtime.chain_weakness([weak_key, good]) == "EE certificate key too weak"
    assert certtime.chain_weakness([good, weak_key]) == "CA certificate key too weak"
    assert certtime.chain_weakness([sha1, good]) == "CA signature digest algorithm too weak"
    assert certtime.chain_weakness([good, sha1, good]) == "CA signature digest algorithm too weak"
    assert certtime.chain_weakness([good, sha1]) is None  # the trust anchor's own signature
    assert certtime.chain_weakness([good, b"junk"]) == (
        "certificate 1 of the chain has a key or signature type not understood"
    )

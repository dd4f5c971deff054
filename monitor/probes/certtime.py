"""notAfter, and key and signature strength, of a DER-encoded X.509 certificate, without a
crypto library (strength: see "key and signature strength" below).

The HTTP prober records when a site's certificate expires even when it did not verify the chain
(then `ssl` hands over only the DER bytes). Reading one field does not justify `cryptography`,
which costs ~8 MiB of resident memory on import, an eighth of the daemon's budget. The walk
below follows RFC 5280 4.1: Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version
OPTIONAL, serialNumber, signature, issuer, validity SEQUENCE { notBefore, notAfter }, ... } }.
Anything malformed gives None, never an exception: the bytes come from the network.
"""

from __future__ import annotations

import calendar

_SEQUENCE = 0x30
_VERSION = 0xA0  # [0] EXPLICIT, constructed
_UTC_TIME = 0x17
_GENERALIZED_TIME = 0x18


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int] | None:
    """(tag, start of value, end of value) of the element at `pos`, inside buf[:end]."""
    if pos + 2 > end:
        return None
    tag, first = buf[pos], buf[pos + 1]
    if tag & 0x1F == 0x1F:  # multi-byte tags never occur in the fields we walk
        return None
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > end:  # indefinite length is not DER
            return None
        length = int.from_bytes(buf[pos : pos + n], "big")
        pos += n
    if pos + length > end:
        return None
    return tag, pos, pos + length


def _time(tag: int, text: bytes) -> float | None:
    """Epoch seconds of a UTCTime (YYMMDDHHMMSSZ) or GeneralizedTime (YYYYMMDDHHMMSSZ)."""
    if not text.endswith(b"Z") or not text[:-1].isdigit():
        return None
    digits = text[:-1].decode("ascii")
    if tag == _UTC_TIME and len(digits) == 12:
        yy = int(digits[:2])
        year, rest = (1900 + yy if yy >= 50 else 2000 + yy), digits[2:]  # RFC 5280 4.1.2.5.1
    elif tag == _GENERALIZED_TIME and len(digits) == 14:
        year, rest = int(digits[:4]), digits[4:]
    else:
        return None
    month, day, hour, minute, second = (int(rest[i : i + 2]) for i in range(0, 10, 2))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))


def not_after(der: bytes) -> float | None:
    """The certificate's notAfter in epoch seconds, or None if `der` is not a certificate."""
    cert = _tlv(der, 0, len(der))
    if cert is None or cert[0] != _SEQUENCE:
        return None
    tbs = _tlv(der, cert[1], cert[2])
    if tbs is None or tbs[0] != _SEQUENCE:
        return None
    pos, end = tbs[1], tbs[2]
    fields: list[tuple[int, int, int]] = []
    while pos < end and len(fields) < 5:
        el = _tlv(der, pos, end)
        if el is None:
            return None
        fields.append(el)
        pos = el[2]
    if fields and fields[0][0] == _VERSION:
        fields = fields[1:]
    # serialNumber, signature, issuer, validity
    if len(fields) < 4 or fields[3][0] != _SEQUENCE:
        return None
    _, vpos, vend = fields[3]
    not_before = _tlv(der, vpos, vend)
    if not_before is None:
        return None
    after = _tlv(der, not_before[2], vend)
    if after is None or after[0] not in (_UTC_TIME, _GENERALIZED_TIME):
        return None
    return _time(after[0], der[after[1] : after[2]])


# --- key and signature strength ------------------------------------------------------------
#
# Talking to TLS 1.0/1.1 servers needs OpenSSL's security level 0 (their handshake signatures
# use MD5+SHA-1), and OpenSSL has one level for both the handshake and the certificate chain.
# A verifying probe therefore re-applies the chain half of level 2 (Python's default, what
# `tls_verify: true` meant before) itself: `chain_weakness` below, after OpenSSL verified the
# chain. The rules are OpenSSL 3's (crypto/x509/x509_vfy.c check_key_level, check_sig_level;
# crypto/bn BN_security_bits; x509_sig_info_init): every key of the chain, the trust anchor's
# included, and the signature of every certificate but the trust anchor's need the bits.

LEVEL2_BITS = 112

_OID = 0x06
_INTEGER = 0x02
_BIT_STRING = 0x03
_HASH_PARAM = 0xA0  # RSASSA-PSS-params hashAlgorithm [0] EXPLICIT


def _oid(dotted: str) -> bytes:
    """The DER content bytes of an object identifier."""
    arcs = [int(a) for a in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        while arc > 0x7F:
            arc >>= 7
            chunk.append(0x80 | (arc & 0x7F))
        out += bytes(reversed(chunk))
    return bytes(out)


def _table(entries: dict[str, int]) -> dict[bytes, int]:
    return {_oid(k): v for k, v in entries.items()}


# Digest security bits: the digest size x 4, except SHA-1 and MD5 that are known broken.
_HASH_BITS = _table(
    {
        "1.2.840.113549.2.5": 39,  # md5
        "1.3.14.3.2.26": 64,  # sha1
        "2.16.840.1.101.3.4.2.4": 112,  # sha224
        "2.16.840.1.101.3.4.2.1": 128,  # sha256
        "2.16.840.1.101.3.4.2.2": 192,  # sha384
        "2.16.840.1.101.3.4.2.3": 256,  # sha512
        "2.16.840.1.101.3.4.2.5": 112,  # sha512-224
        "2.16.840.1.101.3.4.2.6": 128,  # sha512-256
        "2.16.840.1.101.3.4.2.7": 112,  # sha3-224
        "2.16.840.1.101.3.4.2.8": 128,  # sha3-256
        "2.16.840.1.101.3.4.2.9": 192,  # sha3-384
        "2.16.840.1.101.3.4.2.10": 256,  # sha3-512
    }
)
_SIG_BITS = _table(
    {
        "1.2.840.113549.1.1.2": 64,  # md2WithRSAEncryption
        "1.2.840.113549.1.1.3": 64,  # md4WithRSAEncryption
        "1.2.840.113549.1.1.4": 39,  # md5WithRSAEncryption
        "1.2.840.113549.1.1.5": 64,  # sha1WithRSAEncryption
        "1.3.14.3.2.29": 64,  # sha1WithRSASignature (OIW)
        "1.2.840.113549.1.1.14": 112,  # sha224WithRSAEncryption
        "1.2.840.113549.1.1.11": 128,  # sha256WithRSAEncryption
        "1.2.840.113549.1.1.12": 192,  # sha384WithRSAEncryption
        "1.2.840.113549.1.1.13": 256,  # sha512WithRSAEncryption
        "1.2.840.10045.4.1": 64,  # ecdsa-with-SHA1
        "1.2.840.10045.4.3.1": 112,  # ecdsa-with-SHA224
        "1.2.840.10045.4.3.2": 128,  # ecdsa-with-SHA256
        "1.2.840.10045.4.3.3": 192,  # ecdsa-with-SHA384
        "1.2.840.10045.4.3.4": 256,  # ecdsa-with-SHA512
        "1.2.840.10040.4.3": 64,  # dsa-with-sha1
        "2.16.840.1.101.3.4.3.1": 112,  # dsa-with-sha224
        "2.16.840.1.101.3.4.3.2": 128,  # dsa-with-sha256
        "2.16.840.1.101.3.4.3.9": 112,  # ecdsa-with-sha3-224
        "2.16.840.1.101.3.4.3.10": 128,  # ecdsa-with-sha3-256
        "2.16.840.1.101.3.4.3.11": 192,  # ecdsa-with-sha3-384
        "2.16.840.1.101.3.4.3.12": 256,  # ecdsa-with-sha3-512
        "2.16.840.1.101.3.4.3.13": 112,  # rsa-with-sha3-224
        "2.16.840.1.101.3.4.3.14": 128,  # rsa-with-sha3-256
        "2.16.840.1.101.3.4.3.15": 192,  # rsa-with-sha3-384
        "2.16.840.1.101.3.4.3.16": 256,  # rsa-with-sha3-512
        "1.3.101.112": 128,  # Ed25519
        "1.3.101.113": 224,  # Ed448
    }
)
_RSA_PSS = _oid("1.2.840.113549.1.1.10")
_RSA_KEYS = frozenset({_oid("1.2.840.113549.1.1.1"), _RSA_PSS})
_DSA_KEY = _oid("1.2.840.10040.4.1")
_EC_KEY = _oid("1.2.840.10045.2.1")
_FIXED_KEY_BITS = _table({"1.3.101.112": 128, "1.3.101.113": 224})  # Ed25519, Ed448
# Named curves: OpenSSL rounds the order's bits down to 80, 112, 128, 192 or 256.
_CURVE_BITS = _table(
    {
        "1.2.840.10045.3.1.1": 80,  # prime192v1
        "1.3.132.0.33": 112,  # secp224r1
        "1.2.840.10045.3.1.7": 128,  # prime256v1
        "1.3.132.0.10": 128,  # secp256k1
        "1.3.132.0.34": 192,  # secp384r1
        "1.3.132.0.35": 256,  # secp521r1
        "1.3.36.3.3.2.8.1.1.7": 128,  # brainpoolP256r1
        "1.3.36.3.3.2.8.1.1.11": 192,  # brainpoolP384r1
        "1.3.36.3.3.2.8.1.1.13": 256,  # brainpoolP512r1
    }
)


def _elements(buf: bytes, pos: int, end: int) -> list[tuple[int, int, int]] | None:
    out: list[tuple[int, int, int]] = []
    while pos < end:
        el = _tlv(buf, pos, end)
        if el is None:
            return None
        out.append(el)
        pos = el[2]
    return out


def _int_bits(buf: bytes, start: int, end: int) -> int:
    while start < end and buf[start] == 0:
        start += 1
    return 0 if start == end else (end - start - 1) * 8 + buf[start].bit_length()


def _modp_bits(bits: int) -> int:
    """BN_security_bits for an RSA modulus or a DSA prime of `bits` bits."""
    for floor, secbits in ((15360, 256), (7680, 192), (3072, 128), (2048, 112), (1024, 80)):
        if bits >= floor:
            return secbits
    return 0


def _alg(der: bytes, el: tuple[int, int, int]) -> tuple[bytes, tuple[int, int, int] | None] | None:
    """(OID content, parameters element or None) of an AlgorithmIdentifier."""
    if el[0] != _SEQUENCE:
        return None
    parts = _elements(der, el[1], el[2])
    if not parts or parts[0][0] != _OID:
        return None
    return der[parts[0][1] : parts[0][2]], parts[1] if len(parts) > 1 else None


def _sig_bits(der: bytes, el: tuple[int, int, int]) -> int | None:
    alg = _alg(der, el)
    if alg is None:
        return None
    oid, params = alg
    if oid != _RSA_PSS:
        return _SIG_BITS.get(oid)
    if params is None or params[0] != _SEQUENCE:
        return None
    fields = _elements(der, params[1], params[2])
    if fields is None:
        return None
    if not fields or fields[0][0] != _HASH_PARAM:
        return _HASH_BITS[_oid("1.3.14.3.2.26")]  # the default hash is SHA-1
    inner = _tlv(der, fields[0][1], fields[0][2])
    hash_alg = None if inner is None else _alg(der, inner)
    return None if hash_alg is None else _HASH_BITS.get(hash_alg[0])


def _key_bits(der: bytes, el: tuple[int, int, int]) -> int | None:
    if el[0] != _SEQUENCE:
        return None
    parts = _elements(der, el[1], el[2])
    if parts is None or len(parts) != 2 or parts[1][0] != _BIT_STRING:
        return None
    alg = _alg(der, parts[0])
    if alg is None:
        return None
    oid, params = alg
    if oid in _FIXED_KEY_BITS:
        return _FIXED_KEY_BITS[oid]
    if oid == _EC_KEY:
        if params is None or params[0] != _OID:
            return None  # explicit curve parameters: not a named curve
        return _CURVE_BITS.get(der[params[1] : params[2]])
    if oid == _DSA_KEY:
        pqg = None if params is None else _elements(der, params[1], params[2])
        if not pqg or len(pqg) != 3 or any(p[0] != _INTEGER for p in pqg):
            return None
        q_half = _int_bits(der, pqg[1][1], pqg[1][2]) // 2
        return 0 if q_half < 80 else min(_modp_bits(_int_bits(der, pqg[0][1], pqg[0][2])), q_half)
    if oid in _RSA_KEYS:
        # BIT STRING: one byte of unused bits, then SEQUENCE { modulus INTEGER, exponent }.
        _, start, end = parts[1]
        rsa = _tlv(der, start + 1, end)
        ints = None if rsa is None or rsa[0] != _SEQUENCE else _elements(der, rsa[1], rsa[2])
        if not ints or ints[0][0] != _INTEGER:
            return None
        return _modp_bits(_int_bits(der, ints[0][1], ints[0][2]))
    return None


def strength(der: bytes) -> tuple[int, int] | None:
    """(security bits of the public key, of the signature), as OpenSSL 3 counts them, or None
    when `der` is not a certificate with a key and a signature algorithm this module knows."""
    cert = _tlv(der, 0, len(der))
    if cert is None or cert[0] != _SEQUENCE:
        return None
    top = _elements(der, cert[1], cert[2])
    if top is None or len(top) != 3 or top[0][0] != _SEQUENCE:
        return None
    tbs = _elements(der, top[0][1], top[0][2])
    if tbs is None:
        return None
    if tbs and tbs[0][0] == _VERSION:
        tbs = tbs[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo
    if len(tbs) < 6:
        return None
    key, sig = _key_bits(der, tbs[5]), _sig_bits(der, top[1])
    return None if key is None or sig is None else (key, sig)


def chain_weakness(chain: list[bytes], min_bits: int = LEVEL2_BITS) -> str | None:
    """Why OpenSSL's security level 2 would refuse this verified chain (leaf first, trust
    anchor last), in OpenSSL's words; None when it would accept it."""
    for i, der in enumerate(chain):
        bits = strength(der)
        if bits is None:
            return f"certificate {i} of the chain has a key or signature type not understood"
        key, sig = bits
        if key < min_bits:
            return "EE certificate key too weak" if i == 0 else "CA certificate key too weak"
        if sig < min_bits and i < len(chain) - 1:
            return "CA signature digest algorithm too weak"
    return None

"""notAfter of a DER-encoded X.509 certificate, without a crypto library.

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

"""Read the few fields ``check --tls`` shows from a DER certificate. Pure: bytes in.

Python's ``ssl`` hands over a parsed certificate only when it was verified; a
self-signed or expired certificate (the ones worth looking at) comes back as DER
bytes. This reads subject, issuer, validity and subjectAltName DNS names from
them (RFC 5280 section 4.1), nothing more, without a cryptography dependency.

    >>> cert = read_certificate(bytes.fromhex(EXAMPLE_HEX))
    >>> cert.subject, cert.not_after
    ('CN=portkit.test', '2035-01-01T00:00:00Z')
"""

from __future__ import annotations

from portkit.errors import ParseError

__all__ = ["CertFields", "read_certificate"]

_NAMES = {
    "2.5.4.3": "CN",
    "2.5.4.6": "C",
    "2.5.4.7": "L",
    "2.5.4.8": "ST",
    "2.5.4.10": "O",
    "2.5.4.11": "OU",
    "1.2.840.113549.1.9.1": "emailAddress",
}
_SAN = "2.5.29.17"


class CertFields:
    """Subject, issuer (``CN=..., O=...``), validity (ISO 8601, UTC) and SAN DNS names."""

    __slots__ = ("issuer", "not_after", "not_before", "san", "subject")

    def __init__(
        self, subject: str, issuer: str, not_before: str, not_after: str, san: tuple[str, ...]
    ) -> None:
        self.subject = subject
        self.issuer = issuer
        self.not_before = not_before
        self.not_after = not_after
        self.san = san


def _bad(what: str) -> ParseError:
    return ParseError(f"bad certificate: {what}", text="<DER>", accepted="an X.509 DER certificate")


def _tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end of content) of the element at ``pos``."""
    if pos + 2 > len(data):
        raise _bad("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise _bad("bad length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    end = pos + length
    if end > len(data):
        raise _bad("truncated")
    return tag, pos, end


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, cs, ce = _tlv(data, start)
        if ce > end:
            raise _bad("element overruns its parent")
        out.append((tag, cs, ce))
        start = ce
    return out


def _oid(raw: bytes) -> str:
    if not raw:
        raise _bad("empty OID")
    parts = [raw[0] // 40, raw[0] % 40]
    value = 0
    for b in raw[1:]:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            parts.append(value)
            value = 0
    return ".".join(map(str, parts))


def _text(tag: int, raw: bytes) -> str:
    if tag == 0x1E:  # BMPString
        return raw.decode("utf-16-be", "replace")
    return raw.decode("utf-8" if tag == 0x0C else "latin-1", "replace")


def _name(data: bytes, start: int, end: int) -> str:
    parts = []
    for _, rs, re_ in _children(data, start, end):  # RDN SETs
        for _, as_, ae in _children(data, rs, re_):  # AttributeTypeAndValue SEQUENCEs
            kids = _children(data, as_, ae)
            if len(kids) != 2 or kids[0][0] != 0x06:
                raise _bad("bad name attribute")
            oid = _oid(data[kids[0][1] : kids[0][2]])
            tag, vs, ve = kids[1]
            parts.append(f"{_NAMES.get(oid, oid)}={_text(tag, data[vs:ve])}")
    return ", ".join(parts)


def _time(tag: int, raw: bytes) -> str:
    text = raw.decode("ascii", "replace")
    if not text[:-1].isdigit() or not text[:-1].isascii():
        raise _bad(f"bad time {text!r}")
    if tag == 0x17 and len(text) == 13:  # UTCTime YYMMDDHHMMSSZ; RFC 5280: YY >= 50 is 19YY
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18 or len(text) != 15:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise _bad(f"bad time {text!r}")
    if not text[:14].isdigit() or text[14] != "Z":
        raise _bad(f"bad time {text!r}")
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}T{text[8:10]}:{text[10:12]}:{text[12:14]}Z"


def _san(data: bytes, start: int, end: int) -> tuple[str, ...]:
    names = []
    for tag, s, e in _children(data, start, end):
        if tag == 0x82:  # dNSName [2] IA5String
            names.append(data[s:e].decode("ascii", "replace"))
        elif tag == 0x87 and e - s in (4, 16):  # iPAddress [7]
            import ipaddress

            names.append(ipaddress.ip_address(data[s:e]).compressed)
    return tuple(names)


def read_certificate(der: bytes) -> CertFields:
    """Subject, issuer, validity and SAN of a DER certificate.

    Raises:
        ParseError: when ``der`` is not a certificate this reader understands.
    """
    tag, cs, ce = _tlv(der, 0)
    if tag != 0x30:
        raise _bad("not a SEQUENCE")
    parts = _children(der, cs, ce)
    if not parts or parts[0][0] != 0x30:
        raise _bad("no tbsCertificate")
    tbs = _children(der, parts[0][1], parts[0][2])
    if tbs and tbs[0][0] == 0xA0:  # [0] EXPLICIT version
        tbs = tbs[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, ...
    if len(tbs) < 6 or any(tbs[i][0] != 0x30 for i in (1, 2, 3, 4, 5)):
        raise _bad("unexpected tbsCertificate layout")
    issuer = _name(der, tbs[2][1], tbs[2][2])
    validity = _children(der, tbs[3][1], tbs[3][2])
    if len(validity) != 2:
        raise _bad("bad validity")
    not_before = _time(validity[0][0], der[validity[0][1] : validity[0][2]])
    not_after = _time(validity[1][0], der[validity[1][1] : validity[1][2]])
    subject = _name(der, tbs[4][1], tbs[4][2])
    san: tuple[str, ...] = ()
    for tag, s, e in tbs[6:]:
        if tag != 0xA3:  # [3] EXPLICIT extensions
            continue
        for _, xs, xe in _children(der, s, e):  # the Extensions SEQUENCE
            for _, es, ee in _children(der, xs, xe):  # each Extension
                kids = _children(der, es, ee)
                if kids and kids[0][0] == 0x06 and _oid(der[kids[0][1] : kids[0][2]]) == _SAN:
                    octets = kids[-1]
                    inner = _tlv(der, octets[1])
                    san = _san(der, inner[1], inner[2])
    return CertFields(subject, issuer, not_before, not_after, san)


# A minimal certificate-shaped DER (signature not valid) for the docstring example.
EXAMPLE_HEX = (
    "30819a"  # Certificate SEQUENCE
    "30818d"  # tbsCertificate
    "a003020102"  # version v3
    "020101"  # serial 1
    "300506032b6570"  # signature AlgorithmIdentifier (ed25519 OID)
    "30173115301306035504030c0c706f72746b69742e74657374"  # issuer CN=portkit.test
    "301e170d3235303130313030303030305a"
    "170d3335303130313030303030305a"  # validity
    "30173115301306035504030c0c706f72746b69742e74657374"  # subject CN=portkit.test
    "302a300506032b6570032100"
    + "00" * 32  # subjectPublicKeyInfo
    + "300506032b6570"  # signatureAlgorithm
    + "030100"  # signature (empty BIT STRING)
)

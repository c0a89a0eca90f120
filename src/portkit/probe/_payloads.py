"""What to send: UDP payloads per port, TCP banner probes, and how to read answers.

A UDP service answers only a datagram it understands, so a scan that sends an
empty datagram to a DNS or SNMP server hears nothing and must say open|filtered.
Like nmap's ``nmap-payloads`` this is a table of well-formed requests for common
services (written here from the protocol RFCs, not copied from nmap). A port
without an entry gets an empty datagram.

Everything here is pure data or a pure function of bytes.

    >>> UDP_PAYLOADS[53].name
    'dns'
    >>> parse_status_line(b"HTTP/1.1 404 Not Found\\r\\n")
    404
    >>> summarize_banner(b"SSH-2.0-OpenSSH_9.6\\r\\n")
    'SSH-2.0-OpenSSH_9.6'
"""

from __future__ import annotations

from portkit.errors import ParseError

__all__ = [
    "HTTP_PROBE",
    "TCP_PROBES",
    "UDP_PAYLOADS",
    "Payload",
    "parse_status_line",
    "summarize_banner",
    "tcp_probe_for",
    "udp_payload_for",
]


class Payload:
    """A named request for one service."""

    __slots__ = ("data", "name")

    def __init__(self, name: str, data: bytes) -> None:
        self.name = name
        self.data = data

    def __repr__(self) -> str:
        return f"Payload({self.name!r}, {len(self.data)} bytes)"


def _tlv(tag: int, content: bytes) -> bytes:
    """One BER type-length-value (short lengths only: our requests are small)."""
    assert len(content) < 128
    return bytes([tag, len(content)]) + content


def _snmp_get_sysdescr(community: bytes) -> bytes:
    # RFC 1157: Message ::= SEQUENCE { version INTEGER (0 = v1), community, GetRequest-PDU }
    oid = _tlv(0x06, bytes([0x2B, 6, 1, 2, 1, 1, 1, 0]))  # 1.3.6.1.2.1.1.1.0 sysDescr.0
    varbind = _tlv(0x30, oid + b"\x05\x00")
    pdu = _tlv(
        0xA0,
        _tlv(0x02, b"\x70\x6b\x34\x34")  # request-id
        + _tlv(0x02, b"\x00")  # error-status
        + _tlv(0x02, b"\x00")  # error-index
        + _tlv(0x30, varbind),
    )
    return _tlv(0x30, _tlv(0x02, b"\x00") + _tlv(0x04, community) + pdu)


def _dns_query(qname: bytes, qtype: int, *, txid: bytes = b"pk", rd: bool = True) -> bytes:
    # RFC 1035 4.1: header (id, flags, qd=1, an=ns=ar=0), then one question.
    flags = b"\x01\x00" if rd else b"\x00\x00"
    labels = b"".join(bytes([len(p)]) + p for p in qname.split(b".") if p) + b"\x00"
    return (
        txid
        + flags
        + b"\x00\x01\x00\x00\x00\x00\x00\x00"
        + labels
        + qtype.to_bytes(2, "big")
        + b"\x00\x01"
    )


def _rpc_null_call(program: int, version: int) -> bytes:
    # RFC 5531: xid, CALL, rpcvers 2, prog, vers, proc 0 (NULL), AUTH_NONE cred and verf.
    words = (0x706B3434, 0, 2, program, version, 0, 0, 0, 0, 0)
    return b"".join(w.to_bytes(4, "big") for w in words)


def _quic_version_probe() -> bytes:
    # RFC 9000 6: a long-header packet with an unknown version makes a QUIC server
    # answer Version Negotiation. Servers ignore Initials under 1200 bytes (14.1).
    head = b"\xc0" + b"\x1a\x2a\x3a\x4a" + b"\x08portkit!" + b"\x00"
    return head + bytes(1200 - len(head))


#: UDP port -> the request a server on it answers.
UDP_PAYLOADS: dict[int, Payload] = {
    7: Payload("echo", b"\r\n\r\n"),
    53: Payload("dns", _dns_query(b"", 2)),  # ". NS": every resolver answers (or refuses)
    69: Payload("tftp", b"\x00\x01portkit-probe\x00octet\x00"),  # RRQ (RFC 1350)
    111: Payload("rpcbind", _rpc_null_call(100000, 2)),
    123: Payload("ntp", b"\xe3" + bytes(47)),  # LI=3 VN=4 mode=3 client (RFC 5905)
    137: Payload(
        "netbios-ns",  # NBSTAT query for "*" (RFC 1002 4.2.17)
        b"pk\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x20CKAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\x00"
        b"\x00\x21\x00\x01",
    ),
    161: Payload("snmp", _snmp_get_sysdescr(b"public")),
    443: Payload("quic", _quic_version_probe()),
    520: Payload("rip", b"\x01\x02\x00\x00" + bytes(16) + b"\x00\x00\x00\x10"),  # RFC 2453 3.9.1
    623: Payload("ipmi", b"\x06\x00\xff\x06\x00\x00\x11\xbe\x80\x00\x00\x00"),  # RMCP ping
    1194: Payload("openvpn", b"\x38" + b"portkit!" + b"\x00" + bytes(4)),  # P_CONTROL_HARD_RESET
    1434: Payload("ms-sql-browser", b"\x02"),  # CLNT_BCAST_EX (MC-SQLR 2.2.1)
    1900: Payload(
        "ssdp",
        b"M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\n"
        b'MAN: "ssdp:discover"\r\nMX: 1\r\nST: ssdp:all\r\n\r\n',
    ),
    2049: Payload("nfs", _rpc_null_call(100003, 3)),
    3478: Payload("stun", b"\x00\x01\x00\x00\x21\x12\xa4\x42" + b"portkit-stun"[:12]),
    5060: Payload(
        "sip",
        b"OPTIONS sip:probe@portkit.invalid SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP portkit.invalid;branch=z9hG4bK-portkit\r\nMax-Forwards: 70\r\n"
        b"To: <sip:probe@portkit.invalid>\r\nFrom: <sip:portkit@portkit.invalid>;tag=pk\r\n"
        b"Call-ID: portkit-probe\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    ),
    5353: Payload(
        "mdns", _dns_query(b"_services._dns-sd._udp.local", 12, txid=b"\x00\x00", rd=False)
    ),
    5683: Payload("coap", b"\x40\x01pk\xbb.well-known\x04core"),  # GET /.well-known/core
    8600: Payload("consul-dns", _dns_query(b"consul", 2)),
    11211: Payload("memcached", b"pk\x00\x00\x00\x01\x00\x00version\r\n"),
}

#: TCP port -> what to send when a service does not speak first.
TCP_PROBES: dict[int, bytes] = {
    6379: b"PING\r\n",  # Redis (RESP inline command)
    26379: b"PING\r\n",  # Redis Sentinel
    11211: b"version\r\n",  # memcached
    2181: b"srvr\n",  # ZooKeeper four-letter word
    4222: b"PING\r\n",  # NATS
}

#: Everything else gets an HTTP request: most DevOps services speak HTTP.
HTTP_PROBE = b"HEAD / HTTP/1.0\r\n\r\n"


def udp_payload_for(port: int) -> bytes:
    """The datagram for ``port``: its table entry, else empty (as nmap sends)."""
    found = UDP_PAYLOADS.get(port)
    return found.data if found is not None else b""


def tcp_probe_for(port: int) -> bytes:
    return TCP_PROBES.get(port, HTTP_PROBE)


def parse_status_line(data: bytes) -> int:
    """The status code of an HTTP response's first line.

    Raises:
        ParseError: when ``data`` does not start with ``HTTP/x.y NNN``.
    """
    line = data.split(b"\r\n", 1)[0].split(b"\n", 1)[0]
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise ParseError(
            f"not an HTTP status line: {line[:40]!r}",
            text=repr(line[:40]),
            accepted="HTTP/1.1 200 OK",
        )
    code = int(parts[1])
    if not 100 <= code <= 999:
        raise ParseError(f"bad HTTP status {code}", text=str(code), accepted="100-999")
    return code


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def summarize_banner(data: bytes, limit: int = 160) -> str:
    """One readable line for what a service said.

    Text: its first non-empty line (with the ``Server:`` header for HTTP). Binary:
    its size and first bytes in hex.

    >>> summarize_banner(b"HTTP/1.1 200 OK\\r\\nServer: nginx\\r\\n\\r\\n")
    'HTTP/1.1 200 OK (Server: nginx)'
    >>> summarize_banner(b"\\x00\\x01\\x02")
    '3 bytes: 000102'
    """
    if not data:
        return ""
    text = data.decode("latin-1")
    printable = sum(1 for c in text[:256] if c.isprintable() or c in "\r\n\t")
    if printable < 0.9 * min(len(text), 256):
        return f"{len(data)} bytes: {data[:16].hex()}"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    first = lines[0]
    if first.startswith("HTTP/"):
        server = next(
            (ln.split(":", 1)[1].strip() for ln in lines[1:] if ln.lower().startswith("server:")),
            "",
        )
        if server:
            first = f"{first} (Server: {server})"
    out = _printable(first)
    return out if len(out) <= limit else out[: limit - 1] + "…"

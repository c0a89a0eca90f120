"""PROXY protocol headers (haproxy's spec, versions 1 and 2) towards the target. Pure.

A backend behind a forwarder sees the forwarder's address as its peer; the PROXY
header, sent first on the target connection, tells it the real client.
Spec: https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt

    >>> proxy_v1(("192.168.1.5", 40000), ("10.0.0.1", 8080))
    b'PROXY TCP4 192.168.1.5 10.0.0.1 40000 8080\\r\\n'
    >>> proxy_v2(("192.168.1.5", 40000), ("10.0.0.1", 8080))[:13]
    b'\\r\\n\\r\\n\\x00\\r\\nQUIT\\n!'
"""

from __future__ import annotations

import ipaddress
import struct

from portkit.errors import ParseError

__all__ = ["PROXY_V2_SIGNATURE", "VERSIONS", "build_header", "proxy_v1", "proxy_v2"]

PROXY_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
#: version 2, command PROXY
_V2_PROXY = 0x21
#: (ip version, stream?) -> v2 family/transport byte
_V2_FAMILY = {(4, True): 0x11, (4, False): 0x12, (6, True): 0x21, (6, False): 0x22}
_V1_FAMILY = {4: b"TCP4", 6: b"TCP6"}

_Addr = tuple[str, int]


def _ips(
    source: _Addr, dest: _Addr
) -> tuple[
    ipaddress.IPv4Address | ipaddress.IPv6Address, ipaddress.IPv4Address | ipaddress.IPv6Address
]:
    """Both addresses in one family: IPv4-mapped IPv6 becomes IPv4, else IPv4 is mapped up."""

    def one(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        ip = ipaddress.ip_address(host.partition("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            return ip.ipv4_mapped
        return ip

    src, dst = one(source[0]), one(dest[0])
    if src.version != dst.version:
        src = ipaddress.IPv6Address(f"::ffff:{src}") if src.version == 4 else src
        dst = ipaddress.IPv6Address(f"::ffff:{dst}") if dst.version == 4 else dst
    return src, dst


def proxy_v1(source: _Addr, dest: _Addr) -> bytes:
    """The text header: ``PROXY TCP4 SRC DST SPORT DPORT\\r\\n`` (TCP only)."""
    src, dst = _ips(source, dest)
    family = _V1_FAMILY[src.version]
    return b"PROXY %s %s %s %d %d\r\n" % (
        family,
        str(src).encode(),
        str(dst).encode(),
        source[1],
        dest[1],
    )


def proxy_v2(source: _Addr, dest: _Addr, *, stream: bool = True) -> bytes:
    """The binary header: signature, PROXY command, family, addresses and ports."""
    src, dst = _ips(source, dest)
    body = src.packed + dst.packed + struct.pack("!HH", source[1], dest[1])
    return (
        PROXY_V2_SIGNATURE
        + struct.pack("!BBH", _V2_PROXY, _V2_FAMILY[(src.version, stream)], len(body))
        + body
    )


#: ``--proxy-protocol`` value -> header builder
VERSIONS = {"v1": proxy_v1, "v2": proxy_v2}


def build_header(version: str, source: _Addr, dest: _Addr) -> bytes:
    """The header of ``version`` ("v1" or "v2") for a client ``source`` that reached ``dest``."""
    builder = VERSIONS.get(version)
    if builder is None:
        raise ParseError(
            f"unknown PROXY protocol version {version!r}", text=version, accepted="v1, v2"
        )
    return builder(source, dest)

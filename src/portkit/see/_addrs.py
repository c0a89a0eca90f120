"""The addresses of a network namespace (``ip -brief addr``), over NETLINK_ROUTE.

One RTM_GETADDR dump; :func:`parse_dump` is a pure function of the reply's bytes.
``why`` uses it to find which namespace on this machine holds a target address
(a container, a lab namespace); the NAT rows of the listing to tell a published port
(to a local address) from a service address.
"""

from __future__ import annotations

import socket
import struct

from portkit.errors import ParseError

__all__ = ["addresses", "build_request", "parse_dump"]

RTM_NEWADDR, RTM_GETADDR = 20, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
_NLMSG = struct.Struct("=IHHII")
_IFADDR = struct.Struct("=BBBBI")
_RTA = struct.Struct("=HH")


def build_request(seq: int = 1) -> bytes:
    """An RTM_GETADDR dump request for every family.

    >>> len(build_request())
    24
    """
    body = _IFADDR.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return (
        _NLMSG.pack(_NLMSG.size + len(body), RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body
    )


def parse_dump(data: bytes) -> tuple[list[tuple[int, str, int]], bool]:
    """``([(interface index, address, prefix length), ...], done)`` from a reply chunk.

    Raises:
        ParseError: bytes that are not an RTM_NEWADDR dump.
    """
    out: list[tuple[int, str, int]] = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size or off + length > len(data):
            raise ParseError("truncated netlink message", text=data[off : off + 16].hex())
        if kind == NLMSG_DONE:
            return out, True
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, off + _NLMSG.size)
            raise ParseError(f"address dump refused ({-code})", text=str(code))
        if kind == RTM_NEWADDR and length >= _NLMSG.size + _IFADDR.size:
            family, plen, _flags2, _scope, index = _IFADDR.unpack_from(data, off + _NLMSG.size)
            attrs: dict[int, bytes] = {}
            pos = off + _NLMSG.size + _IFADDR.size
            end = off + length
            while pos + _RTA.size <= end:
                alen, atype = _RTA.unpack_from(data, pos)
                if alen < _RTA.size or pos + alen > end:
                    raise ParseError("bad address attribute", text=data[pos : pos + 8].hex())
                attrs[atype] = data[pos + _RTA.size : pos + alen]
                pos += (alen + 3) & ~3
            raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
            size = {socket.AF_INET: 4, socket.AF_INET6: 16}.get(family)
            if raw is not None and size is not None and len(raw) == size:
                out.append((index, socket.inet_ntop(family, raw), plen))
        off += (length + 3) & ~3
    return out, False


def _dump() -> list[tuple[str, str, int]]:
    found: list[tuple[int, str, int]] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:
        s.settimeout(5)
        s.send(build_request())
        done = False
        while not done:
            part, done = parse_dump(s.recv(65536))
            found.extend(part)
        names = dict(socket.if_nameindex())
    return [(names.get(index, f"if{index}"), addr, plen) for index, addr, plen in found]


def addresses(netns: str | None = None) -> list[tuple[str, str, int]]:
    """``[(interface, address, prefix length), ...]`` of the namespace at ``netns``
    (a path to setns into; None: the caller's)."""
    if netns is None:
        return _dump()
    from portkit.see._netns import run_in_netns

    return run_in_netns(netns, _dump)

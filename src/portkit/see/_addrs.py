"""The addresses of a network namespace (``ip -brief addr``), over NETLINK_ROUTE.

One RTM_GETADDR dump (and RTM_GETLINK for the interfaces and their veth peers);
:func:`parse_dump` and :func:`parse_links` are pure functions of the reply's bytes.
``why`` uses it to find which namespace on this machine holds a target address
(a container, a lab namespace); the NAT rows of the listing to tell a published port
(to a local address) from a service address.
"""

from __future__ import annotations

import os
import socket
import struct
from typing import Any

from portkit.errors import ParseError

__all__ = [
    "addresses",
    "build_link_request",
    "build_nsid_request",
    "build_request",
    "links",
    "neighbours",
    "nsid",
    "parse_dump",
    "parse_links",
    "parse_nsid",
]

RTM_NEWLINK, RTM_GETLINK = 16, 18
RTM_NEWADDR, RTM_GETADDR = 20, 22
RTM_NEWNSID, RTM_GETNSID = 88, 90
NETNSA_NSID, NETNSA_FD = 1, 3
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFLA_IFNAME, IFLA_LINK, IFLA_LINK_NETNSID = 3, 5, 37
_NLMSG = struct.Struct("=IHHII")
_IFADDR = struct.Struct("=BBBBI")
_IFINFO = struct.Struct("=BxHiII")
_RTGEN = struct.Struct("=Bxxx")
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


def _messages(data: bytes, want: int, head: struct.Struct) -> tuple[list[Any], bool]:
    """``([(header fields, {attribute type: bytes}), ...], done)``: the ``want`` messages
    of one netlink dump chunk, each header unpacked with ``head``."""
    out: list[Any] = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size or off + length > len(data):
            raise ParseError("truncated netlink message", text=data[off : off + 16].hex())
        if kind == NLMSG_DONE:
            return out, True
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", data, off + _NLMSG.size)
            raise ParseError(f"netlink dump refused ({-code})", text=str(code))
        if kind == want and length >= _NLMSG.size + head.size:
            fields = head.unpack_from(data, off + _NLMSG.size)
            attrs: dict[int, bytes] = {}
            pos = off + _NLMSG.size + head.size
            end = off + length
            while pos + _RTA.size <= end:
                alen, atype = _RTA.unpack_from(data, pos)
                if alen < _RTA.size or pos + alen > end:
                    raise ParseError("bad netlink attribute", text=data[pos : pos + 8].hex())
                attrs[atype] = data[pos + _RTA.size : pos + alen]
                pos += (alen + 3) & ~3
            out.append((fields, attrs))
        off += (length + 3) & ~3
    return out, False


def parse_dump(data: bytes) -> tuple[list[tuple[int, str, int]], bool]:
    """``([(interface index, address, prefix length), ...], done)`` from a reply chunk.

    Raises:
        ParseError: bytes that are not an RTM_NEWADDR dump.
    """
    messages, done = _messages(data, RTM_NEWADDR, _IFADDR)
    out: list[tuple[int, str, int]] = []
    for (family, plen, _flags, _scope, index), attrs in messages:
        raw = attrs.get(IFA_LOCAL) or attrs.get(IFA_ADDRESS)
        size = {socket.AF_INET: 4, socket.AF_INET6: 16}.get(family)
        if raw is not None and size is not None and len(raw) == size:
            out.append((index, socket.inet_ntop(family, raw), plen))
    return out, done


def build_link_request(seq: int = 1) -> bytes:
    """An RTM_GETLINK dump request.

    >>> len(build_link_request())
    32
    """
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    return (
        _NLMSG.pack(_NLMSG.size + len(body), RTM_GETLINK, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body
    )


def parse_links(data: bytes) -> tuple[list[tuple[int, str, int, int]], bool]:
    """``([(interface index, name, peer index, peer's namespace id), ...], done)`` from
    an RTM_NEWLINK dump chunk: ``ip link``'s ``eth0@if12 ... link-netnsid 0``. The peer
    (a veth's other end, a macvlan's lower link) is 0 and the namespace id -1 when the
    kernel names none (the id is the caller's namespace's number for the other one).

    Raises:
        ParseError: bytes that are not an RTM_NEWLINK dump.
    """
    messages, done = _messages(data, RTM_NEWLINK, _IFINFO)
    out: list[tuple[int, str, int, int]] = []
    for (_family, _type, index, _flags, _change), attrs in messages:
        name = attrs.get(IFLA_IFNAME, b"").split(b"\0", 1)[0].decode("utf-8", "replace")
        link = attrs.get(IFLA_LINK, b"")
        nsid = attrs.get(IFLA_LINK_NETNSID, b"")
        out.append(
            (
                index,
                name,
                struct.unpack("=I", link)[0] if len(link) == 4 else 0,
                struct.unpack("=i", nsid)[0] if len(nsid) == 4 else -1,
            )
        )
    return out, done


def build_nsid_request(fd: int, seq: int = 1) -> bytes:
    """An RTM_GETNSID request: the id the caller's namespace gives the one open at ``fd``.

    >>> len(build_nsid_request(3))
    28
    """
    attr = _RTA.pack(_RTA.size + 4, NETNSA_FD) + struct.pack("=I", fd)
    body = struct.pack("=Bxxx", socket.AF_UNSPEC) + attr
    return _NLMSG.pack(_NLMSG.size + len(body), RTM_GETNSID, NLM_F_REQUEST, seq, 0) + body


def parse_nsid(data: bytes) -> int:
    """The id of an RTM_NEWNSID reply; -1: none assigned.

    Raises:
        ParseError: bytes that are not an RTM_NEWNSID reply.
    """
    messages, _ = _messages(data, RTM_NEWNSID, _RTGEN)
    for _fields, attrs in messages:
        raw = attrs.get(NETNSA_NSID, b"")
        if len(raw) == 4:
            return int(struct.unpack("=i", raw)[0])
    raise ParseError("no namespace id in the reply", text=data[:32].hex())


def _read(request: bytes, parse: Any) -> list[Any]:
    found: list[Any] = []
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:
        s.settimeout(5)
        s.send(request)
        done = False
        while not done:
            part, done = parse(s.recv(65536))
            found.extend(part)
    return found


def _links() -> list[tuple[int, str, int, int]]:
    return _read(build_link_request(), parse_links)


def links(netns: str | None = None) -> list[tuple[int, str, int, int]]:
    """``[(index, name, peer index, peer's namespace id), ...]``: the interfaces of the
    namespace at ``netns`` (None: the caller's), as :func:`parse_links` reads them."""
    if netns is None:
        return _links()
    from portkit.see._netns import run_in_netns

    return run_in_netns(netns, _links)


def neighbours(
    others: dict[int, str], netns: str | None = None, dev: str | None = None
) -> set[int]:
    """Which of ``others`` (namespace inode -> a path to it) the interfaces of the
    namespace at ``netns`` (None: the caller's) lead into: the namespaces at the other
    end of its veth pairs (a container's, from its bridge host; the bridge host's, from
    a container); only interface ``dev``'s with ``dev``. Namespaces that cannot be
    opened are left out."""
    fds: dict[int, int] = {}
    for inode, path in others.items():
        try:
            fds[inode] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
    try:

        def look() -> set[int]:
            ids = {
                peer_ns
                for _i, name, _p, peer_ns in _links()
                if peer_ns >= 0 and (dev is None or name == dev)
            }
            if not ids:
                return set()
            found: set[int] = set()
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:
                s.settimeout(5)
                for inode, fd in fds.items():
                    s.send(build_nsid_request(fd))
                    if parse_nsid(s.recv(4096)) in ids:
                        found.add(inode)
            return found

        if netns is None:
            return look()
        from portkit.see._netns import run_in_netns

        return run_in_netns(netns, look)
    finally:
        for fd in fds.values():
            os.close(fd)


def nsid(other: str, netns: str | None = None) -> int:
    """The id the namespace at ``netns`` (None: the caller's) gives the namespace at
    path ``other`` (``ip netns list-id``), -1 when it gives it none: what an interface's
    peer namespace id (:func:`links`) is compared with.

    Raises:
        OSError: ``other`` cannot be opened, or the kernel refuses the question.
    """
    fd = os.open(other, os.O_RDONLY | os.O_CLOEXEC)
    try:

        def ask() -> int:
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0) as s:
                s.settimeout(5)
                s.send(build_nsid_request(fd))
                return parse_nsid(s.recv(4096))

        if netns is None:
            return ask()
        from portkit.see._netns import run_in_netns

        return run_in_netns(netns, ask)
    finally:
        os.close(fd)


def _dump() -> list[tuple[str, str, int]]:
    found: list[tuple[int, str, int]] = _read(build_request(), parse_dump)
    names = dict(socket.if_nameindex())
    return [(names.get(index, f"if{index}"), addr, plen) for index, addr, plen in found]


def addresses(netns: str | None = None) -> list[tuple[str, str, int]]:
    """``[(interface, address, prefix length), ...]`` of the namespace at ``netns``
    (a path to setns into; None: the caller's)."""
    if netns is None:
        return _dump()
    from portkit.see._netns import run_in_netns

    return run_in_netns(netns, _dump)

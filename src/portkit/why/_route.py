"""Which way the kernel sends a packet: ``ip route get`` over NETLINK_ROUTE.

The request and the reply are pure functions of bytes (:func:`build_request`,
:func:`parse_reply`); :func:`route_get` sends one request, in a network namespace when
asked. The kernel answers a destination it cannot reach with an error instead of a
route, and the error says why: no route at all (``ENETUNREACH``), an ``unreachable``
route (``EHOSTUNREACH``), a ``prohibit`` route (``EACCES``), a ``blackhole`` route
(``EINVAL``); :data:`ROUTE_ERRORS` is that table.
"""

from __future__ import annotations

import errno
import socket
import struct

from portkit.errors import ParseError
from portkit.model import _Record

__all__ = ["ROUTE_ERRORS", "Route", "build_request", "parse_reply", "route_get"]

NETLINK_ROUTE = 0
RTM_NEWROUTE, RTM_GETROUTE = 24, 26
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PREFSRC, RTA_TABLE = 1, 4, 5, 7, 15
_NLMSG = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTA = struct.Struct("=HH")

#: rtm_type -> name, as ``ip route`` prints them.
ROUTE_TYPES = {
    1: "unicast",
    2: "local",
    3: "broadcast",
    4: "anycast",
    5: "multicast",
    6: "blackhole",
    7: "unreachable",
    8: "prohibit",
    9: "throw",
}

#: The kernel's refusal of a lookup -> (route kind, what it means).
ROUTE_ERRORS = {
    errno.ENETUNREACH: ("none", "no route to this network (no matching route, no default route)"),
    errno.EHOSTUNREACH: ("unreachable", "an 'unreachable' route covers it"),
    errno.EACCES: ("prohibit", "a 'prohibit' route covers it (administratively prohibited)"),
    errno.EINVAL: ("blackhole", "a 'blackhole' route covers it: packets are dropped silently"),
}


class Route(_Record):
    """The kernel's answer for one destination.

    ``kind`` is the route type (``unicast``, ``local``, ...) or, when the lookup was
    refused, ``none``/``unreachable``/``prohibit``/``blackhole``; ``reachable`` is True
    for unicast and local routes. ``dev`` is the outgoing interface, ``src`` the source
    address the kernel would pick, ``gateway`` the next hop (None: on-link).
    """

    __slots__ = ("destination", "kind", "dev", "src", "gateway", "table", "error")
    destination: str
    kind: str
    dev: str | None
    src: str | None
    gateway: str | None
    table: int | None
    error: str | None

    def __init__(
        self,
        destination: str,
        kind: str,
        dev: str | None = None,
        src: str | None = None,
        gateway: str | None = None,
        table: int | None = None,
        error: str | None = None,
    ) -> None:
        self._init(
            destination=destination,
            kind=kind,
            dev=dev,
            src=src,
            gateway=gateway,
            table=table,
            error=error,
        )

    @property
    def reachable(self) -> bool:
        return self.kind in ("unicast", "local")

    def describe(self) -> str:
        """``ip route get``'s words: ``10.0.0.5 via 10.0.0.1 dev eth0 src 10.0.0.2``."""
        if self.error is not None:
            return f"{self.destination}: {self.error}"
        parts = [self.destination if self.kind == "unicast" else f"{self.kind} {self.destination}"]
        if self.gateway:
            parts.append(f"via {self.gateway}")
        if self.dev:
            parts.append(f"dev {self.dev}")
        if self.src:
            parts.append(f"src {self.src}")
        return " ".join(parts)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def build_request(destination: str, seq: int = 1) -> bytes:
    """An RTM_GETROUTE request for ``destination`` (an IPv4 or IPv6 literal).

    >>> len(build_request("10.0.0.5")), len(build_request("::1"))
    (36, 48)
    """
    family = _family(destination)
    try:
        packed = socket.inet_pton(family, destination)
    except (OSError, ValueError):
        raise ParseError(
            f"bad address {destination!r}", text=destination, accepted="an IP address"
        ) from None
    attr = _RTA.pack(_RTA.size + len(packed), RTA_DST) + packed
    body = _RTMSG.pack(family, len(packed) * 8, 0, 0, 0, 0, 0, 0, 0) + attr
    return _NLMSG.pack(_NLMSG.size + len(body), RTM_GETROUTE, NLM_F_REQUEST, seq, 0) + body


def parse_reply(data: bytes, destination: str, names: dict[int, str] | None = None) -> Route:
    """The :class:`Route` in the kernel's reply (an RTM_NEWROUTE or an error).

    ``names`` maps interface indexes to names (they must be read in the same network
    namespace); without it ``dev`` is ``if<N>``.

    Raises:
        ParseError: bytes that are not such a reply.
    """
    if len(data) < _NLMSG.size:
        raise ParseError("short netlink reply", text=data[:16].hex(), accepted="RTM_NEWROUTE")
    length, kind, _flags, _seq, _pid = _NLMSG.unpack_from(data)
    if length > len(data) or length < _NLMSG.size:
        raise ParseError("truncated netlink reply", text=data[:16].hex(), accepted="RTM_NEWROUTE")
    if kind == NLMSG_ERROR:
        if length < _NLMSG.size + 4:
            raise ParseError("truncated netlink error", text=data.hex(), accepted="NLMSG_ERROR")
        (code,) = struct.unpack_from("=i", data, _NLMSG.size)
        found = ROUTE_ERRORS.get(-code)
        if found is None:
            name = errno.errorcode.get(-code, str(-code))
            return Route(destination, "error", error=f"lookup failed: {name}")
        return Route(destination, found[0], error=found[1])
    if kind != RTM_NEWROUTE or length < _NLMSG.size + _RTMSG.size:
        raise ParseError(
            f"unexpected netlink message {kind}", text=str(kind), accepted="RTM_NEWROUTE"
        )
    _fam, _dlen, _slen, _tos, table, _proto, _scope, rtype, _flags = _RTMSG.unpack_from(
        data, _NLMSG.size
    )
    attrs: dict[int, bytes] = {}
    off = _NLMSG.size + _RTMSG.size
    while off + _RTA.size <= length:
        alen, atype = _RTA.unpack_from(data, off)
        if alen < _RTA.size or off + alen > length:
            raise ParseError("bad route attribute", text=data.hex(), accepted="RTM_NEWROUTE")
        attrs[atype] = data[off + _RTA.size : off + alen]
        off += (alen + 3) & ~3

    def addr(key: int) -> str | None:
        raw = attrs.get(key)
        if raw is None or len(raw) not in (4, 16):
            return None
        return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)

    oif = struct.unpack("=I", attrs[RTA_OIF])[0] if len(attrs.get(RTA_OIF, b"")) == 4 else None
    if RTA_TABLE in attrs and len(attrs[RTA_TABLE]) == 4:
        table = struct.unpack("=I", attrs[RTA_TABLE])[0]
    dev = None if oif is None else (names or {}).get(oif, f"if{oif}")
    kind_name = ROUTE_TYPES.get(rtype, f"type{rtype}")
    return Route(destination, kind_name, dev, addr(RTA_PREFSRC), addr(RTA_GATEWAY), table)


def _ask(destination: str) -> Route:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as s:
        s.settimeout(5)
        s.send(build_request(destination))
        data = s.recv(65536)
        names = {index: name for index, name in socket.if_nameindex()}
    return parse_reply(data, destination, names)


def route_get(destination: str, netns: str | None = None) -> Route:
    """What ``ip route get DESTINATION`` answers, in the namespace at path ``netns``.

    Raises:
        ParseError: a bad address, or no such namespace. PermissionDenied: it could
        not be entered.
    """
    if netns is None:
        return _ask(destination)
    from portkit.see import run_in_netns

    return run_in_netns(netns, lambda: _ask(destination))

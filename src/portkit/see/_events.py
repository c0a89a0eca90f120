"""Socket destroy events from the sock_diag multicast groups (``ss -E``).

When a process has joined one of the groups (``SKNLGRP_INET_TCP_DESTROY``, ...), the
kernel sends it a ``SOCK_DIAG_BY_FAMILY`` message for every TCP or UDP socket of the
namespace as the socket is freed (``net/core/sock_diag.c``,
``sock_diag_broadcast_destroy``): both ends, the state it died in, its cookie and,
for TCP, its last ``tcp_info`` (so a connection's final byte counts are known even
when it lived between two readings). The kernel has no such group for sockets being
created; :mod:`portkit.see._watch` finds those by comparing dumps.

:func:`parse_events` is pure (bytes in, events out); :class:`EventSocket` is the
I/O: one netlink socket joined to the groups, with a large receive buffer, counting
what the kernel could not deliver (its ``sk_drops``, read with ``SO_MEMINFO``).

    >>> parse_events(b"")
    []
"""

from __future__ import annotations

import _socket
import errno as _errno
from _struct import Struct

from portkit.see import _netlink as nl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["EVENT_FIELDS", "GROUPS", "EventSocket", "parse_events"]

#: ``enum sknetlink_groups`` (linux/sock_diag.h): (family, protocol) -> group number.
GROUPS = {
    (nl.AF_INET, nl.IPPROTO_TCP): 1,
    (nl.AF_INET, nl.IPPROTO_UDP): 2,
    (nl.AF_INET6, nl.IPPROTO_TCP): 3,
    (nl.AF_INET6, nl.IPPROTO_UDP): 4,
}
ATTR_PROTOCOL = 10  # INET_DIAG_PROTOCOL

#: An event: ``(family 4|6, protocol 6|17, kernel state, local ip, local port, remote
#: ip or None, remote port or None, cookie, tcp_info tuple or None)``.
EVENT_FIELDS = (
    "family",
    "protocol",
    "state",
    "local_ip",
    "local_port",
    "remote_ip",
    "remote_port",
    "cookie",
    "info",
)
Event = tuple[int, int, int, str, int, "str | None", "int | None", int, "tuple[Any, ...] | None"]

_HDR = Struct("=IHHII")
# inet_diag_msg: family, state, timer, retrans, sport, dport (big-endian), src, dst,
# if, cookie (two u32 halves, low first), expires, rqueue, wqueue, uid, inode
_MSG = Struct("=BBxx2H16s16s4xQ20x")
_BASE = 16 + 72


def _bad(message: str, data: bytes | memoryview) -> Exception:
    from portkit.errors import ParseError

    return ParseError(message, text=bytes(data[:64]).hex())


def parse_events(data: bytes | memoryview) -> list[Event]:
    """The destroy events in one datagram from the groups.

    Messages of other types are skipped.

    Raises:
        ParseError: a message that runs past the end, or a socket message too short to
            hold its ``inet_diag_msg``, or of an unknown address family.
    """
    from portkit.see._tcpinfo import ATTR_INFO, parse_tcp_info

    out: list[Event] = []
    off, end = 0, len(data)
    while off + 16 <= end:
        length, mtype = _HDR.unpack_from(data, off)[:2]
        if length < 16 or off + length > end:
            raise _bad(f"netlink message of {length} bytes at {off} of {end}", data)
        if mtype == nl.SOCK_DIAG_BY_FAMILY:
            if length < _BASE:
                raise _bad(f"sock_diag message of {length} bytes (< {_BASE})", data)
            family, state, sport, dport, src, dst, cookie = _MSG.unpack_from(data, off + 16)
            if family not in (nl.AF_INET, nl.AF_INET6):
                raise _bad(f"address family {family} in a sock_diag event", data)
            attrs = nl.parse_attrs(data, off + _BASE, off + length)
            proto_raw = attrs.get(ATTR_PROTOCOL, b"")
            proto = proto_raw[0] if proto_raw else nl.IPPROTO_TCP
            info = None
            if ATTR_INFO in attrs:
                from portkit.errors import ParseError

                try:
                    info = parse_tcp_info(attrs[ATTR_INFO])
                except ParseError:
                    info = None
            lport, rport = nl.ntohs(sport), nl.ntohs(dport)
            out.append(
                (
                    4 if family == nl.AF_INET else 6,
                    proto,
                    state,
                    nl.ip_text(family, src),
                    lport,
                    nl.ip_text(family, dst) if rport else None,
                    rport or None,
                    cookie,
                    info,
                )
            )
        off += (length + 3) & ~3
    if off < end and end - off >= 4:
        raise _bad(f"{end - off} bytes after the last message", data)
    return out


SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
SO_MEMINFO = 55
SO_RCVBUFFORCE = 33
SK_MEMINFO_DROPS = 8


class EventSocket:
    """A netlink socket joined to the destroy groups of one network namespace.

    Args:
        families: address families (``nl.AF_INET``/``nl.AF_INET6``) to hear about.
        protocols: ``nl.IPPROTO_TCP``/``nl.IPPROTO_UDP``.
        netns_path: the namespace file to open the socket in (None: ours).
        rcvbuf: receive buffer bytes (``SO_RCVBUFFORCE`` as root, else capped by
            ``net.core.rmem_max``); a burst larger than it loses events, counted in
            :attr:`lost`.

    Raises:
        PermissionDenied: the namespace cannot be entered.
        PortkitError: no sock_diag in this kernel.
    """

    def __init__(
        self,
        families: tuple[int, ...] = (nl.AF_INET, nl.AF_INET6),
        protocols: tuple[int, ...] = (nl.IPPROTO_TCP, nl.IPPROTO_UDP),
        netns_path: str | None = None,
        rcvbuf: int = 32 << 20,
    ) -> None:
        groups = [GROUPS[f, p] for f in families for p in protocols]

        def open_socket() -> _socket.socket:
            sock = _socket.socket(16, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, nl.NETLINK_SOCK_DIAG)
            try:
                try:
                    sock.setsockopt(_socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
                except PermissionError:
                    sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_RCVBUF, rcvbuf)
                sock.bind((0, 0))
                for group in groups:
                    sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            except BaseException:
                sock.close()
                raise
            return sock

        try:
            if netns_path is None:
                self._sock = open_socket()
            else:
                from portkit.see._netns import run_in_netns

                self._sock = run_in_netns(netns_path, open_socket)
        except OSError as exc:
            from portkit.errors import PortkitError

            raise PortkitError(f"cannot listen to socket events: {exc.strerror or exc}") from exc
        self._sock.setblocking(False)
        self._dropped_base = self._drops()
        #: How many times the kernel said the buffer overflowed (ENOBUFS).
        self.overruns = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def _drops(self) -> int:
        try:
            raw = self._sock.getsockopt(_socket.SOL_SOCKET, SO_MEMINFO, 4 * 9)
        except OSError:
            return 0
        return int.from_bytes(raw[4 * SK_MEMINFO_DROPS : 4 * SK_MEMINFO_DROPS + 4], "little")

    @property
    def lost(self) -> int:
        """Events the kernel could not deliver since the socket was opened."""
        return self._drops() - self._dropped_base

    def read(self, timeout: float | None = None, limit: int = 1 << 16) -> list[Event]:
        """The events waiting now; with a ``timeout``, wait up to that long for one."""
        import select

        out: list[Event] = []
        if timeout is not None and timeout > 0:
            select.select([self._sock], [], [], timeout)
        recv = self._sock.recv
        while len(out) < limit:
            try:
                data = recv(1 << 16)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == _errno.ENOBUFS:
                    self.overruns += 1
                    continue
                raise
            if not data:
                break
            from portkit.errors import ParseError

            try:
                out.extend(parse_events(data))
            except ParseError:
                continue  # a damaged datagram: its events are lost, not the stream
        return out

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> EventSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

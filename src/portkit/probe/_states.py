"""What the kernel said → (state, reason): the decision tables of a connect and UDP scan.

Pure: errno numbers and ICMP (type, code) pairs in, :class:`PortState` and
:class:`Reason` out. The TCP table follows nmap's connect scan
(``scan_engine_connect.cc``, ``handleConnectResult``); the ICMP tables follow
nmap's UDP scan ("ICMP unreachable type 3 codes 0, 1, 2, 9, 10, 13 mark the port
filtered", nmap(1)) and RFC 4443 for ICMPv6.

    >>> tcp_errno_verdict(111)
    (<PortState.CLOSED: 'closed'>, <Reason.CONN_REFUSED: 'conn-refused'>)
    >>> icmp_verdict(2, 3, 13, "udp")
    (<PortState.FILTERED: 'filtered'>, <Reason.ADMIN_PROHIBITED: 'admin-prohibited'>)
"""

from __future__ import annotations

import errno as E
import struct

from portkit.errors import ParseError
from portkit.probe._records import PortState, Reason

__all__ = [
    "ORIGIN_ICMP",
    "ORIGIN_ICMP6",
    "ExtendedError",
    "icmp_verdict",
    "parse_extended_err",
    "tcp_errno_verdict",
    "udp_errno_verdict",
]

_O, _C, _F = PortState.OPEN, PortState.CLOSED, PortState.FILTERED

#: connect()/SO_ERROR errno -> verdict for a TCP connect probe (nmap -sT).
#: A RST in SYN_SENT gives ECONNREFUSED; ECONNRESET and EPIPE come only after the
#: handshake completed (the server accepted, then reset), so the port is open.
#: ECONNREFUSED is a RST or, on IPv4, an ICMP port-unreachable (Linux maps ICMP 3/3
#: on a SYN_SENT socket to it): closed either way. EACCES is ICMPv6
#: admin-prohibited; EPERM a local firewall rule (OUTPUT reject).
TCP_ERRNO: dict[int, tuple[PortState, Reason]] = {
    0: (_O, Reason.SYN_ACK),
    E.ECONNREFUSED: (_C, Reason.CONN_REFUSED),
    # Reset or broken after the handshake: something accepted the connection first.
    E.ECONNRESET: (_O, Reason.SYN_ACK),
    E.EPIPE: (_O, Reason.SYN_ACK),
    E.EHOSTUNREACH: (_F, Reason.HOST_UNREACH),
    E.EHOSTDOWN: (_F, Reason.HOST_UNREACH),
    E.ENETUNREACH: (_F, Reason.NET_UNREACH),
    E.ENONET: (_F, Reason.NET_UNREACH),
    E.ENOPROTOOPT: (_F, Reason.PROTO_UNREACH),
    E.EPROTO: (_F, Reason.PROTO_UNREACH),
    E.EACCES: (_F, Reason.ADMIN_PROHIBITED),
    E.EPERM: (_F, Reason.ADMIN_PROHIBITED),
    E.ETIMEDOUT: (_F, Reason.NO_RESPONSE),
}

#: Errors on a UDP socket when no ICMP details are at hand (sendto/recv errno).
UDP_ERRNO: dict[int, tuple[PortState, Reason]] = {
    E.ECONNREFUSED: (_C, Reason.PORT_UNREACH),
    E.EHOSTUNREACH: (_F, Reason.HOST_UNREACH),
    E.ENETUNREACH: (_F, Reason.NET_UNREACH),
    E.EACCES: (_F, Reason.ADMIN_PROHIBITED),
    E.EPERM: (_F, Reason.ADMIN_PROHIBITED),
    E.ENOPROTOOPT: (_F, Reason.PROTO_UNREACH),
}

#: Errors that say "this machine cannot send now", not anything about the port:
#: the engine backs off and tries the probe again instead of deciding.
LOCAL_RETRY_ERRNOS = frozenset(
    {E.EADDRNOTAVAIL, E.EAGAIN, E.ENOBUFS, E.ENOMEM, E.EMFILE, E.ENFILE, E.EINTR}
)

ORIGIN_LOCAL, ORIGIN_ICMP, ORIGIN_ICMP6 = 1, 2, 3

#: (origin, ICMP type, code) -> verdict. Port unreachable is the only "closed";
#: every other unreachable is a firewall or routing answer: filtered.
_ICMP: dict[tuple[int, int, int], tuple[PortState, Reason]] = {
    # ICMPv4 type 3, destination unreachable (RFC 792, RFC 1812)
    (ORIGIN_ICMP, 3, 0): (_F, Reason.NET_UNREACH),
    (ORIGIN_ICMP, 3, 1): (_F, Reason.HOST_UNREACH),
    (ORIGIN_ICMP, 3, 2): (_F, Reason.PROTO_UNREACH),
    (ORIGIN_ICMP, 3, 3): (_C, Reason.PORT_UNREACH),
    (ORIGIN_ICMP, 3, 6): (_F, Reason.NET_UNREACH),
    (ORIGIN_ICMP, 3, 7): (_F, Reason.HOST_UNREACH),
    (ORIGIN_ICMP, 3, 9): (_F, Reason.NET_PROHIBITED),
    (ORIGIN_ICMP, 3, 10): (_F, Reason.HOST_PROHIBITED),
    (ORIGIN_ICMP, 3, 13): (_F, Reason.ADMIN_PROHIBITED),
    # ICMPv6 type 1, destination unreachable (RFC 4443 section 3.1)
    (ORIGIN_ICMP6, 1, 0): (_F, Reason.NET_UNREACH),
    (ORIGIN_ICMP6, 1, 1): (_F, Reason.ADMIN_PROHIBITED),
    (ORIGIN_ICMP6, 1, 2): (_F, Reason.NET_UNREACH),
    (ORIGIN_ICMP6, 1, 3): (_F, Reason.HOST_UNREACH),
    (ORIGIN_ICMP6, 1, 4): (_C, Reason.PORT_UNREACH),
    (ORIGIN_ICMP6, 1, 5): (_F, Reason.ADMIN_PROHIBITED),
    (ORIGIN_ICMP6, 1, 6): (_F, Reason.ADMIN_PROHIBITED),
}
#: Other ICMP types, any code.
_ICMP_TYPES: dict[tuple[int, int], tuple[PortState, Reason]] = {
    (ORIGIN_ICMP, 3): (_F, Reason.HOST_UNREACH),
    (ORIGIN_ICMP, 11): (_F, Reason.TIME_EXCEEDED),
    (ORIGIN_ICMP6, 1): (_F, Reason.HOST_UNREACH),
    (ORIGIN_ICMP6, 3): (_F, Reason.TIME_EXCEEDED),
}


def tcp_errno_verdict(err: int) -> tuple[PortState, Reason]:
    """The connect-scan verdict for ``SO_ERROR``/``connect()`` errno ``err``.

    An errno not in the table says nothing certain about the port: filtered,
    reason ``local-error`` (nmap aborts on some of these; a scan should not).

    >>> tcp_errno_verdict(0)
    (<PortState.OPEN: 'open'>, <Reason.SYN_ACK: 'syn-ack'>)
    """
    return TCP_ERRNO.get(err, (_F, Reason.LOCAL_ERROR))


def udp_errno_verdict(err: int) -> tuple[PortState, Reason]:
    """The UDP verdict for an errno reported without ICMP details."""
    return UDP_ERRNO.get(err, (_F, Reason.LOCAL_ERROR))


def icmp_verdict(
    origin: int, icmp_type: int, code: int, protocol: str
) -> tuple[PortState, Reason] | None:
    """The verdict for an ICMP error about a probe; None when it says nothing (local).

    ``protocol`` is ``tcp`` or ``udp``: the tables are the same, because a connect
    scan also calls a port closed when ICMP port-unreachable answers its SYN.

    >>> icmp_verdict(3, 1, 4, "tcp")
    (<PortState.CLOSED: 'closed'>, <Reason.PORT_UNREACH: 'port-unreach'>)
    """
    del protocol  # same table for both; kept so callers say which they mean
    if origin not in (ORIGIN_ICMP, ORIGIN_ICMP6):
        return None
    found = _ICMP.get((origin, icmp_type, code))
    if found is None:
        found = _ICMP_TYPES.get((origin, icmp_type))
    return found


class ExtendedError:
    """``struct sock_extended_err`` (linux/errqueue.h): what IP_RECVERR queues."""

    __slots__ = ("code", "errno", "info", "origin", "type")

    def __init__(self, errno: int, origin: int, type: int, code: int, info: int) -> None:
        self.errno = errno
        self.origin = origin
        self.type = type
        self.code = code
        self.info = info

    def __repr__(self) -> str:
        return (
            f"ExtendedError(errno={self.errno}, origin={self.origin}, "
            f"type={self.type}, code={self.code})"
        )


_EE = struct.Struct("=IBBBBII")


def parse_extended_err(data: bytes) -> ExtendedError:
    """Decode the control data of an ``IP_RECVERR``/``IPV6_RECVERR`` message.

    >>> parse_extended_err(bytes.fromhex("6f000000020303000000000000000000")).code
    3

    Raises:
        ParseError: when ``data`` is shorter than the 16-byte struct.
    """
    if len(data) < _EE.size:
        raise ParseError(
            f"sock_extended_err needs {_EE.size} bytes, got {len(data)}",
            text=data.hex(),
            accepted="struct sock_extended_err",
        )
    err, origin, icmp_type, code, _pad, info, _data = _EE.unpack_from(data)
    return ExtendedError(err, origin, icmp_type, code, info)

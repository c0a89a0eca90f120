"""Closing sockets from outside their process: ``SOCK_DESTROY`` (``ss -K``).

The kernel closes a socket named by its ``inet_diag_sockid`` (both ends, interface,
cookie) when asked with a ``SOCK_DESTROY`` message on NETLINK_SOCK_DIAG
(``net/core/sock_diag.c``, ``sock_diag_destroy``): TCP connections are aborted with
a reset to the peer (``tcp_abort``), listeners stop listening, UDP sockets are
closed; the owning process sees ECONNABORTED. It needs CAP_NET_ADMIN in the
socket's network namespace and a kernel built with ``CONFIG_INET_DIAG_DESTROY``.

:func:`destroy_request` and :func:`parse_acks` are pure; :func:`destroy` does the
I/O (one request per socket, each acknowledged).

    >>> req = destroy_request(4, 6, "127.0.0.1", 8080, "127.0.0.1", 40000, 7, seq=3)
    >>> len(req), req[4:6], req[8:12]
    (72, b'\\x15\\x00', b'\\x03\\x00\\x00\\x00')
"""

from __future__ import annotations

import _socket
import errno as _errno
from _struct import Struct

from portkit.see import _netlink as nl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["SOCK_DESTROY", "Destroyed", "destroy", "destroy_request", "parse_acks"]

SOCK_DESTROY = 21
_NLM_F_ACK = 0x4
_HDR = Struct("=IHHII")
_REQ = Struct("=BBBxI")  # family, protocol, ext, pad, states
_ID = Struct(">HH16s16s")  # ports (big-endian) and addresses; then if and cookie
_TAIL = Struct("=IQ")
_ERR = Struct("=iIHHII")  # error, then the request's header


def _packed(family: int, ip: str) -> bytes:
    af = nl.AF_INET if family == 4 else nl.AF_INET6
    return _socket.inet_pton(af, ip).ljust(16, b"\0")


def destroy_request(
    family: int,
    protocol: int,
    local_ip: str,
    local_port: int,
    remote_ip: str | None,
    remote_port: int | None,
    cookie: int,
    *,
    seq: int,
    interface: int = 0,
) -> bytes:
    """The ``SOCK_DESTROY`` message for one socket, asking for an acknowledgement.

    Args:
        family: 4 or 6; protocol: 6 (TCP) or 17 (UDP).
        local_ip, local_port, remote_ip, remote_port: its ends (remote None for a
            listener or an unconnected UDP socket).
        cookie: the kernel's id of the socket (from the dump): the kernel refuses
            a socket whose cookie differs (ESTALE), so a new socket that took the
            same ends meanwhile is never closed by mistake.
        seq: the netlink sequence number its acknowledgement carries.
        interface: the interface index (needed for link-local IPv6 only).
    """
    af = nl.AF_INET if family == 4 else nl.AF_INET6
    sockid = _ID.pack(
        local_port,
        remote_port or 0,
        _packed(family, local_ip),
        _packed(family, remote_ip) if remote_ip is not None else bytes(16),
    ) + _TAIL.pack(interface, cookie)
    body = _REQ.pack(af, protocol, 0, 0xFFFFFFFF) + sockid
    return _HDR.pack(16 + len(body), SOCK_DESTROY, nl.NLM_F_REQUEST | _NLM_F_ACK, seq, 0) + body


def parse_acks(data: bytes | memoryview) -> dict[int, int]:
    """``{sequence number: errno}`` of the acknowledgements in one reply (0: done).

    >>> parse_acks(_HDR.pack(36, 2, 0, 5, 0) + _ERR.pack(-1, 72, 21, 5, 5, 0))
    {5: 1}

    Raises:
        ParseError: a message that runs past the end of the data.
    """
    out: dict[int, int] = {}
    off, end = 0, len(data)
    while off + 16 <= end:
        length, mtype, _flags, seq, _pid = _HDR.unpack_from(data, off)
        if length < 16 or off + length > end:
            from portkit.errors import ParseError

            raise ParseError(
                f"netlink message of {length} bytes at {off} of {end}", text=bytes(data[:64]).hex()
            )
        if mtype == nl.NLMSG_ERROR and length >= 20:
            out[seq] = -Struct("=i").unpack_from(data, off + 16)[0]
        off += (length + 3) & ~3
    return out


class Destroyed:
    """What :func:`destroy` did: how many sockets were closed, were gone already,
    and which could not be closed with the errno the kernel gave."""

    __slots__ = ("closed", "gone", "failed")

    def __init__(self) -> None:
        self.closed: list[int] = []  # indexes into the rows asked for
        self.gone: list[int] = []
        self.failed: list[tuple[int, int]] = []  # (index, errno)


# Per-socket answers that are not failures of the whole command: the socket closed
# or changed meanwhile (its cookie no longer matches, or no socket has those ends).
_GONE = {_errno.ENOENT, _errno.ESTALE}


def destroy(
    sockets: Sequence[tuple[int, int, str, int, str | None, int | None, int]],
    netns_path: str | None = None,
) -> Destroyed:
    """Close ``sockets``: each ``(family, protocol, local ip, local port, remote ip,
    remote port, cookie)``.

    Raises:
        PermissionDenied: the kernel refused (EPERM/EACCES): CAP_NET_ADMIN is needed.
        PortkitError: the kernel cannot destroy sockets (EOPNOTSUPP: built without
            CONFIG_INET_DIAG_DESTROY, or a protocol it cannot close).
    """
    from portkit.errors import PermissionDenied, PortkitError

    def open_socket() -> _socket.socket:
        return _socket.socket(16, _socket.SOCK_RAW | _socket.SOCK_CLOEXEC, nl.NETLINK_SOCK_DIAG)

    if netns_path is None:
        sock = open_socket()
    else:
        from portkit.see._netns import run_in_netns

        sock = run_in_netns(netns_path, open_socket)
    out = Destroyed()
    try:
        for start in range(0, len(sockets), 256):  # bounded: acks must fit the buffer
            batch = sockets[start : start + 256]
            for i, s in enumerate(batch, start):
                sock.send(destroy_request(*s, seq=i + 1))
            answers: dict[int, int] = {}
            while len(answers) < len(batch):
                answers.update(parse_acks(sock.recv(1 << 16)))
            for i in range(start, start + len(batch)):
                err = answers.get(i + 1, 0)
                if err == 0:
                    out.closed.append(i)
                elif err in _GONE:
                    out.gone.append(i)
                elif err in (_errno.EPERM, _errno.EACCES):
                    raise PermissionDenied(
                        "the kernel refused to close sockets", needed="CAP_NET_ADMIN"
                    )
                elif err == _errno.EOPNOTSUPP and not out.closed:
                    raise PortkitError(
                        "this kernel cannot close sockets from outside (SOCK_DESTROY): it was "
                        "built without CONFIG_INET_DIAG_DESTROY"
                    )
                else:
                    out.failed.append((i, err))
    finally:
        sock.close()
    return out


def targets(rows: Sequence[tuple[Any, ...]], health: dict[Any, Any]) -> list[Any]:
    """The :func:`destroy` tuples of decoded rows read with timers (``Query(timers=True)``:
    every entry carries the socket's cookie); rows without one are left out."""
    from portkit.see._tcpinfo import E_COOKIE, row_entry

    out = []
    for r in rows:
        entry = row_entry(health, r)
        if entry is None:
            continue
        out.append(
            (r[1], 6 if r[0].value == "tcp" else 17, r[3], r[4], r[5], r[6], entry[E_COOKIE])
        )
    return out

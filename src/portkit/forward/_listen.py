"""What a forwarder takes from the OS before it relays anything: descriptors and sockets.

The file descriptor limit is raised to the hard limit, then checked against what the
mappings need *before* anything is bound (or, on the command line, before the event
loop exists): with ``ulimit -n 10`` the answer is one line saying how many descriptors
are missing, not an EMFILE deep inside the loop's own set-up. Bind and listen errors
are translated here, at the one boundary where they happen.
"""

from __future__ import annotations

import errno
import os
import socket
from typing import TYPE_CHECKING

from portkit.errors import ForwardError, PermissionDenied, ResourceExhausted
from portkit.forward._path import TcpRoute, UdpRoute
from portkit.model import Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from portkit.forward.spec import Mapping

__all__ = [
    "LOOP_DESCRIPTORS",
    "bind_tcp",
    "bind_udp",
    "descriptors_needed",
    "ensure_descriptors",
    "raise_nofile",
]

#: Descriptors an event loop holds while it runs with signal handlers: uvloop 9
#: (epoll, eventfd, timerfd, signal pipes, the wake-up socketpair), asyncio 3.
LOOP_DESCRIPTORS = 9
#: Besides the listeners: the epoll set of the Linux data path and one TCP connection
#: (two sockets) when a mapping is TCP, one session's socket when one is UDP; less
#: than that and the forwarder cannot forward anything.
_LEAST_TCP = 1 + 2
_LEAST_UDP = 1


def raise_nofile(want: int | None = None) -> int:
    """Raise the soft RLIMIT_NOFILE towards the hard limit; return the soft limit now."""
    try:
        import resource
    except ImportError:  # not on this platform: assume the common default
        return 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if want is None else min(want, hard)
    if hard == resource.RLIM_INFINITY:
        target = want or 1 << 20
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft


def descriptors_needed(mappings: Sequence[Mapping], *, loop: bool) -> int:
    """The fewest descriptors ``mappings`` can be forwarded with: one per listener, the
    data path's and one connection's (plus the event loop's when it is still to be made).

    >>> from portkit.forward.spec import parse_specs
    >>> descriptors_needed(parse_specs(["8080:80", "5353:53/udp"]), loop=True)
    15
    """
    protocols = {m.protocol for m in mappings}
    return (
        len(mappings)
        + (_LEAST_TCP if Protocol.TCP in protocols else 0)
        + (_LEAST_UDP if Protocol.UDP in protocols else 0)
        + (LOOP_DESCRIPTORS if loop else 0)
    )


def spare_descriptors(want: int) -> int:
    """How many more descriptors this process can open, counted up to ``want`` by
    opening them (duplicates of one, closed at once): portable, and exact whatever
    the process holds already."""
    held: list[int] = []
    try:
        held.append(os.open(os.devnull, os.O_RDONLY))
        while len(held) < want:
            held.append(os.dup(held[0]))
    except OSError as exc:
        if exc.errno not in (errno.EMFILE, errno.ENFILE):
            raise
    finally:
        for fd in held:
            os.close(fd)
    return len(held)


def ensure_descriptors(needed: int, nofile: int) -> None:
    """Refuse to start when fewer than ``needed`` descriptors can still be opened.

    Raises:
        ResourceExhausted: with how many are needed, how many are left and the limit.
    """
    spare = spare_descriptors(needed)
    if spare < needed:
        raise ResourceExhausted(
            f"too few file descriptors: {needed} more are needed, this process can open "
            f"{spare} (RLIMIT_NOFILE {nofile}); raise the limit (ulimit -n) or listen on "
            "fewer ports"
        )


def _bind_error(exc: OSError, where: str) -> Exception:
    """Translate a socket/bind/listen OSError at the one boundary where it happens."""
    if exc.errno == errno.EADDRINUSE:
        return ForwardError(f"cannot listen on {where}: address already in use")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(
            f"cannot listen on {where}", needed="root or CAP_NET_BIND_SERVICE for ports < 1024"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ForwardError(f"cannot listen on {where}: that address is not on this host")
    if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
        return ResourceExhausted(f"cannot listen on {where}: {exc.strerror or exc}")
    return ForwardError(f"cannot listen on {where}: {exc.strerror or exc}")


def _socket_for(mapping: Mapping, kind: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in mapping.listen_host else socket.AF_INET
    try:
        return socket.socket(family, kind)
    except OSError as exc:
        raise _bind_error(exc, f"{mapping.listen}/{mapping.protocol}") from exc


def bind_tcp(mapping: Mapping, backlog: int, proxy: str | None) -> TcpRoute:
    """A listening, non-blocking TCP socket for ``mapping``, as a route."""
    sock = _socket_for(mapping, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit these (Linux, BSDs): no calls per connection.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.bind((mapping.listen_host, mapping.listen_port))
        sock.listen(backlog)
        sock.setblocking(False)
        return TcpRoute(mapping, sock, proxy)
    except OSError as exc:
        sock.close()
        raise _bind_error(exc, f"{mapping.listen}/{Protocol.TCP}") from exc


def bind_udp(mapping: Mapping) -> tuple[UdpRoute, socket.socket]:
    """A bound, non-blocking UDP socket for ``mapping``, and its route."""
    sock = _socket_for(mapping, socket.SOCK_DGRAM)
    try:
        sock.bind((mapping.listen_host, mapping.listen_port))
        sock.setblocking(False)
        return UdpRoute(mapping, sock), sock
    except OSError as exc:
        sock.close()
        raise _bind_error(exc, f"{mapping.listen}/{Protocol.UDP}") from exc

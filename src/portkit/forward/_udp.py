"""The UDP data path: one session per client endpoint, each with its own upstream socket.

A datagram from a new client ``(ip, port)`` opens a session: a socket *connected* to
the target, with its own ephemeral port, so every reply can only belong to that
client and is sent back to it from the listening socket. Sessions end after
``udp_timeout`` seconds without a datagram either way, and their number is bounded
(the oldest idle session makes room at the limit). UDP has no backpressure: when a
socket buffer is full the datagram is dropped and counted, never queued.

Raw non-blocking sockets with ``loop.add_reader`` and a bounded batch per wake-up: one
Python callback per datagram at most, no transport objects, no tasks.
"""

from __future__ import annotations

import contextlib
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portkit.forward._engine import Forwarder, _UdpRoute

__all__ = ["UdpListener", "UdpSession"]

MAX_DATAGRAM = 65535
#: Datagrams read per wake-up before the loop gets a turn (fairness between sockets).
BATCH = 64
_RCVBUF = 4 * 1024 * 1024


class UdpSession:
    """One client endpoint and its connected upstream socket."""

    __slots__ = (
        "active",
        "bytes_down",
        "bytes_up",
        "client",
        "idle",
        "listener",
        "sock",
        "started",
        "target",
    )

    def __init__(
        self, listener: UdpListener, client: tuple[Any, ...], sock: socket.socket, started: float
    ) -> None:
        self.listener = listener
        self.client = client
        self.sock = sock
        self.target = sock.getpeername()
        self.started = started
        self.active = True
        self.idle = 0.0
        self.bytes_up = 0
        self.bytes_down = 0

    def on_readable(self) -> None:
        out = self.listener.sock
        stats = self.listener.fwd.stats
        for _ in range(BATCH):
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # ICMP port unreachable from a target that is down (ECONNREFUSED):
                # the session stays, a later datagram may find the target up.
                continue
            self.active = True
            self.bytes_down += len(data)
            stats.udp_datagrams_down += 1
            try:
                out.sendto(data, self.client)
            except OSError:
                stats.udp_dropped += 1


class UdpListener:
    """A listening UDP socket of one mapping and its session table."""

    __slots__ = ("fwd", "route", "sessions", "sock")

    def __init__(self, fwd: Forwarder, route: _UdpRoute, sock: socket.socket) -> None:
        self.fwd = fwd
        self.route = route
        self.sock = sock
        self.sessions: dict[tuple[Any, ...], UdpSession] = {}
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)

    def on_readable(self) -> None:
        sessions = self.sessions
        stats = self.fwd.stats
        for _ in range(BATCH):
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            session = sessions.get(addr)
            if session is None:
                session = self.fwd._udp_open(self, addr)
                if session is None:
                    stats.udp_dropped += 1
                    continue
            session.active = True
            session.bytes_up += len(data)
            stats.udp_datagrams_up += 1
            try:
                session.sock.send(data)
            except OSError:
                stats.udp_dropped += 1

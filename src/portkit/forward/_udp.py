"""The UDP data path: one session per client endpoint, each with its own upstream socket.

A datagram from a new client ``(ip, port)`` opens a session: a socket *connected* to
the target, with its own ephemeral port, so every reply can only belong to that
client and is sent back to it from the listening socket. Sessions end after
``udp_timeout`` seconds without a datagram either way, and their number is bounded
(the oldest idle session makes room at the limit). UDP has no backpressure: when a
socket buffer is full the datagram is dropped and counted, never queued.

Raw non-blocking sockets with ``loop.add_reader`` and a bounded batch per wake-up: one
Python callback per datagram at most, no transport objects, no tasks. The listener
asks the engine only what :class:`~portkit.forward._path.Engine` declares.
"""

from __future__ import annotations

import contextlib
import socket
import time
from typing import TYPE_CHECKING, Any

from portkit.forward._path import text
from portkit.forward.records import ConnLog

if TYPE_CHECKING:
    import asyncio

    from portkit.forward._path import Engine, UdpRoute
    from portkit.forward._resolve import Resolver

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
        stats = self.listener.engine.stats
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
    """A listening UDP socket of one mapping and its session table.

    Args:
        engine: the Forwarder (allow list, session limit, counters, log).
        loop: the running loop; the listener and its sessions register with it.
        resolver: where a target named by DNS is looked up.
        route: the mapping as bound.
        sock: the bound, non-blocking socket.
    """

    __slots__ = ("engine", "loop", "resolver", "resolving", "route", "sessions", "sock")

    def __init__(
        self,
        engine: Engine,
        loop: asyncio.AbstractEventLoop,
        resolver: Resolver,
        route: UdpRoute,
        sock: socket.socket,
    ) -> None:
        self.engine = engine
        self.loop = loop
        self.resolver = resolver
        self.route = route
        self.sock = sock
        self.sessions: dict[tuple[Any, ...], UdpSession] = {}
        self.resolving = False  #: a lookup of the target's name is under way
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RCVBUF)

    def start(self) -> None:
        self.loop.add_reader(self.sock.fileno(), self.on_readable)

    def on_readable(self) -> None:
        sessions = self.sessions
        stats = self.engine.stats
        for _ in range(BATCH):
            try:
                data, addr = self.sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            session = sessions.get(addr)
            if session is None:
                session = self._open(addr)
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

    def _open(self, addr: tuple[Any, ...]) -> UdpSession | None:
        """A new client endpoint: open its upstream socket (None: drop the datagram)."""
        engine = self.engine
        mapping = self.route.mapping
        if engine.allow and not engine.allow.permits(addr[0]):
            return None
        if len(self.sessions) >= engine.max_udp_sessions:
            oldest = min(self.sessions.values(), key=lambda s: (s.active, -s.idle))
            self.end(oldest, "evicted")
        targets = self.resolver.cached(mapping.target_host)
        if not targets:
            # Not resolved yet: resolve in the background (one lookup at a time); this
            # datagram is dropped, as a network would drop it.
            if not self.resolving:
                self.resolving = True
                engine.spawn(self._resolve())
            return None
        family, ip = targets[0]
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:  # EMFILE: drop this datagram, the client may retry
            engine.stats.accept_errors += 1
            engine.notice("warning", f"UDP session for {text(addr)} not opened: {exc.strerror}")
            return None
        try:
            sock.setblocking(False)
            sock.connect((ip, mapping.target_port))
        except OSError as exc:
            sock.close()
            engine.notice("warning", f"UDP target {mapping.target} unusable: {exc.strerror or exc}")
            return None
        session = UdpSession(self, addr, sock, time.time())
        self.sessions[addr] = session
        self.loop.add_reader(sock.fileno(), session.on_readable)
        engine.stats.udp_sessions += 1
        engine.stats.udp_sessions_total += 1
        return session

    async def _resolve(self) -> None:
        mapping = self.route.mapping
        try:
            await self.resolver.targets(mapping.target_host, mapping.target_port)
        except OSError as exc:
            self.engine.notice("warning", f"cannot resolve {mapping.target_host}: {exc}")
        finally:
            self.resolving = False

    def end(self, session: UdpSession, why: str) -> None:
        """Close ``session`` and log it (``why``: a ``closed_by`` value)."""
        if self.sessions.pop(session.client, None) is None:
            return
        self.loop.remove_reader(session.sock.fileno())
        session.sock.close()
        engine = self.engine
        engine.stats.udp_sessions -= 1
        if engine.on_close is not None:
            engine.on_close(
                ConnLog(
                    "udp",
                    text(session.client),
                    self.route.listen,
                    text(session.target),
                    bytes_up=session.bytes_up,
                    bytes_down=session.bytes_down,
                    duration=time.time() - session.started,
                    closed_by=why,
                    started=session.started,
                )
            )

    def sweep(self, tick: float, timeout: float) -> None:
        """Every tick of the engine's timer: age the sessions, end those idle ``timeout`` s."""
        for session in list(self.sessions.values()):
            if session.active:
                session.active = False
                session.idle = 0.0
            else:
                session.idle += tick
                if session.idle >= timeout:
                    self.end(session, "udp-timeout")

    def close(self) -> None:
        """End every session (``shutdown``) and close the listening socket."""
        for session in list(self.sessions.values()):
            self.end(session, "shutdown")
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()

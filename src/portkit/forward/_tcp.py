"""The portable TCP data path: two asyncio Protocols per connection, one per leg.

Linux uses :mod:`._epoll` instead (about 1.5x the connections per second); this path
serves systems without epoll and ``Forwarder(..., data_path="transports")``.

Why Protocols and not streams: ``data_received -> peer.transport.write`` copies each
chunk once and needs no task per direction; the StreamReader + ``await drain()`` loop
measured below socat (docs/forward.md). Flow control is the transports' own: when a
leg's write buffer passes its high-water mark the transport calls ``pause_writing``
and we pause *reading* on the other leg, so a stalled reader stops the writer and
memory stays bounded (one read chunk + the high-water mark per leg).

Half-close: ``eof_received`` returns True (keep the transport) and calls
``write_eof()`` on the peer, which shuts down writing only after its pending data is
flushed; the other direction keeps flowing. Both legs close once both directions
have ended. There is no fixed close delay (socat's 0.5 s ``-t``).

Connecting is a Task per connection (:meth:`TransportPath.connect`): resolve, dial
each address in turn under one timer, then wrap the client socket.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import TYPE_CHECKING, Any

from portkit.forward._path import READ_SIZE, proxy_header, reset_socket

if TYPE_CHECKING:
    from collections.abc import Callable

    from portkit.forward._path import Engine, TcpRoute
    from portkit.forward._resolve import Resolver

__all__ = ["HIGH_WATER", "LOW_WATER", "Conn", "Leg", "ReadBuffer", "TransportPath"]

#: Per-leg write buffer limits: above HIGH the other leg stops reading, below LOW it resumes.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class ReadBuffer:
    """One read buffer shared by every leg of a forwarder (one event loop, one thread).

    A leg reads into it, writes that view to its peer and is done with it, so idle
    connections own no buffer at all, and no bytes object is made per chunk (the
    plain ``Protocol`` path copies each chunk once more). When the peer cannot send
    everything at once its transport keeps a reference to the view instead of
    copying it (uvloop does), so the buffer is handed over and a new one made.
    """

    __slots__ = ("view",)

    def __init__(self) -> None:
        self.view = memoryview(bytearray(READ_SIZE))

    def renew(self) -> None:
        self.view = memoryview(bytearray(READ_SIZE))


class Leg(asyncio.BufferedProtocol):
    """One side of a relayed connection; ``peer`` is the other side."""

    __slots__ = ("buffer", "conn", "eof", "nbytes", "peer", "transport")

    def __init__(self, conn: Conn, buffer: ReadBuffer) -> None:
        self.conn = conn
        self.buffer = buffer
        self.peer: Leg = self
        self.transport: Any = None
        self.nbytes = 0
        self.eof = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(HIGH_WATER, LOW_WATER)  # type: ignore[attr-defined]
        conn = self.conn
        if self is conn.client:
            conn.client_ready()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.buffer.view

    def buffer_updated(self, nbytes: int) -> None:
        self.nbytes += nbytes
        self.conn.active = True
        peer = self.peer.transport
        buffer = self.buffer
        if peer is None:
            # Server-first protocols (SSH, SMTP banners) speak before the client leg
            # exists: keep this chunk and read no more until it does.
            self.conn.early.append(bytes(buffer.view[:nbytes]))
            self.transport.pause_reading()
            return
        peer.write(buffer.view[:nbytes])
        if peer.get_write_buffer_size():
            buffer.renew()  # the peer's transport may still hold our view

    def eof_received(self) -> bool:
        self.eof = True
        self.conn.on_eof(self)
        return True  # keep our write side open: the other direction may still flow

    def pause_writing(self) -> None:
        self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if not self.peer.eof:
            self.peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.on_lost(self, exc)


class Conn:
    """One client connection and its target connection (a :class:`~._path.Relayed`)."""

    __slots__ = (
        "active",
        "client",
        "client_addr",
        "closed_by",
        "early",
        "error",
        "idle",
        "lost",
        "path",
        "route",
        "sock",
        "started",
        "target_addr",
        "upstream",
    )

    def __init__(
        self,
        path: TransportPath,
        route: TcpRoute,
        sock: socket.socket,
        client_addr: tuple[Any, ...],
        started: float,
    ) -> None:
        self.path = path
        self.route = route
        #: the client's socket until the client leg's transport owns it
        self.sock: socket.socket | None = sock
        self.client_addr = client_addr
        self.target_addr: tuple[Any, ...] | None = None
        self.started = started
        self.client = Leg(self, path.buffer)
        self.upstream = Leg(self, path.buffer)
        self.client.peer = self.upstream
        self.upstream.peer = self.client
        self.closed_by = ""
        self.early: list[bytes] = []
        self.error: str | None = None
        self.active = False
        self.idle = 0.0
        self.lost = 0

    # --- the interface the engine uses (_path.Relayed) ---------------------------------

    @property
    def relaying(self) -> bool:
        """Both legs are up (idle timeouts apply from then on)."""
        return self.client.transport is not None

    def start(self) -> None:
        self.path.engine.spawn(self.path.connect(self))

    def buffered(self) -> int:
        """Bytes held in user space for either leg (the transports' write buffers)."""
        return sum(
            leg.transport.get_write_buffer_size()
            for leg in (self.client, self.upstream)
            if leg.transport is not None
        )

    def bytes_up(self) -> int:
        return self.client.nbytes

    def bytes_down(self) -> int:
        return self.upstream.nbytes

    def close(self, reason: str = "", *, abort: bool = False) -> None:
        """Close both legs (flushing pending data unless ``abort``)."""
        if reason and not self.closed_by:
            self.closed_by = reason
        for leg in (self.client, self.upstream):
            tr = leg.transport
            if tr is not None and not tr.is_closing():
                if abort:
                    tr.abort()
                else:
                    tr.close()

    # --- the legs' events ----------------------------------------------------------------

    def side(self, leg: Leg) -> str:
        return "client" if leg is self.client else "target"

    def end(self, reason: str) -> None:
        """Never relayed (the target is down, or the forwarder is closing): report it."""
        if not self.closed_by:
            self.closed_by = reason
        self.path.engine.finished(self)

    def client_ready(self) -> None:
        """The client leg exists: deliver what the target said early, start relaying."""
        self.sock = None
        client, upstream = self.client.transport, self.upstream.transport
        for chunk in self.early:
            client.write(chunk)
        self.early.clear()
        if self.lost:  # the target went away while the client was being wrapped
            if self.closed_by.endswith("-reset"):
                reset_socket(client.get_extra_info("socket"))
                client.abort()
            else:
                client.close()
        elif self.upstream.eof:
            self.on_eof(self.upstream)
        elif upstream is not None and not upstream.is_closing():
            upstream.resume_reading()

    def on_eof(self, leg: Leg) -> None:
        if not self.closed_by:
            self.closed_by = self.side(leg)
        peer = leg.peer.transport
        if peer is not None and not peer.is_closing():
            if peer.can_write_eof():
                peer.write_eof()  # after the pending data: the transport orders it
            else:
                peer.close()
        if leg.peer.eof:
            self.close()

    def on_lost(self, leg: Leg, exc: Exception | None) -> None:
        self.lost += 1
        if exc is not None and not self.closed_by:
            self.closed_by = self.side(leg) + "-reset"
            self.error = type(exc).__name__
        peer = leg.peer.transport
        if peer is not None and not peer.is_closing():
            if exc is not None:
                # Pass a reset on as a reset: the other side must not mistake it for a
                # clean end of data.
                reset_socket(peer.get_extra_info("socket"))
                peer.abort()
            else:
                peer.close()
        if self.lost == 2 or (peer is None and leg is self.client):
            self.path.engine.finished(self)


class TransportPath:
    """The portable data path (a :class:`~._path.TcpPath`): the loop's transports.

    Args:
        engine: the Forwarder.
        loop: the running loop, whose transports relay.
        resolver: where targets named by DNS are looked up.
    """

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop, resolver: Resolver) -> None:
        self.engine = engine
        self.loop = loop
        self.resolver = resolver
        self.buffer = ReadBuffer()
        self.wrap: Callable[[int, int, int, int], Any] = socket.socket
        self.sweeps = False  # connect timeouts are timers of their own

    def accepted(self, route: TcpRoute, sock: Any, addr: tuple[Any, ...]) -> Conn:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return Conn(self, route, sock, addr, time.time())

    def sweep(self, now: float) -> None:
        pass

    def close(self) -> None:
        pass

    async def connect(self, conn: Conn) -> None:
        """Connect to the target, then wrap the client: both legs start relaying."""
        loop = self.loop
        sock = conn.sock
        assert sock is not None
        mapping = conn.route.mapping
        port = mapping.target_port
        upstream: Any = None
        error: str | None = None
        task = asyncio.current_task()
        assert task is not None
        timeout = self.engine.connect_timeout
        # A plain timer rather than asyncio.timeout(): a third of the cost per connection.
        timer = loop.call_later(timeout, _connect_expired, conn, task)
        try:
            addrs = conn.route.addrs or await self.resolver.targets(mapping.target_host, port)
            for _family, ip in addrs:
                try:
                    upstream, _ = await loop.create_connection(lambda: conn.upstream, ip, port)
                    conn.target_addr = (ip, port)
                    break
                except OSError as exc:
                    error = exc.strerror or type(exc).__name__
        except OSError as exc:  # name resolution
            error = exc.strerror or str(exc)
        except asyncio.CancelledError:
            if conn.closed_by != "connect-timeout":
                timer.cancel()
                sock.close()
                if upstream is not None:
                    upstream.abort()
                conn.end("shutdown")
                raise
            task.uncancel()
            error = f"no answer in {timeout} s"
        timer.cancel()
        if upstream is None:
            # Target down: reset the client at once so it fails fast; keep serving.
            reset_socket(sock)
            sock.close()
            conn.error = error
            conn.end("connect-failed")
            return
        upstream.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if conn.route.proxy is not None:
            upstream.write(proxy_header(conn.route.proxy, conn.client_addr, sock))
        try:
            await loop.connect_accepted_socket(lambda: conn.client, sock)
        except (OSError, asyncio.CancelledError):
            sock.close()
            upstream.abort()
            conn.end("shutdown")
            raise


def _connect_expired(conn: Conn, task: asyncio.Task[None]) -> None:
    if not task.done():
        conn.closed_by = "connect-timeout"
        task.cancel()

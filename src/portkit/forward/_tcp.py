"""The portable TCP data path: two asyncio Protocols per connection, one per leg.

Linux uses :mod:`._epoll` instead (about 1.5x the connections per second); this path
serves systems without epoll and ``Forwarder(..., data_path="transports")``.

Why Protocols and not streams: ``data_received -> peer.transport.write`` copies each
chunk once and needs no task per direction; the StreamReader + ``await drain()`` loop
measured below socat (shared/notes/forwarding.md). Flow control is the transports'
own: when a leg's write buffer passes its high-water mark the transport calls
``pause_writing`` and we pause *reading* on the other leg, so a stalled reader stops
the writer and memory stays bounded (one read chunk + the high-water mark per leg).

Half-close: ``eof_received`` returns True (keep the transport) and calls
``write_eof()`` on the peer, which shuts down writing only after its pending data is
flushed; the other direction keeps flowing. Both legs close once both directions
have ended. There is no fixed close delay (socat's 0.5 s ``-t``).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portkit.forward._engine import Forwarder, _TcpRoute

__all__ = ["HIGH_WATER", "LOW_WATER", "READ_SIZE", "Conn", "Leg", "ReadBuffer", "reset_socket"]

#: Bytes read per call: one shared buffer (see ReadBuffer), so its size costs nothing per
#: connection.
READ_SIZE = 256 * 1024
#: Per-leg write buffer limits: above HIGH the other leg stops reading, below LOW it resumes.
HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024
_LINGER_RESET = struct.pack("ii", 1, 0)


def reset_socket(sock: Any) -> None:
    """Make the next close() send RST instead of FIN (SO_LINGER with a zero timeout)."""
    with contextlib.suppress(OSError, AttributeError, ValueError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


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
    """One client connection and its target connection."""

    __slots__ = (
        "active",
        "client",
        "client_addr",
        "closed_by",
        "early",
        "error",
        "fwd",
        "idle",
        "lost",
        "route",
        "started",
        "target_addr",
        "upstream",
    )

    def __init__(
        self, fwd: Forwarder, route: _TcpRoute, client_addr: tuple[Any, ...], started: float
    ) -> None:
        self.fwd = fwd
        self.route = route
        self.client_addr = client_addr
        self.target_addr: tuple[Any, ...] | None = None
        self.started = started
        self.client = Leg(self, fwd.read_buffer)
        self.upstream = Leg(self, fwd.read_buffer)
        self.client.peer = self.upstream
        self.upstream.peer = self.client
        self.closed_by = ""
        self.early: list[bytes] = []
        self.error: str | None = None
        self.active = False
        self.idle = 0.0
        self.lost = 0

    # --- the interface the engine uses (shared with the epoll path) --------------------

    @property
    def relaying(self) -> bool:
        """Both legs are up (idle timeouts apply from then on)."""
        return self.client.transport is not None

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

    def side(self, leg: Leg) -> str:
        return "client" if leg is self.client else "target"

    def client_ready(self) -> None:
        """The client leg exists: deliver what the target said early, start relaying."""
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
            self.fwd._tcp_done(self)

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

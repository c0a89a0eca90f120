"""Small servers for testing a path end to end: echo, discard and http, over TCP and UDP.

The guide's "server accepts connection from any client", made visible: every client's
endpoint is reported (``on_client``) as it arrives. Servers bind 127.0.0.1 unless told
otherwise, use port 0 (the OS picks) unless given one, and apply flow control: an echo
client that does not read stops being read, so memory stays bounded.

    async with serve("echo", tcp=0, udp=0) as server:
        print(server.endpoints)   # (Endpoint('127.0.0.1', 41234, tcp), Endpoint(..., udp))
"""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any

from portkit.errors import ForwardError, PermissionDenied, UsageError
from portkit.forward._path import text
from portkit.model import Endpoint, Protocol, _ip_literal

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["KINDS", "Server", "serve"]

#: kind -> (what it does, protocols it speaks)
KINDS: dict[str, tuple[str, frozenset[Protocol]]] = {
    "echo": ("sends every byte (datagram) back", frozenset({Protocol.TCP, Protocol.UDP})),
    "discard": ("reads and drops everything", frozenset({Protocol.TCP, Protocol.UDP})),
    "http": (
        "answers every HTTP/1.x request with 200 and the client's endpoint",
        frozenset({Protocol.TCP}),
    ),
}
_MAX_HEAD = 64 * 1024
#: UDP clients remembered so that each endpoint is reported once, not per datagram.
_UDP_SEEN = 4096


class _Base(asyncio.Protocol):
    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: Any = None
        self.peer = ""
        self.nbytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.peer = text(transport.get_extra_info("peername"))
        self.server._report(Protocol.TCP, self.peer, "connected")

    def connection_lost(self, exc: Exception | None) -> None:
        how = f"reset ({type(exc).__name__})" if exc else "closed"
        self.server._report(Protocol.TCP, self.peer, f"{how} after {self.nbytes} bytes in")


class _Echo(_Base):
    def data_received(self, data: bytes) -> None:
        self.nbytes += len(data)
        self.transport.write(data)

    def pause_writing(self) -> None:
        self.transport.pause_reading()  # the client does not read: stop reading it

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def eof_received(self) -> bool:
        # The client is done sending: close() still sends what is pending, then FIN.
        return False


class _Discard(_Base):
    def data_received(self, data: bytes) -> None:
        self.nbytes += len(data)

    def eof_received(self) -> bool:
        return False


class _Http(_Base):
    """HTTP/1.0 and 1.1 with keep-alive; bodies with Content-Length are skipped."""

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self.buf = b""
        self.skip = 0

    def data_received(self, data: bytes) -> None:
        self.nbytes += len(data)
        self.buf += data
        while True:
            if self.skip:
                cut = min(self.skip, len(self.buf))
                self.buf = self.buf[cut:]
                self.skip -= cut
                if self.skip:
                    return
            head, sep, rest = self.buf.partition(b"\r\n\r\n")
            if not sep:
                if len(self.buf) > _MAX_HEAD:
                    self._answer(b"431 Request Header Fields Too Large", b"", close=True)
                return
            self.buf = rest
            if not self._request(head):
                return

    def _request(self, head: bytes) -> bool:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._answer(b"400 Bad Request", b"bad request line\n", close=True)
            return False
        length = headers.get("content-length", "0")
        self.skip = int(length) if length.isdigit() else 0
        keep = headers.get("connection", "keep-alive" if parts[2] == "HTTP/1.1" else "close")
        close = keep == "close"
        body = f"portkit serve http\nclient {self.peer}\n{parts[0]} {parts[1]}\n".encode()
        self._answer(b"200 OK", body, close=close, head_only=parts[0] == "HEAD")
        return not close

    def _answer(self, status: bytes, body: bytes, *, close: bool, head_only: bool = False) -> None:
        conn = b"close" if close else b"keep-alive"
        self.transport.write(
            b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
            b"Connection: %s\r\n\r\n%s" % (status, len(body), conn, b"" if head_only else body)
        )
        if close:
            self.transport.close()

    def eof_received(self) -> bool:
        return False


_TCP_PROTOCOLS: dict[str, type[_Base]] = {"echo": _Echo, "discard": _Discard, "http": _Http}


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, server: Server, echo: bool) -> None:
        self.server = server
        self.echo = echo
        self.transport: Any = None
        self.seen: dict[tuple[Any, ...], None] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if addr not in self.seen:
            if len(self.seen) >= _UDP_SEEN:
                self.seen.pop(next(iter(self.seen)))
            self.seen[addr] = None
            self.server._report(Protocol.UDP, text(addr), "first datagram")
        if self.echo:
            self.transport.sendto(data, addr)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP from a client that went away: nothing to do


class Server:
    """An echo, discard or http server on TCP and/or UDP: an async context manager.

    Args:
        kind: ``echo``, ``discard`` or ``http`` (TCP only).
        tcp: TCP port (0: any free port), or None for no TCP.
        udp: UDP port (0: any free port), or None for no UDP.
        bind: address to listen on (default loopback).
        on_client: called with ``(protocol, "ip:port", event)`` for each client.
    """

    def __init__(
        self,
        kind: str,
        *,
        tcp: int | None = 0,
        udp: int | None = None,
        bind: str = "127.0.0.1",
        on_client: Callable[[Protocol, str, str], None] | None = None,
    ) -> None:
        if kind not in KINDS:
            raise UsageError(f"unknown server kind {kind!r} (accepted: {', '.join(KINDS)})")
        if tcp is None and udp is None:
            raise UsageError("give --tcp PORT, --udp PORT or both")
        if udp is not None and Protocol.UDP not in KINDS[kind][1]:
            raise UsageError(f"{kind} speaks TCP only")
        literal = _ip_literal(bind.strip("[]"))
        if literal is None:
            raise UsageError(f"--bind {bind!r} is not an IP address")
        self.kind = kind
        self.tcp = tcp
        self.udp = udp
        self.bind = literal
        self.on_client = on_client
        self.endpoints: tuple[Endpoint, ...] = ()
        self._servers: list[asyncio.AbstractServer] = []
        self._transports: list[asyncio.BaseTransport] = []

    def _report(self, protocol: Protocol, client: str, event: str) -> None:
        if self.on_client is not None:
            self.on_client(protocol, client, event)

    def _socket(self, kind: int, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.bind else socket.AF_INET
        sock = socket.socket(family, kind)
        proto = "tcp" if kind == socket.SOCK_STREAM else "udp"
        try:
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.bind, port))
        except OSError as exc:
            sock.close()
            where = f"{Endpoint(self.bind, port)}".replace("/tcp", f"/{proto}")
            if isinstance(exc, PermissionError):
                raise PermissionDenied(
                    f"cannot listen on {where}", needed="root or CAP_NET_BIND_SERVICE"
                ) from exc
            raise ForwardError(f"cannot listen on {where}: {exc.strerror or exc}") from exc
        return sock

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        found: list[Endpoint] = []
        if self.tcp is not None:
            factory = _TCP_PROTOCOLS[self.kind]
            sock = self._socket(socket.SOCK_STREAM, self.tcp)
            server = await loop.create_server(lambda: factory(self), sock=sock, backlog=4096)
            self._servers.append(server)
            found.append(Endpoint(self.bind, sock.getsockname()[1], Protocol.TCP))
        if self.udp is not None:
            usock = self._socket(socket.SOCK_DGRAM, self.udp)
            port = usock.getsockname()[1]
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Datagrams(self, echo=self.kind == "echo"), sock=usock
            )
            self._transports.append(transport)
            found.append(Endpoint(self.bind, port, Protocol.UDP))
        self.endpoints = tuple(found)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for transport in self._transports:
            transport.close()
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        self._transports.clear()

    async def __aenter__(self) -> Server:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def serve(
    kind: str,
    *,
    tcp: int | None = 0,
    udp: int | None = None,
    bind: str = "127.0.0.1",
    on_client: Callable[[Protocol, str, str], None] | None = None,
) -> Server:
    """A test server (see :class:`Server`); use it as ``async with serve("echo") as s``."""
    return Server(kind, tcp=tcp, udp=udp, bind=bind, on_client=on_client)

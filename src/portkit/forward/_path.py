"""What the forwarder's engine and its data paths may ask of each other.

The engine (:mod:`._engine`) listens, accepts, applies the allow list and the limits,
ages connections and writes the log; a data path moves the bytes between an accepted
client and its target. There are two TCP data paths, one chosen per Forwarder
(:mod:`._epoll` on Linux, :mod:`._tcp` elsewhere), and one UDP path (:mod:`._udp`).

The engine knows a TCP path only as a :class:`TcpPath` and the connections it relays
only as :class:`Relayed`; the paths know the engine only as an :class:`Engine`. This
module imports neither side, so the imports point one way::

    _engine -> _epoll, _tcp, _udp -> _path

The life of a TCP connection across the interface::

    engine                                  path
    accept(), allow list, --max-conns
    conn = path.accepted(route, sock, addr) ->  wraps the client, no I/O that can end it
    keeps conn in its table; conn.start()   ->  resolves, dials, relays
    sweeper: conn.active/.idle/.close()     <-> (idle timeouts); path.sweep(now) (dials)
    engine.finished(conn)                   <-  exactly once, when both sockets are closed
"""

from __future__ import annotations

import contextlib
import socket
import struct
from typing import TYPE_CHECKING, Any, Protocol

from portkit.forward._resolve import static_targets
from portkit.forward.proxy import build_header
from portkit.forward.spec import Mapping

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from portkit.forward.access import AllowList
    from portkit.forward.records import ConnLog, Stats

__all__ = [
    "READ_SIZE",
    "Engine",
    "Relayed",
    "TcpPath",
    "TcpRoute",
    "UdpRoute",
    "proxy_header",
    "reset_socket",
    "text",
]

#: Bytes read per call: one buffer shared by a path's connections, so its size costs
#: nothing per connection.
READ_SIZE = 256 * 1024
_LINGER_RESET = struct.pack("ii", 1, 0)


def reset_socket(sock: Any) -> None:
    """Make the next close() send RST instead of FIN (SO_LINGER with a zero timeout)."""
    with contextlib.suppress(OSError, AttributeError, ValueError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)


def text(addr: tuple[Any, ...]) -> str:
    """``host:port`` of a socket address, IPv6 in brackets.

    >>> text(("::1", 8080, 0, 0)), text(("127.0.0.1", 8080))
    ('[::1]:8080', '127.0.0.1:8080')
    """
    host = str(addr[0])
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


def proxy_header(version: str, client_addr: tuple[Any, ...], sock: Any) -> bytes:
    """The PROXY header (``v1``/``v2``) telling the target that ``client_addr`` reached
    ``sock``'s local address (the real one, also behind a wildcard bind)."""
    return build_header(version, client_addr[:2], sock.getsockname()[:2])


class TcpRoute:
    """A listening TCP socket and the mapping it serves.

    Args:
        mapping: the mapping as given (the port may be 0).
        sock: its bound, listening, non-blocking socket.
        proxy: ``"v1"``/``"v2"`` to send a PROXY header first to each target, or None.
    """

    __slots__ = (
        "addrs",
        "bound",
        "family",
        "listen",
        "mapping",
        "paused",
        "proxy",
        "sock",
        "target",
    )

    def __init__(self, mapping: Mapping, sock: socket.socket, proxy: str | None) -> None:
        self.mapping = mapping
        self.sock = sock
        self.family = sock.family
        self.proxy = proxy
        #: the target's (family, ip) pairs when known without DNS, else empty
        self.addrs = static_targets(mapping.target_host)
        host, port = sock.getsockname()[:2]
        self.bound = mapping.bound_to(host, port)
        self.listen = self.bound.listen
        self.target = mapping.target
        self.paused = False


class UdpRoute:
    """A bound UDP socket's mapping (the listener in :mod:`._udp` holds the socket)."""

    __slots__ = ("bound", "listen", "mapping", "target")

    def __init__(self, mapping: Mapping, sock: socket.socket) -> None:
        self.mapping = mapping
        host, port = sock.getsockname()[:2]
        self.bound = mapping.bound_to(host, port)
        self.listen = self.bound.listen
        self.target = mapping.target


class Relayed(Protocol):
    """One client connection and its target connection, as the engine sees it."""

    route: TcpRoute
    client_addr: tuple[Any, ...]
    #: the target's address once a dial succeeded
    target_addr: tuple[Any, ...] | None
    started: float  #: time.time() at accept
    closed_by: str  #: a key of records.CLOSED_BY once known, else ""
    error: str | None
    active: bool  #: data moved since the sweeper last looked (it resets this)
    idle: float  #: seconds without data, as the sweeper counts them

    @property
    def relaying(self) -> bool:
        """Both legs are up (idle timeouts apply from then on)."""

    def start(self) -> None:
        """Reach the target and relay; ends in ``Engine.finished(self)``."""

    def buffered(self) -> int:
        """Bytes held in user space for either side."""

    def bytes_up(self) -> int:
        """Bytes read from the client so far."""

    def bytes_down(self) -> int:
        """Bytes read from the target so far."""

    def close(self, reason: str = "", *, abort: bool = False) -> None:
        """Close both legs (``abort``: drop what is not yet sent instead of sending it)."""


class TcpPath(Protocol):
    """A TCP data path: made once per Forwarder with ``(engine, loop, resolver)``."""

    #: what wraps an accepted descriptor: ``wrap(family, type, proto, fileno)``
    wrap: Callable[[int, int, int, int], Any]
    #: whether :meth:`sweep` has work (dials that may time out), so the engine's
    #: sweeper must run even without --idle-timeout
    sweeps: bool

    def accepted(self, route: TcpRoute, sock: Any, addr: tuple[Any, ...]) -> Relayed:
        """A client the engine let in: its connection, not started yet."""

    def sweep(self, now: float) -> None:
        """The engine's timer (``now``: the loop's clock): end dials past their deadline."""

    def close(self) -> None:
        """The engine has closed every connection: release what the path holds."""


class Engine(Protocol):
    """What a data path (TCP or UDP) may ask of the engine that made it."""

    stats: Stats
    allow: AllowList
    connect_timeout: float
    max_udp_sessions: int
    on_close: Callable[[ConnLog], None] | None

    def finished(self, conn: Relayed) -> None:
        """``conn`` has ended and both its sockets are closed: count it, log it."""

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task that the engine cancels when it closes."""

    def notice(self, level: str, message: str) -> None:
        """Report a notable event (``info``/``warning``) to the Forwarder's owner."""

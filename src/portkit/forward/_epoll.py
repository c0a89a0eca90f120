"""The TCP data path on Linux: one edge-triggered epoll set for every relayed connection.

Why not the event loop's transports (the path in :mod:`._tcp`, kept for systems without
epoll): measured on one core (bench/forward), a connection relayed through two uvloop
transports and a Task cost about 150 us of CPU and 38 system calls. libuv adds, checks
and drops a descriptor with ``epoll_ctl`` each time polling of it starts or stops, and
the transports ask ``getsockname``/``getpeername``/``ioctl`` for things a relay never
needs. Here each socket is added once to one epoll set, edge-triggered, and never
modified (closing it removes it); the loop watches only that set's descriptor and each
wake-up handles a batch of events in one Python call: about 15 system calls per
connection, as many as haproxy makes.

Reading: a side is read until EAGAIN or a short read (a short read empties the receive
queue; data arriving later is a new edge). Writing: what the other side does not take at
once is kept (one chunk at most) and reading stops until EPOLLOUT says there is room, so
a stalled reader stops the writer and memory stays bounded. Half-close: EOF on one side
becomes ``shutdown(SHUT_WR)`` on the other once its pending bytes are written, and the
other direction keeps flowing; when both directions have ended both sockets close. An
error on one side becomes a reset (SO_LINGER 0) on the other.
"""

from __future__ import annotations

import _socket  # the C socket type: socket.socket's Python layer costs ~5 us a connection
import asyncio
import contextlib
import errno
import os
import select
import socket
import time
from typing import TYPE_CHECKING, Any

from portkit.forward._path import READ_SIZE, proxy_header, reset_socket

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from portkit.forward._path import Engine, TcpRoute
    from portkit.forward._resolve import Resolver

__all__ = ["EpollPath", "Pair", "Relay", "Side"]

_IN, _OUT, _RDHUP = select.EPOLLIN, select.EPOLLOUT, select.EPOLLRDHUP
_ERR, _HUP = select.EPOLLERR, select.EPOLLHUP
#: Every socket is registered once with this mask and never modified.
_MASK = _IN | _OUT | _RDHUP | select.EPOLLET
_READABLE = _IN | _RDHUP | _ERR | _HUP
#: Events taken per wake-up; the rest wait for the loop's next turn (the set stays ready).
BATCH = 256
#: Spare read buffers kept for reuse; beyond that they are freed.
POOL = 8
#: Full-size reads of one side per turn before other connections get theirs.
READS_PER_TURN = 16
#: Accepted sockets stay blocking (saves an ioctl each): every call on them says DONTWAIT.
_DONTWAIT = socket.MSG_DONTWAIT
_SOCK_FLAGS = socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
_CONNECTING = frozenset({0, errno.EINPROGRESS})


class Side:
    """One socket of a relayed connection and what is known of it."""

    __slots__ = (
        "can_read",
        "eof",
        "err",
        "fd",
        "lingered",
        "nbytes",
        "pair",
        "pending",
        "rdhup",
        "shut",
        "sock",
    )

    def __init__(self, pair: Pair, sock: _socket.socket) -> None:
        self.pair = pair
        self.sock = sock
        self.fd = sock.fileno()
        self.can_read = False  #: an edge said readable and no read has said "empty" since
        self.rdhup = False  #: the peer's FIN has arrived (so a short read means EOF)
        self.err = False  #: an error is pending: read until it surfaces
        self.eof = False  #: no more data will come from this side
        self.shut = False  #: we have ended our writing towards this side
        self.lingered = False  #: its EOF waited one loop turn before being passed on
        #: bytes for this side that it did not take yet (a view of a read buffer, or bytes)
        self.pending: memoryview | bytes | None = None
        self.nbytes = 0  #: bytes read from this side


class Relay:
    """The epoll set of one Forwarder: registration, dispatch, and a turn for the busy.

    Args:
        loop: the running event loop; it watches the set's own descriptor only.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.epoll = select.epoll()
        self.sides: dict[int, Side] = {}
        self.buffer = memoryview(bytearray(READ_SIZE))
        #: spare read buffers (connections that could not send a chunk at once hold theirs)
        self.pool: list[bytearray] = []
        #: pairs with more to read than one turn allows, and pairs to re-dial after a batch
        self.busy: list[Pair] = []
        self.later: list[Pair] = []
        self._busy_scheduled = False
        #: pairs with an EOF to pass on after the loop's next turn (see Pair._move)
        self.lingering: list[Pair] = []
        self._linger_scheduled = False
        loop.add_reader(self.epoll.fileno(), self.on_ready)

    def renew(self) -> None:
        """The read buffer now holds pending bytes of a connection: read into another."""
        pool = self.pool
        self.buffer = memoryview(pool.pop() if pool else bytearray(READ_SIZE))

    def recycle(self, pending: memoryview | bytes) -> None:
        """``pending`` was sent: its buffer may be read into again."""
        if isinstance(pending, memoryview) and len(self.pool) < POOL:
            self.pool.append(pending.obj)  # type: ignore[arg-type]

    def add(self, side: Side) -> None:
        self.sides[side.fd] = side
        self.epoll.register(side.fd, _MASK)

    def drop(self, side: Side) -> None:
        """Forget a side whose socket is about to close (closing removes it from the set)."""
        if self.sides.get(side.fd) is side:
            del self.sides[side.fd]

    def on_ready(self) -> None:
        sides = self.sides
        due, self.lingering = self.lingering, []
        for fd, events in self.epoll.poll(0, BATCH):
            side = sides.get(fd)
            if side is not None:
                side.pair.on_event(side, events)
        for pair in due:  # their turn has passed: what did not end meanwhile, shuts down
            if not pair.done:
                pair.pump()
        # Sockets made while dispatching could reuse a number whose stale event is still
        # in this batch: new sockets are made only after it.
        while self.later:
            later, self.later = self.later, []
            for pair in later:
                if not pair.done:
                    pair.redial()

    def linger(self, pair: Pair) -> None:
        """Pass ``pair``'s EOF on at the next wake-up, or after one idle loop turn."""
        self.lingering.append(pair)
        if not self._linger_scheduled:
            self._linger_scheduled = True
            self.loop.call_soon(self._linger_turn, 2)

    def _linger_turn(self, hops: int) -> None:
        # call_soon callbacks run before the loop polls again: two hops let one poll
        # (and its events) happen first, so a quiet connection waits only microseconds.
        if hops > 1:
            self.loop.call_soon(self._linger_turn, hops - 1)
            return
        self._linger_scheduled = False
        if self.lingering:
            self.on_ready()

    def defer(self, pair: Pair) -> None:
        self.busy.append(pair)
        if not self._busy_scheduled:
            self._busy_scheduled = True
            self.loop.call_soon(self._run_busy)

    def _run_busy(self) -> None:
        self._busy_scheduled = False
        busy, self.busy = self.busy, []
        for pair in busy:
            if not pair.done:
                pair.pump()

    def close(self) -> None:
        if self.epoll.closed:
            return
        self.loop.remove_reader(self.epoll.fileno())
        self.epoll.close()


class EpollPath:
    """The Linux data path (a :class:`~._path.TcpPath`): one epoll set, raw sockets.

    Args:
        engine: the Forwarder.
        loop: the running loop; it watches the epoll set's descriptor only.
        resolver: where targets named by DNS are looked up.
    """

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop, resolver: Resolver) -> None:
        self.engine = engine
        self.loop = loop
        self.resolver = resolver
        self.relay = Relay(loop)
        #: Accepted sockets are the C type only (socket.socket's Python __init__ and
        #: close cost ~5 us per connection).
        self.wrap: Callable[[int, int, int, int], Any] = _socket.socket
        #: dials under way and when each gives up; the engine's sweeper ends them
        self.connecting: dict[Pair, float] = {}
        self.sweeps = True

    def accepted(self, route: TcpRoute, sock: Any, addr: tuple[Any, ...]) -> Pair:
        pair = Pair(self, route, sock, addr, time.time())
        self.connecting[pair] = self.loop.time() + self.engine.connect_timeout
        return pair

    def sweep(self, now: float) -> None:
        if self.connecting:
            for pair, deadline in list(self.connecting.items()):
                if deadline <= now:
                    pair.error = f"no answer in {self.engine.connect_timeout} s"
                    pair.fail("connect-timeout")

    def finished(self, pair: Pair) -> None:
        if self.connecting:
            self.connecting.pop(pair, None)
        self.engine.finished(pair)

    def close(self) -> None:
        self.relay.close()

    async def resolve_then_dial(self, pair: Pair) -> None:
        """A target named by DNS and not cached: resolve, then dial."""
        mapping = pair.route.mapping
        try:
            addrs = await self.resolver.targets(mapping.target_host, mapping.target_port)
        except OSError as exc:
            pair.error = exc.strerror or str(exc)
            pair.fail("connect-failed")
            return
        except asyncio.CancelledError:
            pair.close("shutdown", abort=True)
            raise
        if not pair.done:
            if addrs:
                pair.dial(addrs, mapping.target_port)
            else:
                pair.error = "no address"
                pair.fail("connect-failed")


class Pair:
    """One client connection and its target connection (a :class:`~._path.Relayed`).

    Made when a client is accepted; :meth:`start` dials the target, and the relay starts
    when it is up. Ends in ``engine.finished(pair)`` exactly once.
    """

    __slots__ = (
        "active",
        "addrs",
        "client",
        "client_addr",
        "closed_by",
        "connecting",
        "done",
        "error",
        "idle",
        "path",
        "port",
        "relay",
        "route",
        "started",
        "target_addr",
        "upstream",
    )

    def __init__(
        self,
        path: EpollPath,
        route: TcpRoute,
        sock: _socket.socket,
        client_addr: tuple[Any, ...],
        started: float,
    ) -> None:
        self.path = path
        relay = self.relay = path.relay
        self.route = route
        self.client_addr = client_addr
        self.started = started
        self.target_addr: tuple[Any, ...] | None = None
        self.client = Side(self, sock)
        self.upstream: Side | None = None
        self.closed_by = ""
        self.error: str | None = None
        self.active = False
        self.idle = 0.0
        self.connecting = True
        self.done = False
        self.addrs: Sequence[tuple[int, str]] = ()
        self.port = 0
        relay.add(self.client)

    # --- the interface the engine uses (_path.Relayed) ---------------------------------

    @property
    def relaying(self) -> bool:
        """Both legs are up (idle timeouts apply from then on)."""
        return not self.connecting

    def start(self) -> None:
        route = self.route
        addrs = route.addrs or self.path.resolver.cached(route.mapping.target_host)
        if addrs:
            self.dial(addrs, route.mapping.target_port)
        else:
            self.path.engine.spawn(self.path.resolve_then_dial(self))

    def buffered(self) -> int:
        """Bytes held in user space for either side (at most one read chunk each)."""
        return sum(len(s.pending or b"") for s in (self.client, self.upstream) if s is not None)

    def bytes_up(self) -> int:
        return self.client.nbytes

    def bytes_down(self) -> int:
        return 0 if self.upstream is None else self.upstream.nbytes

    def close(self, reason: str = "", *, abort: bool = False) -> None:
        """Close both legs (``abort``: drop what is not yet sent instead of sending it)."""
        if reason and not self.closed_by:
            self.closed_by = reason
        if not abort:
            for side in (self.client, self.upstream):
                if side is not None and side.pending is not None:
                    with contextlib.suppress(OSError):  # best effort: what fits
                        side.sock.send(side.pending, _DONTWAIT)
        self._finish(reset=False)

    # --- connecting --------------------------------------------------------------------

    def dial(self, addrs: Sequence[tuple[int, str]], port: int) -> None:
        """Connect to the first address that accepts (the rest are tried in order)."""
        self.addrs, self.port = addrs, port
        self.redial()

    def redial(self) -> None:
        while self.addrs:
            family, ip = self.addrs[0]
            self.addrs = self.addrs[1:]
            try:
                sock = _socket.socket(family, _SOCK_FLAGS)
            except OSError as exc:  # EMFILE: this client is turned away, others go on
                self.error = exc.strerror or type(exc).__name__
                continue
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            rc = sock.connect_ex((ip, self.port))
            if rc in _CONNECTING:
                self.target_addr = (ip, self.port)
                self.upstream = Side(self, sock)
                self.relay.add(self.upstream)
                return
            self.error = os.strerror(rc)
            sock.close()
        self.fail("connect-failed")

    def fail(self, why: str) -> None:
        """The target could not be reached: reset the client at once so it fails fast."""
        if self.done:
            return
        self.closed_by = why
        self._finish(reset=True)

    def _connected(self, side: Side, events: int) -> bool:
        """First event of the target socket: did the connection come up?"""
        if events & (_ERR | _HUP):
            code = side.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            self.error = os.strerror(code) if code else "connection failed"
            self.relay.drop(side)
            side.sock.close()
            self.upstream = None
            self.relay.later.append(self)  # the next address, after this batch
            return False
        if not events & _OUT:
            return False
        self.connecting = False
        path = self.path
        if path.connecting:
            path.connecting.pop(self, None)
        if self.route.proxy is not None:
            header = proxy_header(self.route.proxy, self.client_addr, self.client.sock)
            try:
                sent = side.sock.send(header, _DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._reset(side, exc)
                return False
            if sent < len(header):
                side.pending = header[sent:]
        # Whatever the client sent meanwhile is waiting: read it now.
        self.client.can_read = True
        return True

    # --- relaying ------------------------------------------------------------------------

    def on_event(self, side: Side, events: int) -> None:
        if events & _READABLE:
            side.can_read = True
            if events & _RDHUP:
                side.rdhup = True
            if events & (_ERR | _HUP):
                side.err = True
        if self.connecting:
            # While dialling, the client's events are only noted (read once connected).
            if side is not self.client and self._connected(side, events):
                self.pump()
            return
        # Only the directions this event concerns: room to write to ``side`` (what it
        # did not take, then more from the other side), and data or EOF from it.
        client, upstream = self.client, self.upstream
        assert upstream is not None
        other = upstream if side is client else client
        if events & _OUT and side.pending is not None and not self._move(other, side):
            return
        if side.can_read and not self._move(side, other, flush=False):
            return
        if client.shut and upstream.shut:
            self._finish(reset=False)

    def pump(self) -> None:
        """Both directions, as far as they go (after connecting, and for busy sides)."""
        upstream = self.upstream
        assert upstream is not None
        client = self.client
        if (
            self._move(client, upstream)
            and self._move(upstream, client)
            and client.shut
            and upstream.shut
        ):
            self._finish(reset=False)

    def _move(self, src: Side, dst: Side, *, flush: bool = True) -> bool:
        """Move what ``src`` has to ``dst``; False when the connection has ended.

        With bytes still pending for ``dst``, nothing is read from ``src``; without
        ``flush`` they are not even retried (EPOLLOUT on ``dst`` will say when).
        """
        if dst.pending is not None:
            if not flush:
                return True
            try:
                sent = dst.sock.send(dst.pending, _DONTWAIT)
            except BlockingIOError:
                return True
            except OSError as exc:
                self._reset(dst, exc)
                return False
            if sent < len(dst.pending):
                dst.pending = dst.pending[sent:]
                return True
            self.relay.recycle(dst.pending)
            dst.pending = None
        view = self.relay.buffer
        size = len(view)
        turns = READS_PER_TURN
        while src.can_read:
            if not turns:
                self.relay.defer(self)  # more to read: after the others have had a turn
                break
            turns -= 1
            try:
                n = src.sock.recv_into(view, size, _DONTWAIT)
            except BlockingIOError:
                src.can_read = False
                break
            except OSError as exc:
                self._reset(src, exc)
                return False
            if not n:
                src.eof = True
                src.can_read = False
                break
            src.nbytes += n
            self.active = True
            try:
                sent = dst.sock.send(view[:n], _DONTWAIT)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._reset(dst, exc)
                return False
            if sent < n:
                # Keep the rest where it is and read into another buffer from now on;
                # and read no more from ``src`` until ``dst`` has taken it.
                dst.pending = view[sent:n]
                self.relay.renew()
                return True
            if n < size and not src.err:  # the queue is empty now
                src.can_read = False
                src.eof = src.rdhup  # and, after a FIN, nothing more will come
                break
        if src.eof and not dst.shut and dst.pending is None:
            # This direction has ended. If the other one has too, closing both sockets
            # says FIN to both. Otherwise the FIN is passed on with a shutdown, but only
            # after the loop's next turn: the other side often ends meanwhile (an HTTP
            # client closes on the last byte of the reply), which saves a shutdown call
            # and a FIN exchange per connection, as haproxy's lazier reads do.
            if not self.closed_by:
                self.closed_by = "client" if src is self.client else "target"
            if dst.eof and src.pending is None:
                self._finish(reset=False)
                return False
            if not src.lingered:
                src.lingered = True
                self.relay.linger(self)
                return True
            dst.shut = True
            with contextlib.suppress(OSError):
                dst.sock.shutdown(socket.SHUT_WR)
        return True

    def _reset(self, side: Side, exc: OSError) -> None:
        """``side`` failed: pass it on as a reset, never as a clean end of data."""
        if not self.closed_by:
            self.closed_by = ("client" if side is self.client else "target") + "-reset"
            self.error = type(exc).__name__
        self._finish(reset=True)

    def _finish(self, *, reset: bool) -> None:
        if self.done:
            return
        self.done = True
        relay = self.relay
        for side in (self.client, self.upstream):
            if side is None:
                continue
            relay.drop(side)
            if reset:
                reset_socket(side.sock)
            side.sock.close()
            side.pending = None
            # No reference cycle left (side -> pair -> side), so reference counting frees
            # the connection at once and the cyclic collector never has to look at it.
            del side.pair
        self.path.finished(self)

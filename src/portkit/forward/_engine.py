"""The forwarder's engine: one event loop serving every mapping, TCP and UDP.

One process and one loop hold all the mappings, whether one port or a range of a
thousand: no process per connection (socat) and none per port (docker-proxy).

The engine listens, accepts, applies the allow list and the limits, ages connections
and writes the log. Moving the bytes is a data path's work, behind the interface that
:mod:`._path` declares: two TCP paths, one chosen per Forwarder (on Linux one
edge-triggered epoll set for all connections, :mod:`._epoll`, no Task and no transport
per connection; elsewhere asyncio Protocols on the loop's transports, :mod:`._tcp`),
and the UDP sessions of :mod:`._udp`. Both TCP paths keep the same records, limits,
timeouts and log lines; the relay tests run on both. Listening sockets and the
descriptor budget are :mod:`._listen`'s, target names :mod:`._resolve`'s.

The accept path is ours rather than ``loop.create_server``'s: a non-blocking
listening socket with ``add_reader`` and a bounded batch of ``accept()`` per wake-up.
That lets the allow list and the connection limit refuse a client before any
transport exists, and it keeps EMFILE from stopping anything: uvloop's server closes
itself on an accept error, here accepting pauses for a moment and resumes.

Stopping gracefully (:meth:`Forwarder.stop_accepting`, :meth:`Forwarder.close` with a
grace period) first accepts what the kernel has queued: those clients completed their
handshake, so they are relayed and drained like the others rather than reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import select
import socket
import time
from typing import TYPE_CHECKING, Any

from portkit.errors import UsageError
from portkit.forward._listen import (
    bind_tcp,
    bind_udp,
    descriptors_needed,
    ensure_descriptors,
    raise_nofile,
)
from portkit.forward._path import reset_socket, text
from portkit.forward._resolve import Resolver
from portkit.forward._udp import UdpListener
from portkit.forward.access import AllowList, connection_budget
from portkit.forward.proxy import VERSIONS
from portkit.forward.records import ConnLog, Stats
from portkit.forward.spec import Mapping, parse_specs
from portkit.model import Protocol

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine, Iterable

    from portkit.forward._path import Engine, Relayed, TcpPath, TcpRoute

__all__ = ["BACKLOG", "DATA_PATHS", "Forwarder"]

#: listen(2) backlog; the kernel clamps it to net.core.somaxconn. socat's default of 5
#: lost ~80 % of a 9,900-connection burst (docs/benchmarks.md, forward).
BACKLOG = 4096
#: accept() calls per wake-up before other sockets get a turn.
ACCEPT_BATCH = 128
#: How long accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM.
ACCEPT_PAUSE = 0.1
#: Default limit on concurrent UDP sessions per mapping.
UDP_SESSIONS = 4096
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: The TCP data paths, the default first where this system has it.
DATA_PATHS = ("epoll", "transports") if hasattr(select, "epoll") else ("transports",)


def _tcp_path(name: str) -> Callable[[Engine, asyncio.AbstractEventLoop, Resolver], TcpPath]:
    """The TCP data path called ``name``; :mod:`._epoll` is imported only when chosen
    (it needs ``select.epoll``)."""
    if name == "epoll":
        from portkit.forward._epoll import EpollPath

        return EpollPath
    from portkit.forward._tcp import TransportPath

    return TransportPath


class Forwarder:
    """Forward ports, TCP and UDP, in this event loop: an async context manager.

    Args:
        specs: forward specs (``"8080:3000"``, ``"127.0.0.1:5353:10.0.0.2:53/udp"``, ranges)
            or :class:`~portkit.forward.spec.Mapping` records.
        allow: client networks (CIDR texts) allowed to connect; empty = everyone.
        max_conns: limit on concurrent TCP connections; None = what RLIMIT_NOFILE allows.
        idle_timeout: close a TCP connection after this many seconds without data.
        connect_timeout: give up on the target after this many seconds.
        udp_timeout: end a UDP session after this many idle seconds.
        max_udp_sessions: limit on concurrent UDP sessions (None: from RLIMIT_NOFILE).
        proxy_protocol: ``"v1"`` or ``"v2"`` to send a PROXY header to TCP targets.
        on_close: called with a :class:`ConnLog` for every finished connection/session.
        on_notice: called with ``(level, message)`` for notable events (accept errors...).
        data_path: ``"epoll"`` (Linux, the default there) or ``"transports"`` (asyncio
            Protocols, the default elsewhere); see :data:`DATA_PATHS`.

    Example::

        async with Forwarder(["0:3000"]) as fwd:   # port 0: the OS picks one
            port = fwd.bound[0].listen_port
            ...                                     # connect to 127.0.0.1:port

    Leaving the block closes everything at once; :meth:`close` with ``grace`` drains.
    """

    def __init__(
        self,
        specs: Iterable[str | Mapping],
        *,
        allow: Iterable[str] | AllowList = (),
        max_conns: int | None = None,
        idle_timeout: float | None = None,
        connect_timeout: float = 10.0,
        udp_timeout: float = 60.0,
        max_udp_sessions: int | None = None,
        proxy_protocol: str | None = None,
        on_close: Callable[[ConnLog], None] | None = None,
        on_notice: Callable[[str, str], None] | None = None,
        backlog: int = BACKLOG,
        data_path: str | None = None,
    ) -> None:
        items = list(specs)
        texts = [s for s in items if isinstance(s, str)]
        self.mappings: tuple[Mapping, ...] = (
            *parse_specs(texts),
            *(s for s in items if isinstance(s, Mapping)),
        )
        if not self.mappings:
            raise UsageError("nothing to forward: give at least one spec")
        self.allow = allow if isinstance(allow, AllowList) else AllowList.parse(allow)
        if proxy_protocol is not None and proxy_protocol not in VERSIONS:
            raise UsageError(f"--proxy-protocol must be one of {', '.join(VERSIONS)}")
        for name, value in (
            ("idle_timeout", idle_timeout),
            ("connect_timeout", connect_timeout),
            ("udp_timeout", udp_timeout),
        ):
            if value is not None and value <= 0:
                raise UsageError(f"{name} must be > 0 (got {value})")
        if data_path is not None and data_path not in DATA_PATHS:
            raise UsageError(f"data_path must be one of {', '.join(DATA_PATHS)} here")
        self.data_path = data_path or DATA_PATHS[0]
        if max_conns is not None and max_conns < 1:
            raise UsageError(f"max_conns must be >= 1 (got {max_conns})")
        self.requested_max_conns = max_conns
        self.max_conns = max_conns or 0
        self.idle_timeout = idle_timeout
        self.connect_timeout = connect_timeout
        self.udp_timeout = udp_timeout
        self.requested_udp_sessions = max_udp_sessions
        self.max_udp_sessions = max_udp_sessions or 0
        self.proxy_protocol = proxy_protocol
        self.on_close = on_close
        self.on_notice = on_notice
        self.backlog = backlog
        self.stats = Stats()
        self.nofile = 0
        self._tcp: list[TcpRoute] = []
        self._udp: list[UdpListener] = []
        #: the TCP data path (made at start when there is a TCP mapping)
        self._path: TcpPath | None = None
        #: what wraps an accepted descriptor, as the data path wants it
        self._wrap: Any = None
        self._conns: set[Relayed] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._tick = 1.0
        self._accepting = False
        self._closed: asyncio.Event | None = None
        self._idle: asyncio.Event | None = None

    # --- lifecycle -------------------------------------------------------------------

    @property
    def bound(self) -> tuple[Mapping, ...]:
        """The mappings as bound, with the real port where the spec said 0."""
        return tuple(r.bound for r in self._tcp) + tuple(u.route.bound for u in self._udp)

    async def __aenter__(self) -> Forwarder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Raise the fd limit, bind every listener, start accepting.

        Raises:
            ResourceExhausted: too few file descriptors left for the listeners and one
                connection (``ulimit -n`` too low).
            ForwardError, PermissionDenied: a listener could not be bound.
        """
        if self._loop is not None:
            raise UsageError("this Forwarder was already started")
        loop = self._loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        self._idle = asyncio.Event()
        self.nofile = raise_nofile()
        ensure_descriptors(descriptors_needed(self.mappings, loop=False), self.nofile)
        # TCP gets the whole descriptor budget; UDP sessions (one descriptor each) draw
        # on the same pool. Should both fill up at once, EMFILE only pauses accepting
        # and drops the datagram that would open a session: nothing stops.
        budget = connection_budget(self.nofile)
        if self.requested_max_conns and self.requested_max_conns > budget:
            self.notice(
                "warning",
                f"--max-conns {self.requested_max_conns} lowered to {budget}: "
                f"RLIMIT_NOFILE is {self.nofile} and each connection takes 2 descriptors",
            )
        self.max_conns = min(self.requested_max_conns or budget, budget)
        udp_default = min(UDP_SESSIONS, budget)
        self.max_udp_sessions = min(self.requested_udp_sessions or udp_default, budget * 2)
        resolver = Resolver(loop)
        try:
            for mapping in self.mappings:
                if mapping.protocol is Protocol.UDP:
                    udp_route, sock = bind_udp(mapping)
                    self._udp.append(UdpListener(self, loop, resolver, udp_route, sock))
                else:
                    self._tcp.append(bind_tcp(mapping, self.backlog, self.proxy_protocol))
        except BaseException:
            self._close_listeners()
            for listener in self._udp:
                listener.sock.close()
            raise
        if self._tcp:
            path = self._path = _tcp_path(self.data_path)(self, loop, resolver)
            self._wrap = path.wrap
        self._accepting = True
        for route in self._tcp:
            loop.add_reader(route.sock.fileno(), self._on_accept, route)
        for listener in self._udp:
            listener.start()
        timeouts = [t for t in (self.idle_timeout, self.udp_timeout if self._udp else None) if t]
        if self._path is not None and self._path.sweeps:
            timeouts.append(self.connect_timeout)  # the sweeper ends stalled dials too
        if timeouts:
            # One timer for every connection: per-connection timers would cost memory
            # at 10k idle connections. Precision: a quarter of the shortest timeout.
            self._tick = min(1.0, max(0.02, min(timeouts) / 4))
            self._sweeper = loop.call_later(self._tick, self._sweep)

    def _close_listeners(self) -> None:
        loop = self._loop
        for route in self._tcp:
            if route.sock.fileno() >= 0:
                if loop is not None and self._accepting:
                    loop.remove_reader(route.sock.fileno())
                route.sock.close()
        self._accepting = False

    def stop_accepting(self) -> None:
        """Close the TCP listeners; connections already accepted go on.

        "Accepted" includes what the kernel has queued on a listener: those clients
        have completed their handshake (and may have sent a request), so they are
        taken and relayed rather than reset by the close.
        """
        self._accept_queued()
        self._close_listeners()

    async def close(self, grace: float = 0.0) -> int:
        """Stop: close listeners and UDP sessions, drain TCP for ``grace`` s, cut the rest.

        With a grace period the clients queued on the listeners are accepted first (see
        :meth:`stop_accepting`).

        Returns:
            How many TCP connections were still open when the grace period ended.
        """
        loop = self._loop
        if loop is None or self._closed is None or self._closed.is_set():
            return 0
        if grace > 0:
            self._accept_queued()
        self._close_listeners()
        for listener in self._udp:
            listener.close()
        if grace > 0 and self._conns:
            assert self._idle is not None
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
        left = len(self._conns)
        for conn in list(self._conns):
            conn.close("shutdown", abort=True)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._path is not None:
            self._path.close()
        # Let the transports deliver connection_lost (and so their log lines).
        for _ in range(3):
            if not self._conns:
                break
            await asyncio.sleep(0)
        self._closed.set()
        return left

    async def wait_closed(self) -> None:
        """Wait until :meth:`close` has finished (serve-forever for the CLI)."""
        if self._closed is None:
            raise UsageError("the Forwarder was not started")
        await self._closed.wait()

    # --- what the data paths may ask (_path.Engine) ----------------------------------

    def finished(self, conn: Relayed) -> None:
        """A TCP connection has ended, both sockets closed: count it and log it.

        Called by the data path exactly once per connection (a second call is ignored).
        """
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        stats = self.stats
        stats.tcp_active -= 1
        closed_by = conn.closed_by
        if closed_by in ("connect-failed", "connect-timeout"):
            stats.tcp_failed += 1
        elif closed_by == "idle-timeout":
            stats.tcp_timeouts += 1
        up, down = conn.bytes_up(), conn.bytes_down()
        stats.bytes_up += up
        stats.bytes_down += down
        if self.on_close is not None:
            target = conn.target_addr
            self.on_close(
                ConnLog(
                    "tcp",
                    text(conn.client_addr),
                    conn.route.listen,
                    text(target) if target else conn.route.target,
                    bytes_up=up,
                    bytes_down=down,
                    duration=time.time() - conn.started,
                    closed_by=closed_by or "client",
                    error=conn.error,
                    started=conn.started,
                )
            )
        if not self._conns and self._idle is not None:
            self._idle.set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a task that :meth:`close` cancels."""
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def notice(self, level: str, message: str) -> None:
        """Pass a notable event (``info``/``warning``) to ``on_notice``."""
        if self.on_notice is not None:
            self.on_notice(level, message)

    # --- accepting -------------------------------------------------------------------

    def _on_accept(self, route: TcpRoute) -> bool:
        """Accept a batch; True when the batch ran out before the queue did."""
        accept = route.sock._accept  # type: ignore[attr-defined]  # fd, no socket object yet
        family = route.family
        wrap = self._wrap
        for _ in range(ACCEPT_BATCH):
            try:
                fd, addr = accept()
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as exc:
                self.stats.accept_errors += 1
                if exc.errno in _EXHAUSTED:
                    self._pause_accept(route, exc)
                    return False
                continue  # ECONNABORTED and friends: that client is gone, others wait
            self._accepted(route, wrap(family, socket.SOCK_STREAM, 0, fd), addr)
        return True

    def _accept_queued(self) -> None:
        """Accept every client queued on the listeners (at most a backlog each)."""
        if not self._accepting:
            return
        for route in self._tcp:
            if route.sock.fileno() < 0:
                continue
            for _ in range(self.backlog // ACCEPT_BATCH + 1):
                if not self._on_accept(route):
                    break

    def _pause_accept(self, route: TcpRoute, exc: OSError) -> None:
        """Out of descriptors or memory: stop accepting for a moment, never for good."""
        loop = self._loop
        if loop is None or route.paused or not self._accepting:
            return
        route.paused = True
        loop.remove_reader(route.sock.fileno())
        self.notice(
            "warning",
            f"accept on {route.listen} failed: {errno.errorcode.get(exc.errno or 0, exc)}; "
            f"pausing accepts for {ACCEPT_PAUSE} s ({len(self._conns)} connections open)",
        )
        loop.call_later(ACCEPT_PAUSE, self._resume_accept, route)

    def _resume_accept(self, route: TcpRoute) -> None:
        route.paused = False
        if self._accepting and self._loop is not None and route.sock.fileno() >= 0:
            self._loop.add_reader(route.sock.fileno(), self._on_accept, route)

    def _refuse(self, route: TcpRoute, sock: Any, addr: Any, why: str) -> None:
        self.stats.tcp_refused += 1
        reset_socket(sock)
        sock.close()
        if self.on_close is not None:
            self.on_close(
                ConnLog(
                    "tcp",
                    text(addr),
                    route.listen,
                    route.target,
                    closed_by=why,
                    started=time.time(),
                )
            )

    def _accepted(self, route: TcpRoute, sock: Any, addr: Any) -> None:
        if self.allow and not self.allow.permits(addr[0]):
            self._refuse(route, sock, addr, "refused-allow")
            return
        if len(self._conns) >= self.max_conns:
            self._refuse(route, sock, addr, "refused-max-conns")
            return
        stats = self.stats
        stats.tcp_active += 1
        stats.tcp_total += 1
        assert self._path is not None
        conn = self._path.accepted(route, sock, addr)
        # Known before it starts: a dial may fail at once, and then finished() is called.
        self._conns.add(conn)
        conn.start()

    # --- timeouts --------------------------------------------------------------------

    def _sweep(self) -> None:
        """Every tick: age idle connections and sessions; end those past their timeout."""
        tick = self._tick
        loop = self._loop
        assert loop is not None
        path = self._path
        if path is not None and path.sweeps:
            path.sweep(loop.time())
        if self.idle_timeout:
            limit = self.idle_timeout
            for conn in list(self._conns):
                if conn.active:
                    conn.active = False
                    conn.idle = 0.0
                elif conn.relaying:
                    conn.idle += tick
                    if conn.idle >= limit:
                        # abort, not close: a close would wait to flush data that a
                        # stalled reader may never take.
                        conn.close("idle-timeout", abort=True)
        for listener in self._udp:
            listener.sweep(tick, self.udp_timeout)
        if self._closed is not None and not self._closed.is_set():
            self._sweeper = loop.call_later(tick, self._sweep)

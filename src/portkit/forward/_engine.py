"""The forwarder: one event loop serving every mapping, TCP and UDP.

This is the I/O module of the forward capability (spec parsing, access control and
PROXY headers are pure modules beside it). One process and one loop hold all the
mappings, whether one port or a range of a thousand: no process per connection
(socat) and none per port (docker-proxy).

The accept path is ours rather than ``loop.create_server``'s: a non-blocking
listening socket with ``add_reader`` and a bounded batch of ``accept()`` per wake-up.
That lets the allow list and the connection limit refuse a client before any
transport exists, and it keeps EMFILE from stopping anything: uvloop's server closes
itself on an accept error, here accepting pauses for a moment and resumes.

Two TCP data paths, chosen once per Forwarder: on Linux one edge-triggered epoll set
for all connections (:mod:`._epoll`, no Task and no transport per connection), elsewhere
asyncio Protocols on the loop's transports (:mod:`._tcp`). Both keep the same records,
limits, timeouts and log lines; the relay tests run on both.
"""

from __future__ import annotations

import _socket
import asyncio
import contextlib
import errno
import select
import socket
import time
from typing import TYPE_CHECKING, Any

from portkit.errors import ForwardError, PermissionDenied, UsageError
from portkit.forward._epoll import Pair, Relay
from portkit.forward._tcp import Conn, ReadBuffer, reset_socket
from portkit.forward._udp import UdpListener, UdpSession
from portkit.forward.access import AllowList, connection_budget
from portkit.forward.proxy import VERSIONS, build_header
from portkit.forward.records import ConnLog, Stats
from portkit.forward.spec import LOCAL_TARGET, Mapping, parse_specs
from portkit.model import Protocol, _ip_literal

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["BACKLOG", "DATA_PATHS", "Forwarder", "raise_nofile"]

#: listen(2) backlog; the kernel clamps it to net.core.somaxconn. socat's default of 5
#: lost ~80 % of a 9,900-connection burst (shared/notes/forwarding.md).
BACKLOG = 4096
#: accept() calls per wake-up before other sockets get a turn.
ACCEPT_BATCH = 128
#: How long accepting pauses after EMFILE/ENFILE/ENOBUFS/ENOMEM.
ACCEPT_PAUSE = 0.1
#: Default limit on concurrent UDP sessions per mapping.
UDP_SESSIONS = 4096
#: How long a resolved target name is reused.
RESOLVE_TTL = 10.0
_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_LOCALHOST = ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))
#: The TCP data paths, the default first where this system has it.
DATA_PATHS = ("epoll", "transports") if hasattr(select, "epoll") else ("transports",)


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


def _static_targets(host: str) -> tuple[tuple[int, str], ...]:
    """(family, ip) pairs for an IP literal or ``localhost``; empty for a DNS name."""
    literal = _ip_literal(host)
    if literal is not None:
        return ((socket.AF_INET6 if ":" in literal else socket.AF_INET, literal),)
    return _LOCALHOST if host == LOCAL_TARGET else ()


def _text(addr: tuple[Any, ...]) -> str:
    host = str(addr[0])
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


def _bind_error(exc: OSError, where: str) -> Exception:
    """Translate a bind/listen OSError at the one boundary where it happens."""
    if exc.errno == errno.EADDRINUSE:
        return ForwardError(f"cannot listen on {where}: address already in use")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return PermissionDenied(
            f"cannot listen on {where}", needed="root or CAP_NET_BIND_SERVICE for ports < 1024"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return ForwardError(f"cannot listen on {where}: that address is not on this host")
    return ForwardError(f"cannot listen on {where}: {exc.strerror or exc}")


class _TcpRoute:
    """A listening TCP socket and the mapping it serves."""

    __slots__ = ("addrs", "bound", "family", "listen", "mapping", "paused", "sock", "target")

    def __init__(self, mapping: Mapping, sock: socket.socket) -> None:
        self.mapping = mapping
        self.sock = sock
        self.family = sock.family
        #: the target's (family, ip) pairs when known without DNS, else empty
        self.addrs = _static_targets(mapping.target_host)
        host, port = sock.getsockname()[:2]
        self.bound = Mapping(
            port,
            mapping.target_host,
            mapping.target_port,
            protocol=mapping.protocol,
            listen_host=host,
            explicit_bind=mapping.explicit_bind,
        )
        self.listen = self.bound.listen
        self.target = mapping.target
        self.paused = False


class _UdpRoute:
    __slots__ = ("bound", "listen", "listener", "mapping", "target")

    def __init__(self, mapping: Mapping, bound: Mapping) -> None:
        self.mapping = mapping
        self.bound = bound
        self.listen = bound.listen
        self.target = mapping.target
        self.listener: UdpListener | None = None


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
        self.read_buffer = ReadBuffer()
        self.nofile = 0
        self._tcp: list[_TcpRoute] = []
        self._udp: list[_UdpRoute] = []
        self._conns: set[Conn | Pair] = set()
        #: what wraps an accepted descriptor: the epoll path needs only the C socket
        #: type (socket.socket's Python __init__ and close cost ~5 us per connection)
        self._wrap: Any = _socket.socket if self.data_path == "epoll" else socket.socket
        self._relay: Relay | None = None
        #: epoll path: connections still dialling, and when they give up
        self._connecting: dict[Pair, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._resolved: dict[str, tuple[float, tuple[tuple[int, str], ...]]] = {}
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
        return tuple(r.bound for r in self._tcp) + tuple(r.bound for r in self._udp)

    async def __aenter__(self) -> Forwarder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Raise the fd limit, bind every listener, start accepting."""
        if self._loop is not None:
            raise UsageError("this Forwarder was already started")
        loop = self._loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        self._idle = asyncio.Event()
        self.nofile = raise_nofile()
        # TCP gets the whole descriptor budget; UDP sessions (one descriptor each) draw
        # on the same pool. Should both fill up at once, EMFILE only pauses accepting
        # and drops the datagram that would open a session: nothing stops.
        budget = connection_budget(self.nofile)
        if self.requested_max_conns and self.requested_max_conns > budget:
            self._notice(
                "warning",
                f"--max-conns {self.requested_max_conns} lowered to {budget}: "
                f"RLIMIT_NOFILE is {self.nofile} and each connection takes 2 descriptors",
            )
        self.max_conns = min(self.requested_max_conns or budget, budget)
        udp_default = min(UDP_SESSIONS, budget)
        self.max_udp_sessions = min(self.requested_udp_sessions or udp_default, budget * 2)
        try:
            for mapping in self.mappings:
                if mapping.protocol is Protocol.UDP:
                    self._bind_udp(mapping)
                else:
                    self._bind_tcp(mapping)
        except BaseException:
            self._close_listeners()
            raise
        if self.data_path == "epoll" and self._tcp:
            self._relay = Relay(loop)
        self._accepting = True
        for route in self._tcp:
            loop.add_reader(route.sock.fileno(), self._on_accept, route)
        for uroute in self._udp:
            assert uroute.listener is not None
            loop.add_reader(uroute.listener.sock.fileno(), uroute.listener.on_readable)
        timeouts = [t for t in (self.idle_timeout, self.udp_timeout if self._udp else None) if t]
        if self._relay is not None:
            timeouts.append(self.connect_timeout)  # the sweeper ends stalled dials too
        if timeouts:
            # One timer for every connection: per-connection timers would cost memory
            # at 10k idle connections. Precision: a quarter of the shortest timeout.
            self._tick = min(1.0, max(0.02, min(timeouts) / 4))
            self._sweeper = loop.call_later(self._tick, self._sweep)

    def _bind_tcp(self, mapping: Mapping) -> None:
        family = socket.AF_INET6 if ":" in mapping.listen_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            # Accepted sockets inherit these (Linux, BSDs): no calls per connection.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.bind((mapping.listen_host, mapping.listen_port))
            sock.listen(self.backlog)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise _bind_error(exc, f"{mapping.listen}/tcp") from exc
        self._tcp.append(_TcpRoute(mapping, sock))

    def _bind_udp(self, mapping: Mapping) -> None:
        family = socket.AF_INET6 if ":" in mapping.listen_host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((mapping.listen_host, mapping.listen_port))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise _bind_error(exc, f"{mapping.listen}/udp") from exc
        host, port = sock.getsockname()[:2]
        bound = Mapping(
            port,
            mapping.target_host,
            mapping.target_port,
            protocol=Protocol.UDP,
            listen_host=host,
            explicit_bind=mapping.explicit_bind,
        )
        route = _UdpRoute(mapping, bound)
        route.listener = UdpListener(self, route, sock)
        self._udp.append(route)

    def _close_listeners(self) -> None:
        loop = self._loop
        for route in self._tcp:
            if route.sock.fileno() >= 0:
                if loop is not None and self._accepting:
                    loop.remove_reader(route.sock.fileno())
                route.sock.close()
        self._accepting = False

    def stop_accepting(self) -> None:
        """Close the TCP listeners; connections already relayed go on."""
        self._close_listeners()

    async def close(self, grace: float = 0.0) -> int:
        """Stop: close listeners and UDP sessions, drain TCP for ``grace`` s, cut the rest.

        Returns:
            How many TCP connections were still open when the grace period ended.
        """
        loop = self._loop
        if loop is None or self._closed is None or self._closed.is_set():
            return 0
        self._close_listeners()
        for uroute in self._udp:
            listener = uroute.listener
            if listener is None:
                continue
            for session in list(listener.sessions.values()):
                self._udp_close(session, "shutdown")
            if listener.sock.fileno() >= 0:
                loop.remove_reader(listener.sock.fileno())
                listener.sock.close()
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
        if self._relay is not None:
            self._relay.close()
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

    def _notice(self, level: str, message: str) -> None:
        if self.on_notice is not None:
            self.on_notice(level, message)

    # --- TCP -------------------------------------------------------------------------

    def _on_accept(self, route: _TcpRoute) -> None:
        accept = route.sock._accept  # type: ignore[attr-defined]  # fd, no socket object yet
        family = route.family
        for _ in range(ACCEPT_BATCH):
            try:
                fd, addr = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.stats.accept_errors += 1
                if exc.errno in _EXHAUSTED:
                    self._pause_accept(route, exc)
                    return
                continue  # ECONNABORTED and friends: that client is gone, others wait
            self._accepted(route, self._wrap(family, socket.SOCK_STREAM, 0, fd), addr)

    def _pause_accept(self, route: _TcpRoute, exc: OSError) -> None:
        """Out of descriptors or memory: stop accepting for a moment, never for good."""
        loop = self._loop
        if loop is None or route.paused or not self._accepting:
            return
        route.paused = True
        loop.remove_reader(route.sock.fileno())
        self._notice(
            "warning",
            f"accept on {route.listen} failed: {errno.errorcode.get(exc.errno or 0, exc)}; "
            f"pausing accepts for {ACCEPT_PAUSE} s ({len(self._conns)} connections open)",
        )
        loop.call_later(ACCEPT_PAUSE, self._resume_accept, route)

    def _resume_accept(self, route: _TcpRoute) -> None:
        route.paused = False
        if self._accepting and self._loop is not None and route.sock.fileno() >= 0:
            self._loop.add_reader(route.sock.fileno(), self._on_accept, route)

    def _refuse(self, route: _TcpRoute, sock: Any, addr: Any, why: str) -> None:
        self.stats.tcp_refused += 1
        reset_socket(sock)
        sock.close()
        if self.on_close is not None:
            self.on_close(
                ConnLog(
                    "tcp",
                    _text(addr),
                    route.listen,
                    route.target,
                    closed_by=why,
                    started=time.time(),
                )
            )

    def _accepted(self, route: _TcpRoute, sock: Any, addr: Any) -> None:
        if self.allow and not self.allow.permits(addr[0]):
            self._refuse(route, sock, addr, "refused-allow")
            return
        if len(self._conns) >= self.max_conns:
            self._refuse(route, sock, addr, "refused-max-conns")
            return
        stats = self.stats
        stats.tcp_active += 1
        stats.tcp_total += 1
        relay = self._relay
        if relay is not None:
            pair = Pair(self, relay, route, sock, addr, time.time())
            self._conns.add(pair)
            assert self._loop is not None
            self._connecting[pair] = self._loop.time() + self.connect_timeout
            addrs = route.addrs or self._cached(route.mapping.target_host)
            if addrs:
                pair.dial(addrs, route.mapping.target_port)
            else:
                self._spawn(self._resolve_then_dial(pair))
            return
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        assert self._loop is not None
        conn = Conn(self, route, addr, time.time())
        self._conns.add(conn)
        self._spawn(self._connect(conn, sock))

    def _spawn(self, coro: Any) -> None:
        assert self._loop is not None
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _cached(self, host: str) -> tuple[tuple[int, str], ...]:
        """The addresses of a name resolved less than RESOLVE_TTL s ago (else empty)."""
        assert self._loop is not None
        cached = self._resolved.get(host)
        if cached is not None and cached[0] > self._loop.time():
            return cached[1]
        return ()

    async def _resolve_then_dial(self, pair: Pair) -> None:
        """epoll path, a target named by DNS and not cached: resolve, then dial."""
        mapping = pair.route.mapping
        try:
            addrs = await self._targets(mapping.target_host, mapping.target_port)
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

    def _tcp_connected(self, pair: Pair) -> None:
        self._connecting.pop(pair, None)

    async def _targets(self, host: str, port: int) -> tuple[tuple[int, str], ...]:
        """(family, ip) pairs to try for ``host``; names are cached for RESOLVE_TTL s."""
        static = _static_targets(host) or self._cached(host)
        if static:
            return static
        assert self._loop is not None
        now = self._loop.time()
        infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found = tuple(dict.fromkeys((int(f), str(sa[0])) for f, _, _, _, sa in infos))
        self._resolved[host] = (now + RESOLVE_TTL, found)
        return found

    async def _connect(self, conn: Conn, sock: socket.socket) -> None:
        """Connect to the target, then wrap the client: both legs start relaying."""
        loop = self._loop
        assert loop is not None
        route = conn.route
        port = route.mapping.target_port
        upstream: Any = None
        error: str | None = None
        task = asyncio.current_task()
        assert task is not None
        # A plain timer rather than asyncio.timeout(): a third of the cost per connection.
        timer = loop.call_later(self.connect_timeout, self._connect_expired, conn, task)
        try:
            addrs = route.addrs or await self._targets(route.mapping.target_host, port)
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
                self._tcp_done(conn, "shutdown")
                raise
            task.uncancel()
            error = f"no answer in {self.connect_timeout} s"
        timer.cancel()
        if upstream is None:
            # Target down: reset the client at once so it fails fast; keep serving.
            reset_socket(sock)
            sock.close()
            conn.error = error
            self._tcp_done(conn, "connect-failed")
            return
        upstream.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if self.proxy_protocol is not None:
            dest = sock.getsockname()
            upstream.write(build_header(self.proxy_protocol, conn.client_addr[:2], dest[:2]))
        try:
            await loop.connect_accepted_socket(lambda: conn.client, sock)
        except (OSError, asyncio.CancelledError):
            sock.close()
            upstream.abort()
            self._tcp_done(conn, "shutdown")
            raise

    def _connect_expired(self, conn: Conn, task: asyncio.Task[None]) -> None:
        if not task.done():
            conn.closed_by = "connect-timeout"
            task.cancel()

    def _tcp_done(self, conn: Conn | Pair, reason: str = "") -> None:
        if conn not in self._conns:
            return
        self._conns.discard(conn)
        if self._connecting:
            self._connecting.pop(conn, None)  # type: ignore[arg-type]
        stats = self.stats
        stats.tcp_active -= 1
        if reason and not conn.closed_by:
            conn.closed_by = reason
        if conn.closed_by in ("connect-failed", "connect-timeout"):
            stats.tcp_failed += 1
        elif conn.closed_by == "idle-timeout":
            stats.tcp_timeouts += 1
        up, down = conn.bytes_up(), conn.bytes_down()
        stats.bytes_up += up
        stats.bytes_down += down
        if self.on_close is not None:
            target = conn.target_addr
            self.on_close(
                ConnLog(
                    "tcp",
                    _text(conn.client_addr),
                    conn.route.listen,
                    _text(target) if target else conn.route.target,
                    bytes_up=up,
                    bytes_down=down,
                    duration=time.time() - conn.started,
                    closed_by=conn.closed_by or "client",
                    error=conn.error,
                    started=conn.started,
                )
            )
        if not self._conns and self._idle is not None:
            self._idle.set()

    # --- UDP -------------------------------------------------------------------------

    def _udp_open(self, listener: UdpListener, addr: tuple[Any, ...]) -> UdpSession | None:
        """A new client endpoint: open its upstream socket (None: drop the datagram)."""
        route = listener.route
        mapping = route.mapping
        if self.allow and not self.allow.permits(addr[0]):
            return None
        if len(listener.sessions) >= self.max_udp_sessions:
            oldest = min(listener.sessions.values(), key=lambda s: (s.active, -s.idle))
            self._udp_close(oldest, "evicted")
        target = self._udp_target(mapping)
        if target is None:
            return None
        family, ip = target
        try:
            sock = socket.socket(family, socket.SOCK_DGRAM)
        except OSError as exc:  # EMFILE: drop this datagram, the client may retry
            self.stats.accept_errors += 1
            self._notice("warning", f"UDP session for {_text(addr)} not opened: {exc.strerror}")
            return None
        try:
            sock.setblocking(False)
            sock.connect((ip, mapping.target_port))
        except OSError as exc:
            sock.close()
            self._notice("warning", f"UDP target {mapping.target} unusable: {exc.strerror or exc}")
            return None
        assert self._loop is not None
        session = UdpSession(listener, addr, sock, time.time())
        listener.sessions[addr] = session
        self._loop.add_reader(sock.fileno(), session.on_readable)
        self.stats.udp_sessions += 1
        self.stats.udp_sessions_total += 1
        return session

    def _udp_target(self, mapping: Mapping) -> tuple[int, str] | None:
        literal = _ip_literal(mapping.target_host)
        if literal is not None:
            return (socket.AF_INET6 if ":" in literal else socket.AF_INET, literal)
        if mapping.target_host == LOCAL_TARGET:
            return _LOCALHOST[0]
        assert self._loop is not None
        cached = self._resolved.get(mapping.target_host)
        if cached is not None and cached[1] and cached[0] > self._loop.time():
            return cached[1][0]
        # Not resolved yet: resolve in the background; this datagram is dropped (UDP).
        task = self._loop.create_task(self._resolve_quietly(mapping))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None

    async def _resolve_quietly(self, mapping: Mapping) -> None:
        try:
            await self._targets(mapping.target_host, mapping.target_port)
        except OSError as exc:
            self._notice("warning", f"cannot resolve {mapping.target_host}: {exc}")

    def _udp_close(self, session: UdpSession, why: str) -> None:
        listener = session.listener
        if listener.sessions.pop(session.client, None) is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(session.sock.fileno())
        session.sock.close()
        self.stats.udp_sessions -= 1
        if self.on_close is not None:
            self.on_close(
                ConnLog(
                    "udp",
                    _text(session.client),
                    listener.route.listen,
                    _text(session.target),
                    bytes_up=session.bytes_up,
                    bytes_down=session.bytes_down,
                    duration=time.time() - session.started,
                    closed_by=why,
                    started=session.started,
                )
            )

    # --- timeouts --------------------------------------------------------------------

    def _sweep(self) -> None:
        """Every tick: age idle connections and sessions; end those past their timeout."""
        tick = self._tick
        if self._connecting:
            assert self._loop is not None
            now = self._loop.time()
            for pair, deadline in list(self._connecting.items()):
                if deadline <= now:
                    pair.error = f"no answer in {self.connect_timeout} s"
                    pair.fail("connect-timeout")
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
        for route in self._udp:
            listener = route.listener
            if listener is None:
                continue
            for session in list(listener.sessions.values()):
                if session.active:
                    session.active = False
                    session.idle = 0.0
                else:
                    session.idle += tick
                    if session.idle >= self.udp_timeout:
                        self._udp_close(session, "udp-timeout")
        if self._loop is not None and self._closed is not None and not self._closed.is_set():
            self._sweeper = self._loop.call_later(tick, self._sweep)

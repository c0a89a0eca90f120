"""The I/O of the reach capability: an event-driven TCP connect engine, and the readiness
loop it shares with the UDP prober (``_udp_engine``).

Both engines run one readiness loop over non-blocking sockets, with hundreds of
probes in flight: ``select.epoll`` on Linux, :mod:`selectors` elsewhere (kqueue,
poll or select; ``_poller``). The Linux-only refinements (the ICMP error queue,
``IP_RECVERR``/``IPV6_RECVERR``) are used where the system has them; elsewhere the
TCP engine judges by the errno alone and UDP probes use one connected socket each
(so an ICMP port-unreachable still comes back as ECONNREFUSED): docs/reach.md says
what a platform cannot tell. Deadlines live in one FIFO
per host: every probe to a host shares that host's timeout, so the oldest probe is
always the next to expire and expiry costs O(1). A measured design (docs/reach.md, "The engine"):
asyncio was 2-9x slower than ``nmap -sT`` on a full port range, a plain epoll loop
1.0-1.3x.

What the kernel says is turned into (state, reason) by the pure tables in
``_states``; this module only moves bytes and reads errors. Details that matter:

* Linux treats an ICMPv6 error to a socket in SYN-SENT as soft (RFC 5461) and,
  without ``IPV6_RECVERR``, reports it only at the first SYN retransmit, a second
  later (measured on 6.18: 1,020 ms); with it the error comes at once (0.1 ms), with
  its ICMP type and code. So the retry of a silent IPv6 port sets it (and every IPv6
  try does when there is no retry); should the option ever be refused, IPv6 probes
  keep one socket for at least 1.1 s instead, so the kernel's own retransmit brings
  the late error in before "filtered" is said. On IPv4 the ICMP errno is immediate;
  a port answering with one is probed again with ``IP_RECVERR`` to read the ICMP
  code (admin-prohibited and host-unreachable share EHOSTUNREACH).
* A TCP connect whose local address equals the remote one is a self-connect (a
  loopback port in the ephemeral range can "accept" its own SYN): retried, never open.
* Connected probes close with ``SO_LINGER {1, 0}``: an RST, no TIME_WAIT pile-up.
* Running out of fds (EMFILE) or local ports (EADDRNOTAVAIL) shrinks the number in
  flight and tries again; it fails only when not even one probe can be sent.
"""

from __future__ import annotations

import _socket
import errno as E
import socket
import struct
import sys
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from portkit.errors import ProbeError, ResourceExhausted
from portkit.probe._poller import ERR, HUP, IN, OUT, SELECT_FD_LIMIT, make_poller
from portkit.probe._records import PortState, Reason
from portkit.probe._states import (
    LOCAL_RETRY_ERRNOS,
    TCP_ERRNO,
    icmp_verdict,
    parse_extended_err,
    tcp_errno_verdict,
)
from portkit.probe._timing import (
    IPV6_ICMP_GRACE,
    FixedTimeout,
    RateLimiter,
    RttEstimator,
    concurrency_for,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = ["TcpOutcome", "UdpOutcome", "connect_scan"]

#: The error queue (Linux): where it is missing, ICMP details are not read at all.
HAS_ERRQUEUE = hasattr(socket, "MSG_ERRQUEUE") and sys.platform.startswith("linux")
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
_LINGER0 = struct.pack("ii", 1, 0)
_EPOLLOUT, _EPOLLIN, _EPOLLERR, _EPOLLHUP = OUT, IN, ERR, HUP
_MAXEVENTS = 1024
_BATCH = 128  # connects sent between two reads of the ready list
_MAX_IDLE_HOSTS = 4096  # per-host timing kept before idle hosts are forgotten
_FD_ERRNOS = frozenset({E.EMFILE, E.ENFILE, E.ENOBUFS, E.ENOMEM})
#: connect() errors that come from an ICMP message whose details are worth reading.
_ICMP_ERRNOS = frozenset({E.EHOSTUNREACH, E.ENETUNREACH, E.EACCES, E.EPERM, E.ENOPROTOOPT})
_SELF_CONNECT_RETRIES = 5

#: (key, host IP, port, state, reason, rtt seconds or None, connected socket or None)
TcpOutcome = tuple[Any, str, int, PortState, Reason, "float | None", "socket.socket | None"]
#: (key, host IP, port, state, reason, rtt seconds or None, reply bytes or None)
UdpOutcome = tuple[Any, str, int, PortState, Reason, "float | None", "bytes | None"]


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def _sized(concurrency: int | None) -> int:
    """Probes in flight: the request, fitted under RLIMIT_NOFILE (raised if allowed)."""
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the selector's own limit applies
        return concurrency or 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n, new_soft = concurrency_for(concurrency, soft, hard)
    if new_soft != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        except (ValueError, OSError):
            n, _ = concurrency_for(concurrency, soft, soft)
    return n


class _Host:
    """Per-host timing: the RTT estimate and the FIFO of probes in flight."""

    __slots__ = ("est", "fifo", "grace")

    def __init__(self, est: RttEstimator | FixedTimeout, grace: float) -> None:
        self.est = est
        self.fifo: deque[tuple[Any, Any]] = deque()
        self.grace = grace


class _Probe:
    __slots__ = (
        "host",
        "ip",
        "key",
        "port",
        "recverr",
        "selfconn",
        "sent",
        "sock",
        "sockaddr",
        "tries",
    )

    def __init__(self, key: Any, ip: str, port: int, host: _Host) -> None:
        self.key = key
        self.ip = ip
        self.port = port
        self.host = host
        self.sockaddr = (ip, port)
        self.tries = 0
        self.selfconn = 0
        self.recverr = False  # set per try: see connect_scan
        self.sent = 0.0
        self.sock: Any = None


def is_self_connect(sock: Any, ip: str, port: int) -> bool:
    """True when ``sock`` is connected to itself: its local address is the remote one.

    On loopback, a connect to a free port inside the ephemeral range can pick that
    very port as its source; the SYN meets itself (TCP simultaneous open) and the
    connect "succeeds" with nobody listening. nmap checks the same way.
    """
    try:
        local = sock.getsockname()
    except OSError:
        return False
    return bool(local[0] == ip and local[1] == port)


def _read_icmp(sock: Any, protocol: str) -> tuple[PortState, Reason] | None:
    """The verdict of the first ICMP error queued on ``sock`` (IP_RECVERR), if any."""
    for _ in range(4):
        try:
            _, anc, _, _ = sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
        except OSError:
            return None
        for level, kind, data in anc:
            if (level, kind) in (
                (socket.IPPROTO_IP, IP_RECVERR),
                (socket.IPPROTO_IPV6, IPV6_RECVERR),
            ):
                ee = parse_extended_err(data)
                found = icmp_verdict(ee.origin, ee.type, ee.code, protocol)
                if found is not None:
                    return found
    return None


def _forgetting(ep: Any) -> Callable[[Any], None]:
    """``close`` for a selector, which keeps a closed descriptor registered: the socket
    is forgotten first (epoll forgets it by itself)."""
    import contextlib

    def drop(sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):  # never registered
            ep.unregister(sock.fileno())
        sock.close()

    return drop


class _Loop:
    """What both engines share: hosts, timeouts, rate, the epoll object, progress."""

    def __init__(
        self,
        *,
        timeout: float | None,
        retries: int,
        rate: float | None,
        progress: Callable[[int], None] | None,
        clock: Callable[[], float],
        initial_timeout: float,
        poller: str | None = None,
    ) -> None:
        self.fixed = timeout
        self.retries = max(0, retries)
        self.clock = clock
        self.rate = RateLimiter(rate, now=clock()) if rate else None
        self.progress = progress
        self.hosts: dict[str, _Host] = {}
        self.active: dict[_Host, None] = {}  # hosts with probes in their FIFO
        self.done = 0
        self.initial = initial_timeout
        self.ep = make_poller(poller)
        self._last_progress = 0.0

    def host(self, ip: str, v6_grace: bool) -> _Host:
        h = self.hosts.get(ip)
        if h is None:
            if len(self.hosts) >= _MAX_IDLE_HOSTS:
                # A sweep of a big block: forget hosts with nothing in flight (memory
                # stays bounded; one probed again later starts from the initial timeout).
                self.hosts = {k: v for k, v in self.hosts.items() if v in self.active}
            est: RttEstimator | FixedTimeout = (
                FixedTimeout(self.fixed) if self.fixed is not None else RttEstimator(self.initial)
            )
            h = self.hosts[ip] = _Host(est, IPV6_ICMP_GRACE if v6_grace and ":" in ip else 0.0)
        return h

    def next_wait(self, now: float, timeout_of: Callable[[_Host], float]) -> float:
        """Seconds until the earliest head-of-FIFO deadline (at most 0.25 s)."""
        wait = 0.25
        for h in self.active:
            fifo = h.fifo
            if fifo:
                left = fifo[0][0].sent + timeout_of(h) - now
                if left < wait:
                    wait = left
        return max(0.0, wait)

    def tick(self, now: float) -> None:
        if self.progress is not None and now - self._last_progress >= 0.2:
            self._last_progress = now
            self.progress(self.done)

    def close(self) -> None:
        self.ep.close()
        if self.progress is not None:
            self.progress(self.done)


def connect_scan(
    jobs: Iterable[tuple[Any, str, int]],
    on_result: Callable[[Any, str, int, PortState, Reason, float | None, Any], None],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    timeout: float | None = None,
    retries: int = 1,
    keep_open: bool = False,
    refine_refused: bool = False,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    poller: str | None = None,
    _bind: tuple[str, int] | None = None,
) -> None:
    """Probe every ``(key, ip, port)`` of ``jobs`` with a TCP connect; report each once.

    Args:
        jobs: what to probe; ``ip`` is an IPv4 or IPv6 literal. Consumed lazily.
        on_result: called once per job with ``(key, ip, port, state, reason, rtt, sock)``;
            ``sock`` is the connected (blocking) socket when ``keep_open`` and the port
            is open (the callback owns it then), else None.
        concurrency: probes in flight (default: 1000, fitted under RLIMIT_NOFILE).
        rate: at most this many new connects per second (None: no cap).
        timeout: seconds per try; None adapts it per host from measured RTTs.
        retries: extra tries before a silent port is called filtered.
        keep_open: hand connected sockets to ``on_result`` instead of resetting them.
        refine_refused: read the error queue on ECONNREFUSED too, to tell an ICMP
            port-unreachable from a RST (costs a syscall per closed port).
        progress: called about five times a second with the number of jobs done.
        clock: the monotonic clock (injectable).
        poller: ``epoll``, ``poll``, ``select``, ``kqueue`` or ``default`` (None: the
            system's best; see ``_poller``).
        _bind: a local address for every probe socket (a test seam: binding the
            target's own address and port forces a self-connect).

    Raises:
        ResourceExhausted: when not even one socket can be opened.
        ProbeError: for an error that says nothing about the target.
    """
    loop = _Loop(
        timeout=timeout,
        retries=retries,
        rate=rate,
        progress=progress,
        clock=clock,
        initial_timeout=1.0,
        poller=poller,
    )
    limit = _sized(concurrency)
    ep = loop.ep
    register = ep.register
    exact = ep.exact_errors
    if ep.name == "select":
        limit = min(limit, SELECT_FD_LIMIT - 64)
    recverr_ok = HAS_ERRQUEUE
    inflight: dict[int, _Probe] = {}
    pending: deque[_Probe] = deque()  # retries first, then new jobs
    jobs_it = iter(jobs)
    exhausted = False
    retries_n = loop.retries
    # This loop runs once per port of a 65,535-port scan: locals, not attributes, and
    # the C socket type (socket.socket's Python wrapper costs ~5 us a probe).
    mk_socket = _socket.socket
    NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)
    SOCK = socket.SOCK_STREAM | NONBLOCK
    SOL_SOCKET, SO_ERROR, SO_LINGER = socket.SOL_SOCKET, socket.SO_ERROR, socket.SO_LINGER
    AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6
    IPPROTO_IP, IPPROTO_IPV6 = socket.IPPROTO_IP, socket.IPPROTO_IPV6
    ECONNREFUSED = E.ECONNREFUSED
    # Windows says WSAEWOULDBLOCK where POSIX says EINPROGRESS.
    IN_PROGRESS = frozenset(
        {E.EINPROGRESS, E.EWOULDBLOCK, getattr(E, "WSAEWOULDBLOCK", E.EWOULDBLOCK)}
    )
    CLOSED, CONN_REFUSED = PortState.CLOSED, Reason.CONN_REFUSED
    # epoll flags a failed connect as an error; a selector only as writable, so there
    # every writable socket's SO_ERROR is read (-1: every bit set, the branch always taken).
    ERRMASK = _EPOLLERR | _EPOLLHUP if exact else -1
    errno_table = TCP_ERRNO
    drop: Callable[[Any], None] = _socket.socket.close if exact else _forgetting(ep)
    backoff_until = 0.0
    local_failures = 0
    done = 0
    # IPv6 ICMP errors need IPV6_RECVERR to arrive at once (module doc). With a retry to
    # come, the first try goes without it (one syscall less per port: a rejected port
    # then falls silent and its retry, which sets it, reads the error); without one,
    # the first try must set it.
    v6_first = retries_n == 0 and recverr_ok

    def timeout_of(h: _Host) -> float:
        t = h.est.timeout
        if h.grace:
            # No IPV6_RECVERR: one socket, the kernel's SYN retransmit is the retry.
            t = max(t * (retries_n + 1), h.grace)
        return t

    def report(p: _Probe, state: PortState, reason: Reason, rtt: float | None, sock: Any) -> None:
        nonlocal done
        done += 1
        on_result(p.key, p.ip, p.port, state, reason, rtt, sock)

    def sample(h: _Host, rtt: float) -> None:
        # Karn: no sample from an answer that came after the timeout (a late one).
        if rtt <= h.est.timeout or h.grace:
            h.est.update(rtt)

    def finish_error(p: _Probe, sock: Any, err: int, now: float) -> None:
        if recverr_ok and not p.recverr and (err in _ICMP_ERRNOS or refine_refused):
            # An ICMP error on IPv4: ask again with IP_RECVERR on to read its type and
            # code (admin-prohibited and host-unreachable share EHOSTUNREACH). Only the
            # few ports that answer this way pay for it; not counted as a retry.
            drop(sock)
            p.recverr = True
            pending.appendleft(p)
            return
        verdict = errno_table.get(err) or tcp_errno_verdict(err)
        if recverr_ok and (err != ECONNREFUSED or refine_refused):
            verdict = _read_icmp(sock, "tcp") or verdict
        drop(sock)
        rtt = now - p.sent
        sample(p.host, rtt)
        report(p, verdict[0], verdict[1], rtt, None)

    def finish_open(p: _Probe, sock: Any, now: float) -> None:
        if is_self_connect(sock, p.ip, p.port):
            # Our SYN met itself: nobody listens. Try again from another source port.
            sock.setsockopt(SOL_SOCKET, SO_LINGER, _LINGER0)
            drop(sock)
            p.selfconn += 1
            if p.selfconn > _SELF_CONNECT_RETRIES:
                report(p, CLOSED, CONN_REFUSED, None, None)
            else:
                pending.appendleft(p)
            return
        rtt = now - p.sent
        sample(p.host, rtt)
        if keep_open:
            if not exact:
                ep.unregister(sock.fileno())
            conn = socket.socket(fileno=sock.detach())
            conn.setblocking(True)
            report(p, PortState.OPEN, Reason.SYN_ACK, rtt, conn)
        else:
            sock.setsockopt(SOL_SOCKET, SO_LINGER, _LINGER0)
            drop(sock)
            report(p, PortState.OPEN, Reason.SYN_ACK, rtt, None)

    def start(p: _Probe) -> bool:
        """Send one try; False when the machine is out of fds or ports (back off)."""
        nonlocal limit, backoff_until, local_failures, done
        v6 = ":" in p.ip
        try:
            sock = mk_socket(AF_INET6 if v6 else AF_INET, SOCK)
        except OSError as exc:
            if exc.errno in _FD_ERRNOS:
                if not inflight:
                    raise ResourceExhausted(f"cannot open a socket: {exc.strerror}") from exc
                limit = max(1, len(inflight) - 1)
                pending.appendleft(p)
                return False
            raise ProbeError(f"cannot open a socket: {exc.strerror}", errno=exc.errno) from exc
        if not NONBLOCK:
            sock.setblocking(False)
        if p.recverr and recverr_ok:
            try:
                if v6:
                    sock.setsockopt(IPPROTO_IPV6, IPV6_RECVERR, 1)
                else:
                    sock.setsockopt(IPPROTO_IP, IP_RECVERR, 1)
            except OSError:
                if v6:
                    p.host.grace = IPV6_ICMP_GRACE
        if _bind is not None:
            sock.setsockopt(SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(_bind)
        p.sent = now = clock()
        err = sock.connect_ex(p.sockaddr)
        if err in IN_PROGRESS:
            # On loopback and veth the answer is often in before connect() returns (the
            # peer's RST is processed on the way out): take it now, skipping epoll.
            early = sock.getsockopt(SOL_SOCKET, SO_ERROR)
            if early:
                if early == ECONNREFUSED and not refine_refused:
                    sock.close()
                    rtt = clock() - now
                    h = p.host
                    if rtt <= h.est.timeout:
                        h.est.update(rtt)
                    done += 1
                    on_result(p.key, p.ip, p.port, CLOSED, CONN_REFUSED, rtt, None)
                else:
                    finish_error(p, sock, early, clock())
                local_failures = 0
                return True
            fd = sock.fileno()
            register(fd, _EPOLLOUT)
            p.sock = sock
            inflight[fd] = p
            fifo = p.host.fifo
            fifo.append((p, sock))
            if len(fifo) == 1:
                loop.active[p.host] = None
            local_failures = 0
            return True
        if err in LOCAL_RETRY_ERRNOS:
            # Out of local ports (or buffers): fewer in flight, a short pause, try again.
            sock.close()
            local_failures += 1
            if not inflight and local_failures > 50:
                raise ResourceExhausted(
                    f"cannot connect to {p.ip}:{p.port}: {E.errorcode.get(err, err)} "
                    "(out of local ports?)"
                )
            limit = max(1, len(inflight) // 2)
            backoff_until = now + 0.01 * min(local_failures, 20)
            pending.appendleft(p)
            return False
        if err == 0:
            finish_open(p, sock, now)
        elif err == E.EISCONN:
            sock.close()
            pending.appendleft(p)
        else:
            finish_error(p, sock, err, now)
        return True

    def expire(now: float) -> None:
        for h in list(loop.active):
            fifo = h.fifo
            t = timeout_of(h)
            while fifo:
                p, sock = fifo[0]
                if p.sock is not sock:
                    fifo.popleft()
                    continue
                if now - p.sent < t:
                    break
                fifo.popleft()
                del inflight[sock.fileno()]
                drop(sock)
                p.sock = None
                p.tries += 1
                if p.tries <= retries_n and not h.grace:
                    # The retry of a silent IPv6 port reads ICMPv6 errors at once.
                    p.recverr = ":" in p.ip
                    pending.append(p)
                else:
                    report(p, PortState.FILTERED, Reason.NO_RESPONSE, None, None)
            if not fifo:
                del loop.active[h]

    last_ip = ""
    last_host: _Host | None = None
    try:
        while True:
            now = clock()
            rate_wait = 0.0
            launched = 0
            if now >= backoff_until:
                # In batches: answers are read between them, so an RTT is not inflated
                # by the time it takes to send a thousand SYNs.
                while len(inflight) < limit and launched < _BATCH:
                    launched += 1
                    if pending:
                        p = pending.popleft()
                    elif not exhausted:
                        try:
                            key, ip, port = next(jobs_it)
                        except StopIteration:
                            exhausted = True
                            break
                        if ip != last_ip or last_host is None:
                            # Without the error queue an ICMPv6 error to a SYN comes at
                            # the first retransmit: IPv6 hosts wait for it (grace).
                            last_ip, last_host = ip, loop.host(ip, not recverr_ok)
                        p = _Probe(key, ip, port, last_host)
                        if v6_first and ":" in ip:
                            p.recverr = True
                    else:
                        break
                    if loop.rate is not None and not loop.rate.take(now):
                        pending.appendleft(p)
                        rate_wait = loop.rate.wait(now)
                        break
                    if not start(p):
                        break
            if not inflight and not pending and exhausted:
                break
            wait = loop.next_wait(now, timeout_of) if inflight else 0.05
            if rate_wait:
                wait = min(wait, rate_wait)
            if backoff_until > now:
                wait = min(wait, backoff_until - now)
            elif launched >= _BATCH:
                wait = 0.0  # room for more: only collect what is ready, then send on
            events = ep.poll(wait, _MAXEVENTS)
            now = clock()
            for fd, ev in events:
                q = inflight.pop(fd, None)
                if q is None:
                    continue
                sock = q.sock
                if ev & ERRMASK:
                    err = sock.getsockopt(SOL_SOCKET, SO_ERROR)
                    if err == ECONNREFUSED and not refine_refused:
                        # The hot path of a scan: a closed port answered with a RST.
                        q.sock = None
                        drop(sock)
                        rtt = now - q.sent
                        h = q.host
                        if rtt <= h.est.timeout:
                            h.est.update(rtt)
                        done += 1
                        on_result(q.key, q.ip, q.port, CLOSED, CONN_REFUSED, rtt, None)
                        continue
                    if err:
                        q.sock = None
                        finish_error(q, sock, err, now)
                        continue
                    if not ev & _EPOLLOUT:
                        icmp = _read_icmp(sock, "tcp") if recverr_ok else None
                        if icmp is None and not ev & _EPOLLHUP:
                            inflight[fd] = q  # a soft error with nothing to say: still connecting
                            continue
                        q.sock = None
                        drop(sock)
                        state, reason = icmp or (PortState.FILTERED, Reason.LOCAL_ERROR)
                        report(q, state, reason, now - q.sent, None)
                        continue
                q.sock = None
                finish_open(q, sock, now)
            # Expire only when the ready list was drained: an answer may still wait in it.
            if len(events) < _MAXEVENTS:
                expire(now)
            if progress is not None:
                loop.done = done
                loop.tick(now)
    finally:
        for p in inflight.values():
            if p.sock is not None:
                drop(p.sock)
        loop.done = done
        loop.close()

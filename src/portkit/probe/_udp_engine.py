"""The UDP prober of the reach capability, on the TCP engine's readiness loop (``_engine``).

One unconnected socket per address family carries every probe where the system has an
error queue (Linux): replies are matched by their source address, ICMP errors by the
original destination ``IP_RECVERR`` reports. Elsewhere (or on a selector without exact
errors) each probe gets a connected socket, so that an ICMP port-unreachable still
comes back as ECONNREFUSED (:func:`_udp_connected`). The verdicts are nmap -sU's,
from the pure tables of ``_states``.
"""

from __future__ import annotations

import errno as E
import socket
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from portkit.errors import ResourceExhausted
from portkit.probe._engine import (
    _FD_ERRNOS,
    _MAXEVENTS,
    HAS_ERRQUEUE,
    IP_RECVERR,
    IPV6_RECVERR,
    _family,
    _forgetting,
    _Host,
    _Loop,
)
from portkit.probe._poller import ERR as _EPOLLERR
from portkit.probe._poller import IN as _EPOLLIN
from portkit.probe._poller import SELECT_FD_LIMIT
from portkit.probe._records import PortState, Reason
from portkit.probe._states import icmp_verdict, parse_extended_err, udp_errno_verdict

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = ["udp_scan"]


class _UdpProbe:
    __slots__ = ("host", "ip", "key", "payload", "port", "sent", "tries")

    def __init__(self, key: Any, ip: str, port: int, payload: bytes, host: _Host) -> None:
        self.key = key
        self.ip = ip
        self.port = port
        self.payload = payload
        self.host = host
        self.tries = 0
        self.sent = 0.0


def _overdue(loop: Any, now: float) -> Iterator[Any]:
    """The probes whose answer is overdue, oldest first per host, each taken off its
    host's queue (entries left by a probe sent again since are dropped); a host whose
    queue empties leaves the loop's active set. Both UDP engines expire through it."""
    for h in list(loop.active):
        fifo = h.fifo
        t = h.est.timeout
        while fifo:
            p, tries = fifo[0]
            if p.tries != tries:
                fifo.popleft()
                continue
            if now - p.sent < t:
                break
            fifo.popleft()
            yield p
        if not fifo:
            loop.active.pop(h, None)


def udp_scan(
    jobs: Iterable[tuple[Any, str, int, bytes]],
    on_result: Callable[[Any, str, int, PortState, Reason, float | None, bytes | None], None],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    timeout: float | None = None,
    retries: int = 1,
    progress: Callable[[int], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    poller: str | None = None,
) -> None:
    """Send each ``(key, ip, port, payload)`` datagram; report each port once.

    One unconnected socket per address family carries every probe: replies are
    matched by their source address, ICMP errors by the original destination the
    error queue (``IP_RECVERR``) reports. A reply means open; ICMP port-unreachable
    closed; another ICMP unreachable filtered; silence after the retries
    open|filtered (nmap -sU's verdicts).

    Args mirror :func:`~portkit.probe._engine.connect_scan`; ``on_result`` gets the
    reply bytes for open ports.
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
    limit = concurrency if concurrency is not None else 256
    ep = loop.ep
    if not (HAS_ERRQUEUE and ep.exact_errors):
        _udp_connected(jobs, on_result, loop, limit)
        return
    socks: dict[int, socket.socket] = {}
    by_fd: dict[int, socket.socket] = {}
    inflight: dict[tuple[str, int], _UdpProbe] = {}
    pending: deque[_UdpProbe] = deque()
    twins: list[_UdpProbe] = []
    jobs_it = iter(jobs)
    exhausted = False
    retries_n = loop.retries

    def sock_for(ip: str) -> socket.socket:
        family = _family(ip)
        s = socks.get(family)
        if s is None:
            try:
                s = socket.socket(family, socket.SOCK_DGRAM)
            except OSError as exc:
                raise ResourceExhausted(f"cannot open a UDP socket: {exc.strerror}") from exc
            s.setblocking(False)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            else:
                s.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            socks[family] = s
            by_fd[s.fileno()] = s
            ep.register(s.fileno(), _EPOLLIN)
        return s

    def timeout_of(h: _Host) -> float:
        return h.est.timeout

    def report(
        p: _UdpProbe, state: PortState, reason: Reason, rtt: float | None, data: bytes | None
    ) -> None:
        loop.done += 1
        on_result(p.key, p.ip, p.port, state, reason, rtt, data)

    def answered(
        key: tuple[str, int], state: PortState, reason: Reason, data: bytes | None, now: float
    ) -> None:
        p = inflight.pop(key, None)
        if p is None:
            return  # a late or duplicate answer
        rtt = now - p.sent
        if p.tries == 0 and rtt <= p.host.est.timeout:
            p.host.est.update(rtt)
        p.tries = -1  # marks its FIFO entries stale
        report(p, state, reason, rtt, data)

    def drain_errors(s: socket.socket, now: float) -> int:
        count = 0
        while True:
            try:
                _, anc, _, addr = s.recvmsg(1, 512, socket.MSG_ERRQUEUE)
            except OSError:
                return count
            count += 1
            for level, kind, data in anc:
                if (level, kind) not in (
                    (socket.IPPROTO_IP, IP_RECVERR),
                    (socket.IPPROTO_IPV6, IPV6_RECVERR),
                ):
                    continue
                ee = parse_extended_err(data)
                verdict = icmp_verdict(ee.origin, ee.type, ee.code, "udp")
                if verdict is None:
                    verdict = udp_errno_verdict(ee.errno)
                if addr:
                    answered((addr[0], addr[1]), verdict[0], verdict[1], None, now)

    def drain_replies(s: socket.socket, now: float) -> None:
        while True:
            try:
                data, addr = s.recvfrom(65535)
            except BlockingIOError:
                return
            except OSError:
                # A pending ICMP error surfaces here first; its details are queued.
                drain_errors(s, now)
                continue
            answered((addr[0], addr[1]), PortState.OPEN, Reason.UDP_RESPONSE, data, now)

    def send(p: _UdpProbe, now: float) -> bool:
        s = sock_for(p.ip)
        for _ in range(64):
            try:
                s.sendto(p.payload, (p.ip, p.port))
                break
            except (BlockingIOError, InterruptedError):
                pending.appendleft(p)
                return False
            except OSError as exc:
                if exc.errno in (E.ENOBUFS, E.ENOMEM):
                    pending.appendleft(p)
                    return False
                # With IP_RECVERR, an earlier probe's ICMP error is returned by this
                # call instead of sending: read the queue and send again. An error with
                # nothing queued is about this destination (no route, local firewall).
                if drain_errors(s, now) == 0:
                    verdict = udp_errno_verdict(exc.errno or 0)
                    p.tries = -1
                    report(p, verdict[0], verdict[1], None, None)
                    return True
        else:
            pending.appendleft(p)
            return False
        p.sent = now
        key = (p.ip, p.port)
        inflight[key] = p
        h = p.host
        h.fifo.append((p, p.tries))
        if len(h.fifo) == 1:
            loop.active[h] = None
        return True

    def expire(now: float) -> None:
        for p in _overdue(loop, now):
            p.tries += 1
            if p.tries <= retries_n:
                pending.append(p)  # stays in flight: a late answer still counts
            else:
                inflight.pop((p.ip, p.port), None)
                p.tries = -1
                report(p, PortState.OPEN_FILTERED, Reason.NO_RESPONSE, None, None)

    try:
        while True:
            now = clock()
            rate_wait = 0.0
            if twins:
                # A port asked for twice waits for the first probe's answer: replies are
                # matched by (address, port), so two at once could not be told apart.
                pending.extend(t for t in twins if (t.ip, t.port) not in inflight)
                twins[:] = [t for t in twins if (t.ip, t.port) in inflight]
            while len(inflight) < limit:
                if pending:
                    p = pending.popleft()
                    if p.tries < 0:
                        continue  # answered while it waited to be sent again
                elif not exhausted:
                    try:
                        key, ip, port, payload = next(jobs_it)
                    except StopIteration:
                        exhausted = True
                        break
                    p = _UdpProbe(key, ip, port, payload, loop.host(ip, False))
                    if (ip, port) in inflight:
                        twins.append(p)
                        continue
                else:
                    break
                if loop.rate is not None and not loop.rate.take(now):
                    pending.appendleft(p)
                    rate_wait = loop.rate.wait(now)
                    break
                if not send(p, now):
                    rate_wait = 0.005
                    break
            if not inflight and not pending and not twins and exhausted:
                break
            wait = loop.next_wait(now, timeout_of) if inflight else 0.0
            if rate_wait:
                wait = min(wait, rate_wait)
            events = ep.poll(wait, _MAXEVENTS)
            now = clock()
            for fd, ev in events:
                s = by_fd[fd]
                if ev & _EPOLLERR:
                    drain_errors(s, now)
                if ev & _EPOLLIN:
                    drain_replies(s, now)
            expire(now)
            loop.tick(now)
    finally:
        for s in socks.values():
            s.close()
        loop.close()


def _udp_connected(
    jobs: Iterable[tuple[Any, str, int, bytes]],
    on_result: Callable[[Any, str, int, PortState, Reason, float | None, bytes | None], None],
    loop: _Loop,
    limit: int,
) -> None:
    """:func:`udp_scan` without an error queue (every system but Linux, or a selector
    poller): one connected socket per probe, so an ICMP error comes back as the errno of
    its next ``recv`` (ECONNREFUSED: port-unreachable). The ICMP type behind other
    errnos cannot be read: EHOSTUNREACH says filtered, not which prohibition."""
    ep = loop.ep
    if ep.name == "select":
        limit = min(limit, SELECT_FD_LIMIT - 64)
    drop = _forgetting(ep)
    clock = loop.clock
    retries_n = loop.retries
    inflight: dict[int, tuple[_UdpProbe, socket.socket]] = {}
    pending: deque[_UdpProbe] = deque()
    jobs_it = iter(jobs)
    exhausted = False

    def report(
        p: _UdpProbe, state: PortState, reason: Reason, rtt: float | None, data: bytes | None
    ) -> None:
        loop.done += 1
        p.tries = -1
        on_result(p.key, p.ip, p.port, state, reason, rtt, data)

    def end(fd: int) -> None:
        # Its FIFO entries go stale by themselves: report() sets tries to -1.
        drop(inflight.pop(fd)[1])

    def send(p: _UdpProbe, sock: socket.socket, now: float) -> str | None:
        try:
            sock.send(p.payload)
        except (BlockingIOError, InterruptedError):
            return "later"
        except OSError as exc:
            verdict = udp_errno_verdict(exc.errno or 0)
            report(p, verdict[0], verdict[1], now - p.sent if p.sent else None, None)
            return "done"
        p.sent = now
        h = p.host
        h.fifo.append((p, p.tries))
        if len(h.fifo) == 1:
            loop.active[h] = None
        return None

    def start(p: _UdpProbe, now: float) -> bool:
        try:
            sock = socket.socket(_family(p.ip), socket.SOCK_DGRAM)
        except OSError as exc:
            if exc.errno in _FD_ERRNOS and inflight:
                pending.appendleft(p)
                return False
            raise ResourceExhausted(f"cannot open a UDP socket: {exc.strerror}") from exc
        sock.setblocking(False)
        try:
            sock.connect((p.ip, p.port))
        except OSError as exc:
            sock.close()
            verdict = udp_errno_verdict(exc.errno or 0)
            report(p, verdict[0], verdict[1], None, None)
            return True
        fd = sock.fileno()
        ep.register(fd, _EPOLLIN)
        inflight[fd] = (p, sock)
        outcome = send(p, sock, now)
        if outcome == "done":
            inflight.pop(fd)
            drop(sock)
        elif outcome == "later":
            inflight.pop(fd)
            drop(sock)
            pending.appendleft(p)
            return False
        return True

    def readable(fd: int, now: float) -> None:
        p, sock = inflight[fd]
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return
        except OSError as exc:
            verdict = udp_errno_verdict(exc.errno or 0)
            end(fd)
            report(p, verdict[0], verdict[1], now - p.sent, None)
            return
        rtt = now - p.sent
        if p.tries == 0 and rtt <= p.host.est.timeout:
            p.host.est.update(rtt)
        end(fd)
        report(p, PortState.OPEN, Reason.UDP_RESPONSE, rtt, data)

    def expire(now: float) -> None:
        by_probe = {id(p): fd for fd, (p, _) in inflight.items()}
        for p in _overdue(loop, now):
            p.tries += 1
            fd = by_probe.get(id(p))
            if p.tries <= retries_n and fd is not None:
                if send(p, inflight[fd][1], now) == "done":
                    end(fd)
            else:
                if fd is not None:
                    end(fd)
                report(p, PortState.OPEN_FILTERED, Reason.NO_RESPONSE, None, None)

    try:
        while True:
            now = clock()
            rate_wait = 0.0
            while len(inflight) < limit:
                if pending:
                    p = pending.popleft()
                elif not exhausted:
                    try:
                        key, ip, port, payload = next(jobs_it)
                    except StopIteration:
                        exhausted = True
                        break
                    p = _UdpProbe(key, ip, port, payload, loop.host(ip, False))
                else:
                    break
                if loop.rate is not None and not loop.rate.take(now):
                    pending.appendleft(p)
                    rate_wait = loop.rate.wait(now)
                    break
                if not start(p, now):
                    rate_wait = 0.005
                    break
            if not inflight and not pending and exhausted:
                break
            wait = loop.next_wait(now, lambda h: h.est.timeout) if inflight else 0.0
            if rate_wait:
                wait = min(wait, rate_wait)
            events = ep.poll(wait, _MAXEVENTS)
            now = clock()
            for fd, _ev in events:
                if fd in inflight:
                    readable(fd, now)
            expire(now)
            loop.tick(now)
    finally:
        for _p, sock in inflight.values():
            drop(sock)
        loop.close()

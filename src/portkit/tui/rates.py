"""Throughput between two refreshes of ``portkit top``: per socket, per listening port
and per process, from the kernel's ``tcp_info`` counters. Pure: no textual, no I/O.

Each refresh reads every TCP socket's bytes acknowledged by the peer (sent), bytes
received and segments retransmitted; a socket's rate is the change since the last
refresh over the time between them. Sockets are told apart by their cookie.

Connections that closed in between are not lost: the kernel's destroy event
(``see._events``) carries a closing socket's last counters, so its last bytes count
(and a connection that opened and closed between two refreshes counts whole). One
that vanished without an event (where the events cannot be had) is counted up to
the last refresh that saw it, and :attr:`Rates.unaccounted` says how many there were.

    >>> t = RateTracker()
    >>> _ = t.update([], 0.0)
    >>> r = t.update([(7, (1000, 50, 0), 4242, "curl", None, "tcp a 1 b 2 9", 0.002)], 2.0)
    >>> r.sockets["tcp a 1 b 2 9"], r.processes[4242]
    ((500.0, 25.0, 0.0, 0.002), ['curl', 1, 500.0, 25.0, 0.0])
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from typing import Any

    from portkit.exporter.snapshot import Snapshot

__all__ = ["RateTracker", "Rates", "human_rate", "snapshot_rates", "socket_counters"]

#: One socket at one refresh: (cookie, (sent, received, retransmits), pid, process,
#: listening port it was accepted on or None, row key, rtt seconds or None).
Sample = tuple[
    int, tuple[int, int, int], "int | None", "str | None", "int | None", str, "float | None"
]


class Rates:
    """What one refresh says about traffic.

    Attributes:
        seconds: the time since the previous refresh (0 on the first).
        sockets: ``{row key: (sent B/s, received B/s, retransmits/s, rtt s)}``.
        ports: ``{listening port: [sent B/s, received B/s, retransmits/s]}`` (TCP).
        processes: ``{pid: [name, sockets, sent B/s, received B/s, retransmits/s]}``.
        closed: connections that closed since the previous refresh and were counted
            to their last byte (from the kernel's destroy events).
        unaccounted: connections that vanished without an event: counted up to the
            previous refresh only.
    """

    __slots__ = ("seconds", "sockets", "ports", "processes", "closed", "unaccounted")

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.sockets: dict[str, tuple[float, float, float, float | None]] = {}
        self.ports: dict[int, list[float]] = {}
        self.processes: dict[int, list[Any]] = {}
        self.closed = 0
        self.unaccounted = 0


class RateTracker:
    """Keeps the last refresh's counters; :meth:`update` turns the next into rates."""

    def __init__(self) -> None:
        self._prev: dict[int, Sample] = {}
        self._taken: float | None = None

    def update(
        self,
        samples: Iterable[Sample],
        taken: float,
        closed: Iterable[tuple[int, int, tuple[int, int, int]]] = (),
        listeners: Mapping[int, tuple[int | None, str | None]] | None = None,
    ) -> Rates:
        """The rates since the previous call.

        Args:
            samples: every TCP connection now (:func:`socket_counters`).
            taken: when they were read (seconds, any clock that only goes forward).
            closed: ``(cookie, local port, last counters)`` of the TCP sockets destroyed
                since the previous call (the kernel's events).
            listeners: ``{listening port: (pid, process)}``: who gets a closed
                connection's bytes when no refresh saw it (its listener's process).
        """
        current = {s[0]: s for s in samples}
        prev, last = self._prev, self._taken
        self._prev, self._taken = current, taken
        if last is None or taken <= last:
            return Rates()
        dt = taken - last
        out = Rates(dt)
        ports, procs = out.ports, out.processes

        def add(sample: Sample, delta: tuple[int, int, int], live: bool) -> None:
            sent, received, retrans = delta[0] / dt, delta[1] / dt, delta[2] / dt
            _, _, pid, process, port, key, rtt = sample
            if live:
                out.sockets[key] = (sent, received, retrans, rtt)
            if port is not None:
                acc = ports.get(port)
                if acc is None:
                    ports[port] = [sent, received, retrans]
                else:
                    acc[0] += sent
                    acc[1] += received
                    acc[2] += retrans
            if pid is not None:
                got = procs.get(pid)
                if got is None:
                    procs[pid] = [process or "-", 1 if live else 0, sent, received, retrans]
                else:
                    got[1] += 1 if live else 0
                    got[2] += sent
                    got[3] += received
                    got[4] += retrans

        for cookie, sample in current.items():
            before = prev.get(cookie)
            now = sample[1]
            if before is None:
                add(sample, now, True)  # new since the last refresh: all of it is new
            else:
                b = before[1]
                add(sample, (now[0] - b[0], now[1] - b[1], now[2] - b[2]), True)
        ended = {cookie: counts for cookie, _port, counts in closed}
        for cookie, before in prev.items():
            if cookie in current:
                continue
            final = ended.pop(cookie, None)
            if final is None:
                out.unaccounted += 1
                continue
            b = before[1]
            out.closed += 1
            add(before, (final[0] - b[0], final[1] - b[1], final[2] - b[2]), False)
        # opened and closed between the two refreshes: the event's counters are all new
        known = listeners or {}
        by_port = {cookie: port for cookie, port, _ in closed}
        for cookie, final in ended.items():
            port = by_port[cookie]
            owner = known.get(port)
            if owner is None:
                continue  # a client's: no owner, no listening port to give it to
            out.closed += 1
            add((cookie, final, owner[0], owner[1], port, "", None), final, False)
        return out


def socket_counters(
    rows: Sequence[tuple[Any, ...]],
    entries: Sequence[Any],
    listening: Iterable[int],
    key: Any,
) -> list[Sample]:
    """The :class:`RateTracker` samples of the TCP connections among ``rows`` (with
    their ``_tcpinfo`` entries, read with tcp_info); ``key`` makes a row's key."""
    from portkit.see import _tcpinfo as ti

    lports = set(listening)
    out: list[Sample] = []
    for r, e in zip(rows, entries, strict=True):
        if e is None or e[2] is None or r[5] is None:  # REMOTE_IP: not a listener
            continue
        info = e[2]
        if info[ti.BYTES_ACKED] is None:
            continue  # a kernel before 4.1
        server = r[11] == "server" and r[4] in lports
        rtt = info[ti.RTT] / 1e6 if info[ti.STATE] == 1 and info[ti.RTT] else None
        out.append(
            (
                e[4],
                (info[ti.BYTES_ACKED], info[ti.BYTES_RECEIVED], info[ti.TOTAL_RETRANS]),
                r[12],
                r[13],
                r[4] if server else None,
                key(r),
                rtt,
            )
        )
    return out


def human_rate(per_second: float) -> str:
    """Bytes a second in few characters (``-`` for none).

    >>> human_rate(0), human_rate(999), human_rate(12_345), human_rate(3.5e9)
    ('-', '999B', '12.3K', '3.5G')
    """
    if per_second <= 0:
        return "-"
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if per_second >= scale:
            return f"{per_second / scale:.1f}{unit}"
    return f"{per_second:.0f}B"


def snapshot_rates(tracker: RateTracker, snap: Snapshot, key: Any) -> Rates | None:
    """Feed ``tracker`` one snapshot of a ``provider(traffic=True)`` (its tcp_info and
    the destroy events since the last one); None for snapshots without tcp_info
    (fixed data). ``key`` makes a row's key (``tui.view.row_key``)."""
    found = snap.scan
    if found is None or not getattr(found, "batches", None):
        return None
    from portkit.see._tcpinfo import scan_entries
    from portkit.see._traffic import counters_of

    stats = snap.stats
    listening = {ls.port for ls in stats.listeners if ls.protocol.value == "tcp"}
    samples = socket_counters(snap.rows, scan_entries(found), listening, key)
    closed = []
    for e in snap.events:
        counts = counters_of(e[8]) if e[1] == 6 and e[6] is not None else None
        if counts is not None:
            closed.append((e[7], e[4], (counts[0], counts[1], counts[2])))
    owners = {
        ls.port: (ls.pid, ls.process)
        for ls in stats.listeners
        if ls.protocol.value == "tcp" and ls.pid is not None
    }
    return tracker.update(samples, snap.taken, closed, owners)

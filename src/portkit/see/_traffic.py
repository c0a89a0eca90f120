"""Bytes, segments and retransmits per listening port from ``tcp_info``: no packet
capture. Pure: the kernel's rows and events in, counts out.

The kernel counts, for every TCP socket, the bytes the peer acknowledged
(``bytes_acked``), the bytes received (``bytes_received``), the segments sent
(``segs_out``) and retransmitted (``total_retrans``). Those counters die with the
socket, so totals that must only grow (Prometheus counters) are kept by a
:class:`Ledger`: the counters of the connections open now, plus the last ones of
every connection that closed since the ledger began, taken from the kernel's destroy
event (``_events``: its last ``tcp_info``) or, where no event came, from the last
reading that saw it. Sockets are told apart by their cookie (the kernel's id for a
socket, in every dump and every event).

    >>> led = Ledger()
    >>> led.update({7: (80, 100, 50, 0, 3)}, [])[80]
    (100, 50, 0, 3)
    >>> led.update({}, [])[80]                        # closed, no event seen yet
    (100, 50, 0, 3)
    >>> led.update({}, [(7, 80, (150, 60, 1, 4))])[80]  # its event came late
    (150, 60, 1, 4)
"""

from __future__ import annotations

from portkit.see import _netlink as nl
from portkit.see import _tcpinfo as ti

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
    from typing import Any

__all__ = [
    "COUNTERS",
    "Ledger",
    "PortTraffic",
    "counters_of",
    "port_traffic",
    "quantile",
    "server_side",
]

#: The counters kept, in this order: bytes acked by the peer (sent), bytes received,
#: segments retransmitted (ever), segments sent.
COUNTERS = ("sent_bytes", "received_bytes", "retransmits", "sent_segments")
Counts = tuple[int, int, int, int]
ZERO: Counts = (0, 0, 0, 0)

#: What :func:`server_side` reads of each tcp_info (in the struct's order).
PICKED = ("state", "rtt", "total_retrans", "bytes_acked", "bytes_received", "segs_out")
_ESTABLISHED = 1


def counters_of(info: tuple[Any, ...] | None) -> Counts | None:
    """The :data:`COUNTERS` of one tcp_info (None: none, or a kernel before 4.2)."""
    if info is None or info[ti.SEGS_OUT] is None:
        return None
    return (
        info[ti.BYTES_ACKED],
        info[ti.BYTES_RECEIVED],
        info[ti.TOTAL_RETRANS],
        info[ti.SEGS_OUT],
    )


def server_side(
    batches: Iterable[tuple[int, int, nl.RawRows]], listen_ports: Mapping[int, Collection[int]]
) -> tuple[dict[int, tuple[int, int, int, int, int]], dict[int, list[float]]]:
    """The connections on listening ports, from a dump read with tcp_info.

    Returns ``({cookie: (raw port, acked, received, retransmits, segments sent)},
    {port: [RTT seconds of its established connections]})``; the raw port is the
    network-order value (``_netlink.PORTS[raw]`` is the port). Listeners themselves
    count nothing (their counters are 0). Rows read without tcp_info are skipped.

    Uniform replies are read a column at a time (``HealthRows.info_columns``: a
    strided view per field, the listening ports' rows picked by a mask of bytes),
    so only the connections on listening ports become objects.
    """
    from itertools import chain, compress
    from operator import itemgetter

    lp = frozenset(listen_ports.get(nl.IPPROTO_TCP, ()))
    current: dict[int, tuple[int, int, int, int, int]] = {}
    measured: list[tuple[int, int]] = []
    cookie_of, counts_of = itemgetter(1), itemgetter(0, 5, 6, 4, 7)
    rtts: dict[int, list[float]] = {}
    ports = nl.PORTS
    for _family, proto, raw in batches:
        if proto != nl.IPPROTO_TCP or not isinstance(raw, ti.HealthRows):
            continue
        columnar, rest = raw.info_columns(PICKED)
        if columnar:
            # (sport, cookie, state, rtt, retrans, acked, received, segs) per part
            def col(i: int, columnar: list[Any] = columnar) -> Iterator[int]:
                return chain.from_iterable(c[i] for c in columnar)

            mask = bytes(map(lp.__contains__, col(0)))

            def mine(i: int, mask: bytes = mask) -> Iterator[int]:
                return compress(col(i), mask)

            current.update(
                zip(
                    mine(1),
                    zip(mine(0), mine(5), mine(6), mine(4), mine(7), strict=True),
                    strict=True,
                )
            )
            for sport, state, rtt in zip(mine(0), mine(2), mine(3), strict=True):
                if state == _ESTABLISHED and rtt:
                    got = rtts.get(sport)
                    if got is None:
                        rtts[sport] = [rtt / 1e6]
                    else:
                        got.append(rtt / 1e6)
        for part in rest:
            # (sport, cookie, state, rtt, retrans, acked, received, segs): C speed
            picked = [t for t in part if t[0] in lp]
            current.update(zip(map(cookie_of, picked), map(counts_of, picked), strict=True))
            measured += [(t[0], t[3]) for t in picked if t[2] == _ESTABLISHED and t[3]]
    for sport, rtt in measured:
        got = rtts.get(sport)
        if got is None:
            rtts[sport] = [rtt / 1e6]
        else:
            got.append(rtt / 1e6)
    # the ledger keys ports by their raw value until the totals (few) are made
    return current, {ports[sport]: values for sport, values in rtts.items()}


class Ledger:
    """Totals per listening port that only grow, across readings.

    Each :meth:`update` takes the connections on listening ports open now (by
    cookie, :func:`server_side`) and the destroy events since the last one (each
    with the counters of its last tcp_info). A connection that vanished without an
    event is counted with its last counters; if its event comes later, the
    difference is added then.
    """

    def __init__(self, port_of: Callable[[int], int] | None = None) -> None:
        #: How a port key becomes the port of the totals (``_netlink.ntohs`` when the
        #: connections and events give raw, network-order ports).
        self.port_of: Callable[[int], int] = port_of or int
        self.last: dict[int, tuple[int, int, int, int, int]] = {}
        self.closed: dict[int, list[int]] = {}
        # vanished without an event: cookie -> (port, counted, readings left to wait)
        self._pending: dict[int, tuple[int, Counts, int]] = {}

    def _close(self, port: int, a: int, r: int, t: int, s: int) -> None:
        acc = self.closed.get(port)
        if acc is None:
            self.closed[port] = [a, r, t, s]
        else:
            acc[0] += a
            acc[1] += r
            acc[2] += t
            acc[3] += s

    def update(
        self,
        current: dict[int, tuple[int, int, int, int, int]],
        events: Iterable[tuple[int, int, Counts]],
        listening: Collection[int] = (),
    ) -> dict[int, Counts]:
        """Fold one reading in; return ``{port: totals}``.

        Args:
            current: ``{cookie: (port, acked, received, retransmits, segments)}`` of
                the connections on listening ports now.
            events: ``(cookie, local port, counters)`` of TCP sockets destroyed since
                the last reading.
            listening: the listening ports now: a destroyed socket never seen is
                counted when its local port is one of them.
        """
        for cookie, lport, (a, r, t, s) in events:
            seen = self.last.pop(cookie, None)
            pending = self._pending.pop(cookie, None)
            if seen is not None:
                self._close(seen[0], a, r, t, s)
            elif pending is not None:
                port, (ca, cr, ct, cs), _ = pending
                self._close(port, a - ca, r - cr, t - ct, s - cs)
            elif lport in listening or lport in self.closed:
                self._close(lport, a, r, t, s)
        # a reading in between: the event of what vanished may still be on its way
        self._pending = {k: (p, c, n - 1) for k, (p, c, n) in self._pending.items() if n > 1}
        for cookie in self.last.keys() - current.keys():
            port, a, r, t, s = self.last[cookie]
            self._close(port, a, r, t, s)
            self._pending[cookie] = (port, (a, r, t, s), 3)
        self.last = current
        acc = {port: list(v) for port, v in self.closed.items()}
        for port, a, r, t, s in current.values():
            got = acc.get(port)
            if got is None:
                acc[port] = [a, r, t, s]
            else:
                got[0] += a
                got[1] += r
                got[2] += t
                got[3] += s
        return {self.port_of(port): (v[0], v[1], v[2], v[3]) for port, v in acc.items()}


class PortTraffic:
    """What the exporter says of one listening port: its :data:`COUNTERS` totals and
    the smoothed RTTs (seconds, sorted) of its established connections now."""

    __slots__ = ("totals", "rtts")

    def __init__(self, totals: Counts, rtts: list[float]) -> None:
        self.totals = totals
        self.rtts = rtts

    def __repr__(self) -> str:
        return f"PortTraffic({self.totals}, {len(self.rtts)} rtts)"


def port_traffic(totals: dict[int, Counts], rtts: dict[int, list[float]]) -> dict[int, PortTraffic]:
    """``{port: PortTraffic}`` from a ledger's totals and :func:`server_side`'s RTTs."""
    return {
        port: PortTraffic(totals.get(port, ZERO), sorted(rtts.get(port, ())))
        for port in totals.keys() | rtts.keys()
    }


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted ``values`` (nearest rank); NaN for none.

    >>> quantile([1.0, 2.0, 3.0, 4.0], 0.5), quantile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    if not values:
        return float("nan")
    rank = max(1, -(-len(values) * q // 1))
    return values[min(int(rank), len(values)) - 1]

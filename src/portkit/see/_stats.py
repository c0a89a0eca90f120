"""``portkit stats``: counts, listeners, accept queues, ephemeral port use. Pure.

Everything is computed in one pass over the sockets, so the exporter and the TUI can
call it on every refresh: :func:`compute_stats` over decoded socket rows
(``SocketRecord.row``), ``_rawfold.fold`` over the kernel's raw rows a column at a
time (no row decoded); both end in :func:`stats_of`.

Ephemeral exhaustion happens per destination: Linux may reuse a local port for
connections to different destinations, so one busy upstream (``10.0.0.5:5432``)
runs out of ports long before the whole range looks full. Both are reported.
"""

from __future__ import annotations

from portkit._sockrow import (
    FAMILY,
    LOCAL_IP,
    LOCAL_PORT,
    PID,
    PROCESS,
    PROTOCOL,
    RECV_Q,
    REMOTE_IP,
    REMOTE_PORT,
    ROLE,
    SEND_Q,
    STATE,
)
from portkit.model import BindScope, PortRange, Protocol, TcpState, _Record, bind_scope

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from portkit.see._forecast import Forecast

__all__ = [
    "WARN_AT",
    "DestinationUse",
    "ListenerStats",
    "SocketStats",
    "compute_stats",
    "stats_of",
]

#: Fill level (fraction) above which a warning is given.
WARN_AT = 0.70
#: How many destinations are kept, busiest first.
TOP_DESTINATIONS = 20


class ListenerStats(_Record):
    """One listening socket: its connections and its accept queue.

    ``accept_queue`` is the number of connections waiting for ``accept()``,
    ``accept_max`` the backlog (``listen(n)``, capped by ``net.core.somaxconn``).
    ``connections`` counts this listener's accepted, still open connections (every
    TCP state but LISTEN and TIME-WAIT). ``pid``/``process`` are None unless owners
    were asked for.
    """

    __slots__ = (
        "protocol",
        "ip",
        "port",
        "connections",
        "accept_queue",
        "accept_max",
        "pid",
        "process",
    )
    protocol: Protocol
    ip: str
    port: int
    connections: int
    accept_queue: int
    accept_max: int
    pid: int | None
    process: str | None

    def __init__(
        self,
        protocol: Protocol,
        ip: str,
        port: int,
        connections: int,
        accept_queue: int,
        accept_max: int,
        pid: int | None = None,
        process: str | None = None,
    ) -> None:
        self._init(
            protocol=protocol,
            ip=ip,
            port=port,
            connections=connections,
            accept_queue=accept_queue,
            accept_max=accept_max,
            pid=pid,
            process=process,
        )

    @property
    def queue_fill(self) -> float:
        return self.accept_queue / self.accept_max if self.accept_max else 0.0


class DestinationUse(_Record):
    """Local ephemeral ports used towards one destination from one source address."""

    __slots__ = ("source_ip", "ip", "port", "in_use", "capacity")
    source_ip: str
    ip: str
    port: int
    in_use: int
    capacity: int

    def __init__(self, source_ip: str, ip: str, port: int, in_use: int, capacity: int) -> None:
        self._init(source_ip=source_ip, ip=ip, port=port, in_use=in_use, capacity=capacity)

    @property
    def fill(self) -> float:
        return self.in_use / self.capacity if self.capacity else 0.0


class SocketStats(_Record):
    """The whole picture ``portkit stats`` prints.

    Attributes:
        counts: ``{(protocol, state): n}``.
        total: number of sockets.
        time_wait: TCP sockets in TIME-WAIT.
        listeners: per listening socket (TCP LISTEN and bound UDP), by port.
        ephemeral: this OS's ephemeral port range.
        ephemeral_in_use: distinct local ports of that range held by client sockets.
        destinations: the busiest destinations (ephemeral ports used per
            source ip -> destination ip:port), busiest first.
        warnings: plain-words warnings (fill levels above 70%, destinations running
            out within 10 minutes).
        owners_hidden: processes whose sockets could not be inspected (owners asked
            for, not root).
        forecasts: per destination, when its ephemeral ports run out at the rate
            connections are made to it (``_forecast.Forecast``), soonest first.
    """

    __slots__ = (
        "counts",
        "total",
        "time_wait",
        "listeners",
        "ephemeral",
        "ephemeral_in_use",
        "destinations",
        "warnings",
        "owners_hidden",
        "forecasts",
    )
    counts: dict[tuple[Protocol, TcpState], int]
    total: int
    time_wait: int
    listeners: tuple[ListenerStats, ...]
    ephemeral: PortRange
    ephemeral_in_use: int
    destinations: tuple[DestinationUse, ...]
    warnings: tuple[str, ...]
    owners_hidden: int
    forecasts: tuple[Forecast, ...]

    def __init__(
        self,
        counts: dict[tuple[Protocol, TcpState], int],
        total: int,
        time_wait: int,
        listeners: tuple[ListenerStats, ...],
        ephemeral: PortRange,
        ephemeral_in_use: int,
        destinations: tuple[DestinationUse, ...],
        warnings: tuple[str, ...],
        owners_hidden: int = 0,
        forecasts: tuple[Forecast, ...] = (),
    ) -> None:
        self._init(
            counts=counts,
            total=total,
            time_wait=time_wait,
            listeners=listeners,
            ephemeral=ephemeral,
            ephemeral_in_use=ephemeral_in_use,
            destinations=destinations,
            warnings=warnings,
            owners_hidden=owners_hidden,
            forecasts=forecasts,
        )

    def __hash__(self) -> int:
        return hash((self.total, self.time_wait, self.listeners))

    @property
    def ephemeral_fill(self) -> float:
        return self.ephemeral_in_use / len(self.ephemeral)


def _address(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def compute_stats(
    rows: Iterable[tuple[Any, ...]],
    ephemeral: PortRange,
    owners_hidden: int = 0,
    time_wait: Mapping[tuple[str, str, int], list[float]] | None = None,
) -> SocketStats:
    """Stats from decoded rows (``SocketRecord.row`` layout); with ``time_wait`` (the
    client TIME-WAIT sockets' seconds left per destination,
    ``_forecast.time_wait_ages``) also when each destination runs out of ports.

    >>> from portkit.model import SocketRecord as R
    >>> rows = [R(Protocol.TCP, 4, TcpState.LISTEN, "0.0.0.0", 80, send_q=128, role="server").row,
    ...         R(Protocol.TCP, 4, TcpState.ESTABLISHED, "127.0.0.1", 80, "127.0.0.1", 40000,
    ...           role="server").row,
    ...         R(Protocol.TCP, 4, TcpState.ESTABLISHED, "127.0.0.1", 40000, "127.0.0.1", 80).row]
    >>> s = compute_stats(rows, PortRange(32768, 60999))
    >>> s.total, s.listeners[0].connections, s.ephemeral_in_use, s.destinations[0].in_use
    (3, 1, 1, 1)
    """
    counts: dict[tuple[Protocol, TcpState], int] = {}
    listeners: list[tuple[Any, ...]] = []
    served: dict[tuple[int, str, int], int] = {}
    eph_ports: set[int] = set()
    dests: dict[tuple[str, str, int], int] = {}
    lo, hi = ephemeral.start, ephemeral.end
    total = 0
    tcp, tw = Protocol.TCP, TcpState.TIME_WAIT
    for r in rows:
        total += 1
        key = (r[PROTOCOL], r[STATE])
        counts[key] = counts.get(key, 0) + 1
        if r[REMOTE_IP] is None:
            listeners.append(r)
            continue
        if r[PROTOCOL] is not tcp:
            continue
        if r[ROLE] == "server":
            if r[STATE] is not tw:
                k = (r[LOCAL_PORT], r[LOCAL_IP], r[FAMILY])
                served[k] = served.get(k, 0) + 1
        elif lo <= r[LOCAL_PORT] <= hi:
            eph_ports.add(r[LOCAL_PORT])
            d = (r[LOCAL_IP], r[REMOTE_IP], r[REMOTE_PORT])
            dests[d] = dests.get(d, 0) + 1
    return stats_of(
        counts,
        total,
        listeners,
        served,
        len(eph_ports),
        dests,
        ephemeral,
        owners_hidden,
        time_wait,
    )


def stats_of(
    counts: dict[tuple[Protocol, TcpState], int],
    total: int,
    listeners: Iterable[tuple[Any, ...]],
    served: Mapping[tuple[int, str, int], int],
    used: int,
    dests: Mapping[tuple[str, str, int], int],
    ephemeral: PortRange,
    owners_hidden: int = 0,
    time_wait: Mapping[tuple[str, str, int], list[float]] | None = None,
) -> SocketStats:
    """The :class:`SocketStats` of what one pass over the sockets gathered, however it
    was read (:func:`compute_stats` from decoded rows, ``_rawfold.fold`` from the
    kernel's raw rows).

    Args:
        counts: ``{(protocol, state): n}``, in the order the states first appear.
        total: sockets seen.
        listeners: the rows without a remote end (TCP listeners, unconnected UDP), in
            the order read.
        served: ``{(local port, local ip, family): n}`` of the TCP connections on a
            listening port, TIME-WAIT left out.
        used: distinct ephemeral-range local ports of the client TCP sockets.
        dests: ``{(local ip, remote ip, remote port): n}`` of those client sockets.
    """
    tcp, listen, tw = Protocol.TCP, TcpState.LISTEN, TcpState.TIME_WAIT
    # A wildcard listener serves the connections of its own family on its port: with
    # 0.0.0.0:P and [::]:P (v6only) both listening, each connection is counted once.
    by_port: dict[tuple[int, int], int] = {}
    for (port, _ip, family), n in served.items():
        by_port[port, family] = by_port.get((port, family), 0) + n
    lstats = []
    for r in sorted(
        listeners, key=lambda r: (r[LOCAL_PORT], r[PROTOCOL].value, r[FAMILY], r[LOCAL_IP])
    ):
        if r[PROTOCOL] is tcp and r[STATE] is listen:
            conns = (
                by_port.get((r[LOCAL_PORT], r[FAMILY]), 0)
                if bind_scope(r[LOCAL_IP]) is BindScope.WILDCARD
                else served.get((r[LOCAL_PORT], r[LOCAL_IP], r[FAMILY]), 0)
            )
            lstats.append(
                ListenerStats(
                    r[PROTOCOL],
                    r[LOCAL_IP],
                    r[LOCAL_PORT],
                    conns,
                    r[RECV_Q],
                    r[SEND_Q],
                    r[PID],
                    r[PROCESS],
                )
            )
        else:
            lstats.append(
                ListenerStats(r[PROTOCOL], r[LOCAL_IP], r[LOCAL_PORT], 0, 0, 0, r[PID], r[PROCESS])
            )
    capacity = len(ephemeral)
    top = sorted(dests.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_DESTINATIONS]
    destinations = tuple(DestinationUse(s, ip, port, n, capacity) for (s, ip, port), n in top)
    warnings: list[str] = []
    if used > WARN_AT * capacity:
        warnings.append(
            f"{used} of {capacity} ephemeral ports ({used / capacity:.0%}) are in use: "
            f"new outgoing connections may fail (range {ephemeral})"
        )
    for dest in destinations:
        if dest.fill > WARN_AT:
            warnings.append(
                f"{dest.in_use} of {capacity} ephemeral ports ({dest.fill:.0%}) are used for "
                f"{dest.source_ip} -> {_address(dest.ip, dest.port)}: connections to it "
                "will soon fail with EADDRNOTAVAIL (reuse connections, add source IPs or "
                "widen net.ipv4.ip_local_port_range)"
            )
    fc: tuple[Forecast, ...] = ()
    if time_wait is not None:
        from portkit.see._forecast import forecasts, warning

        fc = forecasts(dests, time_wait, ephemeral)
        warnings.extend(w for f in fc if (w := warning(f)) is not None)
    for ls in lstats:
        if ls.accept_max and ls.queue_fill > WARN_AT:
            warnings.append(
                f"accept queue of {_address(ls.ip, ls.port)} is {ls.accept_queue}/{ls.accept_max}"
                f" ({ls.queue_fill:.0%}): the server is not accepting fast enough"
            )
    return SocketStats(
        counts,
        total,
        counts.get((tcp, tw), 0),
        tuple(lstats),
        ephemeral,
        used,
        destinations,
        tuple(warnings),
        owners_hidden,
        fc,
    )

"""A socket snapshot as Prometheus metric families. Pure: data in, data out.

The names follow https://prometheus.io/docs/practices/naming/: a ``portkit_`` prefix,
snake_case, base units (seconds), no ``_total`` (every family here is a gauge) and
bounded labels. ``port`` is only ever a listening port or one given with
``--ports``; ``destination`` only one given with ``--dest``; remote addresses and
ephemeral ports never become label values (their number has no bound).

    >>> from portkit.model import PortRange, Protocol, SocketRecord as R, TcpState as S
    >>> from portkit.exporter.snapshot import Snapshot
    >>> snap = Snapshot.from_rows([
    ...     R(Protocol.TCP, 4, S.LISTEN, "0.0.0.0", 80, send_q=128, role="server").row,
    ...     R(Protocol.TCP, 4, S.ESTABLISHED, "127.0.0.1", 80, "127.0.0.1", 40000,
    ...       role="server").row,
    ... ], PortRange(32768, 60999))
    >>> fams = {f.name: f for f in families(snap)}
    >>> fams["portkit_accept_queue_limit"].samples
    [(('tcp', '80'), 128.0)]
    >>> dict(fams["portkit_port_connections"].samples)[("tcp", "80", "established")]
    1.0
"""

from __future__ import annotations

from portkit._sockrow import LOCAL_IP, LOCAL_PORT, PROTOCOL, REMOTE_IP, REMOTE_PORT, STATE
from portkit.model import Protocol, TcpState, iter_ports
from portkit.registry import port_role, service_names

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from portkit.exporter.snapshot import Snapshot
    from portkit.model import Endpoint, PortRange

__all__ = ["CONNECTION_STATES", "Family", "families", "state_label"]

PREFIX = "portkit"

#: TCP states a connection on a listening port can be in: every state but LISTEN
#: (the listener itself) and CLOSE (not a connection). Emitted even at 0, so that a
#: series does not vanish when it drops to zero (a fixed set: bounded).
CONNECTION_STATES: tuple[TcpState, ...] = tuple(
    s for s in TcpState if s not in (TcpState.LISTEN, TcpState.CLOSE)
)

#: States always emitted in the per-protocol totals (others only when present).
_TOTAL_STATES: dict[Protocol, tuple[TcpState, ...]] = {
    Protocol.TCP: tuple(TcpState),
    Protocol.UDP: (TcpState.CLOSE, TcpState.ESTABLISHED),
}


def state_label(state: TcpState) -> str:
    """The ``state`` label value: node_exporter's tcpstat spelling.

    >>> state_label(TcpState.TIME_WAIT), state_label(TcpState.FIN_WAIT1)
    ('time_wait', 'fin_wait1')
    """
    return state.value.lower()


class Family:
    """One gauge family: ``name``, ``help``, label names and ``(label values, value)``
    samples. The collector turns it into a prometheus_client ``GaugeMetricFamily``."""

    __slots__ = ("name", "help", "labels", "samples")

    def __init__(
        self,
        name: str,
        help: str,
        labels: tuple[str, ...] = (),
        samples: list[tuple[tuple[str, ...], float]] | None = None,
    ) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self.samples: list[tuple[tuple[str, ...], float]] = samples or []

    def add(self, values: tuple[str, ...], value: float) -> None:
        self.samples.append((values, float(value)))

    def __repr__(self) -> str:
        return f"Family({self.name!r}, {len(self.samples)} samples)"


def _unmap(ip: str) -> str:
    """``::ffff:10.0.0.5`` (an IPv4 peer of a dual-stack socket) -> ``10.0.0.5``."""
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


def _selected_ports(
    listening: Iterable[tuple[Protocol, int]], ports: tuple[PortRange, ...] | None
) -> list[tuple[Protocol, int]]:
    """Which (protocol, port) pairs get per-port series.

    Without a list: every listening port. With one: the listening ports inside it,
    plus each single port of the list for TCP even when nothing listens there, so
    that ``portkit_listeners == 0`` can say a service went away.

    >>> from portkit.model import PortRange
    >>> _selected_ports([(Protocol.TCP, 22), (Protocol.TCP, 8080)],
    ...                 (PortRange(80), PortRange(8000, 8100)))
    [(<Protocol.TCP: 'tcp'>, 80), (<Protocol.TCP: 'tcp'>, 8080)]
    """
    chosen = set(listening)
    if ports is not None:
        wanted = set(iter_ports(ports))
        chosen = {k for k in chosen if k[1] in wanted}
        chosen.update((Protocol.TCP, r.start) for r in ports if r.start == r.end)
    return sorted(chosen, key=lambda k: (k[0].value, k[1]))


def families(
    snap: Snapshot,
    *,
    ports: tuple[PortRange, ...] | None = None,
    destinations: tuple[Endpoint, ...] = (),
) -> list[Family]:
    """The metric families of one snapshot (the scrape duration and ``up`` are the
    collector's: it alone knows how long the whole scrape took).

    Args:
        snap: the socket table.
        ports: report only these ports (single ports always, ranges where listening);
            None: every listening port.
        destinations: ``IP:PORT`` destinations to report ephemeral port use for.
    """
    stats = snap.stats
    tcp = Protocol.TCP

    totals = Family(
        f"{PREFIX}_sockets",
        "Sockets on this host by protocol and state (udp: close = unconnected).",
        ("protocol", "state"),
    )
    seen = dict.fromkeys((p, s) for p, states in _TOTAL_STATES.items() for s in states)
    seen.update(dict.fromkeys(k for k in stats.counts if k[0] in _TOTAL_STATES))
    for proto, state in seen:
        totals.add((proto.value, state_label(state)), stats.counts.get((proto, state), 0))

    # Per (protocol, port): listener count and accept queues, summed over the port's
    # listening sockets (IPv4 and IPv6, several addresses, SO_REUSEPORT groups).
    listen: dict[tuple[Protocol, int], list[int]] = {}
    for ls in stats.listeners:
        agg = listen.setdefault((ls.protocol, ls.port), [0, 0, 0])
        agg[0] += 1
        agg[1] += ls.accept_queue
        agg[2] += ls.accept_max
    selected = _selected_ports(listen, ports)
    tcp_ports = {port for proto, port in selected if proto is tcp}

    by_state = _port_states(snap.rows, tcp_ports)
    listeners = Family(
        f"{PREFIX}_listeners",
        "Listening sockets on the port (TCP LISTEN, bound UDP); 0: nothing listens.",
        ("protocol", "port"),
    )
    queue = Family(
        f"{PREFIX}_accept_queue_length",
        "Connections waiting in the port's accept queues for accept() (ss Recv-Q).",
        ("protocol", "port"),
    )
    limit = Family(
        f"{PREFIX}_accept_queue_limit",
        "Size of the port's accept queues: the listen() backlog capped by somaxconn (ss Send-Q).",
        ("protocol", "port"),
    )
    conns = Family(
        f"{PREFIX}_port_connections",
        "Connections whose local port is this port (the server side), by TCP state.",
        ("protocol", "port", "state"),
    )
    info = Family(
        f"{PREFIX}_port_info",
        "What the port is, by portkit's registry: its service name and role (always 1).",
        ("protocol", "port", "service", "role"),
    )
    names = {
        proto: service_names({port for p, port in selected if p is proto}, proto.value)
        for proto in {p for p, _ in selected}
    }
    for proto, port in selected:
        n, q, qmax = listen.get((proto, port), (0, 0, 0))
        labels = (proto.value, str(port))
        listeners.add(labels, n)
        role = port_role(port, proto.value)
        info.add((*labels, names[proto].get(port, ""), role.role if role else ""), 1)
        if proto is not tcp:
            continue
        queue.add(labels, q)
        limit.add(labels, qmax)
        counts = by_state.get(port, {})
        for state in CONNECTION_STATES:
            conns.add((*labels, state_label(state)), counts.get(state, 0))

    eph = stats.ephemeral
    size = Family(
        f"{PREFIX}_ephemeral_port_range_size",
        "Ports in the ephemeral range (net.ipv4.ip_local_port_range).",
    )
    size.add((), len(eph))
    used = Family(
        f"{PREFIX}_ephemeral_ports_in_use",
        "Distinct ephemeral-range local ports held by client TCP sockets, any destination.",
    )
    used.add((), stats.ephemeral_in_use)
    out = [totals, listeners, info, queue, limit, conns, size, used]

    if destinations:
        per_dest = Family(
            f"{PREFIX}_destination_ephemeral_ports_in_use",
            "Ephemeral ports held towards the destination ip:port (busiest source address);"
            " the kernel runs out per destination at portkit_ephemeral_port_range_size.",
            ("destination",),
        )
        use = _destination_use(snap.rows, destinations, eph)
        for ep in destinations:
            per_dest.add((ep.address,), use.get((ep.host, ep.port), 0))
        out.append(per_dest)
    return out


def _port_states(rows: list[tuple[Any, ...]], ports: set[int]) -> dict[int, dict[TcpState, int]]:
    """``{local port: {state: n}}`` of TCP connections (not listeners) on ``ports``."""
    out: dict[int, dict[TcpState, int]] = {}
    if not ports:
        return out
    tcp = Protocol.TCP
    for r in rows:
        if r[LOCAL_PORT] in ports and r[REMOTE_IP] is not None and r[PROTOCOL] is tcp:
            counts = out.get(r[LOCAL_PORT])
            if counts is None:
                counts = out[r[LOCAL_PORT]] = {}
            counts[r[STATE]] = counts.get(r[STATE], 0) + 1
    return out


def _destination_use(
    rows: list[tuple[Any, ...]], destinations: tuple[Endpoint, ...], eph: PortRange
) -> dict[tuple[str, int], int]:
    """``{(ip, port): n}``: the most ephemeral ports any one local address holds
    towards each destination (the kernel's limit is per source/destination pair)."""
    wanted = {(ep.host, ep.port) for ep in destinations}
    dports = {port for _, port in wanted}
    per_source: dict[tuple[str, int, str], int] = {}
    lo, hi = eph.start, eph.end
    tcp = Protocol.TCP
    for r in rows:
        if r[REMOTE_PORT] in dports and r[PROTOCOL] is tcp and lo <= r[LOCAL_PORT] <= hi:
            key = (_unmap(r[REMOTE_IP]), r[REMOTE_PORT])
            if key in wanted:
                k = (*key, _unmap(r[LOCAL_IP]))
                per_source[k] = per_source.get(k, 0) + 1
    out: dict[tuple[str, int], int] = {}
    for (ip, port, _src), n in per_source.items():
        if n > out.get((ip, port), 0):
            out[(ip, port)] = n
    return out

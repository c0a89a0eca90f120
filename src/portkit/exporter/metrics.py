"""A socket snapshot as Prometheus metric families. Pure: data in, data out.

The names follow https://prometheus.io/docs/practices/naming/: a ``portkit_`` prefix,
snake_case, base units (seconds), no ``_total`` (every family here is a gauge) and
bounded labels. ``port`` is only ever a listening port or one given with
``--ports``; ``destination`` only one given with ``--dest``; ``container`` one of
at most :data:`MAX_CONTAINER_VALUES` container names per scrape (then ``other``);
remote addresses and ephemeral ports never become label values (their number has no
bound).

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

__all__ = [
    "CONNECTION_STATES",
    "MAX_CONTAINER_VALUES",
    "Family",
    "container_values",
    "families",
    "state_label",
]

PREFIX = "portkit"

#: Distinct ``container`` label values in one scrape at most; the ports of any
#: further containers are labelled ``other`` (the label's cardinality stays bounded
#: however many containers publish ports).
MAX_CONTAINER_VALUES = 200
#: The value for the ports of containers past :data:`MAX_CONTAINER_VALUES`.
OTHER_CONTAINERS = "other"

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


def container_values(
    port_containers: dict[tuple[str, int], tuple[Any, ...]],
    limit: int = MAX_CONTAINER_VALUES,
) -> dict[tuple[str, int], str]:
    """The ``container`` label value of each listening ``(protocol, port)``: the name
    of the container that listens there or that the port's publisher (docker-proxy,
    dockerd, rootlessport, ...) publishes for (``namespace/pod`` for a Kubernetes
    pod's; several, comma-separated, in name order); ports without one are left out
    (their value is empty). The first ``limit`` distinct values in name order are
    kept, every other one becomes ``other``.

    >>> from portkit.containers import Container
    >>> from portkit.see import OwnerContainer
    >>> box = lambda name: (OwnerContainer(Container(name * 8, name, "docker"), None, None),)
    >>> container_values({("tcp", 80): box("web"), ("tcp", 5432): box("db"),
    ...                   ("udp", 53): box("dns")}, limit=2)
    {('tcp', 80): 'other', ('tcp', 5432): 'db', ('udp', 53): 'dns'}
    """
    named = {}
    for key, boxes in port_containers.items():
        names = sorted({_container_name(b.container) for b in boxes if b.container is not None})
        if names:
            named[key] = ",".join(names)
    kept = set(sorted(set(named.values()))[:limit])
    return {k: v if v in kept else OTHER_CONTAINERS for k, v in named.items()}


def _container_name(container: Any) -> str:
    """A Kubernetes pod's ``namespace/pod``, else the container's name (no compose
    suffix: a label value is matched, not read)."""
    return str(container.label() if container.pod else container.name)


class Family:
    """One metric family: ``name``, ``help``, label names and ``(label values, value)``
    samples. The collector turns it into a prometheus_client family of its ``kind``:
    ``gauge``; ``counter`` (``name`` without ``_total``, which the exposition adds);
    or ``summary``, whose samples are ``(label values, (count, sum, {quantile:
    value}))`` (see :meth:`add_summary`)."""

    __slots__ = ("name", "help", "labels", "samples", "kind")

    def __init__(
        self,
        name: str,
        help: str,
        labels: tuple[str, ...] = (),
        samples: list[tuple[tuple[str, ...], Any]] | None = None,
        kind: str = "gauge",
    ) -> None:
        self.name = name
        self.help = help
        self.labels = labels
        self.samples: list[tuple[tuple[str, ...], Any]] = samples or []
        self.kind = kind

    def add(self, values: tuple[str, ...], value: float) -> None:
        self.samples.append((values, float(value)))

    def add_summary(
        self, values: tuple[str, ...], count: int, total: float, quantiles: dict[float, float]
    ) -> None:
        self.samples.append((values, (count, total, quantiles)))

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

    by_state = _port_states(snap, tcp_ports)
    # The container label only when the snapshot says which ports have one (a
    # provider with containers=True); --no-container-label leaves it off entirely.
    boxed = snap.port_containers is not None
    in_box = container_values(snap.port_containers or {}) if boxed else {}
    extra = ("container",) if boxed else ()
    listeners = Family(
        f"{PREFIX}_listeners",
        "Listening sockets on the port (TCP LISTEN, bound UDP); 0: nothing listens"
        + ("; container: the container that listens or is published there." if boxed else "."),
        ("protocol", "port", *extra),
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
        "What the port is, by portkit's registry: its service name and role (always 1)"
        + ("; the container that listens or is published there." if boxed else "."),
        ("protocol", "port", "service", "role", *extra),
    )
    names = {
        proto: service_names({port for p, port in selected if p is proto}, proto.value)
        for proto in {p for p, _ in selected}
    }
    for proto, port in selected:
        n, q, qmax = listen.get((proto, port), (0, 0, 0))
        labels = (proto.value, str(port))
        box = (in_box.get((proto.value, port), ""),) if boxed else ()
        listeners.add((*labels, *box), n)
        role = port_role(port, proto.value)
        info.add((*labels, names[proto].get(port, ""), role.role if role else "", *box), 1)
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
    if snap.traffic is not None:
        out += _traffic_families(snap, sorted(tcp_ports))

    if destinations:
        per_dest = Family(
            f"{PREFIX}_destination_ephemeral_ports_in_use",
            "Ephemeral ports held towards the destination ip:port (busiest source address);"
            " the kernel runs out per destination at portkit_ephemeral_port_range_size.",
            ("destination",),
        )
        use = _destination_use(snap, destinations, eph)
        for ep in destinations:
            per_dest.add((ep.address,), use.get((ep.host, ep.port), 0))
        out.append(per_dest)
        out += _forecast_families(snap, destinations)
    return out


#: Quantiles of the per-port RTT summary.
RTT_QUANTILES = (0.5, 0.9, 0.99)


def _traffic_families(snap: Snapshot, ports: list[int]) -> list[Family]:
    """Per listening port: bytes and segments sent, bytes received, retransmits
    (counters that only grow: ``see._traffic.Ledger``) and the RTT of the connections
    open now (a summary)."""
    from portkit.see._traffic import ZERO, quantile

    assert snap.traffic is not None
    labels = ("protocol", "port")
    sent = Family(
        f"{PREFIX}_port_sent_bytes",
        "Bytes the peers acknowledged on connections to this listening port (tcp_info "
        "bytes_acked; connections that closed included).",
        labels,
        kind="counter",
    )
    received = Family(
        f"{PREFIX}_port_received_bytes",
        "Bytes received on connections to this listening port (tcp_info bytes_received).",
        labels,
        kind="counter",
    )
    retrans = Family(
        f"{PREFIX}_port_retransmitted_segments",
        "Segments retransmitted on connections to this listening port (tcp_info total_retrans).",
        labels,
        kind="counter",
    )
    segs = Family(
        f"{PREFIX}_port_sent_segments",
        "Segments sent on connections to this listening port (tcp_info segs_out).",
        labels,
        kind="counter",
    )
    rtt = Family(
        f"{PREFIX}_port_rtt_seconds",
        "Smoothed round-trip time of the established connections to this listening port "
        "now (tcp_info rtt), across connections.",
        labels,
        kind="summary",
    )
    for port in ports:
        got = snap.traffic.get(port)
        totals = got.totals if got is not None else ZERO
        values = ("tcp", str(port))
        for fam, value in zip((sent, received, retrans, segs), totals, strict=True):
            fam.add(values, value)
        rtts = got.rtts if got is not None else []
        rtt.add_summary(values, len(rtts), sum(rtts), {q: quantile(rtts, q) for q in RTT_QUANTILES})
    return [sent, received, retrans, segs, rtt]


def _forecast_families(snap: Snapshot, destinations: tuple[Endpoint, ...]) -> list[Family]:
    """Per ``--dest`` destination: its connection rate (from TIME-WAIT) and the seconds
    until its ephemeral ports run out at that rate (+Inf: never)."""
    from portkit.see._forecast import forecasts

    wanted = {(ep.host, ep.port) for ep in destinations}
    held = _destination_held(snap, wanted, snap.stats.ephemeral)
    soonest: dict[tuple[str, int], Any] = {}
    ages = snap.time_wait or {}
    for f in forecasts(held, ages, snap.stats.ephemeral, limit=None, only=wanted):
        key = (_unmap(f.ip), f.port)
        best = soonest.get(key)
        if best is None or _sooner(f, best):
            soonest[key] = f
    seconds = Family(
        f"{PREFIX}_ephemeral_exhaustion_seconds",
        "Seconds until the ephemeral ports towards the destination run out at the rate "
        "connections are made to it (from its TIME-WAIT sockets' ages); +Inf: never at "
        "this rate, 0: already.",
        ("destination",),
    )
    rate = Family(
        f"{PREFIX}_destination_connections_per_second",
        "New connections a second towards the destination, from the ages of its "
        "TIME-WAIT sockets (TIME-WAIT lasts 60 s on Linux).",
        ("destination",),
    )
    waiting = Family(
        f"{PREFIX}_destination_time_wait",
        "Sockets in TIME-WAIT towards the destination (from the busiest source address).",
        ("destination",),
    )
    inf = float("inf")
    for ep in destinations:
        got = soonest.get((ep.host, ep.port))
        label = (ep.address,)
        if got is None:
            seconds.add(label, inf)
            rate.add(label, 0)
            waiting.add(label, 0)
            continue
        seconds.add(label, inf if got.seconds is None else got.seconds)
        rate.add(label, got.rate)
        waiting.add(label, got.time_wait)
    return [seconds, rate, waiting]


def _sooner(a: Any, b: Any) -> bool:
    if a.seconds is None:
        return False
    return b.seconds is None or a.seconds < b.seconds


def _port_states(snap: Snapshot, ports: set[int]) -> dict[int, dict[TcpState, int]]:
    """``{local port: {state: n}}`` of TCP connections (not listeners) on ``ports``:
    from the snapshot's fold (the raw rows), else from its rows."""
    out: dict[int, dict[TcpState, int]] = {}
    if not ports:
        return out
    if snap.fold is not None:
        return snap.fold.port_states(ports)
    tcp = Protocol.TCP
    for r in snap.rows:
        if r[LOCAL_PORT] in ports and r[REMOTE_IP] is not None and r[PROTOCOL] is tcp:
            counts = out.get(r[LOCAL_PORT])
            if counts is None:
                counts = out[r[LOCAL_PORT]] = {}
            counts[r[STATE]] = counts.get(r[STATE], 0) + 1
    return out


def _destination_held(
    snap: Snapshot, wanted: set[tuple[str, int]], eph: PortRange
) -> dict[tuple[str, str, int], int]:
    """``{(source ip, destination ip, port): n}``: ephemeral ports each local address
    holds towards the ``wanted`` destinations (as the rows spell the addresses): from
    the snapshot's fold, else from its rows."""
    if snap.fold is not None:
        return snap.fold.destination_held(wanted)
    dports = {port for _, port in wanted}
    held: dict[tuple[str, str, int], int] = {}
    lo, hi = eph.start, eph.end
    tcp = Protocol.TCP
    for r in snap.rows:
        if (
            r[REMOTE_PORT] in dports
            and r[PROTOCOL] is tcp
            and lo <= r[LOCAL_PORT] <= hi
            and (_unmap(r[REMOTE_IP]), r[REMOTE_PORT]) in wanted
        ):
            k = (r[LOCAL_IP], r[REMOTE_IP], r[REMOTE_PORT])
            held[k] = held.get(k, 0) + 1
    return held


def _destination_use(
    snap: Snapshot, destinations: tuple[Endpoint, ...], eph: PortRange
) -> dict[tuple[str, int], int]:
    """``{(ip, port): n}``: the most ephemeral ports any one local address holds
    towards each destination (the kernel's limit is per source/destination pair)."""
    wanted = {(ep.host, ep.port) for ep in destinations}
    per_source: dict[tuple[str, int, str], int] = {}
    for (src, ip, port), n in _destination_held(snap, wanted, eph).items():
        k = (_unmap(ip), port, _unmap(src))
        per_source[k] = per_source.get(k, 0) + n
    out: dict[tuple[str, int], int] = {}
    for (ip, port, _src), n in per_source.items():
        if n > out.get((ip, port), 0):
            out[(ip, port)] = n
    return out

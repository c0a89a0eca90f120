"""What ``portkit top`` shows, computed from a snapshot. Pure: no textual, no I/O.

The app (:mod:`portkit.tui.app`) only moves these values into widgets, so the
filter grammar, the row keys, the sort keys, the state history and the sparkline
are all tested here without a terminal.

    >>> f = RowFilter.parse("estab 8080 nginx")
    >>> sorted(s.value for s in f.states), [str(r) for r in f.ports], f.words
    (['ESTABLISHED'], ['8080'], ('nginx',))
    >>> spark([0, 1, 2, 4, 8])
    '▁▂▃▅█'
"""

from __future__ import annotations

from collections import deque

from portkit._sockrow import (
    INODE,
    LOCAL_IP,
    LOCAL_PORT,
    PID,
    PIDS,
    PROCESS,
    PROTOCOL,
    RECV_Q,
    REMOTE_IP,
    REMOTE_PORT,
    ROLE,
    SEND_Q,
    STATE,
    USER,
)
from portkit.errors import ParseError
from portkit.model import (
    SS_STATE_GROUPS,
    BindScope,
    PortRange,
    Protocol,
    TcpState,
    bind_scope,
    parse_state_filter,
)
from portkit.render import safe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

    from portkit.exporter.snapshot import Snapshot
    from portkit.see import OwnerContainer, SocketStats

    #: A table row: the texts shown and the keys each column sorts by (numbers as
    #: numbers, addresses by their bytes). Plain tuples of strings and numbers, which
    #: the cyclic garbage collector stops tracking, so 50,000 rows cost it nothing.
    Row = tuple[tuple[str, ...], tuple[Any, ...]]

__all__ = [
    "CONN_COLUMNS",
    "CONTAINER_COLUMNS",
    "FILTER_HELP",
    "LISTEN_COLUMNS",
    "PROC_COLUMNS",
    "History",
    "RowFilter",
    "address",
    "connection_rows",
    "container_text",
    "ephemeral_lines",
    "listener_rows",
    "owner_container",
    "process_rows",
    "row_key",
    "spark",
]

#: (column key, title, right-aligned) of the connections table, in order.
CONN_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("proto", "PROTO", False),
    ("state", "STATE", False),
    ("local", "LOCAL", False),
    ("remote", "REMOTE", False),
    ("service", "SERVICE", False),
    ("role", "ROLE", False),
    ("recv_q", "RECV-Q", True),
    ("send_q", "SEND-Q", True),
    ("pid", "PID", True),
    ("process", "PROCESS", False),
    ("user", "USER", False),
    ("container", "CONTAINER", False),
    ("sent", "SEND/s", True),
    ("received", "RECV/s", True),
    ("retrans", "RETR/s", True),
    ("rtt", "RTT ms", True),
)
#: (column key, title, right-aligned) of the listening ports table.
LISTEN_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("port", "PORT", True),
    ("proto", "PROTO", False),
    ("service", "SERVICE", False),
    ("bind", "BIND", False),
    ("owner", "OWNER", False),
    ("container", "CONTAINER", False),
    ("conns", "CONNS", True),
    ("queue", "QUEUE", True),
    ("sent", "SEND/s", True),
    ("received", "RECV/s", True),
    ("retrans", "RETR/s", True),
)
#: (column key, title, right-aligned) of the processes table (traffic per process).
PROC_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("pid", "PID", True),
    ("process", "PROCESS", False),
    ("conns", "CONNS", True),
    ("sent", "SEND/s", True),
    ("received", "RECV/s", True),
    ("retrans", "RETR/s", True),
)

#: The columns shown only once an owner is a container or publishes for one (as
#: ``ls -p`` has a CONTAINER column only then).
CONTAINER_COLUMNS = frozenset({"container"})

#: A socket's rates: sent and received bytes/s, retransmits/s, RTT (s) or None.
Rate = tuple[float, float, float, "float | None"]

FILTER_HELP = (
    "a state (estab, time-wait, connected...), a port or range (8080, 8000-8100), text "
    "in a process, address, service or container; state:/port:/proc:/pid: to be explicit"
)

_SPARK = "▁▂▃▄▅▆▇█"


def spark(values: Sequence[int], width: int | None = None) -> str:
    """A one-line sparkline of ``values`` (the last ``width`` of them), scaled from
    their minimum to their maximum so that small changes show; a flat series is a
    flat middle line (the count beside it says how much).

    >>> spark([3, 3, 3]), spark([]), spark([0, 0]), spark([10, 12, 11])
    ('▄▄▄', '', '▁▁', '▁█▅')
    """
    vals = list(values)[-width:] if width else list(values)
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    if lo == hi:
        return (_SPARK[3] if hi > 0 else _SPARK[0]) * len(vals)
    last = len(_SPARK) - 1
    return "".join(_SPARK[round((v - lo) / (hi - lo) * last)] for v in vals)


class History:
    """The last ``size`` snapshots' counts per (protocol, state), for sparklines."""

    def __init__(self, size: int = 60) -> None:
        self.size = size
        self._counts: deque[dict[tuple[Protocol, TcpState], int]] = deque(maxlen=size)

    def add(self, stats: SocketStats) -> None:
        self._counts.append(dict(stats.counts))

    def __len__(self) -> int:
        return len(self._counts)

    def series(self, key: tuple[Protocol, TcpState]) -> list[int]:
        return [c.get(key, 0) for c in self._counts]

    def lines(self, width: int = 20) -> list[tuple[str, int, str]]:
        """``(label, current count, sparkline)`` for each (protocol, state) seen in
        the window, TCP first in the kernel's state order."""
        seen: set[tuple[Protocol, TcpState]] = set()
        for counts in self._counts:
            seen.update(k for k, n in counts.items() if n)
        order = sorted(seen, key=lambda k: (k[0] is not Protocol.TCP, k[0].value, k[1].code))
        current = self._counts[-1] if self._counts else {}
        out = []
        for proto, state in order:
            name = state.ss_name if proto is Protocol.TCP else f"udp {state.ss_name}"
            out.append(
                (name, current.get((proto, state), 0), spark(self.series((proto, state)), width))
            )
        return out


class RowFilter:
    """The connections filter typed after ``/``.

    A word is a state or state group (``estab``, ``time-wait``, ``connected``), a
    port or range matched on either side (``8080``, ``8000-8100``), or else text
    found in the process name, an address, the service name or the container. ``state:``,
    ``port:``, ``proc:`` and ``pid:`` prefixes say which one is meant. Several
    states or ports mean any of them; the kinds, and the text words, must all match
    (``estab 80 443 nginx``: established, on port 80 or 443, of nginx).

    >>> RowFilter.parse("").active, RowFilter.parse("pid:42").pid
    (False, 42)

    Raises:
        ParseError: a bad state, port or pid after a prefix.
    """

    __slots__ = ("text", "states", "ports", "process", "pid", "words")

    def __init__(
        self,
        text: str = "",
        states: frozenset[TcpState] | None = None,
        ports: tuple[PortRange, ...] = (),
        process: str | None = None,
        pid: int | None = None,
        words: tuple[str, ...] = (),
    ) -> None:
        self.text = text
        self.states = states
        self.ports = ports
        self.process = process
        self.pid = pid
        self.words = words

    @property
    def active(self) -> bool:
        return bool(self.states is not None or self.ports or self.process or self.pid or self.words)

    @classmethod
    def parse(cls, text: str) -> RowFilter:
        states: set[TcpState] = set()
        ports: list[PortRange] = []
        process: str | None = None
        pid: int | None = None
        words: list[str] = []
        for token in text.split():
            prefix, sep, value = token.partition(":")
            prefix = prefix.lower() if sep else ""
            if prefix == "state":
                states |= parse_state_filter([value])
            elif prefix == "port":
                ports.append(PortRange.parse(value))
            elif prefix in ("proc", "process"):
                process = value.lower()
            elif prefix == "pid":
                if not value.isdigit():
                    raise ParseError(f"bad pid {value!r}", text=token, accepted="pid:NUMBER")
                pid = int(value)
            elif _is_port(token):
                ports.append(PortRange.parse(token))
            elif _state_word(token) is not None:
                states |= _state_word(token) or frozenset()
            else:
                words.append(token.lower())
        return cls(
            text, frozenset(states) if states else None, tuple(ports), process, pid, tuple(words)
        )

    def matches(
        self, row: tuple[Any, ...], service: str | None = None, container: str | None = None
    ) -> bool:
        """Whether a socket row (:data:`~portkit.model.SOCKET_FIELDS` order) passes;
        text words are looked for in its addresses, process, user, ``service`` and
        ``container`` (:func:`container_text`)."""
        if self.states is not None and row[STATE] not in self.states:
            return False
        if self.ports:
            lport, rport = row[LOCAL_PORT], row[REMOTE_PORT] or -1
            if not any(r.start <= lport <= r.end or r.start <= rport <= r.end for r in self.ports):
                return False
        if self.pid is not None and self.pid not in (
            row[PIDS] or ((row[PID],) if row[PID] else ())
        ):
            return False
        if self.process is not None and self.process not in (row[PROCESS] or "").lower():
            return False
        if self.words:
            texts = (row[LOCAL_IP], row[REMOTE_IP], row[PROCESS], service, row[USER], container)
            hay = " ".join(t or "" for t in texts).lower()
            return all(w in hay for w in self.words)
        return True


def _is_port(token: str) -> bool:
    first, sep, last = token.partition("-")
    return first.isdigit() and (not sep or last.isdigit())


_STATE_ALIASES = {
    "estab": "established",
    "listen": "listening",
    "close": "closed",
    "tw": "time-wait",
}


def _state_word(token: str) -> frozenset[TcpState] | None:
    key = token.lower().replace("_", "-")
    key = _STATE_ALIASES.get(key, key)
    return SS_STATE_GROUPS.get(key)


# --- rows -----------------------------------------------------------------------------


# Protocol members' own str()/format go through Python code; a dict lookup does not.
_PROTO_TEXT: dict[Any, str] = {p: p.value for p in Protocol}


def row_key(row: tuple[Any, ...]) -> str:
    """A socket's identity across refreshes: protocol, both ends and the inode (a
    TIME-WAIT socket has inode 0 but a unique 4-tuple).

    >>> from portkit.model import SocketRecord as R
    >>> row_key(R(Protocol.TCP, 4, TcpState.ESTABLISHED, "127.0.0.1", 80, "127.0.0.1", 5000,
    ...           inode=77).row)
    'tcp 127.0.0.1 80 127.0.0.1 5000 77'
    """
    proto = _PROTO_TEXT.get(row[PROTOCOL]) or row[PROTOCOL].value
    local, remote = f"{row[LOCAL_IP]} {row[LOCAL_PORT]}", f"{row[REMOTE_IP]} {row[REMOTE_PORT]}"
    return f"{proto} {local} {remote} {row[INODE]}"


_ip_keys: dict[str, bytes] = {}


def _ip_key(ip: str | None) -> bytes:
    """Sortable bytes of an address (IPv4 before IPv6), cached per address."""
    if ip is None:
        return b""
    key = _ip_keys.get(ip)
    if key is None:
        from _socket import AF_INET, AF_INET6, inet_pton

        key = inet_pton(AF_INET6, ip) if ":" in ip else b"\0" * 12 + inet_pton(AF_INET, ip)
        if len(_ip_keys) > 100_000:  # bounded: a long-running view sees many peers
            _ip_keys.clear()
        _ip_keys[ip] = key
    return key


def address(ip: str, port: int | None) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"{host}:{'*' if port is None else port}"


def container_text(box: OwnerContainer | None) -> str:
    """The CONTAINER cell of an owner: ``web``, ``web (compose shop/web)``, or for a
    publisher's socket ``published: web``; ``-`` for the host's own processes. The
    words of ``ls -p``'s CONTAINER column, without where a proxy sends the traffic
    (the details screen says it).

    >>> from portkit.containers import Container
    >>> from portkit.see import OwnerContainer
    >>> web = Container("a" * 64, "web", "docker")
    >>> container_text(OwnerContainer(web, "proxy", "172.17.0.2:80"))
    'published: web'
    >>> container_text(OwnerContainer(web, None, None)), container_text(None)
    ('web', '-')
    """
    if box is None or box.container is None:
        return "-"
    label = safe(box.container.label())
    return f"published: {label}" if box.published_by else label


def owner_container(boxes: Mapping[Any, OwnerContainer] | None, row: tuple[Any, ...]) -> str:
    """The CONTAINER cell of a socket row from a snapshot's ``containers``."""
    if not boxes or row[PID] is None:
        return "-"
    from portkit.see._containers import box_of

    return container_text(box_of(boxes, row[PID], row[LOCAL_PORT], _PROTO_TEXT[row[PROTOCOL]]))


def connection_cells(
    row: tuple[Any, ...],
    names: dict[str, dict[int, str]],
    rate: Rate | None = None,
    container: str = "-",
) -> Row:
    """The texts and sort keys of one connection, in :data:`CONN_COLUMNS` order
    (``rate``: its traffic since the last refresh, ``tui.rates``; ``container``: its
    owner's, :func:`owner_container`)."""
    server = row[ROLE] == "server"
    port = row[LOCAL_PORT] if server else row[REMOTE_PORT]
    service = names.get(row[PROTOCOL].value, {}).get(port) if port else None
    pid, process, user = row[PID], row[PROCESS], row[USER]
    texts = (
        row[PROTOCOL].value,
        row[STATE].ss_name,
        address(row[LOCAL_IP], row[LOCAL_PORT]),
        address(row[REMOTE_IP], row[REMOTE_PORT]),
        service or "-",
        row[ROLE],
        str(row[RECV_Q]),
        str(row[SEND_Q]),
        "-" if pid is None else str(pid),
        safe(process or "-"),
        safe(user or "-"),
        container,
        *_rate_texts(rate),
    )
    keys = (
        row[PROTOCOL].value,
        row[STATE].code,
        (_ip_key(row[LOCAL_IP]), row[LOCAL_PORT]),
        (_ip_key(row[REMOTE_IP]), row[REMOTE_PORT] or 0),
        service or "",
        row[ROLE],
        row[RECV_Q],
        row[SEND_Q],
        -1 if pid is None else pid,
        process or "",
        user or "",
        container,
        *_rate_keys(rate),
    )
    return texts, keys


def _rate_texts(rate: Rate | None) -> tuple[str, str, str, str]:
    from portkit.tui.rates import human_rate

    if rate is None:
        return ("-", "-", "-", "-")
    sent, received, retrans, rtt = rate
    return (
        human_rate(sent),
        human_rate(received),
        f"{retrans:.1f}" if retrans else "-",
        "-" if rtt is None else f"{rtt * 1000:.3g}",
    )


def _rate_keys(rate: Rate | None) -> tuple[float, float, float, float]:
    if rate is None:
        return (-1.0, -1.0, -1.0, -1.0)
    return (rate[0], rate[1], rate[2], -1.0 if rate[3] is None else rate[3])


def process_rows(processes: dict[int, list[Any]]) -> dict[str, Row]:
    """``{"pid": row}`` of the processes table (:data:`PROC_COLUMNS`) from
    ``Rates.processes``."""
    from portkit.tui.rates import human_rate

    out: dict[str, Row] = {}
    for pid, (name, conns, sent, received, retrans) in processes.items():
        out[str(pid)] = (
            (
                str(pid),
                safe(name),
                str(conns),
                human_rate(sent),
                human_rate(received),
                f"{retrans:.1f}" if retrans else "-",
            ),
            (pid, name, conns, sent, received, retrans),
        )
    return out


def connection_rows(
    rows: Iterable[tuple[Any, ...]],
    flt: RowFilter,
    names: dict[str, dict[int, str]],
    boxes: Mapping[Any, OwnerContainer] | None = None,
) -> dict[str, tuple[Any, ...]]:
    """``{row key: socket row}`` of the connections (not listeners) that pass ``flt``
    (its words are looked for in the owner's container too, from ``boxes``: a
    snapshot's ``containers``), first one kept when the kernel reports a key twice."""
    out: dict[str, tuple[Any, ...]] = {}
    active = flt.active
    boxed = bool(boxes) and bool(flt.words)
    for r in rows:
        if r[REMOTE_IP] is None:
            continue
        if active:
            server = r[ROLE] == "server"
            port = r[LOCAL_PORT] if server else r[REMOTE_PORT]
            service = names.get(r[PROTOCOL].value, {}).get(port) if port else None
            if not flt.matches(r, service, owner_container(boxes, r) if boxed else None):
                continue
        key = row_key(r)
        if key not in out:
            out[key] = r
    return out


def listener_rows(
    stats: SocketStats,
    names: dict[str, dict[int, str]],
    scope: Callable[[Iterable[str]], str],
    rates: dict[int, list[float]] | None = None,
    containers: Mapping[tuple[str, int], tuple[OwnerContainer, ...]] | None = None,
) -> dict[str, Row]:
    """``{"proto port": row}``: one row per listening (protocol, port), in
    :data:`LISTEN_COLUMNS` order, sorted by port; ``rates``: per TCP port, the bytes
    a second sent and received and the retransmits a second of its connections;
    ``containers``: a snapshot's ``port_containers``."""
    groups: dict[tuple[str, int], list[Any]] = {}
    for ls in stats.listeners:
        groups.setdefault((ls.protocol.value, ls.port), []).append(ls)
    out: dict[str, Row] = {}
    for (proto, port), items in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        owners = safe(", ".join(sorted({f"{ls.process}/{ls.pid}" for ls in items if ls.pid})))
        queue, qmax = sum(ls.accept_queue for ls in items), sum(ls.accept_max for ls in items)
        tcp = proto == "tcp"
        # A wildcard listener's count already covers every connection to the port
        # (and IPv4 + IPv6 wildcards each report it): take it once, else add up.
        wild = [ls.connections for ls in items if bind_scope(ls.ip) is BindScope.WILDCARD]
        conns = max(wild) if wild else sum(ls.connections for ls in items)
        service = names.get(proto, {}).get(port)
        bind = scope(ls.ip for ls in items)
        traffic = (rates or {}).get(port) if tcp else None
        rate = None if traffic is None else (traffic[0], traffic[1], traffic[2], None)
        boxes = (containers or {}).get((proto, port), ())
        box = ", ".join(container_text(b) for b in boxes) or "-"
        out[f"{proto} {port}"] = (
            (
                str(port),
                proto,
                service or "-",
                bind,
                owners or "-",
                box,
                str(conns) if tcp else "-",
                f"{queue}/{qmax}" if tcp else "-",
                *_rate_texts(rate)[:3],
            ),
            (
                port,
                proto,
                service or "",
                bind,
                owners,
                box,
                conns if tcp else -1,
                (queue / qmax if qmax else 0.0, queue),
                *_rate_keys(rate)[:3],
            ),
        )
    return out


def ephemeral_lines(stats: SocketStats, top: int = 4, width: int = 20) -> list[str]:
    """The ephemeral pane: overall use with a bar, then the busiest destinations."""
    size = len(stats.ephemeral)
    used = stats.ephemeral_in_use
    fill = used / size if size else 0.0
    filled = round(fill * width)
    lines = [
        f"range {stats.ephemeral} ({size} ports)",
        f"in use {used} ({fill:.1%}) {'█' * filled}{'░' * (width - filled)}",
    ]
    for d in stats.destinations[:top]:
        lines.append(f"{d.in_use:>6} → {address(d.ip, d.port)} ({d.fill:.1%})")
    if not stats.destinations:
        lines.append("no outgoing connections")
    return lines


def summary(snap: Snapshot, *, interval: float, paused: bool, shown: int, rates: Any = None) -> str:
    """The title line: sockets, rows shown, refresh rate, closed connections, state."""
    stats = snap.stats
    parts = [f"{stats.total} sockets", f"{shown} shown", f"every {interval:g}s"]
    if rates is not None and (rates.closed or rates.unaccounted):
        closed = f"{rates.closed} closed since last (counted to their last byte)"
        if rates.unaccounted:
            closed += f", {rates.unaccounted} vanished (counted to the refresh before)"
        parts.append(closed)
    if snap.owners_hidden:
        n = snap.owners_hidden
        parts.append(f"owners of {n} {'process' if n == 1 else 'processes'} hidden")
    if paused:
        parts.append("PAUSED")
    return " · ".join(parts)

"""Socket rows as text, JSON and CSV; stats, ``who`` and the overview as text and JSON.

Rendering a listing is the largest cost of ``portkit ls`` at 100,000 sockets after
the kernel dump, so the listing formats work on row tuples (``SocketRecord.row``)
directly: address and number strings are cached per distinct value, each line is
one ``%`` format, and the text is joined once. JSON is written from a template for
the same reason (the ``json`` module's indenting encoder is pure Python); strings
that may need escaping (process, user, service, cgroup) go through ``json.dumps``
once per distinct value.
"""

from __future__ import annotations

from portkit._sockrow import (
    CGROUP,
    FAMILY,
    INODE,
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
    UID,
    USER,
)
from portkit.model import BindScope, Protocol, TcpState, widest_scope
from portkit.render.sockets_raw import (
    _Json,
    ls_json_raw,
    ls_text_raw,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    from portkit.render import Style
    from portkit.see._overview import ListeningPort, Overview
    from portkit.see._stats import SocketStats
    from portkit.see._who import PortOwners

__all__ = [
    "LS_JSON_KEYS",
    "SORT_KEYS",
    "ls_csv",
    "ls_json",
    "ls_json_raw",
    "ls_text",
    "ls_text_raw",
    "overview_json",
    "overview_text",
    "service_ports",
    "sort_rows",
    "stats_json",
    "stats_text",
]

#: Keys of each object in ``ls --json`` (docs/see.md).
LS_JSON_KEYS = (
    "proto",
    "family",
    "state",
    "local",
    "remote",
    "recv_q",
    "send_q",
    "pid",
    "process",
    "user",
    "uid",
    "inode",
    "service",
    "role",
    "cgroup",
    "container",
)

# ss's display names, UDP's CLOSE being "UNCONN" as in ss.
_STATE_TEXT = {s: s.ss_name for s in TcpState}


class _Brackets(dict[str, str]):
    def __missing__(self, ip: str) -> str:
        text = self[ip] = f"[{ip}]" if ":" in ip else ip
        return text


class _Str(dict[object, str]):
    def __missing__(self, value: object) -> str:
        text = self[value] = str(value)
        return text


def service_port(row: tuple[Any, ...]) -> int | None:
    """The port whose service a connection is about: the server side's port."""
    port: int | None = row[LOCAL_PORT] if row[ROLE] == "server" else row[REMOTE_PORT]
    return port


def service_ports(rows: Iterable[tuple[Any, ...]]) -> dict[str, set[int]]:
    """The distinct server-side ports per protocol, to name them once each."""
    out: dict[str, set[int]] = {}
    for r in rows:
        port = r[LOCAL_PORT] if r[ROLE] == "server" else r[REMOTE_PORT]
        if port:
            out.setdefault(r[PROTOCOL].value, set()).add(port)
    return out


Names = dict[str, dict[int, str]]  # protocol -> {port: service name}


_HEADERS = ("PROTO", "STATE", "RECV-Q", "SEND-Q")


def _line_format(ws: int, wq: int, wip: int, wp: int, wrip: int, wrp: int) -> str:
    """One table line: addresses right-aligned to the ``:`` before the port, as ss."""
    return f"%-5s  %-{ws}s  %{wq}s  %{wq}s  %{wip}s:%-{wp}s  %{wrip}s:%-{wrp}s  %s"


def _head(fmt: str, tail: str = "") -> str:
    role = "ROLE  " if tail else "ROLE"  # as wide as "server" when columns follow
    return (fmt % (*_HEADERS, "LOCAL", "PORT", "REMOTE", "PORT", role) + tail).rstrip()


class _PortText(dict[int, str]):
    """Port number -> text: a service name where ``names`` has one, else the number."""

    def __init__(self, names: dict[int, str] | None = None) -> None:
        super().__init__()
        self.names = names or {}

    def __missing__(self, port: int) -> str:
        text = self[port] = self.names.get(port) or str(port)
        return text


def ls_text(
    rows: Sequence[tuple[Any, ...]],
    *,
    names: Names | None = None,
    owners: bool = False,
    extended: bool = False,
    hosts: dict[str, str] | None = None,
    style: Style | None = None,
) -> str:
    """The ``portkit ls`` table: ss's columns plus the role (and owner, ``-e`` fields).

    Args:
        rows: ``SocketRecord.row`` tuples.
        names: ``{protocol: {port: service}}`` to show server-side ports by name
            (``ls`` without ``-n``); None for numbers.
        owners: add PID, PROCESS, USER (``-p``).
        extended: add UID, INODE, CGROUP (``-e``).
        hosts: ``{ip: name}`` to show instead of addresses (``-r``).
        style: bold headers when colour is on.

    >>> from portkit.model import SocketRecord as R
    >>> print(ls_text([R(Protocol.TCP, 4, TcpState.LISTEN, "0.0.0.0", 22, role="server").row]))
    PROTO  STATE   RECV-Q  SEND-Q    LOCAL:PORT   REMOTE:PORT  ROLE
    tcp    LISTEN       0       0  0.0.0.0:22    0.0.0.0:*     server
    """
    br = _Brackets()
    if hosts:
        br.update(hosts)
    plain = _PortText()
    named = {p: _PortText(n) for p, n in (names or {}).items()}
    local_ip = [br[r[LOCAL_IP]] for r in rows]
    remote_ip = [br[r[REMOTE_IP]] if r[REMOTE_IP] is not None else _ANY[r[FAMILY]] for r in rows]
    local_port, remote_port = [], []
    for r in rows:
        text = named.get(r[PROTOCOL].value, plain)
        server = r[ROLE] == "server"
        local_port.append((text if server else plain)[r[LOCAL_PORT]])
        remote_port.append(
            "*" if r[REMOTE_PORT] is None else (plain if server else text)[r[REMOTE_PORT]]
        )
    qs = _Str()
    wq = max([6, *(len(qs[r[RECV_Q]]) for r in rows), *(len(qs[r[SEND_Q]]) for r in rows)])
    ws = max([5, *(len(_STATE_TEXT[s]) for s in {r[STATE] for r in rows})])
    fmt = _line_format(
        ws,
        wq,
        max([5, *map(len, set(local_ip))]),
        max([4, *map(len, local_port)]),
        max([6, *map(len, set(remote_ip))]),
        max([4, *map(len, remote_port)]),
    )
    st = _STATE_TEXT
    lines = zip(rows, local_ip, local_port, remote_ip, remote_port, strict=True)
    body = [
        fmt
        % (r[PROTOCOL].value, st[r[STATE]], qs[r[RECV_Q]], qs[r[SEND_Q]], li, lp, ri, rp, r[ROLE])
        for r, li, lp, ri, rp in lines
    ]
    tail_head = ""
    if owners or extended:
        headers: list[str] = []
        cells: list[list[str]] = []
        if owners:
            headers += ["PID", "PROCESS", "USER"]
            cells += [
                ["-" if r[PID] is None else str(r[PID]) for r in rows],
                ["-" if r[PROCESS] is None else r[PROCESS] for r in rows],
                ["-" if r[USER] is None else r[USER] for r in rows],
            ]
        if extended:
            from portkit.see._rows import container_id

            headers += ["UID", "INODE", "CONTAINER", "CGROUP"]
            cells += [
                [qs[r[UID]] for r in rows],
                [qs[r[INODE]] for r in rows],
                [container_id(r[CGROUP]) or "-" for r in rows],
                ["-" if r[CGROUP] is None else r[CGROUP] for r in rows],
            ]
        widths = [max([len(h), *map(len, col)]) for h, col in zip(headers, cells, strict=True)]
        tail = "".join(f"  %-{w}s" for w in widths)
        # ROLE is "server" or "client": six characters, so the extra columns line up
        body = [
            (line + tail % extra).rstrip()
            for line, extra in zip(body, zip(*cells, strict=True), strict=True)
        ]
        tail_head = tail % tuple(headers)
    head = _head(fmt, tail_head)
    if style is not None:
        head = style.bold(head)
    body.insert(0, head)
    return "\n".join(body)


_ANY = {4: "0.0.0.0", 6: "[::]"}


def ls_json(rows: Sequence[tuple[Any, ...]], names: Names, *, extended: bool = False) -> str:
    """One JSON document: a list with one object per socket (:data:`LS_JSON_KEYS`).

    >>> from portkit.model import SocketRecord as R
    >>> import json
    >>> row = R(Protocol.TCP, 4, TcpState.LISTEN, "0.0.0.0", 22, role="server").row
    >>> doc = json.loads(ls_json([row],
    ...                          {"tcp": {22: "ssh"}}))
    >>> doc[0]["local"], doc[0]["remote"], doc[0]["service"]
    ({'ip': '0.0.0.0', 'port': 22}, None, 'ssh')
    """
    if not rows:
        return "[]"
    js = _Json()
    ns = _Str()
    tmpl = (
        '  {"proto": "%s", "family": %d, "state": "%s", "local": {"ip": "%s", "port": %d}, '
        '"remote": %s, "recv_q": %d, "send_q": %d, "pid": %s, "process": %s, "user": %s, '
        '"uid": %d, "inode": %d, "service": %s, "role": "%s", "cgroup": %s, "container": %s}'
    )
    from portkit.see._rows import container_id

    remotes = _Str()

    def remote(ip: str | None, port: int | None) -> str:
        if ip is None:
            return "null"
        return remotes[f'{{"ip": "{ip}", "port": {port}}}']

    empty: dict[int, str] = {}
    lines = []
    for r in rows:
        named = names.get(r[PROTOCOL].value, empty)
        sport = r[LOCAL_PORT] if r[ROLE] == "server" else r[REMOTE_PORT]
        lines.append(
            tmpl
            % (
                r[PROTOCOL].value,
                r[FAMILY],
                r[STATE].value,
                r[LOCAL_IP],
                r[LOCAL_PORT],
                remote(r[REMOTE_IP], r[REMOTE_PORT]),
                r[RECV_Q],
                r[SEND_Q],
                "null" if r[PID] is None else ns[r[PID]],
                js[r[PROCESS]],
                js[r[USER]],
                r[UID],
                r[INODE],
                js[named.get(sport)] if sport else "null",
                r[ROLE],
                js[r[CGROUP]],
                js[container_id(r[CGROUP])],
            )
        )
    return "[\n" + ",\n".join(lines) + "\n]"


CSV_HEADERS = (
    "proto",
    "family",
    "state",
    "local_ip",
    "local_port",
    "remote_ip",
    "remote_port",
    "recv_q",
    "send_q",
    "pid",
    "process",
    "user",
    "uid",
    "inode",
    "service",
    "role",
    "cgroup",
    "container",
)


def ls_csv(rows: Sequence[tuple[Any, ...]], names: Names) -> str:
    """CSV with :data:`CSV_HEADERS` (empty cells for missing values)."""
    from portkit.render import to_csv
    from portkit.see._rows import container_id

    empty: dict[int, str] = {}

    def service(r: tuple[Any, ...]) -> str | None:
        port = service_port(r)
        return names.get(r[PROTOCOL].value, empty).get(port) if port else None

    return to_csv(
        (
            (
                r[PROTOCOL].value,
                r[FAMILY],
                r[STATE].value,
                r[LOCAL_IP],
                r[LOCAL_PORT],
                r[REMOTE_IP],
                r[REMOTE_PORT],
                r[RECV_Q],
                r[SEND_Q],
                r[PID],
                r[PROCESS],
                r[USER],
                r[UID],
                r[INODE],
                service(r),
                r[ROLE],
                r[CGROUP],
                container_id(r[CGROUP]),
            )
            for r in rows
        ),
        CSV_HEADERS,
    )


# --- sorting --------------------------------------------------------------------------


def _ip_key(ip: str | None) -> bytes:
    from _socket import AF_INET, AF_INET6, inet_pton

    if ip is None:
        return b""
    return inet_pton(AF_INET6, ip) if ":" in ip else b"\0" * 12 + inet_pton(AF_INET, ip)


#: ``--sort`` column -> key over a row.
SORT_KEYS: dict[str, Callable[[tuple[Any, ...]], Any]] = {
    "proto": lambda r: (r[PROTOCOL].value, r[FAMILY]),
    "state": lambda r: r[STATE].code,
    "local": lambda r: (_ip_key(r[LOCAL_IP]), r[LOCAL_PORT]),
    "remote": lambda r: (_ip_key(r[REMOTE_IP]), r[REMOTE_PORT] or 0),
    "sport": lambda r: r[LOCAL_PORT],
    "dport": lambda r: r[REMOTE_PORT] or 0,
    "recv-q": lambda r: r[RECV_Q],
    "send-q": lambda r: r[SEND_Q],
    "pid": lambda r: r[PID] or 0,
    "process": lambda r: r[PROCESS] or "",
    "user": lambda r: r[USER] or "",
    "uid": lambda r: r[UID],
    "inode": lambda r: r[INODE],
    "role": lambda r: r[ROLE],
}


def sort_rows(rows: list[tuple[Any, ...]], column: str) -> list[tuple[Any, ...]]:
    """Rows sorted by a :data:`SORT_KEYS` column (``-`` prefix: descending)."""
    reverse = column.startswith("-")
    key = SORT_KEYS[column.lstrip("-").lower().replace("_", "-")]
    return sorted(rows, key=key, reverse=reverse)


# --- stats ----------------------------------------------------------------------------


def _addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def stats_json(stats: SocketStats, names: Names | None = None) -> dict[str, Any]:
    """``portkit stats --json`` (docs/see.md)."""
    counts: dict[str, dict[str, int]] = {}
    for (proto, state), n in sorted(stats.counts.items(), key=lambda kv: (kv[0][0], kv[0][1].code)):
        counts.setdefault(proto.value, {})[state.value] = n
    names = names or {}
    return {
        "total": stats.total,
        "counts": counts,
        "time_wait": stats.time_wait,
        "listeners": [
            {
                "proto": ls.protocol.value,
                "ip": ls.ip,
                "port": ls.port,
                "service": names.get(ls.protocol.value, {}).get(ls.port),
                "connections": ls.connections,
                "accept_queue": ls.accept_queue,
                "accept_max": ls.accept_max,
                "pid": ls.pid,
                "process": ls.process,
            }
            for ls in stats.listeners
        ],
        "ephemeral": {
            "range": {"start": stats.ephemeral.start, "end": stats.ephemeral.end},
            "size": len(stats.ephemeral),
            "in_use": stats.ephemeral_in_use,
            "fill": round(stats.ephemeral_fill, 4),
        },
        "destinations": [
            {
                "source_ip": d.source_ip,
                "ip": d.ip,
                "port": d.port,
                "in_use": d.in_use,
                "capacity": d.capacity,
                "fill": round(d.fill, 4),
            }
            for d in stats.destinations
        ],
        "warnings": list(stats.warnings),
    }


def stats_text(stats: SocketStats, style: Style, names: Names | None = None) -> str:
    """``portkit stats`` as a few short tables."""
    from portkit.render import table

    names = names or {}
    blocks = []
    by_proto: dict[Protocol, list[tuple[TcpState, int]]] = {}
    for (proto, state), n in stats.counts.items():
        by_proto.setdefault(proto, []).append((state, n))
    count_rows = [
        (proto.value, ", ".join(f"{s.ss_name} {n}" for s, n in sorted(v, key=lambda x: x[0].code)))
        for proto, v in sorted(by_proto.items())
    ]
    blocks.append(
        style.bold(f"{stats.total} sockets")
        + f", {stats.time_wait} in TIME-WAIT\n"
        + table(count_rows, ["PROTO", "STATES"], style=style)
    )
    if stats.listeners:
        rows = [
            (
                ls.protocol.value,
                _addr(ls.ip, ls.port),
                names.get(ls.protocol.value, {}).get(ls.port),
                ls.connections if ls.protocol is Protocol.TCP else None,
                f"{ls.accept_queue}/{ls.accept_max}" if ls.protocol is Protocol.TCP else None,
                f"{ls.process}/{ls.pid}" if ls.pid else None,
            )
            for ls in stats.listeners
        ]
        blocks.append(
            table(
                rows,
                ["PROTO", "LISTEN", "SERVICE", "CONNS", "ACCEPT-Q", "PROCESS"],
                style=style,
                right=(3,),
            )
        )
    eph = stats.ephemeral
    line = (
        f"ephemeral ports {eph}: {stats.ephemeral_in_use} of {len(eph)} in use "
        f"({stats.ephemeral_fill:.1%})"
    )
    if stats.destinations:
        rows2 = [
            (d.source_ip, _addr(d.ip, d.port), d.in_use, f"{d.fill:.1%}")
            for d in stats.destinations[:10]
        ]
        line += "\n" + table(
            rows2, ["SOURCE", "DESTINATION", "PORTS", "FILL"], style=style, right=(2, 3)
        )
    blocks.append(line)
    if stats.warnings:
        blocks.append("\n".join(style.yellow("warning: ") + w for w in stats.warnings))
    return "\n\n".join(blocks)


# --- overview -------------------------------------------------------------------------

#: How the overview words a port's bind scope (the addresses themselves otherwise).
_SCOPE_WORDS = {BindScope.WILDCARD: "all interfaces", BindScope.LOOPBACK: "loopback only"}


def scope_words(addresses: Iterable[str]) -> str:
    """``all interfaces``, ``loopback only`` or the addresses themselves.

    >>> scope_words(["0.0.0.0", "::"]), scope_words(["127.0.0.1", "::1"]), scope_words(["10.0.0.5"])
    ('all interfaces', 'loopback only', '10.0.0.5')
    """
    ips = sorted(set(addresses))
    return _SCOPE_WORDS.get(widest_scope(ips)) or ", ".join(ips)


def _listening_json(lp: ListeningPort) -> dict[str, Any]:
    return {
        "proto": lp.protocol.value,
        "port": lp.port,
        "service": lp.service,
        "addresses": list(lp.addresses),
        "scope": scope_words(lp.addresses),
        "bind_scope": lp.scope.value,
        "processes": list(lp.processes),
        "connections": lp.connections,
        "role": lp.role.role if lp.role else None,
        "exposed": lp.exposed,
    }


def overview_json(view: Overview, owners_hidden: int) -> dict[str, Any]:
    stats = view.stats
    return {
        "listening": [_listening_json(lp) for lp in view.listening],
        "sockets": stats.total,
        "time_wait": stats.time_wait,
        "ephemeral": {
            "in_use": stats.ephemeral_in_use,
            "size": len(stats.ephemeral),
            "fill": round(stats.ephemeral_fill, 4),
        },
        "warnings": list(view.warnings),
        "owners_hidden": owners_hidden,
    }


def hidden_owners_note(hidden: int, *, as_root: bool) -> str:
    """Why ``hidden`` processes' sockets show no owner, and what would help.

    >>> hidden_owners_note(3, as_root=False)[:44]
    '3 processes of other users could not be insp'
    """
    one = hidden == 1
    if as_root:
        return (
            f"{hidden} {'process' if one else 'processes'} could not be inspected even as "
            "root (reading /proc/PID/fd was denied: a sandbox, a security module, or a "
            f"missing CAP_SYS_PTRACE), so {'its' if one else 'their'} sockets show no owner"
        )
    return (
        f"{hidden} {'process of another user' if one else 'processes of other users'} "
        f"could not be inspected, so {'its' if one else 'their'} sockets show no owner "
        "(run as root to see them)"
    )


def overview_text(
    view: Overview,
    style: Style,
    width: int | None,
    owners_hidden: int,
    *,
    as_root: bool = False,
) -> str:
    """The newcomer's first screen: what listens here, and what deserves attention."""
    from portkit.render import table

    stats = view.stats
    rows = [
        (
            lp.port,
            lp.protocol.value,
            lp.service,
            style.red(scope_words(lp.addresses)) if lp.exposed else scope_words(lp.addresses),
            lp.connections if lp.protocol.value == "tcp" else None,
            ", ".join(lp.processes) or None,
        )
        for lp in view.listening
    ]
    parts = [style.bold("Listening on this machine")]
    if rows:
        parts.append(
            table(
                rows,
                ["PORT", "PROTO", "SERVICE", "BIND", "CONNS", "PROCESS"],
                style=style,
                width=width,
                right=(0, 4),
            )
        )
    else:
        parts.append("nothing is listening")
    counts = ", ".join(
        f"{n} {p.value} {s.ss_name}"
        for (p, s), n in sorted(stats.counts.items(), key=lambda kv: -kv[1])[:4]
    )
    parts.append(
        f"\n{stats.total} sockets ({counts or 'none'}); ephemeral ports in use: "
        f"{stats.ephemeral_in_use} of {len(stats.ephemeral)} ({stats.ephemeral_fill:.1%})"
    )
    for w in view.warnings[:5]:
        parts.append(style.yellow("warning: ") + w)
    if owners_hidden:
        parts.append(style.dim("note: " + hidden_owners_note(owners_hidden, as_root=as_root)))
    parts.append(
        style.dim("more: portkit ls -tuanp, portkit stats, portkit who PORT, portkit --help")
    )
    return "\n".join(parts)


# --- who -------------------------------------------------------------------------------


def _when(ts: float | None) -> str | None:
    if ts is None:
        return None
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def who_json(result: PortOwners, names: Names) -> dict[str, Any]:
    """``portkit who --json``: the port, its service, its holders and its sockets."""
    import json

    return {
        "port": result.port,
        "proto": result.protocol.value if result.protocol else None,
        "service": result.service,
        "owners": [
            {
                "pid": h.pid,
                "process": h.process,
                "cmdline": list(h.cmdline),
                "user": h.user,
                "uid": h.uid,
                "started": _when(h.started),
            }
            for h in result.holders
        ],
        "sockets": json.loads(ls_json(list(result.rows), names)),
        "owners_hidden": result.owners_hidden,
    }


def who_text(result: PortOwners, names: Names, style: Style, width: int | None) -> str:
    """``portkit who``: a heading with the service, the holders, then the sockets."""
    from portkit.render import table

    label = f"{result.port}/{result.protocol.value}" if result.protocol else str(result.port)
    head = style.bold(f"port {label}") + (
        f": {result.service}" if result.service else ": no registered service"
    )
    parts = [head]
    rows = list(result.rows)
    if result.holders:
        parts.append(
            table(
                [
                    (
                        h.pid,
                        h.user,
                        _when(h.started),
                        " ".join(h.cmdline).replace("\n", " ") or h.process,
                    )
                    for h in result.holders
                ],
                ["PID", "USER", "STARTED", "COMMAND"],
                style=style,
                width=width,
            )
        )
    elif rows and result.owners_hidden:
        parts.append("no owner visible (see the note below: some processes are hidden)")
    elif rows:
        parts.append("no process holds it (sockets without an owner, e.g. TIME-WAIT)")
    else:
        parts.append("nothing uses this port")
    if rows:
        parts.append("")
        parts.append(ls_text(rows, names=names, owners=True, style=style if style.color else None))
    return "\n".join(parts)

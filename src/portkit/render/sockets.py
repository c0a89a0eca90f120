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
from portkit.model import TcpState
from portkit.render import safe
from portkit.render.sockets_raw import (
    NO_CONTAINER,
    _Json,
    container_parts,
    ls_json_raw,
    ls_text_raw,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

    from portkit.render import Style
    from portkit.see._containers import OwnerContainer

__all__ = [
    "LS_JSON_KEYS",
    "SORT_KEYS",
    "Names",
    "ls_csv",
    "ls_json",
    "ls_json_raw",
    "ls_text",
    "ls_text_raw",
    "service_ports",
    "sort_rows",
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
    "container",
    "published_by",
    "published_to",
    "uid",
    "inode",
    "service",
    "role",
    "cgroup",
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
    extra: tuple[Sequence[str], Sequence[Sequence[str]]] | None = None,
    containers: Mapping[Any, OwnerContainer] | None = None,
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
        extra: more columns at the end (``-i``/``-m``/``-o``): headers, and one list
            of cell texts per column, a cell per row.

    >>> from portkit.model import Protocol, SocketRecord as R
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
    if owners or extended or extra or containers:
        headers: list[str] = []
        cells: list[list[str]] = []
        if owners:
            headers += ["PID", "PROCESS", "USER"]
            cells += [
                ["-" if r[PID] is None else str(r[PID]) for r in rows],
                ["-" if r[PROCESS] is None else safe(r[PROCESS]) for r in rows],
                ["-" if r[USER] is None else safe(r[USER]) for r in rows],
            ]
        if containers:
            headers.append("CONTAINER")
            cells.append([_box_text(containers, r) for r in rows])
        if extended:
            from portkit.see._rows import container_id

            headers += ["UID", "INODE"] + ([] if containers else ["CONTAINER"]) + ["CGROUP"]
            cells += [[qs[r[UID]] for r in rows], [qs[r[INODE]] for r in rows]]
            if not containers:
                cells.append([container_id(r[CGROUP]) or "-" for r in rows])
            cells.append(["-" if r[CGROUP] is None else r[CGROUP] for r in rows])
        if extra:
            headers += extra[0]
            cells += [list(col) for col in extra[1]]
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


def ls_json(
    rows: Sequence[tuple[Any, ...]],
    names: Names,
    *,
    extended: bool = False,
    extra: Sequence[str] | None = None,
    containers: Mapping[Any, OwnerContainer] | None = None,
) -> str:
    """One JSON document: a list with one object per socket (:data:`LS_JSON_KEYS`);
    ``extra``: per row, more ``, "key": value`` text for its object (``-i/-m/-o``).

    >>> from portkit.model import Protocol, SocketRecord as R
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
        "%s"
        '"uid": %d, "inode": %d, "service": %s, "role": "%s", "cgroup": %s%s}'
    )
    owned = container_parts(containers or {})

    remotes = _Str()

    def remote(ip: str | None, port: int | None) -> str:
        if ip is None:
            return "null"
        return remotes[f'{{"ip": "{ip}", "port": {port}}}']

    empty: dict[int, str] = {}
    lines = []
    more = extra if extra is not None else [""] * len(rows)
    for r, tail in zip(rows, more, strict=True):
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
                owned.get(r[PID])
                or owned.get((r[PID], r[LOCAL_PORT], r[PROTOCOL].value))
                or _cgroup_part(r[CGROUP]),
                r[UID],
                r[INODE],
                js[named.get(sport)] if sport else "null",
                r[ROLE],
                js[r[CGROUP]],
                tail,
            )
        )
    return "[\n" + ",\n".join(lines) + "\n]"


def _box(containers: Mapping[Any, OwnerContainer] | None, r: tuple[Any, ...]) -> Any:
    """The row's :class:`~portkit.see.OwnerContainer`: its process's, or for a
    publisher with ports for several containers, its port's."""
    if not containers or r[PID] is None:
        return None
    return containers.get(r[PID]) or containers.get((r[PID], r[LOCAL_PORT], r[PROTOCOL].value))


def _box_text(containers: Mapping[Any, OwnerContainer], r: tuple[Any, ...]) -> str:
    box = _box(containers, r)
    return "-" if box is None else safe(box.text())


def _cgroup_part(cgroup: str | None) -> str:
    """Without owners (``-e`` only): the container the socket's cgroup names, by id."""
    if not cgroup:
        return NO_CONTAINER
    import json

    from portkit.containers import Container, ref_of_path

    ref = ref_of_path(cgroup)
    if ref is None:
        return NO_CONTAINER
    found = Container(ref.id, ref.short_id, ref.runtime)
    return (
        f'"container": {json.dumps(found.as_json())}, "published_by": null, "published_to": null, '
    )


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
    "published_by",
    "published_to",
)


def ls_csv(
    rows: Sequence[tuple[Any, ...]],
    names: Names,
    extra: tuple[Sequence[str], Sequence[Sequence[Any]]] | None = None,
    containers: Mapping[Any, OwnerContainer] | None = None,
) -> str:
    """CSV with :data:`CSV_HEADERS` (empty cells for missing values); ``extra``: more
    columns (headers, one value list per column)."""
    from portkit.render import to_csv
    from portkit.see._rows import container_id

    empty: dict[int, str] = {}

    def service(r: tuple[Any, ...]) -> str | None:
        port = service_port(r)
        return names.get(r[PROTOCOL].value, empty).get(port) if port else None

    records = (
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
            None if r[PROCESS] is None else safe(r[PROCESS]),
            None if r[USER] is None else safe(r[USER]),
            r[UID],
            r[INODE],
            service(r),
            r[ROLE],
            r[CGROUP],
            safe(box.text()) if box is not None else container_id(r[CGROUP]),
            None if box is None else box.published_by,
            None if box is None else box.target,
        )
        for r, box in ((r, _box(containers, r)) for r in rows)
    )
    if extra is None:
        return to_csv(records, CSV_HEADERS)
    more = zip(*extra[1], strict=True) if extra[1] else ((),) * len(rows)
    return to_csv(
        (base + tuple(cells) for base, cells in zip(records, more, strict=True)),
        (*CSV_HEADERS, *extra[0]),
    )


# --- every namespace (ls --all-netns) ----------------------------------------------------


def every_namespace_json(
    blocks: Sequence[tuple[str, Sequence[tuple[Any, ...]]]],
    names: Names,
    *,
    extended: bool,
    containers: Mapping[Any, OwnerContainer] | None = None,
) -> str:
    """One JSON list: every socket of every namespace, each with its ``netns`` label."""
    import json

    doc = []
    for label, rows in blocks:
        for item in json.loads(ls_json(rows, names, extended=extended, containers=containers)):
            item["netns"] = label
            doc.append(item)
    return json.dumps(doc, indent=2)


def every_namespace_csv(
    blocks: Sequence[tuple[str, Sequence[tuple[Any, ...]]]],
    names: Names,
    containers: Mapping[Any, OwnerContainer] | None = None,
) -> str:
    """One CSV table: the namespace's label first, then the columns of ``ls --csv``."""
    lines: list[str] = []
    for label, rows in blocks:
        table = ls_csv(rows, names, containers=containers).splitlines()
        if not lines and table:
            lines.append("netns," + table[0])
        lines.extend(f"{label},{line}" for line in table[1:])
    return "\n".join(lines)


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

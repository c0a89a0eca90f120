"""``ls`` text and JSON straight from the kernel's raw rows (``_netlink.RawRows``).

The plain listing (``portkit ls -tln``, ``ls -tan``, ``ls -tanp``, ``ls --json``)
never builds a :class:`~portkit.model.SocketRecord` nor even a decoded row: each
raw row becomes its line by joining cached, already padded pieces. This module
is kept apart from :mod:`portkit.render.sockets` (which renders decoded rows,
stats and the overview) so that this path imports no ``portkit.model``: state
names come from the precomputed tables below, indexed by kernel state number (a
test checks them against :class:`~portkit.model.TcpState`).
"""

from __future__ import annotations

import os

from portkit.render import safe
from portkit.see._netlink import TCP_STATES

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
    from typing import Any

    from portkit.render import Style
    from portkit.see._containers import OwnerContainer
    from portkit.see._netlink import RawRows

__all__ = [
    "PORT_TABLE_FILE",
    "computed_port_table",
    "ls_json_raw",
    "ls_text_raw",
    "port_table",
    "write_port_table",
]

_PROTO_NAMES = {6: "tcp", 17: "udp"}

#: Kernel state number -> ss's display name (``TcpState.ss_name``): UDP's CLOSE is
#: ``UNCONN``, as is any number this version does not know (13 is
#: TCP_BOUND_INACTIVE since Linux 6.7).
_RAW_STATE_TEXT: list[str] = [
    "UNCONN",
    "ESTAB",
    "SYN-SENT",
    "SYN-RECV",
    "FIN-WAIT-1",
    "FIN-WAIT-2",
    "TIME-WAIT",
    "UNCONN",
    "CLOSE-WAIT",
    "LAST-ACK",
    "LISTEN",
    "CLOSING",
    "NEW-SYN-RECV",
] + ["UNCONN"] * 243

#: Kernel state number -> ``TcpState.value`` (the JSON ``state``); unknown: CLOSE.
_RAW_STATE_VALUE: list[str] = ["CLOSE", *TCP_STATES[1:]] + ["CLOSE"] * (256 - len(TCP_STATES))


def _by_state(names: list[str], prefix: str, suffix: str, width: int = 0) -> list[str]:
    """``prefix + name padded to width + suffix`` for each of the 256 kernel state
    numbers, each of the 13 distinct names formatted once (256 formats cost more
    than the rest of a small listing).

    >>> _by_state(_RAW_STATE_TEXT, "tcp  ", "|", 7)[10]
    'tcp  LISTEN |'
    """
    made = {name: f"{prefix}{name:<{width}}{suffix}" for name in set(names)}
    return [made[name] for name in names]


class _Json(dict[object, str]):
    def __missing__(self, value: object) -> str:
        import json

        text = self[value] = "null" if value is None else json.dumps(value, ensure_ascii=False)
        return text


def ls_text_raw(
    batches: Sequence[tuple[int, int, RawRows]],
    listen_ports: Mapping[int, Collection[int]],
    *,
    names: Callable[[int, str], str | None] | None = None,
    owners: tuple[Mapping[int, Sequence[int]], Mapping[int, tuple[str | None, str | None]]]
    | None = None,
    style: Style | None = None,
    extra: tuple[str, Sequence[Sequence[Iterable[str]]]] | None = None,
    containers: Mapping[Any, OwnerContainer] | None = None,
) -> Iterator[str]:
    """:func:`ls_text` straight from the kernel's raw rows, for the plain listing, in
    blocks of lines (one per reply chunk, to be written each followed by a newline).

    Decoding 100,000 rows into tuples and formatting them again costs twice; here
    each raw row becomes its line by joining cached, already padded pieces (state
    and queues, address, port, role), about 2.5x faster than a ``%`` format per row.
    Owners, ``-e`` columns and sorting need decoded rows (:func:`ls_text`).

    Args:
        batches: ``(family, protocol, raw rows)`` as ``_linux.Dump.batches``.
        listen_ports: raw (network-order) listening ports per protocol, for the role.
        names: ``(port, protocol) -> service`` for server-side ports, or None (``-n``).
        owners: ``({inode: (pid, ...)}, {pid: (name, user)})`` to add PID, PROCESS and
            USER columns (``-p``), or None.
        style: bold headers when colour is on.
        containers: ``{pid: OwnerContainer}``: a CONTAINER column after USER (``-p``
            on a host with containers).
        extra: more columns at the end of every line (``ls -i/-m/-o``,
            ``render.health.health_tails``): the header's tail, and per part (in the
            order of the batches' parts) the cells its lines end with, a column each.
    """

    from itertools import repeat

    from portkit.see._netlink import Columns

    text_ip = {2: _RawIp(2), 10: _RawIp(10)}
    plain = _RawPort(None, "")
    named = {p: _RawPort(names, p) for p in ("tcp", "udp")} if names else {}
    wip = wrip = 5
    wp = wrp = 4 if names else 5
    wq = 6
    codes: set[int] = set()
    for family, proto, raw in batches:
        if not raw:
            continue
        a = text_ip[family]
        # widths from columns of the replies: no row tuples for this pass
        wip = max(wip, *(len(a[x]) for x in raw.addresses()))
        wrip = max(wrip, *(len(a[x]) for x in raw.addresses(remote=True)))
        wq = max(wq, len(str(raw.queue_max())))
        codes.update(raw.states())
        if names:
            n = named[_PROTO_NAMES[proto]]
            lp = listen_ports.get(proto, ())
            local = {t[2] for t in raw if not t[3] or t[2] in lp}  # (rows: only without -n)
            remote = {t[3] for t in raw if t[3] and t[2] not in lp}
            wp = max(wp, *(len(n[x]) for x in local), *(len(plain[x]) for x in remote), 5)
            wrp = max(wrp, *(len(n[x]) for x in remote), 5)
    ws = max([5, *(len(_RAW_STATE_TEXT[c]) for c in codes)])
    head = (
        f"{'PROTO':<5}  {'STATE':<{ws}}  {'RECV-Q':>{wq}}  {'SEND-Q':>{wq}}  "
        f"{'LOCAL':>{wip}}:{'PORT':<{wp}}  {'REMOTE':>{wrip}}:{'PORT':<{wrp}}  ROLE"
    )
    own: dict[int, str] = {}
    nobody = ""
    if owners is not None:
        holders, procs = owners
        wpid = max([3, *(len(str(p)) for p in procs)])
        shown = {pid: (safe(n or "-"), safe(u or "-")) for pid, (n, u) in procs.items()}
        wname = max([7, *(len(n) for n, _ in shown.values())])
        boxes = {pid: safe(oc.text()) for pid, oc in (containers or {}).items()}
        # the last column is padded only when more columns follow
        wuser = max([4, *(len(u) for _, u in shown.values())]) if extra or boxes else 0
        wbox = max([9, *map(len, boxes.values())]) if extra and boxes else 0
        box_none = f"  {'-':<{wbox}}" if boxes else ""
        nobody = f"  {'-':<{wpid}}  {'-':<{wname}}  {'-':<{wuser}}{box_none}"
        tails = _Tails(nobody)
        for pid, (name, user) in shown.items():
            box = f"  {boxes.get(pid, '-'):<{wbox}}" if boxes else ""
            tails[pid] = f"  {pid:<{wpid}}  {name:<{wname}}  {user:<{wuser}}{box}"
        # {inode: tail} through map/zip (C), not a comprehension: 100,000 sockets
        from operator import itemgetter

        firsts = map(itemgetter(0), holders.values())
        own = dict(zip(holders, map(tails.__getitem__, firsts), strict=True))
        head = f"{head}    {'PID':<{wpid}}  {'PROCESS':<{wname}}  {'USER':<{wuser}}"
        if boxes:
            head += f"  {'CONTAINER':<{wbox}}"
    more: Iterator[Sequence[Iterable[str]]] = iter(())
    if extra is not None:
        head = head + ("" if owners is not None else "  ") + extra[0]
        more = iter(extra[1])
    yield style.bold(head) if style else head
    queue = _Padded(wq, "  ")
    roles = ("client", "server")
    for family, proto, raw in batches:
        if not raw:
            continue
        p = _PROTO_NAMES[proto]
        lp = listen_ports.get(proto, ())
        lead = _by_state(_RAW_STATE_TEXT, f"{p:<5}  ", "  ", ws)
        lip = _Padded(wip, ":", text_ip[family], right=True)
        rip = _Padded(wrip, ":", text_ip[family], right=True)
        # Most ports occur once (clients' ephemeral ports): pad every distinct one in
        # a single comprehension rather than through a cache miss per row.
        if len(raw) > 20000:  # most of the 65536 ports occur: one table for all
            ports: Collection[int] = range(65536)
        else:
            ports = raw.ports()
        lport = _port_texts(ports, wp)
        rport = lport if wrp == wp else _port_texts(ports, wrp)
        if names:
            lname = _Padded(wp, "  ", named[p], right=False)
            rname = _Padded(wrp, "  ", named[p], right=False)
            for part in raw.parts():
                block = [
                    "".join(
                        (
                            lead[t[1]],
                            queue[t[6]],
                            queue[t[7]],
                            lip[t[4]],
                            (lname if (srv := not t[3] or t[2] in lp) else lport)[t[2]],
                            rip[t[5]],
                            (rport if srv else rname)[t[3]],
                            roles[srv],
                            own.get(t[9], nobody),
                        )
                    )
                    for t in part
                ]
                if extra is not None:
                    block = list(map("".join, zip(block, *next(more))))  # noqa: B905
                if block:
                    yield "\n".join(block)
        else:
            # The role follows from the local port alone: a listener's port is in
            # the listening set too (TCP: from the LISTEN dump; UDP: its own rows).
            role: dict[int, str] | list[str]
            if isinstance(ports, range):
                role = ["client"] * 65536
                for v in lp:
                    role[v] = "server"
            else:
                role = dict.fromkeys(ports, "client")
                role.update((v, "server") for v in lp)
            lip4 = _Padded(wip, ":", _Ip4Key(), right=True)
            rip4 = _Padded(wrip, ":", lip4.source, right=True)
            for chunk in raw.chunks():
                lines: Iterable[str]
                if isinstance(chunk, list):
                    lines = [
                        "".join(
                            (
                                lead[t[1]],
                                queue[t[6]],
                                queue[t[7]],
                                lip[t[4]],
                                lport[t[2]],
                                rip[t[5]],
                                rport[t[3]],
                                roles[not t[3] or t[2] in lp],
                                own.get(t[9], nobody),
                            )
                        )
                        for t in chunk
                    ]
                    if extra is not None:
                        lines = map("".join, zip(lines, *next(more)))  # noqa: B905
                else:
                    # A uniform reply: every column is a strided view of it, and each
                    # line is joined at C speed, with no Python code per socket.
                    view, size = chunk
                    c = Columns(view, size, family)
                    la, ra = (lip4, rip4) if family == 2 else (lip, rip)
                    cells: list[Iterable[str]] = [
                        map(lead.__getitem__, c.states),
                        map(queue.__getitem__, c.recv_q),
                        map(queue.__getitem__, c.send_q),
                        map(la.__getitem__, c.src),
                        map(lport.__getitem__, c.sports),
                        map(ra.__getitem__, c.dst),
                        map(rport.__getitem__, c.dports),
                        map(role.__getitem__, c.sports),
                    ]
                    if owners is not None:
                        cells.append(map(own.get, c.inodes, repeat(nobody)))
                    if extra is not None:
                        cells.extend(next(more))
                    lines = map("".join, zip(*cells))  # noqa: B905 (equal lengths: one reply)
                yield "\n".join(lines)


def _port_texts(raw_ports: Collection[int], width: int) -> Mapping[int, str] | list[str]:
    """Raw (network-order) port -> its number padded to ``width`` plus two spaces.

    For every port (``range(65536)``) the answer is a list indexed by the raw value:
    :func:`port_table`.
    """
    from portkit.see._netlink import ntohs

    if isinstance(raw_ports, range) and len(raw_ports) == 65536:
        return port_table(width)
    fmt = f"%-{width}d  "
    out = {v: fmt % ntohs(v) for v in raw_ports}
    out[0] = f"{'*':<{width}}  "
    return out


#: ``computed_port_table(5)`` as built for a little-endian machine, so that a listing
#: of 100,000 sockets loads 65,536 strings (about 6 ms) instead of formatting them
#: (about 30 ms). Regenerated with :func:`write_port_table`; a test checks it.
PORT_TABLE_FILE = os.path.join(
    os.path.dirname(os.path.dirname(__file__)), "see", "_data", "port_texts5.marshal"
)


def computed_port_table(width: int) -> list[str]:
    """``table[raw]`` is the text of the port whose raw (network-order, read natively)
    value is ``raw``: the number padded to ``width`` plus two spaces; ``*`` for 0."""
    from _operator import itemgetter

    from portkit.see._netlink import ntohs

    by_port = list(map(f"%-{width}d  ".__mod__, range(65536)))
    if ntohs(1) == 1:  # big-endian: the raw value is the port
        table = by_port
    else:
        from array import array

        port_of = array("H", range(65536))
        port_of.byteswap()  # port_of[raw] == ntohs(raw)
        table = list(itemgetter(*port_of)(by_port))
    table[0] = f"{'*':<{width}}  "
    return table


def write_port_table(path: str = PORT_TABLE_FILE) -> None:
    import marshal

    with open(path, "wb") as f:
        f.write(marshal.dumps(computed_port_table(5)))


def port_table(width: int) -> list[str]:
    """:func:`computed_port_table`, loaded from :data:`PORT_TABLE_FILE` where it fits."""
    import marshal
    import sys

    if width == 5 and sys.byteorder == "little":
        try:
            with open(PORT_TABLE_FILE, "rb") as f:
                table = marshal.loads(f.read())
            if isinstance(table, list) and len(table) == 65536:
                return table
        except (OSError, ValueError, EOFError, TypeError):
            pass  # rebuilt below: slower, same result
    return computed_port_table(width)


class _Padded(dict[object, str]):
    """Value -> its text (from ``source``, else ``str``) padded to ``width``, plus ``sep``."""

    def __init__(self, width: int, sep: str, source: Any = None, right: bool = True) -> None:
        super().__init__()
        self.width, self.sep, self.source, self.right = width, sep, source, right

    def __missing__(self, value: object) -> str:
        text = self.source[value] if self.source is not None else str(value)
        text = text.rjust(self.width) if self.right else text.ljust(self.width)
        self[value] = text = text + self.sep
        return text


class _Tails(dict[int, str]):
    """Pid -> its PID, PROCESS and USER columns; a pid without them -> ``nobody``."""

    def __init__(self, nobody: str) -> None:
        super().__init__()
        self.nobody = nobody

    def __missing__(self, pid: int) -> str:
        return self.nobody


class _RawIp(dict[bytes, str]):
    """Raw address bytes -> text (IPv6 in brackets for tables)."""

    def __init__(self, family: int, brackets: bool = True) -> None:
        super().__init__()
        self.family = family
        self.brackets = brackets and family == 10

    def __missing__(self, raw: bytes) -> str:
        from portkit.see._netlink import ip_text

        text = ip_text(self.family, raw)
        text = self[raw] = f"[{text}]" if self.brackets else text
        return text


class _Ip4Key(dict[int, str]):
    """IPv4 address as a native u32 (:class:`~portkit.see._netlink.Columns`) -> text."""

    def __missing__(self, key: int) -> str:
        from portkit.see._netlink import ip4_key_bytes, ip_text

        text = self[key] = ip_text(2, ip4_key_bytes(key))
        return text


class _RawPort(dict[int, str]):
    """Raw network-order port -> text (0: ``*``), named when ``names`` knows it."""

    def __init__(self, names: Callable[[int, str], str | None] | None, proto: str) -> None:
        super().__init__()
        self.names = names
        self.proto = proto

    def __missing__(self, raw: int) -> str:
        from portkit.see._netlink import ntohs

        if not raw:
            text = "*"
        else:
            port = ntohs(raw)
            text = (self.names(port, self.proto) if self.names else None) or str(port)
        self[raw] = text
        return text


def ls_json_raw(
    batches: Sequence[tuple[int, int, RawRows]],
    listen_ports: Mapping[int, Collection[int]],
    names: Callable[[int, str], str | None],
    owners: tuple[Mapping[int, Sequence[int]], Mapping[int, tuple[str | None, str | None]]]
    | None = None,
    containers: Mapping[Any, OwnerContainer] | None = None,
) -> Iterator[str]:
    """:func:`ls_json` straight from raw rows: the same document, byte for byte, in
    pieces (one per reply chunk) to be written one after the other.

    Each object is joined from cached pieces (the part up to the local address per
    state, address and port texts, owner and service parts) rather than formatted
    from a decoded tuple.
    """
    js = _Json()
    own: dict[int, str] = {}
    nobody = '"pid": null, "process": null, "user": null, ' + NO_CONTAINER
    if owners is not None:
        holders, procs = owners
        boxes = container_parts(containers or {})
        parts = {
            pid: f'"pid": {pid}, "process": {js[name]}, "user": {js[user]}, '
            + boxes.get(pid, NO_CONTAINER)
            for pid, (name, user) in procs.items()
        }
        own = {ino: parts.get(pids[0], nobody) for ino, pids in holders.items()}
    total = sum(len(raw) for _, _, raw in batches)
    ports: Mapping[int, str] | list[str]
    if total > 20000:  # every port: the shipped table, unpadded
        ports = [text.rstrip() for text in port_table(5)]
    else:
        from portkit.see._netlink import ntohs

        ports = {raw: str(ntohs(raw)) for raw in _raw_ports(batches)}
    if not total:
        yield "[]"
        return
    sep = "[\n"
    for family, proto, raw in batches:
        p = _PROTO_NAMES[proto]
        fam = 4 if family == 2 else 6
        lp = listen_ports.get(proto, ())
        lead = _by_state(
            _RAW_STATE_VALUE,
            f'  {{"proto": "{p}", "family": {fam}, "state": "',
            '", "local": {"ip": "',
        )
        lip = _Suffixed('", "port": ', _RawIp(family, brackets=False))
        rip = _Suffixed('", "port": ', _RawIp(family, brackets=False), '{"ip": "')
        queue = _Suffixed(', "send_q": ')
        sendq = _Suffixed(", ")
        uid = _Suffixed(', "inode": ', None, '"uid": ')

        def tail(role: str, p: str = p) -> _Suffixed:
            return _Suffixed(
                f', "role": "{role}", "cgroup": null}}',
                _Service(names, p, js),
                ', "service": ',
            )

        as_server, as_client = tail("server"), tail("client")
        for part in raw.parts():
            lines = [
                "".join(
                    (
                        lead[t[1]],
                        lip[t[4]],
                        ports[t[2]],
                        '}, "remote": ',
                        rip[t[5]] + ports[t[3]] + '}, "recv_q": ' if t[3] else 'null, "recv_q": ',
                        queue[t[6]],
                        sendq[t[7]],
                        own.get(t[9], nobody),
                        uid[t[8]],
                        str(t[9]),
                        as_server[t[2]] if (not t[3] or t[2] in lp) else as_client[t[3]],
                    )
                )
                for t in part
            ]
            if lines:
                yield sep + ",\n".join(lines)
                sep = ",\n"
    yield "\n]"


NO_CONTAINER = '"container": null, "published_by": null, "published_to": null, '


def container_parts(containers: Mapping[Any, OwnerContainer]) -> dict[Any, str]:
    """``{pid: '"container": {...}, "published_by": ..., "published_to": ..., '}`` for
    the JSON renderers."""
    import json

    out = {}
    for pid, oc in containers.items():
        doc = oc.json()
        out[pid] = (
            f'"container": {json.dumps(doc["container"])}, '
            f'"published_by": {json.dumps(doc["published_by"])}, '
            f'"published_to": {json.dumps(doc["published_to"])}, '
        )
    return out


def _raw_ports(batches: Sequence[tuple[int, int, RawRows]]) -> set[int]:
    out: set[int] = set()
    for _, _, raw in batches:
        out.update(raw.ports())
    return out


class _Suffixed(dict[object, str]):
    """Value -> ``prefix + text + suffix`` (text from ``source``, else ``str``), cached."""

    def __init__(self, suffix: str, source: Any = None, prefix: str = "") -> None:
        super().__init__()
        self.suffix, self.source, self.prefix = suffix, source, prefix

    def __missing__(self, value: object) -> str:
        text = self.source[value] if self.source is not None else str(value)
        self[value] = text = self.prefix + text + self.suffix
        return text


class _Service(dict[int, str]):
    """Raw port -> the JSON text of its service name (``null`` when unknown)."""

    def __init__(self, names: Callable[[int, str], str | None], proto: str, js: _Json) -> None:
        super().__init__()
        self.names, self.proto, self.js = names, proto, js

    def __missing__(self, raw: int) -> str:
        from portkit.see._netlink import ntohs

        text = self[raw] = self.js[self.names(ntohs(raw), self.proto) if raw else None]
        return text

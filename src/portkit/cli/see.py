"""``portkit ls``: the runner the click command and the click-free shortcut share.

It imports no click, no typing at run time, no ``socket`` (only ``_socket``), and
``ipaddress`` only when an address filter is given: ``portkit ls -tln`` has to start
and answer in about the time of a bare interpreter. The plainest listings (letter
flags only, no ``-p``/``-e``, a table) go further (:func:`plain_listing`): straight
from the kernel dump to the raw-row renderer, without :class:`Query`, the model or
the output helpers, because each of those imports costs a fifth of a millisecond
or more on a command whose whole budget above interpreter start is about three.
"""

from __future__ import annotations

import os
import sys

from portkit._sockrow import LOCAL_IP, LOCAL_PORT, PID, PROCESS, PROTOCOL, REMOTE_IP, USER

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping, Sequence
    from typing import Any

__all__ = ["families_for", "fast_ls", "hosts_for", "names_for", "plain_listing", "write_ls"]

#: Single-letter ``ls`` flags the shortcut understands (``ss``'s meanings).
FAST_LETTERS = frozenset("tulanp46eimo")

#: The kernel state bitmasks (bit N: TCP state number N) of ``-a``, ``-l`` and
#: neither (ss's default: connected, without TIME-WAIT and SYN-RECV), i.e. what
#: ``Query(...).state_mask()`` gives; a test checks they agree.
STATES_ALL = 0x1FFE  # 1 ESTABLISHED .. 12 NEW_SYN_RECV
STATES_LISTENING = 1 << 10 | 1 << 7  # LISTEN, and CLOSE (unconnected UDP)
STATES_CONNECTED = STATES_ALL & ~(1 << 10 | 1 << 7 | 1 << 6 | 1 << 3 | 1 << 12)

_AF_INET, _AF_INET6, _TCP, _UDP = 2, 10, 6, 17


def families_for(ipv4: bool, ipv6: bool) -> tuple[int, ...]:
    """``-4``/``-6`` as ss reads them: one of them limits, both or neither mean both."""
    if ipv4 and not ipv6:
        return (4,)
    if ipv6 and not ipv4:
        return (6,)
    return (4, 6)


def names_for(rows: Sequence[tuple[Any, ...]]) -> dict[str, dict[int, str]]:
    """Service names for the server-side ports of ``rows``, per protocol."""
    from portkit.registry import service_names
    from portkit.render.sockets import service_ports

    return {proto: service_names(ports, proto) for proto, ports in service_ports(rows).items()}


def hosts_for(rows: Sequence[tuple[Any, ...]]) -> dict[str, str]:
    """Reverse-resolve the distinct addresses (``-r``); those without a name stay."""
    import socket

    ips = {r[LOCAL_IP] for r in rows} | {r[REMOTE_IP] for r in rows if r[REMOTE_IP] is not None}
    hosts: dict[str, str] = {}
    for ip in ips:
        try:
            hosts[ip] = socket.gethostbyaddr(ip)[0]
        except OSError:
            continue
    return hosts


def write_ls(
    *,
    tcp: bool = False,
    udp: bool = False,
    listening: bool = False,
    all_states: bool = False,
    numeric: bool = False,
    processes: bool = False,
    ipv4: bool = False,
    ipv6: bool = False,
    extended: bool = False,
    resolve: bool = False,
    info: bool = False,
    memory: bool = False,
    timers: bool = False,
    states: Sequence[str] = (),
    sport: Any = None,
    dport: Any = None,
    port: Any = None,
    src: Sequence[str] = (),
    dst: Sequence[str] = (),
    pids: Sequence[int] = (),
    process: str | None = None,
    sort: str | None = None,
    as_json: bool = False,
    as_csv: bool = False,
    netns: str | None = None,
    pid_netns: int | None = None,
    all_netns: bool = False,
) -> int:
    """List sockets; exit 1 when a port, address or owner filter matched nothing."""
    from portkit.see import GcPaused

    # Rendering builds a line per socket and nothing that can form a cycle: the
    # collector would only walk those objects over and over (see _linux.dump).
    with GcPaused():
        return _write_ls(
            tcp=tcp,
            udp=udp,
            listening=listening,
            all_states=all_states,
            numeric=numeric,
            processes=processes,
            ipv4=ipv4,
            ipv6=ipv6,
            extended=extended,
            resolve=resolve,
            info=info,
            memory=memory,
            timers=timers,
            states=states,
            sport=sport,
            dport=dport,
            port=port,
            src=src,
            dst=dst,
            pids=pids,
            process=process,
            sort=sort,
            as_json=as_json,
            as_csv=as_csv,
            netns=netns,
            pid_netns=pid_netns,
            all_netns=all_netns,
        )


def _write_ls(
    *,
    tcp: bool,
    udp: bool,
    listening: bool,
    all_states: bool,
    numeric: bool,
    processes: bool,
    ipv4: bool,
    ipv6: bool,
    extended: bool,
    resolve: bool,
    info: bool,
    memory: bool,
    timers: bool,
    states: Sequence[str],
    sport: Any,
    dport: Any,
    port: Any,
    src: Sequence[str],
    dst: Sequence[str],
    pids: Sequence[int],
    process: str | None,
    sort: str | None,
    as_json: bool,
    as_csv: bool,
    netns: str | None,
    pid_netns: int | None,
    all_netns: bool = False,
) -> int:
    from portkit.cli._output import out, stdout_style
    from portkit.see import Query, scan

    query = Query(
        tcp=tcp,
        udp=udp,
        listening=listening,
        all=all_states,
        states=list(states) or None,
        families=families_for(ipv4, ipv6),
        sports=sport,
        dports=dport,
        ports=port,
        src=list(src) or None,
        dst=list(dst) or None,
        pids=list(pids) or None,
        process=process,
        owners=processes,
        extended=extended,
        info=info,
        memory=memory,
        timers=timers,
    )
    if all_netns:
        return _write_every_namespace(
            query,
            numeric=numeric,
            extended=extended,
            sort=sort,
            as_json=as_json,
            as_csv=as_csv,
            asked=bool(sport or dport or port or src or dst or pids or process),
        )
    nat = _NatRead.start(query, netns, pid_netns)
    found = scan(query, netns=netns, pid_netns=pid_netns)
    raw_owners = (found.owners, found.owner_names or {}) if found.owners is not None else None
    boxes = None
    if raw_owners is not None:
        # A publisher other than docker-proxy (dockerd, rootlessport) holds ports for
        # containers: which one, its ports say (rare: only then are rows decoded).
        ports = _row_ports(found.rows) if _other_publishers(found.owner_names) else None
        boxes = owner_boxes(found.owner_names, ports)
    nat_rows = nat.ports(found.listen_ports, query) if nat is not None else ()
    want = query.health
    from portkit.see._containers import per_port

    # The raw renderers know a socket's owner by pid only: a publisher with ports for
    # several containers (dockerd without the userland proxy) needs the decoded rows.
    raw = found.batches is not None and not per_port(boxes)
    raw_json = raw and not extended and not want and not nat_rows
    if as_json and not sort and raw_json and found.batches is not None:
        from portkit.registry import service_name
        from portkit.render.sockets import ls_json_raw

        _write_blocks(
            ls_json_raw(found.batches, found.listen_ports, service_name, raw_owners, boxes), ""
        )
        _note_hidden(query.owners, found.owners_hidden)
        asked = sport or dport or port or src or dst
        return 1 if asked and not len(found) else 0
    plain = not (as_json or as_csv or sort or resolve or extended or query.owner_filtered)
    if plain and raw and found.batches is not None:
        # The plain listing renders straight from the kernel's rows (see ls_text_raw).
        from portkit.registry import service_name
        from portkit.render.sockets import ls_text_raw

        style = stdout_style()
        extra = None
        if want:
            from portkit.render.health import health_tails, raw_columns

            extra = health_tails(raw_columns(found.batches, want), want)
        blocks = ls_text_raw(
            found.batches,
            found.listen_ports,
            names=None if numeric else service_name,
            owners=raw_owners,
            style=style if style.color else None,
            extra=extra,
            containers=boxes,
        )
        _write_blocks(blocks, "\n")
        _write_nat_text(nat_rows)
        _note_hidden(query.owners, found.owners_hidden)
        asked = sport or dport or port or src or dst
        return 1 if asked and not len(found) and not nat_rows else 0
    rows = found.rows
    if sort:
        from portkit.render.sockets import sort_rows

        rows = sort_rows(rows, sort)
    if boxes is None and query.owners:
        boxes = owner_boxes(_row_owners(rows), _row_ports(rows))
    entries: list[Any] = []
    if want:
        from portkit.see._tcpinfo import row_entry

        health = found.health
        entries = [row_entry(health, r) for r in rows]
    if as_json:
        from portkit.render.sockets import ls_json

        json_extra = None
        if want:
            from portkit.render.health import health_json_parts

            json_extra = health_json_parts(entries, want)
        doc = ls_json(rows, names_for(rows), extended=extended, extra=json_extra, containers=boxes)
        out(_with_nat_json(doc, nat_rows))
    elif as_csv:
        from portkit.render.sockets import ls_csv

        csv_extra = None
        if want:
            from portkit.render.health import health_csv_columns

            csv_extra = health_csv_columns(entries, want)
        out(ls_csv(rows, names_for(rows), extra=csv_extra, containers=boxes))
    else:
        from portkit.render.sockets import ls_text

        style = stdout_style()
        out(
            ls_text(
                rows,
                names=None if numeric else names_for(rows),
                owners=processes or query.owner_filtered,
                extended=extended,
                hosts=hosts_for(rows) if resolve else None,
                style=style if style.color else None,
                extra=_text_extra(entries, want),
                containers=boxes,
            )
        )
        _write_nat_text(nat_rows)
    _note_hidden(query.owners, found.owners_hidden)
    asked = sport or dport or port or src or dst or pids or process
    return 1 if asked and not rows and not nat_rows else 0


class _NatRead:
    """The namespace's NAT rules, read in a thread while its sockets are dumped; then
    the published ports that no socket holds (``ls -lp``: a port published by NAT only
    is a row too)."""

    def __init__(self, path: str | None) -> None:
        import threading

        self.path = path
        self.mappings: list[Any] | None = None
        self.error: str | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    @classmethod
    def start(cls, query: Any, netns: str | None, pid_netns: int | None) -> _NatRead | None:
        if not query.owners or not sys.platform.startswith("linux"):
            return None
        from portkit.model import TcpState

        # Listeners only (-l): a port NAT rules publish is a listening port of this
        # host; a listing of connections (-a, the default) does not pay for the rules.
        if not query.states <= {TcpState.LISTEN, TcpState.CLOSE}:
            return None
        from portkit.see import netns_path

        return cls(netns_path(netns, pid_netns) if netns or pid_netns else None)

    def _read(self) -> None:
        from portkit.errors import PermissionDenied, PortkitError
        from portkit.netfilter import nat_mappings

        try:
            self.mappings = nat_mappings(self.path)
        except PermissionDenied:
            self.error = "reading them needs CAP_NET_ADMIN: ports published by NAT alone not shown"
        except (PortkitError, OSError) as exc:
            self.error = str(exc)

    def ports(self, listen_ports: Mapping[int, Any], query: Any) -> tuple[Any, ...]:
        from portkit.see import nat_ports
        from portkit.see._netlink import ntohs

        self.thread.join()
        if self.error is not None:
            from portkit.cli._output import err

            err(f"portkit ls: note: NAT rules not read ({self.error})")
            return ()
        if not self.mappings:
            return ()
        held = [
            (_PROTO_NAMES.get(proto, "?"), ntohs(raw))
            for proto, raws in listen_ports.items()
            for raw in raws
        ]
        found = nat_ports(held, self.path, mappings=self.mappings)
        return tuple(
            n for n in found if query.admits_listener(n.protocol, n.address, n.port, n.port_end)
        )


_PROTO_NAMES = {6: "tcp", 17: "udp"}


def _write_nat_text(rows: tuple[Any, ...]) -> None:
    if not rows:
        return
    from portkit.cli._output import out
    from portkit.render import safe

    lines = ["", "published by NAT rules only (no socket here):"]
    lines += ["  " + safe(r.text()) for r in rows]
    out("\n".join(lines))


def _with_nat_json(doc: str, rows: tuple[Any, ...]) -> str:
    if not rows:
        return doc
    import json

    items = json.loads(doc)
    items += [r.json() for r in rows]
    return json.dumps(items, indent=2)


def owner_boxes(
    procs: Mapping[int, tuple[str | None, Any]] | None,
    ports: Mapping[int, list[tuple[int, str]]] | None = None,
) -> dict[int, Any] | None:
    """``{pid: OwnerContainer}`` for the owners that are containers or publish for one
    (None when there is none: no CONTAINER column then)."""
    if not procs:
        return None
    from portkit.see import owner_containers

    found = owner_containers(procs, ports=ports)
    return found or None


def _other_publishers(procs: Mapping[int, tuple[str | None, Any]] | None) -> bool:
    from portkit.containers import is_publisher

    return any(
        is_publisher(name) and not (name or "").endswith("docker-proxy")
        for name, _ in (procs or {}).values()
    )


def _row_owners(rows: Sequence[tuple[Any, ...]]) -> dict[int, tuple[str | None, Any]]:
    return {r[PID]: (r[PROCESS], r[USER]) for r in rows if r[PID]}


def _row_ports(rows: Sequence[tuple[Any, ...]]) -> dict[int, list[tuple[int, str]]]:
    out: dict[int, list[tuple[int, str]]] = {}
    for r in rows:
        if r[PID] and r[REMOTE_IP] is None:
            out.setdefault(r[PID], []).append((r[LOCAL_PORT], r[PROTOCOL].value))
    return out


def _text_extra(entries: list[Any], want: int) -> Any:
    if not want:
        return None
    from portkit.render.health import health_text_columns

    return health_text_columns(entries, want)


def _write_every_namespace(
    query: Any,
    *,
    numeric: bool,
    extended: bool,
    sort: str | None,
    as_json: bool,
    as_csv: bool,
    asked: bool,
) -> int:
    """``ls --all-netns``: one block per namespace (a heading, then its listing); in
    JSON and CSV one list, each socket with its namespace."""
    if not (as_json or as_csv or sort or extended or query.owners):
        return _write_every_namespace_plain(query, numeric=numeric, asked=asked)
    from portkit.cli._output import out, stdout_style
    from portkit.render.sockets import every_namespace_csv, every_namespace_json, ls_text
    from portkit.see import scan_every_namespace

    found, hidden = scan_every_namespace(query)
    if sort:
        from portkit.render.sockets import sort_rows

        found = [(ns, sort_rows(rows, sort)) for ns, rows in found]
    labelled = [(ns.label, rows) for ns, rows in found]
    every = [r for _, rows in found for r in rows]
    names = names_for(every)
    boxes = owner_boxes(_row_owners(every), _row_ports(every)) if query.owners else None
    if as_json:
        out(every_namespace_json(labelled, names, extended=extended, containers=boxes))
    elif as_csv:
        out(every_namespace_csv(labelled, names, containers=boxes))
    else:
        style = stdout_style()
        blocks = []
        for ns, rows in found:
            if not rows:
                continue
            head = _namespace_head(ns, len(rows), style)
            body = ls_text(
                rows,
                names=None if numeric else names,
                owners=query.owners,
                extended=extended,
                style=style if style.color else None,
                containers=boxes,
            )
            blocks.append(f"{head}\n{body}")
        out("\n\n".join(blocks) if blocks else "no sockets in any namespace")
    _note_hidden(query.owners, hidden)
    return 1 if asked and not any(rows for _, rows in found) else 0


def _namespace_head(ns: Any, count: int, style: Any) -> str:
    who = f"; pids {', '.join(map(str, ns.pids[:5]))}" if ns.pids and not ns.own else ""
    label: str = style.bold(f"{ns.label}")
    return label + f" ({count} socket{'s' if count != 1 else ''}{who})"


def _write_every_namespace_plain(query: Any, *, numeric: bool, asked: bool) -> int:
    """``ls --all-netns`` without owners, sorting or JSON: each namespace's table
    straight from the kernel's raw rows, as the plain ``ls`` writes it (nothing
    decoded: over 50 namespaces of 1,000 sockets the decoding and the decoded rows'
    table were about half of the time); the same bytes as the general path."""
    from portkit.cli._output import out, stdout_style
    from portkit.registry import service_name
    from portkit.render.sockets import ls_text, ls_text_raw
    from portkit.see import scan_namespaces

    style = stdout_style()
    colour = style if style.color else None
    write = sys.stdout.write
    shown = 0
    try:
        for ns, found in scan_namespaces(query):
            count = len(found)
            if not count:
                continue
            write(("\n\n" if shown else "") + _namespace_head(ns, count, style) + "\n")
            shown += 1
            if found.batches is not None:
                names = None if numeric else service_name
                blocks = ls_text_raw(found.batches, found.listen_ports, names=names, style=colour)
                write("\n".join(blocks))
            else:  # the /proc/net fallback: rows the kernel could not filter
                rows = found.rows
                names_of = None if numeric else names_for(rows)
                write(ls_text(rows, names=names_of, owners=False, style=colour))
        if shown:
            write("\n")
    except BrokenPipeError:  # the reader went away (``| head``): not an error
        from portkit.cli._output import discard_stdout

        discard_stdout()
        return 0
    if not shown:
        out("no sockets in any namespace")
    return 1 if asked and not shown else 0


def _write_blocks(blocks: Iterator[str], between: str) -> None:
    """Write a document piece by piece (a listing's chunks), then a newline."""
    write = sys.stdout.write
    first = True
    for block in blocks:
        if not first:
            write(between)
        write(block)
        first = False
    write("\n")


def _note_hidden(owners: bool, hidden: int) -> None:
    if owners and hidden:
        from portkit.cli._output import err
        from portkit.render.see import hidden_owners_note

        err(f"portkit ls: note: {hidden_owners_note(hidden, as_root=os.geteuid() == 0)}")


def fast_ls(args: list[str]) -> int | None:
    """``ls`` with only ss-style letter flags and ``--json``/``--csv``: no click.

    Returns None for anything else (click then parses it and reports errors).
    """
    flags: set[str] = set()
    as_json = as_csv = False
    for arg in args:
        if arg == "--json":
            as_json = True
        elif arg == "--csv":
            as_csv = True
        elif len(arg) > 1 and arg[0] == "-" and arg[1] != "-" and FAST_LETTERS.issuperset(arg[1:]):
            flags.update(arg[1:])
        else:
            return None
    if as_json and as_csv:
        return None
    if not (as_json or as_csv or flags & {"p", "e", "i", "m", "o"}):
        from portkit.see import GcPaused

        with GcPaused():  # as in write_ls
            code = plain_listing(flags)
        if code is not None:
            return code
    return write_ls(
        tcp="t" in flags,
        udp="u" in flags,
        listening="l" in flags,
        all_states="a" in flags,
        numeric="n" in flags,
        processes="p" in flags,
        ipv4="4" in flags,
        ipv6="6" in flags,
        extended="e" in flags,
        info="i" in flags,
        memory="m" in flags,
        timers="o" in flags,
        as_json=as_json,
        as_csv=as_csv,
    )


def plain_listing(flags: set[str]) -> int | None:
    """The table for letter flags without ``-p``/``-e`` (``ls -tln``, ``ls -tan``),
    from the kernel's raw rows: the same bytes :func:`write_ls` writes for them.

    The flags map straight to the dump request (protocols, families, state bitmask;
    no filter bytecode), so neither :class:`~portkit.see.Query` nor the model is
    imported. Returns None, having written nothing, when the kernel could not filter
    (the ``/proc/net`` fallback): :func:`write_ls` then filters decoded rows.
    """
    from portkit.render.sockets_raw import ls_text_raw
    from portkit.see import _linux

    protocols = tuple(p for p, on in ((_TCP, "t" in flags), (_UDP, "u" in flags)) if on)
    v4, v6 = "4" in flags, "6" in flags
    families = (
        (_AF_INET,) if v4 and not v6 else (_AF_INET6,) if v6 and not v4 else (_AF_INET, _AF_INET6)
    )
    if "a" in flags:
        states = STATES_ALL
    elif "l" in flags:
        states = STATES_LISTENING
    else:
        states = STATES_CONNECTED
    dump = _linux.dump(families, protocols or (_TCP, _UDP), states, b"")
    if not dump.filtered:
        return None
    names = None
    if "n" not in flags:
        from portkit.registry import service_name

        names = service_name
    style = None
    if sys.stdout.isatty():  # colour needs a terminal (portkit.render.use_color)
        from portkit.cli._output import stdout_style

        style = stdout_style()
    blocks = ls_text_raw(
        dump.batches, dump.listen_ports, names=names, style=style if style and style.color else None
    )
    _write_blocks(blocks, "\n")
    return 0

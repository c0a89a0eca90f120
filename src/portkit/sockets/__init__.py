"""See every socket: :func:`sockets` and :func:`socket_stats` (``portkit ls``/``stats``).

One backend, chosen once at import: on Linux, NETLINK_SOCK_DIAG read directly
(``_netlink`` parses, ``_linux`` reads) with ``/proc/net`` as the fallback where
sock_diag is missing; elsewhere psutil (``_psutil``). Filters go to the kernel as a
state bitmask and inet_diag bytecode, so ``sockets(listening=True)`` never walks the
connection table. Owners are looked up only when asked for: one pass over every
process's open files (a BPF iterator as root, else ``/proc/*/fd``; ``_owners``).

    >>> import portkit
    >>> listeners = portkit.sockets(listening=True, tcp=True)
    >>> all(s.remote_ip is None for s in listeners)
    True

The module itself is callable (``portkit.sockets(...)`` works whether the name
resolves to this function or to this package, which share the name).
"""

from __future__ import annotations

import gc
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from portkit.model import PortRange, SocketRecord, TcpState
    from portkit.sockets._netlink import RawRows
    from portkit.sockets._netns import netns_path as netns_path
    from portkit.sockets._netns import run_in_netns as run_in_netns
    from portkit.sockets._overview import Overview as Overview
    from portkit.sockets._overview import overview as overview
    from portkit.sockets._owners import Owners, OwnerScan
    from portkit.sockets._owners import process_info as process_info
    from portkit.sockets._query import Query as Query
    from portkit.sockets._stats import SocketStats as SocketStats
    from portkit.sockets._stats import compute_stats as compute_stats

__all__ = [
    "BACKEND",
    "Overview",
    "Query",
    "Scan",
    "SocketList",
    "SocketStats",
    "compute_stats",
    "netns_path",
    "overview",
    "process_info",
    "run_in_netns",
    "scan",
    "socket_stats",
    "sockets",
]

#: Public names imported on first use, so that ``portkit ls -tln`` (which imports
#: ``portkit.sockets._linux``, hence this package) pays for none of them: the model's
#: enumerations behind ``Query`` alone cost more than the whole listing.
_LAZY = {
    "Query": "portkit.sockets._query",
    "SocketStats": "portkit.sockets._stats",
    "compute_stats": "portkit.sockets._stats",
    "netns_path": "portkit.sockets._netns",
    "Overview": "portkit.sockets._overview",
    "overview": "portkit.sockets._overview",
    "process_info": "portkit.sockets._owners",
    "run_in_netns": "portkit.sockets._netns",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'portkit.sockets' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


#: ``"linux"`` (netlink, falling back to /proc/net) or ``"psutil"``.
BACKEND = "linux" if sys.platform.startswith("linux") else "psutil"


class _GcPaused:
    """Pause the cyclic GC while 100,000 rows or records are built: they hold no
    cycles, and the collector would walk them over and over (about 15% of the time)."""

    def __enter__(self) -> None:
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was_enabled:
            gc.enable()


if TYPE_CHECKING:
    _Records = list[SocketRecord]
else:
    _Records = list  # the model is imported only when records are built


class SocketList(_Records):
    """The list :func:`sockets` returns, with what the caller should be told.

    Attributes:
        owners_hidden: processes whose sockets could not be read (other users'
            without root); their sockets show no owner.
        source: ``netlink``, ``proc`` or ``psutil``.
    """

    owners_hidden: int = 0
    source: str = ""


class Scan:
    """Rows (``SocketRecord.row`` tuples) and what the reader should be told: the
    form the CLI renders from, without building a record per socket.

    When nothing had to be filtered or attached in Python, the kernel's raw rows are
    kept in :attr:`batches` (``(family, protocol, raw rows)``, with the raw listening
    ports in :attr:`listen_ports`) and :attr:`rows` decodes them on first use, so a
    renderer that can work from raw rows (``ls`` text) skips the decoding.
    """

    __slots__ = (
        "_rows",
        "batches",
        "listen_ports",
        "owners",
        "owner_names",
        "owners_hidden",
        "source",
    )

    def __init__(
        self,
        rows: list[tuple[Any, ...]] | None,
        owners_hidden: int,
        source: str,
        batches: list[tuple[int, int, RawRows]] | None = None,
        listen_ports: dict[int, set[int]] | None = None,
        owners: Owners | None = None,
        owner_names: dict[int, tuple[str | None, str | None]] | None = None,
    ) -> None:
        self._rows = rows
        self.batches = batches
        self.listen_ports = listen_ports or {}
        #: With raw batches and owners asked for: ``{inode: (pid, ...)}`` (the holders
        #: of every socket the pass saw, shown or not) and ``{pid: (process name,
        #: user)}`` (of the holders of the shown ones), not yet attached to rows.
        self.owners = owners
        self.owner_names = owner_names
        self.owners_hidden = owners_hidden
        self.source = source

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            from portkit.sockets._rows import attach_owners, decode

            with _GcPaused():
                rows = [
                    r
                    for family, proto, raw in self.batches or ()
                    for r in decode(raw, family, proto, self.listen_ports.get(proto, ()))
                ]
                if self.owners is not None:
                    rows = attach_owners(rows, self.owners, self.owner_names or {})
            self._rows = rows
        return self._rows

    def __len__(self) -> int:
        if self._rows is None:
            return sum(len(raw) for _, _, raw in self.batches or ())
        return len(self._rows)


def _netns_args(
    netns: str | None, pid_netns: int | None, procfs: str
) -> tuple[str | None, int | None]:
    if netns is None and pid_netns is None:
        return None, None
    from portkit.sockets._netns import netns_path

    return netns_path(netns, pid_netns, procfs), pid_netns


def scan(
    query: Query,
    *,
    netns: str | None = None,
    pid_netns: int | None = None,
    procfs: str = "/proc",
    roles: bool = True,
) -> Scan:
    """Run ``query``: rows in kernel order, owners attached when the query asks.

    Raises:
        ParseError: an unknown namespace.
        PermissionDenied: the namespace could not be entered or /proc read.
    """
    path, pid = _netns_args(netns, pid_netns, procfs)
    if BACKEND == "psutil":
        from portkit.sockets import _psutil

        found, hidden = _psutil.rows(query, path)
        return Scan(found, hidden, "psutil")
    from portkit.sockets import _linux
    from portkit.sockets._rows import decode

    pending = None
    if query.owners:
        from portkit.sockets._owners import OwnerScan

        # The owner pass (BPF or /proc) runs in worker processes while the sockets
        # are dumped.
        pending = OwnerScan(procfs)
    try:
        dump = _linux.dump(
            query.families,
            query.protocols,
            query.state_mask(),
            query.bytecode(),
            want_roles=roles,
            extended=query.extended,
            netns=path,
            netns_pid=pid,
        )
    except BaseException:
        if pending is not None:
            pending.cancel()
        raise
    if dump.filtered and not query.extended and not query.owner_filtered:
        if pending is None:
            return Scan(None, 0, dump.source, dump.batches, dump.listen_ports)
        from itertools import chain

        inodes = chain.from_iterable(
            col for _, _, raw in dump.batches for col in raw.inode_columns()
        )
        shown = sum(len(raw) for _, _, raw in dump.batches)
        owners, names, hidden = _owner_maps(inodes, shown, procfs, pending)
        return Scan(None, hidden, dump.source, dump.batches, dump.listen_ports, owners, names)
    rows: list[tuple[Any, ...]] = []
    for family, proto, raw in dump.batches:
        batch = decode(raw, family, proto, dump.listen_ports.get(proto, ()))
        if not dump.filtered:
            cache: dict[str, tuple[int, int]] = {}
            batch = [r for r in batch if query.matches(r, cache)]
        rows.extend(batch)
    hidden = 0
    if pending is not None:
        rows, hidden = _with_owners(rows, query, procfs, pending)
    if query.extended and dump.cgroups:
        from portkit.sockets._rows import with_cgroups

        ids = {dump.cgroups[r[10]] for r in rows if r[10] in dump.cgroups}
        paths = _linux.cgroup_paths(ids)
        rows = with_cgroups(
            rows, {ino: paths[cg] for ino, cg in dump.cgroups.items() if cg in paths}
        )
    return Scan(rows, hidden, dump.source)


def _owner_maps(
    shown: Iterable[int], count: int, procfs: str, pending: OwnerScan | None = None
) -> tuple[Owners, dict[int, tuple[str | None, str | None]], int]:
    """``({inode: (pid...)}, {pid: (name, user)}, hidden)``: every socket's holders
    (from a scan started earlier or from one done now), and names and users of the
    processes holding the ``count`` inodes ``shown`` (of the first holder of every
    socket, when most of them are shown: the map's own order is the cheap one)."""
    from itertools import chain
    from operator import itemgetter

    from portkit.sockets._owners import process_info, scan_owners

    if pending is not None:
        owners, hidden = pending.result(None)
    else:
        owners, hidden = scan_owners(None, procfs)
    # Both run in C (map/filter/chain); looking 100,000 shown inodes up in the map
    # jumps around memory (about 20 ms), reading its values in order does not (2 ms).
    if 2 * count >= len(owners):
        pids = set(map(itemgetter(0), owners.values()))
    else:
        pids = set(chain.from_iterable(filter(None, map(owners.get, shown))))
    info = process_info(pids, procfs)
    return owners, {pid: (pi.name, pi.user) for pid, pi in info.items()}, hidden


def _with_owners(
    rows: list[tuple[Any, ...]], query: Query, procfs: str, pending: OwnerScan | None = None
) -> tuple[list[tuple[Any, ...]], int]:
    from portkit.sockets._rows import attach_owners

    owners, names, hidden = _owner_maps([r[10] for r in rows], len(rows), procfs, pending)
    rows = attach_owners(rows, owners, names)
    if query.owner_filtered:
        rows = [
            r
            for r in rows
            if r[15]
            and query.owner_matches(r[15], tuple(names.get(p, ("", ""))[0] or "" for p in r[15]))
        ]
    return rows, hidden


def sockets(
    *,
    tcp: bool = False,
    udp: bool = False,
    listening: bool = False,
    states: Iterable[str | TcpState] | str | None = None,
    families: Iterable[int] | None = None,
    sports: str | int | PortRange | Iterable[int | PortRange] | None = None,
    dports: str | int | PortRange | Iterable[int | PortRange] | None = None,
    ports: str | int | PortRange | Iterable[int | PortRange] | None = None,
    src: str | Iterable[str] | None = None,
    dst: str | Iterable[str] | None = None,
    pids: int | Iterable[int] | None = None,
    process: str | None = None,
    owners: bool = False,
    extended: bool = False,
    netns: str | None = None,
    pid_netns: int | None = None,
    procfs: str = "/proc",
) -> SocketList:
    """The TCP and UDP sockets of this machine (or of another network namespace).

    Every filter is optional; without any, every TCP and UDP socket in every state.

    Args:
        tcp, udp: protocols (neither: both).
        listening: listeners only: TCP LISTEN and unconnected UDP (``ss -l``).
        states: ``ss`` state names and groups (``"established"``, ``"time-wait"``,
            ``"connected"``, ``"synchronized"``, ``"bucket"``, ``"big"``, ...) or
            :class:`~portkit.TcpState` members. None: every state.
        families: 4 and/or 6 (None: both).
        sports, dports, ports: local, remote or either-side port: ``22``,
            ``"22,80,8000-8100"``, a :class:`~portkit.PortRange` or a list of them.
        src, dst: local / remote address or CIDR (``"10.0.0.0/8"``, ``"::1"``, a list).
        pids: only sockets held by these processes (looks owners up).
        process: only sockets whose owning process name contains this (looks owners up).
        owners: fill ``pid``, ``process``, ``user`` and ``pids`` (one /proc scan).
        extended: fill ``cgroup`` too.
        netns: an ``ip netns`` name to look into.
        pid_netns: the pid of a process whose network namespace to look into
            (a container's, say).
        procfs: where proc is mounted.

    Returns:
        A :class:`SocketList` of :class:`~portkit.model.SocketRecord` in kernel order;
        ``owners_hidden`` tells how many processes could not be inspected.

    Raises:
        ParseError: a bad state name, port, address or namespace name.
        PermissionDenied: another namespace needs root.
    """
    from portkit.model import SocketRecord
    from portkit.sockets._query import Query

    query = Query(
        tcp=tcp,
        udp=udp,
        listening=listening,
        all=not listening and states is None,
        states=states,
        families=families,
        sports=sports,
        dports=dports,
        ports=ports,
        src=src,
        dst=dst,
        pids=pids,
        process=process,
        owners=owners,
        extended=extended,
    )
    found = scan(query, netns=netns, pid_netns=pid_netns, procfs=procfs)
    wrap = SocketRecord.from_row
    rows = found.rows
    with _GcPaused():
        out = SocketList([wrap(r) for r in rows])
    out.owners_hidden = found.owners_hidden
    out.source = found.source
    return out


def socket_stats(
    *,
    tcp: bool = False,
    udp: bool = False,
    families: Iterable[int] | None = None,
    owners: bool = False,
    netns: str | None = None,
    pid_netns: int | None = None,
    procfs: str = "/proc",
) -> SocketStats:
    """Counts by protocol and state, listeners with their connections and accept
    queues, TIME-WAIT, and ephemeral port use overall and per destination, with
    warnings above 70%.

    Args:
        tcp, udp: protocols (neither: both).
        families: 4 and/or 6 (None: both).
        owners: name the process of each listener (one /proc scan, listeners only).
        netns, pid_netns, procfs: as for :func:`sockets`.

    Returns:
        A :class:`~portkit.sockets._stats.SocketStats`.
    """
    from portkit.sockets._query import Query
    from portkit.sockets._stats import compute_stats

    query = Query(tcp=tcp, udp=udp, all=True, families=families)
    found = scan(query, netns=netns, pid_netns=pid_netns, procfs=procfs)
    rows = found.rows
    hidden = 0
    if owners:
        listeners = [r for r in rows if r[5] is None]
        named, hidden = _with_owners(listeners, query, procfs)
        by_inode = {r[10]: r for r in named}
        rows = [by_inode.get(r[10], r) if r[5] is None else r for r in rows]
    return compute_stats(rows, _ephemeral(netns, pid_netns, procfs), hidden)


def _ephemeral(netns: str | None, pid_netns: int | None, procfs: str) -> PortRange:
    """The ephemeral range of the namespace looked into (a per-namespace sysctl)."""
    from portkit.system import ephemeral_range

    path, _ = _netns_args(netns, pid_netns, procfs)
    if path is None or BACKEND != "linux":
        return ephemeral_range(procfs)
    from portkit.sockets._netns import run_in_netns
    from portkit.system import parse_ip_local_port_range

    def read() -> PortRange:
        # /proc/sys/net shows the namespace of the thread reading it
        with open(f"{procfs}/sys/net/ipv4/ip_local_port_range") as f:
            return parse_ip_local_port_range(f.read())

    return run_in_netns(path, read)


if TYPE_CHECKING:
    from types import ModuleType
else:
    ModuleType = type(sys)  # types.ModuleType, without importing types (about 0.3 ms)


class _CallableModule(ModuleType):
    """Lets ``portkit.sockets(...)`` work when the name resolves to this package."""

    def __call__(self, *args: Any, **kwargs: Any) -> SocketList:
        return sockets(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

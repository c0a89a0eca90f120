"""The backend of this system, chosen once (:data:`BACKEND`), and :func:`scan`.

On Linux, ``_linux`` (netlink sock_diag, /proc/net where it is missing); elsewhere
``_psutil``. Each backend module offers ``scan(query, netns_path, netns_pid, procfs,
roles)`` and ``with_owners(rows, query, procfs)``.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portkit.model import PortRange
    from portkit.see._netns import Namespace
    from portkit.see._query import Query
    from portkit.see._scan import Scan

__all__ = [
    "BACKEND",
    "backend",
    "ephemeral",
    "netns_args",
    "scan",
    "scan_every_namespace",
    "scan_namespaces",
]

#: ``"linux"`` (netlink, falling back to /proc/net) or ``"psutil"``.
BACKEND = "linux" if sys.platform.startswith("linux") else "psutil"


def backend() -> Any:
    """The backend module, chosen by :data:`BACKEND` (imported on first use)."""
    if BACKEND == "linux":
        from portkit.see import _linux

        return _linux
    from portkit.see import _psutil

    return _psutil


def netns_args(
    netns: str | None, pid_netns: int | None, procfs: str
) -> tuple[str | None, int | None]:
    if netns is None and pid_netns is None:
        return None, None
    from portkit.see._netns import netns_path
    from portkit.system import require_linux

    require_linux("network namespaces")

    return netns_path(netns, pid_netns, procfs), pid_netns


def scan(
    query: Query,
    *,
    netns: str | None = None,
    pid_netns: int | None = None,
    procfs: str = "/proc",
    roles: bool = True,
) -> Scan:
    """Run ``query`` on this system's backend: rows in kernel order (``SocketRecord.row``
    tuples, or raw rows decoded on first use), owners attached when the query asks.

    Raises:
        ParseError: an unknown namespace.
        PermissionDenied: the namespace could not be entered or /proc read.
    """
    path, pid = netns_args(netns, pid_netns, procfs)
    found: Scan = backend().scan(query, path, pid, procfs, roles)
    return found


def ephemeral(netns: str | None, pid_netns: int | None, procfs: str) -> PortRange:
    """The ephemeral range of the namespace looked into (a per-namespace sysctl)."""
    from portkit.system import ephemeral_range

    path, _ = netns_args(netns, pid_netns, procfs)
    if path is None or BACKEND != "linux":
        return ephemeral_range(procfs)
    from portkit.see._netns import run_in_netns
    from portkit.system import parse_ip_local_port_range

    def read() -> PortRange:
        # /proc/sys/net shows the namespace of the thread reading it
        with open(f"{procfs}/sys/net/ipv4/ip_local_port_range") as f:
            return parse_ip_local_port_range(f.read())

    return run_in_netns(path, read)


def scan_namespaces(
    query: Query, *, procfs: str = "/proc", roles: bool = True
) -> list[tuple[Namespace, Scan]]:
    """The :class:`Scan` of ``query`` (owners left out) in every network namespace
    that has a name or a process (the caller's first), each namespace marked with its
    container, if it is one's.

    Each namespace is one dump, entered by ``setns`` in this process (no process per
    namespace). The scans keep the kernel's raw rows where it did the filtering, so a
    plain listing renders them without decoding a row (``ls --all-netns -tan`` over 50
    namespaces of 1,000 sockets: the decoding and the decoded rows' table were about
    half of the time). A namespace that goes away meanwhile is skipped.
    """
    import copy

    from portkit.errors import PortkitError
    from portkit.see._netns import namespaces
    from portkit.system import require_linux

    require_linux("network namespaces")
    bare = copy.copy(query)
    bare.owners = False
    bare.pids = None
    bare.process = None
    chosen = backend()
    found: list[tuple[Namespace, Scan]] = []
    for ns in namespaces(procfs):
        try:
            got = chosen.scan(bare, None if ns.own else ns.path, None, procfs, roles)
        except (PortkitError, OSError):
            continue  # gone meanwhile, or cannot be entered
        found.append((ns, got))
    _name_containers([ns for ns, _ in found], procfs)
    return found


def scan_every_namespace(
    query: Query, *, procfs: str = "/proc", roles: bool = True
) -> tuple[list[tuple[Namespace, list[tuple[Any, ...]]]], int]:
    """``ls --all-netns``: the rows of ``query`` in every network namespace that has a
    name or a process (the caller's first, :func:`scan_namespaces`), and the number of
    hidden owners.

    Owners are found in one pass over every process for all of them (a socket's inode
    is unique across namespaces).
    """
    import copy

    from portkit._sockrow import PIDS, PROCESS

    found = [(ns, got.rows) for ns, got in scan_namespaces(query, procfs=procfs, roles=roles)]
    hidden = 0
    if query.owners:
        attach = copy.copy(query)
        attach.pids = None
        attach.process = None
        flat = [r for _, rows in found for r in rows]
        owned, hidden = backend().with_owners(flat, attach, procfs)
        regrouped: list[tuple[Namespace, list[tuple[Any, ...]]]] = []
        pos = 0
        for ns, rows in found:
            mine = owned[pos : pos + len(rows)]
            pos += len(rows)
            if query.owner_filtered:
                mine = [
                    r for r in mine if r[PIDS] and query.owner_matches(r[PIDS], (r[PROCESS] or "",))
                ]
            regrouped.append((ns, mine))
        found = regrouped
    return found, hidden


def _name_containers(found: list[Namespace], procfs: str) -> None:
    """Mark the namespaces that are containers' (one of their processes says so)."""
    from portkit.containers import Resolver

    resolver = Resolver(procfs)
    for ns in found:
        if ns.own or ns.names:
            continue
        for pid in ns.pids[:4]:
            container = resolver.of_pid(pid)
            if container is not None:
                ns.container = container
                break

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

The package is ``portkit.see`` (the capability: ``ls``, ``who``, ``stats``, the
overview); its functions are re-exported as ``portkit.sockets()`` and
``portkit.socket_stats()``.
"""

from __future__ import annotations

from portkit._sockrow import INODE, REMOTE_IP
from portkit.see._backend import BACKEND, scan, scan_every_namespace, scan_namespaces
from portkit.see._scan import GcPaused, Scan

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from portkit.model import PortRange, SocketRecord, TcpState
    from portkit.see._addrs import addresses as addresses
    from portkit.see._containers import ContainerPorts as ContainerPorts
    from portkit.see._containers import NatPort as NatPort
    from portkit.see._containers import OwnerContainer as OwnerContainer
    from portkit.see._containers import container_ports as container_ports
    from portkit.see._containers import nat_ports as nat_ports
    from portkit.see._containers import owner_containers as owner_containers
    from portkit.see._netns import Namespace as Namespace
    from portkit.see._netns import namespaces as namespaces
    from portkit.see._netns import netns_path as netns_path
    from portkit.see._netns import run_in_netns as run_in_netns
    from portkit.see._overview import Overview as Overview
    from portkit.see._overview import overview as overview
    from portkit.see._owners import process_info as process_info
    from portkit.see._query import Query as Query
    from portkit.see._stats import SocketStats as SocketStats
    from portkit.see._stats import compute_stats as compute_stats
    from portkit.see._who import Holder as Holder
    from portkit.see._who import PortOwners as PortOwners
    from portkit.see._who import who as who

__all__ = [
    "BACKEND",
    "ContainerPorts",
    "GcPaused",
    "Holder",
    "Namespace",
    "NatPort",
    "Overview",
    "OwnerContainer",
    "PortOwners",
    "Query",
    "Scan",
    "SocketList",
    "SocketStats",
    "addresses",
    "compute_stats",
    "container_ports",
    "namespaces",
    "nat_ports",
    "netns_path",
    "overview",
    "owner_containers",
    "process_info",
    "run_in_netns",
    "scan",
    "scan_every_namespace",
    "scan_namespaces",
    "socket_stats",
    "sockets",
    "who",
]

#: Public names imported on first use, so that ``portkit ls -tln`` (which imports
#: ``portkit.see._linux``, hence this package) pays for none of them: the model's
#: enumerations behind ``Query`` alone cost more than the whole listing.
_LAZY = {
    "Query": "portkit.see._query",
    "SocketStats": "portkit.see._stats",
    "compute_stats": "portkit.see._stats",
    "netns_path": "portkit.see._netns",
    "OwnerContainer": "portkit.see._containers",
    "ContainerPorts": "portkit.see._containers",
    "addresses": "portkit.see._addrs",
    "owner_containers": "portkit.see._containers",
    "container_ports": "portkit.see._containers",
    "NatPort": "portkit.see._containers",
    "nat_ports": "portkit.see._containers",
    "Namespace": "portkit.see._netns",
    "namespaces": "portkit.see._netns",
    "Overview": "portkit.see._overview",
    "overview": "portkit.see._overview",
    "process_info": "portkit.see._owners",
    "run_in_netns": "portkit.see._netns",
    "Holder": "portkit.see._who",
    "PortOwners": "portkit.see._who",
    "who": "portkit.see._who",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'portkit.see' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


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
    from portkit.see._query import Query

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
    with GcPaused():
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
    warnings above 70%, and when each destination runs out of ephemeral ports at the
    rate connections are made to it (``SocketStats.forecasts``), with a warning under
    10 minutes.

    Args:
        tcp, udp: protocols (neither: both).
        families: 4 and/or 6 (None: both).
        owners: name the process of each listener (one /proc scan, listeners only).
        netns, pid_netns, procfs: as for :func:`sockets`.

    Returns:
        A :class:`~portkit.see._stats.SocketStats`.
    """
    from portkit.see._backend import backend, ephemeral
    from portkit.see._forecast import time_wait_ages
    from portkit.see._query import Query
    from portkit.see._stats import compute_stats

    # timers: the TIME-WAIT sockets' ages give each destination's connection rate
    query = Query(tcp=tcp, udp=udp, all=True, families=families, timers=True)
    if not owners:
        from portkit.see._tcpinfo import WANT_ANY_ORDER

        query.health |= WANT_ANY_ORDER  # counted, not listed: any order within a reply
    found = scan(query, netns=netns, pid_netns=pid_netns, procfs=procfs)
    eph = ephemeral(netns, pid_netns, procfs)
    ages = time_wait_ages(found.batches, found.listen_ports, eph) if found.batches else None
    if not owners and found.batches is not None:
        from portkit.see._rawfold import fold

        # the kernel's replies a column at a time, no row decoded (see._rawfold)
        return fold(found.batches, found.listen_ports, eph, time_wait=ages).stats
    rows = found.rows
    hidden = 0
    if owners:
        listeners = [r for r in rows if r[REMOTE_IP] is None]
        named, hidden = backend().with_owners(listeners, query, procfs)
        by_inode = {r[INODE]: r for r in named}
        rows = [by_inode.get(r[INODE], r) if r[REMOTE_IP] is None else r for r in rows]
    return compute_stats(rows, eph, hidden, ages)

"""One reading of the socket table, shared by ``portkit top`` and ``portkit exporter``.

Both views are fed by the sockets capability's snapshot functions: one
:func:`portkit.see.scan` (a single netlink dump of every TCP and UDP socket) folded
once into its :class:`~portkit.see.SocketStats`, what :func:`portkit.socket_stats`
computes. The fold reads the kernel's raw replies a column at a time
(``see._rawfold``): a scrape of 100,000 sockets never decodes a row, and the
exporter's per-port and per-destination figures (:mod:`portkit.exporter.metrics`)
come from the same fold. ``top`` reads :attr:`Snapshot.rows`, decoded on first use.

Nothing here renders or serves; nothing here imports textual or prometheus_client.
"""

from __future__ import annotations

import gc
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from portkit.exporter._containers import ContainerWatch
    from portkit.model import PortRange
    from portkit.see import OwnerContainer, SocketStats
    from portkit.see._rawfold import Fold

__all__ = ["Snapshot", "provider", "take_snapshot"]


class Snapshot:
    """The socket table at one moment.

    Attributes:
        taken: wall-clock time of the reading (``time.time()``).
        rows: every socket as a :data:`~portkit.model.SOCKET_FIELDS` row tuple
            (wrap one with :meth:`~portkit.model.SocketRecord.from_row`), decoded
            from the scan on first use.
        stats: the :class:`~portkit.see.SocketStats` of those rows.
        fold: the ``see._rawfold.Fold`` the stats came from (the listeners, the
            connections per listening port and state, per destination), or None
            when they were computed from rows (fixed data, the /proc fallback).
        owners_hidden: processes whose sockets could not be attributed (not root).
        source: ``netlink``, ``proc`` or ``psutil``.
        duration: seconds the reading took.
        time_wait: the client TIME-WAIT sockets' seconds left per (source ip,
            destination ip, port) (``see._forecast.time_wait_ages``), or None.
        scan: the :class:`~portkit.see.Scan` read (its ``health`` holds each socket's
            timer and, with ``info``, tcp_info), or None for fixed data.
        traffic: ``{listening port: see._traffic.PortTraffic}`` from a provider that
            keeps a ledger (``provider(traffic=True)``), else None.
        events: the destroy events (``see._events``) since the previous reading of
            the same provider, when it listens to them.
        events_lost: destroy events the kernel could not deliver to it so far.
        containers: ``{pid or (pid, port, protocol): OwnerContainer}`` for the owners
            that are containers or publish for one (:func:`portkit.see.owner_containers`),
            from a provider with ``containers=True``; None when not asked.
        port_containers: ``{(protocol, port): (OwnerContainer, ...)}``: the containers
            behind each listening port (empty: none); None when not asked.
    """

    __slots__ = (
        "taken",
        "_rows",
        "stats",
        "fold",
        "owners_hidden",
        "source",
        "duration",
        "time_wait",
        "scan",
        "traffic",
        "events",
        "events_lost",
        "containers",
        "port_containers",
    )

    def __init__(
        self,
        taken: float,
        rows: list[tuple[Any, ...]] | None,
        stats: SocketStats,
        owners_hidden: int = 0,
        source: str = "",
        duration: float = 0.0,
        time_wait: dict[tuple[str, str, int], list[float]] | None = None,
        scan: Any = None,
        fold: Fold | None = None,
    ) -> None:
        self.taken = taken
        self._rows = rows
        self.stats = stats
        self.fold = fold
        self.owners_hidden = owners_hidden
        self.source = source
        self.duration = duration
        self.time_wait = time_wait
        self.scan = scan
        self.traffic: dict[int, Any] | None = None
        self.events: list[Any] = []
        self.events_lost = 0
        self.containers: dict[Any, OwnerContainer] | None = None
        self.port_containers: dict[tuple[str, int], tuple[OwnerContainer, ...]] | None = None

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            self._rows = self.scan.rows if self.scan is not None else []
        return self._rows

    @property
    def listening(self) -> list[tuple[Any, ...]]:
        """The rows without a remote end (TCP listeners, unconnected UDP sockets), in
        the order read."""
        if self.fold is not None:
            return list(self.fold.listening)
        from portkit._sockrow import REMOTE_IP

        return [r for r in self.rows if r[REMOTE_IP] is None]

    @classmethod
    def from_rows(
        cls,
        rows: list[tuple[Any, ...]],
        ephemeral: PortRange,
        *,
        taken: float = 0.0,
        time_wait: dict[tuple[str, str, int], list[float]] | None = None,
    ) -> Snapshot:
        """A snapshot of given rows (tests and demos feed fixed data this way).

        >>> from portkit.model import PortRange
        >>> Snapshot.from_rows([], PortRange(32768, 60999)).stats.total
        0
        """
        from portkit.see import compute_stats

        stats = compute_stats(rows, ephemeral, time_wait=time_wait)
        return cls(taken, rows, stats, source="fixed", time_wait=time_wait)


def take_snapshot(
    *,
    owners: bool = False,
    netns: str | None = None,
    pid_netns: int | None = None,
    procfs: str = "/proc",
    info: bool = False,
) -> Snapshot:
    """Read every TCP and UDP socket once and compute its stats.

    Every socket's timer is read too (the TIME-WAIT ages give each destination's
    connection rate, ``SocketStats.forecasts``).

    Args:
        owners: attach owning processes (``top`` wants them; the exporter does not,
            so that a scrape never walks ``/proc/*/fd``).
        info: read every TCP socket's tcp_info too (traffic, retransmits, RTT).
        netns: an ``ip netns`` name to look into.
        pid_netns: the pid of a process whose network namespace to look into.
        procfs: where proc is mounted.

    Raises:
        ParseError: an unknown namespace.
        PermissionDenied: the namespace could not be entered.
    """
    from portkit.see import Query, compute_stats, scan
    from portkit.see._forecast import time_wait_ages
    from portkit.see._rawfold import fold
    from portkit.see._tcpinfo import WANT_ANY_ORDER

    start = time.perf_counter()
    taken = time.time()
    # The objects a reading makes hold no cycles: pausing the cyclic garbage
    # collector keeps it from walking them again and again.
    paused = gc.isenabled()
    gc.disable()
    try:
        query = Query(all=True, owners=owners, timers=True, info=info)
        # the views sort what they show: a reply's TIME-WAIT rows may come after its
        # others, so that the rest is decoded column-wise (_tcpinfo.split_chunk)
        query.health |= WANT_ANY_ORDER
        found = scan(
            query,
            netns=netns,
            pid_netns=pid_netns,
            procfs=procfs,
        )
        eph = _ephemeral(netns, pid_netns, procfs)
        folded = None
        if found.batches is not None:
            ages = time_wait_ages(found.batches, found.listen_ports, eph) if found.batches else None
            # the raw replies, a column at a time: no row decoded (top decodes them
            # when it shows them)
            folded = fold(
                found.batches,
                found.listen_ports,
                eph,
                owners_hidden=0,
                time_wait=ages,
                owners=found.owners,
                owner_names=found.owner_names,
            )
            stats = folded.stats
        else:
            ages = None
            stats = compute_stats(found.rows, eph, time_wait=ages)
    finally:
        if paused:
            gc.enable()
    return Snapshot(
        taken,
        None,
        stats,
        owners_hidden=found.owners_hidden,
        source=found.source,
        duration=time.perf_counter() - start,
        time_wait=ages,
        scan=found,
        fold=folded,
    )


def _ephemeral(netns: str | None, pid_netns: int | None, procfs: str) -> PortRange:
    """The ephemeral range of the namespace looked into: ``ip_local_port_range`` is
    per network namespace, and ``/proc/sys/net`` shows the reading thread's one."""
    from portkit.system import ephemeral_range, parse_ip_local_port_range

    if netns is None and pid_netns is None:
        return ephemeral_range(procfs)
    from portkit.see import netns_path, run_in_netns

    path = netns_path(netns, pid_netns, procfs)
    assert path is not None

    def read() -> str:
        with open(f"{procfs}/sys/net/ipv4/ip_local_port_range") as f:
            return f.read()

    try:
        return parse_ip_local_port_range(run_in_netns(path, read))
    except OSError:
        return ephemeral_range(procfs)


def provider(
    *, traffic: bool = False, containers: bool = True, **kwargs: Any
) -> Callable[[], Snapshot]:
    """A zero-argument snapshot function bound to ``kwargs`` of :func:`take_snapshot`.

    With ``traffic``, every reading also carries each listening port's traffic
    (``Snapshot.traffic``): tcp_info is read, and a :class:`~portkit.see._traffic.Ledger`
    keeps totals that only grow across readings, with the last counters of the
    connections that closed in between from the kernel's destroy events (heard on
    the sock_diag multicast groups in a background thread; without them, from the
    last reading that saw each connection).

    With ``containers`` (the default), every reading also says which owners are
    containers or publish for one (``Snapshot.containers``, ``port_containers``),
    learnt from the container runtimes every few seconds
    (:class:`~portkit.exporter._containers.ContainerWatch`), not on every reading.
    """
    watch = None
    if containers:
        from portkit.exporter._containers import ContainerWatch

        watch = ContainerWatch(
            owners=bool(kwargs.get("owners")),
            netns=kwargs.get("netns"),
            pid_netns=kwargs.get("pid_netns"),
            procfs=kwargs.get("procfs", "/proc"),
        )
    if not traffic:

        def take() -> Snapshot:
            snap = take_snapshot(**kwargs)
            if watch is not None:
                watch.annotate(snap)
            return snap

        return take
    return _TrafficProvider(kwargs, watch)


class _TrafficProvider:
    """``provider(traffic=True)``: readings with a ledger and destroy events."""

    def __init__(self, kwargs: dict[str, Any], watch: ContainerWatch | None = None) -> None:
        from portkit.see._netlink import ntohs
        from portkit.see._traffic import Ledger

        self.kwargs = {**kwargs, "info": True}
        self.ledger = Ledger(ntohs)  # keyed by raw (network-order) ports, as the dump
        self.listener: _EventThread | None = None
        self.started = False
        self.watch = watch

    def __call__(self) -> Snapshot:
        from portkit.see._traffic import counters_of, port_traffic, server_side

        if not self.started:
            self.started = True
            self.listener = _EventThread.start(
                self.kwargs.get("netns"), self.kwargs.get("pid_netns"), self.kwargs.get("procfs")
            )
        from portkit.see._netlink import htons
        from portkit.see._scan import GcPaused

        events = self.listener.drain() if self.listener is not None else []
        snap = take_snapshot(**self.kwargs)
        found = snap.scan
        with GcPaused():  # a connection's counters are a tuple: 50,000 of them, no cycle
            current, rtts = server_side(found.batches or (), found.listen_ports)
            listening = found.listen_ports.get(6, set())
            closed = [
                (e[7], htons(e[4]), c)
                for e in events
                if e[1] == 6 and (c := counters_of(e[8])) is not None
            ]
            totals = self.ledger.update(current, closed, listening)
        snap.traffic = port_traffic(totals, rtts)
        snap.events = events
        snap.events_lost = self.listener.lost if self.listener is not None else 0
        if self.watch is not None:
            self.watch.annotate(snap)
        return snap


class _EventThread:
    """Destroy events heard in a daemon thread, handed over at each reading."""

    def __init__(self, sock: Any) -> None:
        import threading

        self.sock = sock
        self.lock = threading.Lock()
        self.events: list[Any] = []
        self.thread = threading.Thread(target=self.run, name="portkit-events", daemon=True)
        self.thread.start()

    @classmethod
    def start(
        cls, netns: str | None, pid_netns: int | None, procfs: str | None
    ) -> _EventThread | None:
        from portkit.errors import PortkitError
        from portkit.see import netns_path
        from portkit.see._events import EventSocket

        try:
            path = netns_path(netns, pid_netns, procfs or "/proc")
            return cls(EventSocket(netns_path=path))
        except (PortkitError, OSError):
            return None  # the ledger falls back to the last readings

    def run(self) -> None:
        while True:
            try:
                got = self.sock.read(timeout=1.0)
            except (OSError, ValueError):
                return
            if got:
                with self.lock:
                    self.events.extend(got)
                    if len(self.events) > 1_000_000:  # nobody reads: keep memory bounded
                        del self.events[:500_000]

    def drain(self) -> list[Any]:
        with self.lock:
            out, self.events = self.events, []
        return out

    @property
    def lost(self) -> int:
        return int(self.sock.lost)

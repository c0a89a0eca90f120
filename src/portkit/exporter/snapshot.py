"""One reading of the socket table, shared by ``portkit top`` and ``portkit exporter``.

Both views are fed by the sockets capability's snapshot functions: one
:func:`portkit.see.scan` (a single netlink dump of every TCP and UDP socket) and
the pure :func:`~portkit.see.compute_stats` over the same rows, which is
what :func:`portkit.socket_stats` computes. Scanning once and folding twice keeps a
scrape of 100,000 sockets to one dump: the exporter's per-port and per-destination
figures (:mod:`portkit.exporter.metrics`) fold over the same rows.

Nothing here renders or serves; nothing here imports textual or prometheus_client.
"""

from __future__ import annotations

import gc
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from portkit.model import PortRange
    from portkit.see import SocketStats

__all__ = ["Snapshot", "provider", "take_snapshot"]


class Snapshot:
    """The socket table at one moment.

    Attributes:
        taken: wall-clock time of the reading (``time.time()``).
        rows: every socket as a :data:`~portkit.model.SOCKET_FIELDS` row tuple
            (wrap one with :meth:`~portkit.model.SocketRecord.from_row`).
        stats: the :class:`~portkit.see.SocketStats` of those rows.
        owners_hidden: processes whose sockets could not be attributed (not root).
        source: ``netlink``, ``proc`` or ``psutil``.
        duration: seconds the reading took.
    """

    __slots__ = ("taken", "rows", "stats", "owners_hidden", "source", "duration")

    def __init__(
        self,
        taken: float,
        rows: list[tuple[Any, ...]],
        stats: SocketStats,
        owners_hidden: int = 0,
        source: str = "",
        duration: float = 0.0,
    ) -> None:
        self.taken = taken
        self.rows = rows
        self.stats = stats
        self.owners_hidden = owners_hidden
        self.source = source
        self.duration = duration

    @classmethod
    def from_rows(
        cls, rows: list[tuple[Any, ...]], ephemeral: PortRange, *, taken: float = 0.0
    ) -> Snapshot:
        """A snapshot of given rows (tests and demos feed fixed data this way).

        >>> from portkit.model import PortRange
        >>> Snapshot.from_rows([], PortRange(32768, 60999)).stats.total
        0
        """
        from portkit.see import compute_stats

        return cls(taken, rows, compute_stats(rows, ephemeral), source="fixed")


def take_snapshot(
    *,
    owners: bool = False,
    netns: str | None = None,
    pid_netns: int | None = None,
    procfs: str = "/proc",
) -> Snapshot:
    """Read every TCP and UDP socket once and compute its stats.

    Args:
        owners: attach owning processes (``top`` wants them; the exporter does not,
            so that a scrape never walks ``/proc/*/fd``).
        netns: an ``ip netns`` name to look into.
        pid_netns: the pid of a process whose network namespace to look into.
        procfs: where proc is mounted.

    Raises:
        ParseError: an unknown namespace.
        PermissionDenied: the namespace could not be entered.
    """
    from portkit.see import Query, compute_stats, scan

    start = time.perf_counter()
    taken = time.time()
    # 100,000 new row tuples set off the cyclic garbage collector again and again,
    # though rows hold no cycles: pausing it cuts a 100k-socket reading by about a
    # fifth (measured: 0.63 -> 0.50 s on the loaded 2-core VM).
    paused = gc.isenabled()
    gc.disable()
    try:
        found = scan(
            Query(all=True, owners=owners), netns=netns, pid_netns=pid_netns, procfs=procfs
        )
        stats = compute_stats(found.rows, _ephemeral(netns, pid_netns, procfs))
    finally:
        if paused:
            gc.enable()
    return Snapshot(
        taken,
        found.rows,
        stats,
        owners_hidden=found.owners_hidden,
        source=found.source,
        duration=time.perf_counter() - start,
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


def provider(**kwargs: Any) -> Callable[[], Snapshot]:
    """A zero-argument snapshot function bound to ``kwargs`` of :func:`take_snapshot`."""

    def take() -> Snapshot:
        return take_snapshot(**kwargs)

    return take

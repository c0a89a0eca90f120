"""Which socket owners are containers, for ``portkit top`` and the exporter (I/O).

Both ask the containers capability through the see capability's public functions
(:func:`portkit.see.owner_containers`, ``box_of``): a process's cgroup names its
container, a publisher's command line (docker-proxy) or the runtime's published
ports the container it holds a port for, the runtime's API (asked once per
:class:`~portkit.containers.Resolver`) its name. What they learn is kept for
:data:`RENEW` seconds, then asked again: a refresh or a scrape in between costs a
few dict lookups.

* ``top`` reads every socket's owner anyway: each owner pid is looked up once per
  window (a publisher again when the ports it holds change). The runtime's API is
  asked only once a container or a publisher turned up.
* The exporter reads no owners (a scrape never walks ``/proc/*/fd``): once per
  window it asks whether this host has any container at all
  (:meth:`Resolver.containers <portkit.containers.Resolver.containers>`: the
  runtimes' APIs and every process's cgroup); only then does it read the owners of
  the listening sockets (a listeners-only dump, which the kernel answers from its
  listening hash without walking the connections, and one owner pass). With no
  container on the host, a scrape costs what it did.
"""

from __future__ import annotations

import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    from portkit.containers import Resolver
    from portkit.see import OwnerContainer

    #: ``{(protocol, port): (OwnerContainer, ...)}``: the containers behind a listening port.
    PortContainers = dict[tuple[str, int], tuple[OwnerContainer, ...]]

__all__ = ["RENEW", "ContainerWatch", "by_port"]

#: Seconds the containers' answers are kept before the runtimes are asked again.
RENEW = 5.0


def by_port(
    listeners: Iterable[tuple[str, int, int]], boxes: Mapping[Any, OwnerContainer]
) -> PortContainers:
    """``{(protocol, port): (OwnerContainer, ...)}`` of the listeners ``(protocol,
    port, owner pid)`` whose owner is a container or publishes for one (pure).

    >>> from portkit.containers import Container
    >>> from portkit.see import OwnerContainer
    >>> web = OwnerContainer(Container("a" * 64, "web", "docker"), "proxy", "172.17.0.2:80")
    >>> by_port([("tcp", 8080, 42), ("tcp", 8080, 43), ("tcp", 22, 7)], {42: web, 43: web})
    {('tcp', 8080): (OwnerContainer(container=..., published_by='proxy', target='172.17.0.2:80'),)}
    """
    from portkit.see._containers import box_of

    out: dict[tuple[str, int], tuple[OwnerContainer, ...]] = {}
    if not boxes:
        return out
    for proto, port, pid in listeners:
        box = box_of(boxes, pid, port, proto)
        if box is not None:
            had = out.get((proto, port), ())
            if box not in had:
                out[(proto, port)] = (*had, box)
    return out


class ContainerWatch:
    """The containers of a provider's snapshots, renewed every ``renew`` seconds.

    Args:
        owners: the snapshots carry every socket's owner (``top``); else the
            listening sockets' owners are read here, when the host has containers.
        netns, pid_netns: the namespace the snapshots read (the exporter's own
            listeners-only dump reads the same one).
        procfs: where proc is mounted.
        renew: seconds a :class:`~portkit.containers.Resolver` is kept.
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(
        self,
        *,
        owners: bool = False,
        netns: str | None = None,
        pid_netns: int | None = None,
        procfs: str = "/proc",
        renew: float = RENEW,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.owners = owners
        self.netns = netns
        self.pid_netns = pid_netns
        self.procfs = procfs
        self.renew = renew
        self.clock = clock
        self.renewals = 0
        self._since = 0.0
        self._resolver: Resolver | None = None
        self._boxes: dict[Any, OwnerContainer] = {}
        self._seen: dict[int, Any] = {}
        self._ports: PortContainers | None = None

    def resolver(self) -> Resolver:
        """This window's resolver: a new one (and nothing remembered) once ``renew``
        seconds have passed."""
        from portkit.containers import Resolver

        now = self.clock()
        if self._resolver is None or now - self._since >= self.renew:
            self._resolver = Resolver(self.procfs)
            self._since = now
            self._boxes, self._seen, self._ports = {}, {}, None
            self.renewals += 1
        return self._resolver

    def annotate(self, snap: Any) -> None:
        """Set ``snap.containers`` and ``snap.port_containers`` of a
        :class:`~portkit.exporter.snapshot.Snapshot` (which imports this module, so
        it is not named in the types here). Never raises: what cannot be learnt
        leaves the sockets without a container."""
        from portkit.errors import PortkitError

        try:
            if self.owners:
                self._owned(snap)
            else:
                self._unowned(snap)
        except (PortkitError, OSError):
            snap.containers, snap.port_containers = {}, {}

    # --- top: the owners are in the snapshot --------------------------------------------

    def _owned(self, snap: Any) -> None:
        from portkit.containers import is_publisher
        from portkit.see import owner_containers

        resolver = self.resolver()
        listeners = [(ls.protocol.value, ls.port, ls.pid) for ls in snap.stats.listeners if ls.pid]
        held: dict[int, list[tuple[int, str]]] = {}
        for proto, port, pid in listeners:
            held.setdefault(pid, []).append((port, proto))
        fresh: dict[int, tuple[str | None, Any]] = {}
        for pid, info in _owner_names(snap).items():
            name = info[0]
            # a publisher again when its ports change (dockerd publishing a new one)
            key = (name, tuple(sorted(held.get(pid, ())))) if is_publisher(name) else name
            if self._seen.get(pid) != key:
                self._seen[pid] = key
                fresh[pid] = info
        if fresh:
            stale = [k for k in self._boxes if (k[0] if isinstance(k, tuple) else k) in fresh]
            for k in stale:
                del self._boxes[k]
            ports = {pid: held[pid] for pid in fresh if pid in held}
            self._boxes.update(owner_containers(fresh, resolver, ports))
        snap.containers = dict(self._boxes)
        snap.port_containers = by_port(listeners, snap.containers)

    # --- the exporter: no owners read ---------------------------------------------------

    def _unowned(self, snap: Any) -> None:
        resolver = self.resolver()
        if self._ports is None:
            self._ports = self._listening(resolver)
        snap.containers = dict(self._boxes)
        snap.port_containers = dict(self._ports)

    def _listening(self, resolver: Resolver) -> PortContainers:
        """The containers behind the listening ports; nothing read beyond the gate
        when the host has no container."""
        from portkit._sockrow import LOCAL_PORT, PID, PROCESS, PROTOCOL, USER
        from portkit.containers import is_publisher
        from portkit.see import Query, owner_containers, scan

        if not resolver.containers():
            return {}
        found = scan(
            Query(listening=True, owners=True),
            netns=self.netns,
            pid_netns=self.pid_netns,
            procfs=self.procfs,
        )
        rows = [r for r in found.rows if r[PID]]
        owners = {r[PID]: (r[PROCESS], r[USER]) for r in rows}
        listeners = [(r[PROTOCOL].value, r[LOCAL_PORT], r[PID]) for r in rows]
        held: dict[int, list[tuple[int, str]]] = {}
        for proto, port, pid in listeners:
            if is_publisher(owners[pid][0]):
                held.setdefault(pid, []).append((port, proto))
        self._boxes = owner_containers(owners, resolver, held)
        return by_port(listeners, self._boxes)


def _owner_names(snap: Any) -> Mapping[int, tuple[str | None, Any]]:
    """``{pid: (process name, user)}`` of every socket owner in the snapshot."""
    found = snap.scan
    names: Mapping[int, tuple[str | None, Any]] | None = (
        found.owner_names if found is not None else None
    )
    if names is not None:
        return names
    from portkit._sockrow import PID, PROCESS, USER

    return {r[PID]: (r[PROCESS], r[USER]) for r in snap.rows if r[PID]}

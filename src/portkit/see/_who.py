"""Who holds a port: its sockets, the processes behind them, and the port's name.

``portkit who 8080`` and :func:`portkit.see.who`. The sockets come from one scan with
owners; the processes' command lines and start times from :func:`process_info`.
"""

from __future__ import annotations

from portkit._sockrow import PIDS, PROTOCOL
from portkit.model import Protocol, _Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portkit.see._containers import OwnerContainer

__all__ = ["Holder", "PortOwners", "who"]


class Holder(_Record):
    """A process holding a socket of the port; None where /proc did not say.

    ``started`` is the process's start time (seconds since the epoch).
    """

    __slots__ = ("pid", "process", "cmdline", "user", "uid", "started", "container")
    pid: int
    process: str | None
    cmdline: tuple[str, ...]
    user: str | None
    uid: int | None
    started: float | None
    container: OwnerContainer | None

    def __init__(
        self,
        pid: int,
        process: str | None,
        cmdline: tuple[str, ...],
        user: str | None,
        uid: int | None,
        started: float | None,
        container: OwnerContainer | None = None,
    ) -> None:
        self._init(
            pid=pid,
            process=process,
            cmdline=cmdline,
            user=user,
            uid=uid,
            started=started,
            container=container,
        )

    @property
    def publisher(self) -> bool:
        """A proxy holding the port for a container: never to be signalled for it."""
        return self.container is not None and self.container.published_by is not None


class PortOwners(_Record):
    """The answer of :func:`who`.

    ``rows`` are the port's sockets (``SocketRecord.row`` tuples, owners attached);
    ``holders`` the processes holding them, by pid; ``owners_hidden`` the processes
    that could not be inspected (so a socket may show no holder).
    """

    __slots__ = ("port", "protocol", "service", "holders", "rows", "owners_hidden")
    port: int
    protocol: Protocol | None
    service: str | None
    holders: tuple[Holder, ...]
    rows: tuple[tuple[Any, ...], ...]
    owners_hidden: int

    def __init__(
        self,
        port: int,
        protocol: Protocol | None,
        service: str | None,
        holders: tuple[Holder, ...],
        rows: tuple[tuple[Any, ...], ...],
        owners_hidden: int,
    ) -> None:
        self._init(
            port=port,
            protocol=protocol,
            service=service,
            holders=holders,
            rows=rows,
            owners_hidden=owners_hidden,
        )

    @property
    def container(self) -> OwnerContainer | None:
        """The container behind the port (a publisher's, else the first holder's)."""
        found = [h.container for h in self.holders if h.container is not None]
        published = [c for c in found if c.published_by]
        chosen = published or found
        return chosen[0] if chosen else None

    @property
    def protocols(self) -> tuple[str, ...]:
        """The protocols the port is in use with (the one asked for when unused)."""
        used = sorted({r[PROTOCOL].value for r in self.rows})
        return tuple(used) or ((self.protocol or Protocol.TCP).value,)


def who(
    port: int,
    protocol: Protocol | str | None = None,
    *,
    netns: str | None = None,
    pid_netns: int | None = None,
    procfs: str = "/proc",
) -> PortOwners:
    """Which processes hold ``port`` (TCP and UDP unless ``protocol`` says), with the
    port's service name and every socket on it (local port only: the server side and
    outgoing connections from that port).

    Raises:
        ParseError: an unknown namespace. PermissionDenied: it could not be entered.
    """
    from portkit.registry import service_name
    from portkit.see._backend import scan
    from portkit.see._owners import process_info
    from portkit.see._query import Query

    proto = Protocol.parse(protocol) if isinstance(protocol, str) else protocol
    query = Query(
        tcp=proto in (None, Protocol.TCP),
        udp=proto in (None, Protocol.UDP),
        all=True,
        sports=port,
        owners=True,
    )
    found = scan(query, netns=netns, pid_netns=pid_netns, procfs=procfs)
    rows = tuple(found.rows)
    pids = sorted({p for r in rows for p in r[PIDS]})
    info = process_info(pids, procfs, full=True)
    boxes = _containers_of(info, port, rows)
    holders = tuple(
        Holder(pi.pid, pi.name, pi.cmdline, pi.user, pi.uid, pi.started, boxes.get(pi.pid))
        for pi in (info[p] for p in pids if p in info)
    )
    result = PortOwners(port, proto, None, holders, rows, found.owners_hidden)
    names = (service_name(port, p) for p in result.protocols)
    return PortOwners(
        port, proto, next((n for n in names if n), None), holders, rows, found.owners_hidden
    )


def _containers_of(
    info: dict[int, Any], port: int, rows: tuple[tuple[Any, ...], ...]
) -> dict[int, OwnerContainer]:
    """The holders' containers (their own, or the one a publisher holds the port for)."""
    from portkit.errors import PortkitError
    from portkit.see._containers import owner_containers

    ports: dict[int, list[tuple[int, str]]] = {}
    for r in rows:
        for pid in r[PIDS]:
            ports.setdefault(pid, []).append((port, r[PROTOCOL].value))
    try:
        found = owner_containers({pid: (pi.name, None) for pid, pi in info.items()}, ports=ports)
    except (PortkitError, OSError):  # the container layer is a bonus: never a failure here
        return {}
    out: dict[int, OwnerContainer] = {}
    for key, box in found.items():  # one port: a publisher's entries are that port's
        out.setdefault(key if isinstance(key, int) else key[0], box)
    return out

"""The overview's decisions: listening ports grouped, named, scoped and judged (pure).

``portkit`` alone shows what listens here and warns about what deserves attention.
What a port is called and whether it should listen on every interface are the
registry's answers (:func:`portkit.registry.service_names`,
:func:`portkit.registry.port_role`), the scope of its addresses the model's
(:func:`portkit.model.widest_scope`), so the overview and ``plan lint`` flag the same
ports for the same bind scope. ``render`` only formats the result.
"""

from __future__ import annotations

from portkit.model import BindScope, Protocol, _Record, widest_scope
from portkit.registry import port_role, service_names

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from portkit.registry import Role
    from portkit.see._containers import ContainerPorts, NatPort, OwnerContainer
    from portkit.see._stats import ListenerStats, SocketStats

__all__ = ["ListeningPort", "Overview", "overview"]


class ListeningPort(_Record):
    """Every listener of one port and protocol, with its name, scope and role.

    ``scope`` is the widest bind scope of ``addresses``; ``exposed`` is True when the
    port listens on every interface and its registry role says it should not.
    """

    __slots__ = (
        "protocol",
        "port",
        "service",
        "addresses",
        "scope",
        "processes",
        "connections",
        "role",
    )
    protocol: Protocol
    port: int
    service: str | None
    addresses: tuple[str, ...]
    scope: BindScope
    processes: tuple[str, ...]
    connections: int
    role: Role | None

    def __init__(
        self,
        protocol: Protocol,
        port: int,
        service: str | None,
        addresses: tuple[str, ...],
        processes: tuple[str, ...],
        connections: int,
        role: Role | None,
    ) -> None:
        self._init(
            protocol=protocol,
            port=port,
            service=service,
            addresses=addresses,
            scope=widest_scope(addresses),
            processes=processes,
            connections=connections,
            role=role,
        )

    @property
    def exposed(self) -> bool:
        return self.scope is BindScope.WILDCARD and self.role is not None and self.role.warn

    @property
    def warning(self) -> str | None:
        """The overview's warning for this port, or None."""
        if not self.exposed or self.role is None:
            return None
        name = self.service or f"port {self.port}"
        return (
            f"{name} ({self.port}/{self.protocol.value}, {self.role.kind}) listens on all "
            f"interfaces: {self.role.reason}; bind it to 127.0.0.1 or a private address, "
            "or firewall it"
        )


class Overview(_Record):
    """What ``portkit`` alone shows: the listening ports, the stats, the warnings."""

    __slots__ = ("listening", "stats", "containers", "warnings")
    listening: tuple[ListeningPort, ...]
    stats: SocketStats
    containers: tuple[ContainerPorts, ...]
    warnings: tuple[str, ...]

    def __init__(
        self,
        listening: tuple[ListeningPort, ...],
        stats: SocketStats,
        containers: tuple[ContainerPorts, ...] = (),
    ) -> None:
        exposed = tuple(w for w in (lp.warning for lp in listening) if w)
        dangling = tuple(w for c in containers for w in c.warnings)
        self._init(
            listening=listening,
            stats=stats,
            containers=containers,
            warnings=exposed + dangling + tuple(stats.warnings),
        )


def overview(
    stats: SocketStats,
    containers: tuple[ContainerPorts, ...] = (),
    owners: Mapping[int, OwnerContainer] | None = None,
    nat: tuple[NatPort, ...] = (),
) -> Overview:
    """Group ``stats.listeners`` by port and protocol, name and judge each group;
    ``containers`` (from :func:`portkit.see.container_ports`) join as their own section;
    ``owners`` (``{pid: OwnerContainer}``) name the container behind a process: a
    published port is judged by the container's own port and image (18083 published for
    an nginx container's 8080 is a web server, whatever 18083 usually is); ``nat`` are
    the ports published by NAT rules with no socket, listed as listening ports too."""
    owners = owners or {}
    groups: dict[tuple[Protocol, int], list[ListenerStats]] = {}
    for ls in stats.listeners:
        groups.setdefault((ls.protocol, ls.port), []).append(ls)
    ports: dict[Protocol, set[int]] = {}
    for proto, port in groups:
        ports.setdefault(proto, set()).add(port)
    for n in nat:
        ports.setdefault(Protocol(n.protocol), set()).add(n.port)
    names = {proto: service_names(found, proto.value) for proto, found in ports.items()}
    listening = []
    for (proto, port), items in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        behind = next((owners[ls.pid] for ls in items if ls.pid and ls.pid in owners), None)
        role = port_role(port, proto.value)
        if behind is not None and behind.container is not None:
            target = behind.target.rpartition(":")[2] if behind.target else ""
            inner = int(target) if target.isdigit() else port
            role = port_role(inner, proto.value, behind.container.image) or role
        listening.append(
            ListeningPort(
                proto,
                port,
                names[proto].get(port),
                tuple(sorted({ls.ip for ls in items})),
                tuple(sorted({_who(ls.process, ls.pid, owners) for ls in items if ls.pid})),
                sum(ls.connections for ls in items),
                role,
            )
        )
    for n in nat:
        proto = Protocol(n.protocol)
        tail = n.target.rpartition(":")[2]
        image = n.container.image if n.container else None
        role = port_role(int(tail) if tail.isdigit() else n.port, n.protocol, image)
        who = f"NAT -> {n.target}" + (f" ({n.container.label()})" if n.container else "")
        listening.append(
            ListeningPort(
                proto,
                n.port,
                names[proto].get(n.port),
                (n.address,),
                (who,),
                0,
                role or port_role(n.port, n.protocol),
            )
        )
    listening.sort(key=lambda lp: (lp.port, lp.protocol))
    return Overview(tuple(listening), stats, containers)


def _who(process: str | None, pid: int, owners: Mapping[int, OwnerContainer]) -> str:
    """The PROCESS text of the overview: ``nginx/812``, ``httpd/77 in web``, or for a
    proxy the container it publishes for (``published for web``)."""
    found = owners.get(pid)
    if found is None or found.container is None:
        return f"{process}/{pid}"
    if found.published_by:
        return f"published for {found.container.label()}"
    return f"{process}/{pid} in {found.container.label()}"


def _addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

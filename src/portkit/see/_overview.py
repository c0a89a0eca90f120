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
    from portkit.registry import Role
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

    __slots__ = ("listening", "stats", "warnings")
    listening: tuple[ListeningPort, ...]
    stats: SocketStats
    warnings: tuple[str, ...]

    def __init__(self, listening: tuple[ListeningPort, ...], stats: SocketStats) -> None:
        exposed = tuple(w for w in (lp.warning for lp in listening) if w)
        self._init(listening=listening, stats=stats, warnings=exposed + tuple(stats.warnings))


def overview(stats: SocketStats) -> Overview:
    """Group ``stats.listeners`` by port and protocol, name and judge each group."""
    groups: dict[tuple[Protocol, int], list[ListenerStats]] = {}
    for ls in stats.listeners:
        groups.setdefault((ls.protocol, ls.port), []).append(ls)
    ports: dict[Protocol, set[int]] = {}
    for proto, port in groups:
        ports.setdefault(proto, set()).add(port)
    names = {proto: service_names(found, proto.value) for proto, found in ports.items()}
    listening = []
    for (proto, port), items in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        listening.append(
            ListeningPort(
                proto,
                port,
                names[proto].get(port),
                tuple(sorted({ls.ip for ls in items})),
                tuple(sorted({f"{ls.process}/{ls.pid}" for ls in items if ls.pid})),
                sum(ls.connections for ls in items),
                port_role(port, proto.value),
            )
        )
    return Overview(tuple(listening), stats)

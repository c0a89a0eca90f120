"""What ``why`` is asked about: ``HOST:PORT[/PROTO]`` in every notation portkit reads
(the port may be a service name), or a compose/Kubernetes ``service:port`` of a plan
given with ``--plan`` (pure, over the plan's mappings).

    >>> from portkit.model import PortRange
    >>> from portkit.plan import Exposure, PortMapping
    >>> web = PortMapping("compose", "compose.yaml", 3, "web", "web", "ports", "tcp",
    ...     Exposure.PUBLIC, host_port=PortRange(8080, 8080), host_bound=True,
    ...     container_port=PortRange(80, 80))
    >>> str(plan_target([web], "web:80"))
    '127.0.0.1:8080/tcp'
"""

from __future__ import annotations

from portkit.errors import ParseError
from portkit.model import BindScope, Endpoint, Protocol, bind_scope

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from portkit.plan import PortMapping

__all__ = ["parse_target", "plan_target"]


def plan_target(mappings: Sequence[PortMapping], text: str) -> Endpoint | None:
    """The host address and port at which a plan publishes ``service:port[/proto]``
    (the container's port), or None when no service of the plan has that name.

    A wildcard or loopback host address is asked on 127.0.0.1 (this host); a specific
    one as it is.

    Raises:
        ParseError: the service exists but does not publish that port on the host.
    """
    service, sep, rest = text.rpartition(":")
    if not sep or not service:
        return None
    port_text, _, proto_text = rest.partition("/")
    ours = [m for m in mappings if m.service == service]
    if not ours or not port_text.isdigit():
        return None
    port = int(port_text)
    proto = Protocol.parse(proto_text) if proto_text else Protocol.TCP
    for m in ours:
        inside = m.container_port
        if m.protocol != proto.value or inside is None or not inside.start <= port <= inside.end:
            continue
        if m.host_port is None or not m.host_bound:
            continue
        host_port = m.host_port.start + (port - inside.start)
        ip = m.host_ip or "0.0.0.0"
        scope = bind_scope(ip)
        if scope in (BindScope.WILDCARD, BindScope.LOOPBACK):
            ip = "::1" if ":" in ip and scope is BindScope.LOOPBACK else "127.0.0.1"
        return Endpoint(ip, host_port, proto)
    raise ParseError(
        f"{text}: service {service!r} of the plan does not publish {port}/{proto.value} "
        "on the host",
        text=text,
        accepted="a service's published container port (ask from inside with --from)",
    )


def parse_target(text: str, udp: bool, mappings: Sequence[PortMapping] = ()) -> Endpoint:
    """One target: a plan's ``service:port`` first (when a plan is given), else any
    ``HOST:PORT[/PROTO]`` notation; ``udp`` for targets that do not say.

    Raises:
        ParseError: neither.
    """
    found = plan_target(mappings, text) if mappings else None
    if found is None:
        from portkit.registry import parse_endpoint

        found = parse_endpoint(text)
    if udp and "/" not in text:
        found = Endpoint(found.host, found.port, Protocol.UDP)
    return found

"""Owners that are containers: each owning process's container, and the container a
publisher process (``docker-proxy``, ``dockerd``, ``rootlessport``, ...) holds a port for.

The see capability asks :mod:`portkit.containers` through its public functions, once
per run (one :class:`~portkit.containers.Resolver`): a process's cgroup names its
container, the runtime's API (when it answers) its name, image and compose service.
"""

from __future__ import annotations

from portkit.model import _Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

    from portkit.containers import Container, Published, Resolver
    from portkit.netfilter import NatMapping

__all__ = [
    "ContainerPorts",
    "NatPort",
    "OwnerContainer",
    "box_of",
    "container_ports",
    "nat_ports",
    "owner_containers",
    "per_port",
]


class OwnerContainer(_Record):
    """What a socket's owner says about containers.

    ``container`` is the container the socket belongs to: the owner's own, or the one a
    publisher holds it for; ``published_by`` is ``proxy`` for a publisher's socket (None
    for a container's own socket); ``target`` is where a proxy sends the traffic
    (``172.17.0.2:80``) when its command line says so.
    """

    __slots__ = ("container", "published_by", "target")
    container: Container | None
    published_by: str | None
    target: str | None

    def __init__(
        self, container: Container | None, published_by: str | None, target: str | None
    ) -> None:
        self._init(container=container, published_by=published_by, target=target)

    def json(self) -> dict[str, Any]:
        return {
            "container": self.container.as_json() if self.container else None,
            "published_by": self.published_by,
            "published_to": self.target if self.published_by else None,
        }

    def text(self) -> str:
        """The CONTAINER column: ``web``, ``web (compose shop/web)``, or for a
        publisher's socket ``published: web -> 172.17.0.2:80``."""
        if self.container is None:
            return "-"
        label = self.container.label()
        if self.published_by:
            return f"published: {label}" + (f" -> {self.target}" if self.target else "")
        return label


def owner_containers(
    owners: Mapping[int, tuple[str | None, Any]],
    resolver: Resolver | None = None,
    ports: Mapping[int, Iterable[tuple[int, str]]] | None = None,
) -> dict[Any, OwnerContainer]:
    """``{pid: OwnerContainer}`` for the owners that are containers or publish for one.

    ``owners`` maps pids to ``(process name, ...)``; ``ports`` (optional) the local
    ``(port, protocol)`` each pid holds, for publishers other than docker-proxy (whose
    command line names its one port's container). A publisher whose ports go to
    different containers (``dockerd`` without the userland proxy) gets one entry per
    ``(pid, port, protocol)`` instead (see :func:`box_of`). Processes of the host map
    to nothing.
    """
    from portkit.containers import is_publisher

    if resolver is None and not any(
        is_publisher(info[0]) or _in_container(pid) for pid, info in owners.items()
    ):
        return {}  # a host with no container: the parsers and the API stay unloaded
    from portkit.containers import Resolver as _Resolver

    resolver = resolver or _Resolver()
    out: dict[Any, OwnerContainer] = {}
    for pid, info in owners.items():
        name = info[0]
        if not is_publisher(name):
            own = resolver.of_pid(pid)
            if own is not None:
                out[pid] = OwnerContainer(own, None, None)
            continue
        held = list((ports or {}).get(pid, ())) or [(0, "tcp")]
        found = {}
        for port, proto in held:
            pub = resolver.publication(pid, name, port, proto)
            if pub is not None and pub.container is not None:
                found[(pid, port, proto)] = OwnerContainer(pub.container, pub.kind, pub.target)
        answers = list(found.values())
        if answers and all(a == answers[0] for a in answers):
            out[pid] = answers[0]
        else:
            out.update(found)
    return out


def _in_container(pid: int) -> bool:
    """Whether process ``pid``'s cgroup can name a container (the cheap test)."""
    from portkit.containers import may_be_container

    try:
        with open(f"/proc/{pid}/cgroup", "rb") as f:
            text = f.read(8192).decode("utf-8", "replace")
    except OSError:
        return False
    return may_be_container(text)


def box_of(boxes: Mapping[Any, OwnerContainer], pid: int, port: int, protocol: str) -> Any:
    """The :class:`OwnerContainer` of a socket (``pid`` holding ``port/protocol``) in
    an answer of :func:`owner_containers`, or None."""
    return boxes.get(pid) or boxes.get((pid, port, protocol))


def per_port(boxes: Mapping[Any, OwnerContainer] | None) -> bool:
    """Whether ``boxes`` has per-port entries (renderers keyed by pid cannot show them)."""
    return bool(boxes) and any(isinstance(k, tuple) for k in boxes)  # type: ignore[union-attr]


#: Docker's resolver inside every container of a user-defined network: its sockets
#: (a random TCP and UDP port, reached through the container's own NAT rules) are the
#: engine's, not the container's.
EMBEDDED_DNS = "127.0.0.11"


def container_ports(resolver: Resolver | None = None) -> tuple[ContainerPorts, ...]:
    """Every running container the runtimes report, with what listens inside it (read
    in its network namespace; Docker's embedded DNS left out) and what the host
    publishes for it."""
    from portkit._sockrow import LOCAL_IP, LOCAL_PORT, PROTOCOL
    from portkit.containers import Resolver as _Resolver
    from portkit.errors import PortkitError
    from portkit.see._backend import scan
    from portkit.see._query import Query

    resolver = resolver or _Resolver()
    out = []
    for c in sorted(resolver.all(), key=lambda c: c.name):
        listening: tuple[tuple[str, int, str], ...] = ()
        if c.pid:
            try:
                rows = scan(Query(listening=True), pid_netns=c.pid).rows
            except (PortkitError, OSError):  # gone meanwhile, or not to be entered
                rows = []
            listening = tuple(
                sorted(
                    {
                        (r[PROTOCOL].value, r[LOCAL_PORT], r[LOCAL_IP])
                        for r in rows
                        if r[LOCAL_IP] != EMBEDDED_DNS
                    }
                )
            )
        out.append(ContainerPorts(c, listening, c.published))
    return tuple(out)


class NatPort(_Record):
    """A port published by a NAT rule with no socket behind it on this host: what the
    rule takes (``protocol``, ``address``, ``port``), where it sends it, the container
    there (when one has that address), and the rule."""

    __slots__ = ("protocol", "address", "port", "port_end", "target", "container", "rule")
    protocol: str
    address: str
    port: int
    port_end: int
    target: str
    container: Container | None
    rule: str

    def __init__(
        self,
        protocol: str,
        address: str,
        port: int,
        port_end: int,
        target: str,
        container: Container | None,
        rule: str,
    ) -> None:
        self._init(
            protocol=protocol,
            address=address,
            port=port,
            port_end=port_end,
            target=target,
            container=container,
            rule=rule,
        )

    def json(self) -> dict[str, Any]:
        return {
            "proto": self.protocol,
            "local": {"ip": self.address, "port": self.port},
            "port_end": self.port_end,
            "to": self.target,
            "container": self.container.as_json() if self.container else None,
            "published_by": "nat",
            "rule": self.rule,
        }

    def text(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        ports = str(self.port) if self.port == self.port_end else f"{self.port}-{self.port_end}"
        who = f"  container {self.container.label()}" if self.container else ""
        return f"{self.protocol:<5}  {host}:{ports} -> {self.target}{who}  ({self.rule})"


def nat_ports(
    listening: Iterable[tuple[str, int]],
    netns: str | None = None,
    resolver: Resolver | None = None,
    mappings: list[NatMapping] | None = None,
) -> tuple[NatPort, ...]:
    """The ports DNAT rules publish on this namespace's own addresses (not service
    addresses such as Kubernetes ClusterIPs) that no socket listens on.

    ``listening`` are the ``(protocol, port)`` pairs that have a socket. Reading the
    rules may need CAP_NET_ADMIN (PermissionDenied). ``mappings``: the namespace's NAT
    mappings when already read (``portkit.netfilter.nat_mappings``).
    """
    import ipaddress

    from portkit.containers import Resolver as _Resolver
    from portkit.netfilter import nat_mappings
    from portkit.see._addrs import addresses

    held = set(listening)
    if mappings is None:
        mappings = nat_mappings(netns)
    if not mappings:
        return ()
    local = {ipaddress.ip_address(a) for _, a, _ in addresses(netns)}
    resolver = resolver or _Resolver()
    out = []
    for m in mappings:
        if m.daddr is not None:
            net = m.daddr.split("/", 1)[0]
            try:
                ip = ipaddress.ip_address(net)
            except ValueError:
                continue
            if ip not in local and not ip.is_loopback:
                continue  # a service address, not one of this host's ports
        if all((m.protocol, p) in held for p in range(m.dport, m.dport_end + 1)):
            continue
        address = m.daddr or ("::" if m.family == 6 else "0.0.0.0")
        out.append(
            NatPort(
                m.protocol,
                address,
                m.dport,
                m.dport_end,
                m.destination(),
                resolver.by_address(m.to_addr),
                m.where,
            )
        )
    return tuple(sorted(out, key=lambda n: (n.port, n.protocol)))


class ContainerPorts(_Record):
    """One container in the overview: what listens inside it, what the host publishes
    for it, and what of the two does not meet (pure).

    ``listening`` are ``(protocol, port, address)`` inside the container's namespace;
    ``published`` the runtime's ``Published`` mappings; ``unpublished`` the ports
    listening on the container's interfaces that nobody publishes (normal: a database
    only its neighbours reach); ``dangling`` the published ports nothing can answer
    behind: no listener, or one on the container's loopback only (the classic "the
    app binds 127.0.0.1 inside the container": the published port resets every
    connection).
    """

    __slots__ = ("container", "listening", "published", "unpublished", "dangling")
    container: Container
    listening: tuple[tuple[str, int, str], ...]
    published: tuple[Published, ...]
    unpublished: tuple[tuple[str, int], ...]
    dangling: tuple[Published, ...]

    def __init__(
        self,
        container: Container,
        listening: tuple[tuple[str, int, str], ...],
        published: tuple[Published, ...],
    ) -> None:
        from portkit.model import BindScope, bind_scope

        reachable = {
            (proto, port)
            for proto, port, addr in listening
            if bind_scope(addr) is not BindScope.LOOPBACK
        }
        targets = {(p.protocol, p.container_port) for p in published}
        self._init(
            container=container,
            listening=listening,
            published=published,
            unpublished=tuple(sorted(reachable - targets)),
            dangling=tuple(p for p in published if (p.protocol, p.container_port) not in reachable),
        )

    @property
    def warnings(self) -> tuple[str, ...]:
        """One line per dangling publication, saying what is behind it."""
        loopback = {(proto, port) for proto, port, _ in self.listening}
        return tuple(
            f"container {self.container.label()} publishes {_addr(p.host_ip, p.host_port)}"
            f"/{p.protocol} -> {p.container_port}, but "
            + (
                f"{p.container_port} listens on the container's loopback only (bind it to "
                "0.0.0.0 inside)"
                if (p.protocol, p.container_port) in loopback
                else f"nothing listens on {p.container_port} inside it"
            )
            for p in self.dangling
        )


def _addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

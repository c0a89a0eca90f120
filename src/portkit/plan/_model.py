"""One plan model for compose files, Kubernetes manifests and portkit plans.

Every reader turns its file into a :class:`PlanFile`: the :class:`PortMapping` records
(one per ``ports``/``expose`` entry, Service port, container port, Ingress backend or
plan port), the raw :class:`Issue` records it met while reading (invalid values,
worded as Docker and Kubernetes word them) and, for cross-object lint rules, the
Kubernetes objects and the native plan's services and connections. Records only;
no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from portkit.model import PortRange

__all__ = [
    "ComposeDependency",
    "ComposeService",
    "Connection",
    "DockerfileExpose",
    "Exposure",
    "Issue",
    "KubeContainerPort",
    "KubeIngressBackend",
    "KubeNetworkPolicy",
    "KubeObjects",
    "KubePolicyPort",
    "KubeProbe",
    "KubeRouteBackend",
    "KubeService",
    "KubeServicePort",
    "KubeWorkload",
    "NativePlan",
    "PlanFile",
    "PlanPort",
    "PlanService",
    "PortMapping",
    "resolve_target",
    "selected_workloads",
]


class Exposure(StrEnum):
    """Who can reach a port."""

    #: bound on every interface of the host or node (0.0.0.0, ::, NodePort, LoadBalancer)
    PUBLIC = "public"
    #: bound on one specific non-loopback address of the host
    ADDRESS = "address"
    #: bound on the loopback interface only: this host alone
    LOOPBACK = "loopback"
    #: not published on the host: other containers, pods or services only
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class Issue:
    """A problem a reader met in a file, before the lint rules look across objects."""

    rule: str
    file: str
    line: int | None
    object: str
    message: str


@dataclass(frozen=True, slots=True)
class PortMapping:
    """One port a file declares: where it is bound on the host (if anywhere) and where it goes.

    ``source`` is ``compose``, ``kubernetes`` or ``plan``; ``origin`` says which part
    of the file: ``ports``/``expose`` (compose), ``service``/``container``/``ingress``
    (Kubernetes), ``port`` (plan). ``host_port`` is None when the port is not bound on
    the host, or when the engine picks it (``host_bound`` tells the two apart).
    """

    source: str
    file: str
    line: int | None
    object: str
    service: str
    origin: str
    protocol: str
    exposure: Exposure
    #: the line of the field that binds the host side (hostPort, nodePort), when not ``line``
    host_line: int | None = None
    host_ip: str | None = None
    host_port: PortRange | None = None
    host_bound: bool = False
    pool: bool = False
    container_port: PortRange | None = None
    # compose
    #: the compose project (``-p``, COMPOSE_PROJECT_NAME, ``name:``, the directory)
    project: str | None = None
    mode: str | None = None
    app_protocol: str | None = None
    base60: bool = False
    network_host: bool = False
    image: str | None = None
    # kubernetes
    kind: str | None = None
    namespace: str | None = None
    type: str | None = None
    port: int | None = None
    target_port: int | str | None = None
    node_port: int | None = None
    container: str | None = None
    name: str | None = None
    backend: str | None = None
    external_ips: tuple[str, ...] = ()
    selected: tuple[str, ...] = ()
    # plan: the host as written, and its address (``scope``, used to probe and to compare)
    host_name: str | None = None
    scope: str | None = None
    forwards_to: str | None = None
    description: str | None = None

    @property
    def host_ports(self) -> Iterator[int]:
        """Every host port this mapping binds (one per port of a range; none for a pool)."""
        if self.host_port is None or self.pool:
            return iter(())
        return iter(self.host_port)


# --- Kubernetes objects, kept for cross-object rules -----------------------------------


@dataclass(frozen=True, slots=True)
class KubeServicePort:
    index: int
    line: int | None
    name: str | None
    port: int | None
    target_port: int | str | None
    node_port: int | None
    protocol: str
    #: lines of the port, targetPort and nodePort fields (the item's line when absent)
    port_line: int | None = None
    target_line: int | None = None
    node_port_line: int | None = None


@dataclass(frozen=True, slots=True)
class KubeService:
    file: str
    line: int | None
    name: str
    namespace: str | None
    type: str
    headless: bool
    selector: dict[str, str]
    ports: tuple[KubeServicePort, ...]

    @property
    def object(self) -> str:
        return f"Service/{self.name}"


@dataclass(frozen=True, slots=True)
class KubeContainerPort:
    container: str
    line: int | None
    name: str | None
    container_port: int | None
    protocol: str
    host_port: int | None
    host_ip: str | None
    host_port_line: int | None = None


@dataclass(frozen=True, slots=True)
class KubeProbe:
    """A liveness, readiness or startup probe's port (httpGet, tcpSocket or grpc)."""

    container: str
    kind: str  # livenessProbe, readinessProbe, startupProbe
    handler: str  # httpGet, tcpSocket, grpc
    port: int | str
    line: int | None


@dataclass(frozen=True, slots=True)
class KubeWorkload:
    file: str
    line: int | None
    kind: str
    name: str
    namespace: str | None
    labels: dict[str, str]
    host_network: bool
    ports: tuple[KubeContainerPort, ...]
    host_network_line: int | None = None
    probes: tuple[KubeProbe, ...] = ()
    #: every container's name (those without ports too)
    containers: tuple[str, ...] = ()

    @property
    def object(self) -> str:
        return f"{self.kind}/{self.name}"


@dataclass(frozen=True, slots=True)
class KubePolicyPort:
    port: int | str | None
    end_port: int | None
    protocol: str
    line: int | None


@dataclass(frozen=True, slots=True)
class KubeNetworkPolicy:
    """A NetworkPolicy's pod selector (matchLabels) and the ports of its ingress rules."""

    file: str
    line: int | None
    name: str
    namespace: str | None
    selector: dict[str, str]
    ports: tuple[KubePolicyPort, ...]
    #: matchExpressions too: which pods it selects is not known from labels alone
    expressions: bool = False

    @property
    def object(self) -> str:
        return f"NetworkPolicy/{self.name}"


@dataclass(frozen=True, slots=True)
class KubeRouteBackend:
    """A Gateway API route's backendRef to a Service port."""

    file: str
    line: int | None
    route: str  # HTTPRoute/name
    namespace: str | None
    service: str
    port: int | None


@dataclass(frozen=True, slots=True)
class KubeIngressBackend:
    file: str
    line: int | None
    ingress: str
    namespace: str | None
    service: str
    port: int | str | None


@dataclass
class KubeObjects:
    services: list[KubeService] = field(default_factory=list)
    workloads: list[KubeWorkload] = field(default_factory=list)
    backends: list[KubeIngressBackend] = field(default_factory=list)
    policies: list[KubeNetworkPolicy] = field(default_factory=list)
    routes: list[KubeRouteBackend] = field(default_factory=list)


# --- the native portkit plan ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlanPort:
    line: int | None
    ports: PortRange
    protocol: str
    exposure: Exposure
    address: str | None
    name: str | None
    forwards_to: str | None
    forwards_line: int | None = None


@dataclass(frozen=True, slots=True)
class PlanService:
    file: str
    line: int | None
    name: str
    host: str | None
    ports: tuple[PlanPort, ...]


@dataclass(frozen=True, slots=True)
class Connection:
    file: str
    line: int | None
    source: str
    target: str
    port: int | None
    protocol: str
    text: str


@dataclass
class NativePlan:
    name: str | None = None
    #: everything that may listen on the host: other listeners are unexpected
    baseline: bool = False
    hosts: dict[str, str] = field(default_factory=dict)
    services: list[PlanService] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)


# --- compose services, kept for cross-service rules --------------------------------------


@dataclass(frozen=True, slots=True)
class ComposeDependency:
    service: str
    condition: str  # service_started, service_healthy, service_completed_successfully
    line: int | None


@dataclass(frozen=True, slots=True)
class DockerfileExpose:
    """What a service's Dockerfile EXPOSEs (read through compose ``build:``)."""

    path: str
    ports: tuple[tuple[int, int, str, int], ...]  # (start, end, protocol, line)
    invalid: tuple[tuple[str, int], ...] = ()  # (text, line): hadolint DL3011


@dataclass(frozen=True, slots=True)
class ComposeService:
    file: str
    line: int | None
    name: str
    depends_on: tuple[ComposeDependency, ...] = ()
    depends_file: str | None = None
    healthcheck: bool = False
    dockerfile: DockerfileExpose | None = None

    @property
    def object(self) -> str:
        return f"service {self.name}"


@dataclass
class PlanFile:
    """Everything read from one file."""

    path: str
    format: str
    mappings: list[PortMapping] = field(default_factory=list)
    #: a compose file's project name
    project: str | None = None
    #: compose services left out: none of their profiles is enabled (name -> profiles)
    inactive: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: a compose project's services (dependencies, health checks, Dockerfiles)
    compose: list[ComposeService] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    kube: KubeObjects | None = None
    native: NativePlan | None = None


# --- how Services reach pods (pure functions of the records above) ---------------------


def _same_namespace(a: str | None, b: str | None) -> bool:
    # A manifest without a namespace gets one at apply time (kubectl -n, kustomize),
    # so a missing namespace is taken to match any.
    return a is None or b is None or a == b


def selected_workloads(
    service: KubeService, workloads: Sequence[KubeWorkload]
) -> list[KubeWorkload]:
    """The workloads whose pod labels carry every key=value of the Service selector."""
    if not service.selector:
        return []
    return [
        w
        for w in workloads
        if _same_namespace(service.namespace, w.namespace)
        and all(w.labels.get(k) == v for k, v in service.selector.items())
    ]


def resolve_target(
    target: int | str | None, protocol: str, pods: Sequence[KubeWorkload]
) -> tuple[int | None, KubeContainerPort | None]:
    """The container port a Service targetPort reaches in ``pods``: (number, port record)."""
    for w in pods:
        for cp in w.ports:
            if cp.protocol != protocol:
                continue
            if (isinstance(target, str) and cp.name == target) or (
                isinstance(target, int) and cp.container_port == target
            ):
                return cp.container_port, cp
    return (target if isinstance(target, int) else None), None

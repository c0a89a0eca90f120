"""Lint rules, kept as one table: rule id, severity, check function, title and fix hint.

A check function takes the :class:`~portkit.plan._plan.Plan` and the options and
yields hits ``(file, line, object, message)``; :func:`lint` turns them into
:class:`Finding` records carrying the rule's severity and hint. Rules for problems a
reader already met while reading (invalid values, in Docker's and Kubernetes' own
words) just pass those issues on. Pure: no I/O (the port registry is package data).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from portkit.model import NODEPORT_RANGE, BindScope, PortRange, bind_scope
from portkit.plan._model import Exposure, PortMapping
from portkit.plan._native import EXTERNAL, parse_target
from portkit.registry import port_role

if TYPE_CHECKING:
    from portkit.plan._model import KubeWorkload
    from portkit.plan._plan import Plan

__all__ = [
    "LINUX_EPHEMERAL",
    "RULES",
    "Finding",
    "LintOptions",
    "Rule",
    "Severity",
    "lint",
]

#: Linux's default net.ipv4.ip_local_port_range: where the host it deploys to most
#: likely takes outgoing ports from (the machine running lint is not that host).
LINUX_EPHEMERAL = PortRange(32768, 60999)


class Severity(IntEnum):
    INFO = 1
    WARNING = 2
    ERROR = 3

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.strip().upper()]


Hit = tuple[str, int | None, str, str]


@dataclass(frozen=True)
class LintOptions:
    node_port_range: PortRange = NODEPORT_RANGE
    ephemeral: PortRange = LINUX_EPHEMERAL
    ignore: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    check: Callable[[Plan, LintOptions], Iterable[Hit]]
    title: str
    hint: str
    #: False: run only when asked (``--enable``), as kube-linter's non-default checks
    default: bool = True


@dataclass(frozen=True, order=True)
class Finding:
    """One problem: where, which rule, how bad, what, and how to fix it."""

    file: str
    line: int | None
    order: int = field(repr=False)
    rule: str
    severity: Severity
    object: str
    message: str
    hint: str

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": str(self.severity),
            "file": self.file,
            "line": self.line,
            "object": self.object,
            "message": self.message,
            "hint": self.hint,
        }


# --- what a port is ----------------------------------------------------------------
# The registry answers (portkit.registry.port_role): the ``role`` column of the curated
# port tables, and the container image table for ports a data store was moved to.


# --- helpers ------------------------------------------------------------------------


def _issues(rule: str) -> Callable[[Plan, LintOptions], Iterable[Hit]]:
    """A rule whose findings the readers already made."""

    def check(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
        for issue in plan.issues:
            if issue.rule == rule:
                yield issue.file, issue.line, issue.object, issue.message

    check.__name__ = f"issues_{rule.replace('-', '_')}"
    return check


def _where(m: PortMapping) -> str:
    return f"{m.file}:{m.line}" if m.line else m.file


def _addr(ip: str | None, port: str | int) -> str:
    if ip is None:
        ip = "0.0.0.0"
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _addresses_overlap(a: str | None, b: str | None) -> bool:
    """Two bind addresses collide: None (every interface) overlaps everything,
    0.0.0.0 every IPv4 address and :: every IPv6 address."""
    if a is None or b is None or a == b:
        return True
    v6a, v6b = ":" in a, ":" in b
    if a in ("0.0.0.0", "::") and v6a == v6b:
        return True
    return b in ("0.0.0.0", "::") and v6a == v6b


def _container_ports(m: PortMapping) -> Iterator[int]:
    return iter(m.container_port) if m.container_port is not None else iter(())


# --- cross-object rules -------------------------------------------------------------


def _conflict_scope(m: PortMapping) -> str | None:
    """Which machine's ports a mapping takes: this host, a planned host, or a node."""
    if m.source == "kubernetes":
        return "node" if m.origin == "container" else None
    return f"host:{m.scope or ''}"


class _Firsts:
    """The earliest binding of each kind seen so far on one host port: enough to find,
    in O(1), the first earlier binding a new one collides with (linear lint)."""

    __slots__ = ("any", "by_ip", "family", "none", "wild")

    def __init__(self) -> None:
        self.none: int | None = None  # no host IP: every address
        self.any: int | None = None  # the first of all
        self.by_ip: dict[str, int] = {}
        self.wild: dict[bool, int] = {}  # 0.0.0.0 / :: by family (True: IPv6)
        self.family: dict[bool, int] = {}  # the first address of each family

    def first_overlap(self, ip: str | None) -> int | None:
        """The earliest binding seen that overlaps ``ip`` (see _addresses_overlap)."""
        if ip is None:
            return self.any
        v6 = ":" in ip
        found = [self.none]
        if ip in ("0.0.0.0", "::"):
            found.append(self.family.get(v6))
        else:
            found += [self.wild.get(v6), self.by_ip.get(ip)]
        return min((i for i in found if i is not None), default=None)

    def add(self, ip: str | None, index: int) -> None:
        if self.any is None:
            self.any = index
        if ip is None:
            if self.none is None:
                self.none = index
            return
        v6 = ":" in ip
        self.by_ip.setdefault(ip, index)
        self.family.setdefault(v6, index)
        if ip in ("0.0.0.0", "::"):
            self.wild.setdefault(v6, index)


def _ranges(ports: list[int]) -> str:
    """``[80, 81, 82, 90]`` -> ``"80-82, 90"``."""
    parts: list[str] = []
    start = prev = ports[0]
    for p in [*ports[1:], None]:
        if p is not None and p == prev + 1:
            prev = p
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if p is not None:
            start = prev = p
    return ", ".join(parts)


#: At most this many places are named in one conflict finding; the rest are counted.
_PLACES = 5


def _conflicts_on_port(plan: Plan, scope: str, ms: list[PortMapping]) -> list[tuple[int, int]]:
    """(later, earliest earlier) index pairs of the bindings that collide on one port.

    Linear: each binding is compared with the first earlier binding of each kind
    (:class:`_Firsts`), not with every earlier one. On a node, two pods' bindings only
    collide when they are one pod's or one of them runs on every node (a DaemonSet).
    """
    out: list[tuple[int, int]] = []
    if scope != "node":
        seen = _Firsts()
        for i, m in enumerate(ms):
            first = seen.first_overlap(m.host_ip)
            if first is not None:
                out.append((i, first))
            seen.add(m.host_ip, i)
        return out
    everyone, daemons = _Firsts(), _Firsts()
    by_object: dict[str, _Firsts] = defaultdict(_Firsts)
    for i, m in enumerate(ms):
        own = by_object[m.object]
        candidates = [own.first_overlap(m.host_ip), daemons.first_overlap(m.host_ip)]
        if m.kind == "DaemonSet":
            candidates.append(everyone.first_overlap(m.host_ip))
        first = min((c for c in candidates if c is not None), default=None)
        if first is not None:
            out.append((i, first))
        everyone.add(m.host_ip, i)
        own.add(m.host_ip, i)
        if m.kind == "DaemonSet":
            daemons.add(m.host_ip, i)
    return out


def _check_host_port_conflict(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    by_key: dict[tuple[str, str, int], list[PortMapping]] = defaultdict(list)
    for m in plan.mappings:
        scope = _conflict_scope(m)
        if scope is None or not m.host_bound or m.host_port is None or m.pool:
            continue
        for port in m.host_port:
            by_key[(scope, m.protocol, port)].append(m)
    # One finding per set of colliding bindings, whatever the number of ports they
    # share (two equal ranges collide on each of their ports: one finding, not 1,000).
    grouped: dict[tuple[str, str, int, tuple[int, ...]], list[int]] = {}
    members: dict[tuple[str, str, int, tuple[int, ...]], list[PortMapping]] = {}
    for (scope, protocol, port), ms in by_key.items():
        pairs = _conflicts_on_port(plan, scope, ms)
        if not pairs:
            continue
        first = ms[pairs[0][1]]
        later = [ms[i] for i, _ in pairs]
        key = (scope, protocol, id(first), tuple(id(m) for m in later))
        grouped.setdefault(key, []).append(port)
        members.setdefault(key, [first, *later])
    for key, ports in sorted(grouped.items(), key=lambda kv: min(kv[1])):
        scope, protocol = key[0], key[1]
        first, *later = members[key]
        ports.sort()
        port_text = _ranges(ports)
        hit = later[0]
        if scope == "node":
            if first.object == hit.object:
                msg = f'hostPort: Duplicate value: "{port_text}/{protocol.upper()}"'
            else:
                msg = (
                    f"hostPort {port_text}/{protocol} is also taken by {first.object} "
                    f"({_where(first)}): node(s) didn't have free ports for the "
                    "requested pod ports"
                )
        else:
            addr = _addr(hit.host_ip if hit.host_ip else first.host_ip, port_text)
            msg = (
                f"Bind for {addr} failed: port is already allocated ({protocol}; "
                f"{first.object} publishes it at {_where(first)})"
            )
        if len(later) > 1:
            places = [f"{m.object} at {_where(m)}" for m in later[:_PLACES]]
            more = f" and {len(later) - _PLACES} more" if len(later) > _PLACES else ""
            msg += f"; {len(later) + 1} bindings of this port collide: {', '.join(places)}{more}"
        yield hit.file, hit.host_line or hit.line, hit.object, msg
    # NodePorts are one pool for the whole cluster.
    taken: dict[tuple[int, str], PortMapping] = {}
    for m in plan.mappings:
        if (
            m.origin != "service"
            or m.node_port is None
            or m.type not in ("NodePort", "LoadBalancer")
        ):
            continue
        key2 = (m.node_port, m.protocol)
        first2 = taken.get(key2)
        if first2 is not None and first2.object != m.object:
            yield (
                m.file,
                m.host_line or m.line,
                m.object,
                f"spec.ports.nodePort: Invalid value: {m.node_port}: provided port is already "
                f"allocated (by {first2.object} at {_where(first2)})",
            )
        taken.setdefault(key2, m)


def _node_conflict(plan: Plan, a: PortMapping, b: PortMapping) -> bool:
    """Two pods' host ports collide on a node when one pod has both, or one runs everywhere."""
    return a.object == b.object or "DaemonSet" in (a.kind, b.kind)


def _check_nodeport_range(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    rng = opts.node_port_range
    for svc in plan.services:
        if svc.type not in ("NodePort", "LoadBalancer"):
            continue
        for sp in svc.ports:
            if sp.node_port is not None and sp.node_port not in rng:
                yield (
                    svc.file,
                    sp.node_port_line or sp.line,
                    svc.object,
                    f"spec.ports[{sp.index}].nodePort: Invalid value: {sp.node_port}: provided "
                    "port is not in the valid range. The range of valid ports is "
                    f"{rng.start}-{rng.end}",
                )


def _declared(pods: list[KubeWorkload]) -> str:
    ports = [
        f"{cp.container_port}/{cp.protocol}" + (f" ({cp.name})" if cp.name else "")
        for w in pods
        for cp in w.ports
        if cp.container_port is not None
    ]
    return ", ".join(dict.fromkeys(ports)) or "none"


def _target_hits(plan: Plan, numeric: bool) -> Iterator[Hit]:
    for svc in plan.services:
        pods = plan.pods_of(svc)
        if not pods:
            continue
        names = ", ".join(w.object for w in pods)
        for sp in svc.ports:
            target = sp.target_port
            if target is None or not _valid_target(target):
                continue  # invalid-port / invalid-port-name already say so
            where = f"spec.ports[{sp.index}].targetPort"
            same = [
                cp
                for w in pods
                for cp in w.ports
                if (cp.name == target if isinstance(target, str) else cp.container_port == target)
            ]
            matched = [cp for cp in same if cp.protocol == sp.protocol]
            if matched:
                continue
            if same:
                if not numeric:
                    other = same[0]
                    yield (
                        svc.file,
                        sp.target_line or sp.line,
                        svc.object,
                        f"{where} {_quote(target)} is {other.protocol} on {names} "
                        f"(container {other.container}), but the Service port is {sp.protocol}",
                    )
                continue
            declared = _declared(pods)
            if isinstance(target, str) and not numeric:
                yield (
                    svc.file,
                    sp.target_line or sp.line,
                    svc.object,
                    f"{where} {_quote(target)} names no container port of {names} "
                    f"(declared: {declared})",
                )
            elif isinstance(target, int) and numeric and declared != "none":
                yield (
                    svc.file,
                    sp.target_line or sp.line,
                    svc.object,
                    f"{where} {target} matches no containerPort of {names} (declared: {declared})",
                )


def _valid_target(target: int | str) -> bool:
    from portkit.plan._kube import port_name_errors

    if isinstance(target, int):
        return 1 <= target <= 65535
    return not port_name_errors(target)


def _quote(value: int | str) -> str:
    return f'"{value}"' if isinstance(value, str) else str(value)


def _check_target_unresolved(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    return _target_hits(plan, numeric=False)


def _check_target_mismatch(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    return _target_hits(plan, numeric=True)


def _check_dangling_service(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    workloads = plan.workloads
    if not workloads:
        return
    for svc in plan.services:
        if svc.selector and not plan.pods_of(svc):
            selector = ",".join(f"{k}={v}" for k, v in sorted(svc.selector.items()))
            yield (
                svc.file,
                svc.line,
                svc.object,
                f"selector {selector} matches no pod template in these files",
            )


def _check_ingress_backend(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    services = plan.services
    for f in plan.files:
        if f.kube is None:
            continue
        for b in f.kube.backends:
            svc = next(
                (
                    s
                    for s in services
                    if s.name == b.service
                    and (b.namespace is None or s.namespace is None or s.namespace == b.namespace)
                ),
                None,
            )
            if svc is None or b.port is None:
                continue
            ok = any(
                (sp.port == b.port) if isinstance(b.port, int) else (sp.name == b.port)
                for sp in svc.ports
            )
            if ok:
                continue
            ports = ", ".join(
                f"{sp.port}/{sp.protocol}" + (f" ({sp.name})" if sp.name else "")
                for sp in svc.ports
            )
            yield (
                b.file,
                b.line,
                f"Ingress/{b.ingress}",
                f"backend service {b.service} port {_quote(b.port)} matches no port of "
                f"{svc.object} (ports: {ports or 'none'})",
            )


def _plan_services(plan: Plan) -> dict[str, list[PortMapping]]:
    out: dict[str, list[PortMapping]] = defaultdict(list)
    for f in plan.files:
        if f.native is not None:
            for s in f.native.services:
                out.setdefault(s.name, [])
    for m in plan.mappings:
        if m.source == "plan":
            out[m.service].append(m)
    return out


def _connections(plan: Plan) -> Iterator[tuple[str, int | None, str, str, str, int | None, str]]:
    """(file, line, object, source, target, port, protocol) of connections and forwards_to."""
    for f in plan.files:
        if f.native is None:
            continue
        for c in f.native.connections:
            yield c.file, c.line, f"connection {c.text}", c.source, c.target, c.port, c.protocol
        for s in f.native.services:
            for p in s.ports:
                parsed = parse_target(p.forwards_to) if p.forwards_to else None
                if parsed is not None:
                    name, port, proto = parsed
                    obj = f"service {s.name} forwards_to {p.forwards_to}"
                    yield s.file, p.forwards_line or p.line, obj, s.name, name, port, proto


def _check_unknown_service(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    services = _plan_services(plan)
    for file, line, obj, source, target, _port, _proto in _connections(plan):
        if source != EXTERNAL and source not in services:
            yield (
                file,
                line,
                obj,
                f'unknown service "{source}" (planned: {", ".join(services) or "none"})',
            )
        if target not in services:
            yield (
                file,
                line,
                obj,
                f'unknown service "{target}" (planned: {", ".join(services) or "none"})',
            )


def _matching_ports(ms: list[PortMapping], port: int | None, proto: str) -> list[PortMapping]:
    return [
        m
        for m in ms
        if m.protocol == proto
        and (port is None or (m.host_port is not None and port in m.host_port))
    ]


def _check_connection_port(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    services = _plan_services(plan)
    for file, line, obj, _source, target, port, proto in _connections(plan):
        if target not in services or port is None:
            continue
        if not _matching_ports(services[target], port, proto):
            listens = (
                ", ".join(f"{m.host_port}/{m.protocol}" for m in services[target]) or "nothing"
            )
            yield (
                file,
                line,
                obj,
                f"service {target} does not listen on {port}/{proto} (it listens on {listens})",
            )


def _check_connection_reach(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    services = _plan_services(plan)
    for file, line, obj, source, target, port, proto in _connections(plan):
        if target not in services:
            continue
        ports = _matching_ports(services[target], port, proto)
        if not ports:
            continue
        src_scope = (
            None if source == EXTERNAL else next((m.scope for m in services.get(source, [])), None)
        )
        reachable = []
        for m in ports:
            if source == EXTERNAL:
                ok = m.exposure is Exposure.PUBLIC
            elif m.exposure is Exposure.LOOPBACK:
                ok = src_scope == m.scope
            else:
                ok = True
            reachable.append(ok)
        if any(reachable):
            continue
        m = ports[0]
        who = (
            "clients outside"
            if source == EXTERNAL
            else f"service {source}" + (f" on {src_scope}" if src_scope else "")
        )
        yield (
            file,
            line,
            obj,
            f"{target}:{m.host_port}/{m.protocol} is {m.exposure.value}"
            + (f" on {m.scope}" if m.scope else "")
            + f": {who} cannot reach it",
        )


# --- exposure rules ----------------------------------------------------------------


def _public_desc(m: PortMapping, port: int) -> str:
    if m.source == "compose":
        if m.network_host:
            return f"on every interface of the host ({_addr(None, port)}, network_mode: host)"
        return f"on every interface of the host ({_addr(m.host_ip, _host_text(m))})"
    if m.source == "kubernetes":
        if m.origin == "service":
            if m.type in ("NodePort", "LoadBalancer"):
                np = m.node_port if m.node_port else "a node port"
                lb = " and on the load balancer" if m.type == "LoadBalancer" else ""
                return f"outside the cluster on every node's port {np}{lb} (type {m.type})"
            return f"outside the cluster on externalIPs {', '.join(m.external_ips)}"
        if m.network_host:
            return f"on every interface of the node (hostNetwork, port {port})"
        return f"on every interface of the node (hostPort {m.host_port})"
    return "publicly (exposure: public)"


def _host_text(m: PortMapping) -> str:
    if m.host_port is None:
        return "<any free port>"
    return str(m.host_port)


def _public_role_check(datastores: bool) -> Callable[[Plan, LintOptions], Iterable[Hit]]:
    """A rule for ports published on every interface whose registry role warns:
    the data stores (``datastore-public``) or the admin interfaces (``admin-public``)."""

    def check(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
        for m in plan.mappings:
            if m.exposure is not Exposure.PUBLIC or m.origin == "ingress":
                continue
            if m.source != "kubernetes" and bind_scope(m.host_ip) is not BindScope.WILDCARD:
                continue
            if m.source == "kubernetes" and m.origin == "container" and not m.host_bound:
                continue
            for port in _container_ports(m):
                role = port_role(port, m.protocol, m.image)
                if role is None or not role.warn or role.datastore != datastores:
                    continue
                extra = (
                    ": anyone who can reach the host can reach it, and Docker's published "
                    "ports bypass ufw/firewalld INPUT rules"
                    if m.source == "compose" and not m.network_host
                    else ""
                )
                yield (
                    m.file,
                    m.host_line if m.origin == "container" and m.host_line else m.line,
                    m.object,
                    f"{role.product} ({role.kind}, {port}/{m.protocol}) is reachable "
                    f"{_public_desc(m, port)}{extra}",
                )
                break

    check.__name__ = "check_datastore_public" if datastores else "check_admin_public"
    return check


def _check_ssh_exposed(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    for m in plan.mappings:
        if m.protocol != "tcp" or m.origin == "ingress":
            continue
        if m.source == "plan":
            if m.exposure is Exposure.PUBLIC and m.host_port is not None and 22 in m.host_port:
                yield m.file, m.line, m.object, "SSH (22/tcp) is planned public"
            continue
        if m.source == "kubernetes" and m.origin == "service":
            if m.port == 22 or m.target_port == 22:
                yield m.file, m.line, m.object, "the Service forwards port 22/tcp (SSH)"
            continue
        if m.container_port is not None and 22 in m.container_port:
            how = {
                "ports": "published on the host",
                "expose": "exposed to the other services",
                "container": "declared as a container port",
            }.get(m.origin, "exposed")
            yield m.file, m.line, m.object, f"port 22/tcp (SSH) is {how}"


def _check_host_port(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    for w in plan.workloads:
        if w.host_network:
            continue
        for cp in w.ports:
            if cp.host_port is not None:
                yield (
                    w.file,
                    cp.host_port_line or cp.line,
                    w.object,
                    f"container {cp.container} binds hostPort {cp.host_port}/{cp.protocol} "
                    f"on the node (-> containerPort {cp.container_port})",
                )


def _check_host_network(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    for w in plan.workloads:
        if w.host_network:
            yield (
                w.file,
                w.host_network_line or w.line,
                w.object,
                "hostNetwork: true: every port the pod opens is opened on the node itself",
            )
    yield from _issues("host-network")(plan, opts)


def _check_base60(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    from portkit.plan._yaml import base60_value

    for m in plan.mappings:
        if m.base60:
            text = _spec_text(m)
            yield (
                m.file,
                m.line,
                m.object,
                f'{text} is unquoted: Docker reads it as the string "{text}", but YAML 1.1 '
                f"readers (PyYAML, docker-compose v1) read the number {base60_value(text)}",
            )


def _spec_text(m: PortMapping) -> str:
    host = str(m.host_port) if m.host_port is not None else ""
    out = f"{host}:{m.container_port}"
    if m.host_ip is not None:
        out = f"{m.host_ip}:{out}"
    return out


def _check_privileged(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    for m in plan.mappings:
        if m.origin == "ingress":
            continue
        if m.source == "kubernetes" and m.origin == "container" and not m.host_bound:
            if m.container_port is not None and 0 < m.container_port.start < 1024:
                yield (
                    m.file,
                    m.line,
                    m.object,
                    f"containerPort {m.container_port} is privileged (below 1024): container "
                    f"{m.container} must run as root or with NET_BIND_SERVICE",
                )
            continue
        if (
            not m.host_bound
            or m.host_port is None
            or m.pool
            or (m.source == "kubernetes" and m.origin == "service")
        ):
            continue
        if 0 < m.host_port.start < 1024:
            yield (
                m.file,
                m.host_line or m.line,
                m.object,
                f"host port {m.host_port.start} is privileged (below 1024): binding it needs root "
                "or CAP_NET_BIND_SERVICE (rootless Docker and Podman cannot, unless "
                "net.ipv4.ip_unprivileged_port_start is lowered)",
            )


def _check_ephemeral(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    eph = opts.ephemeral
    for m in plan.mappings:
        if not m.host_bound or m.host_port is None or m.pool or m.origin == "service":
            continue
        if m.host_port.overlaps(eph):
            yield (
                m.file,
                m.host_line or m.line,
                m.object,
                f"host port {m.host_port} is inside the Linux ephemeral range {eph}: an outgoing "
                "connection may hold it when the service starts, and the bind then fails",
            )


# --- reachable from outside, probes, policies, routes, Dockerfiles, start order -----------


def _check_external_service(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    """What is reachable from outside, and from where (kube-linter exposed-services,
    KICS "Service Type is NodePort"): information, for review."""
    ingresses: set[tuple[str, str]] = set()
    for m in plan.mappings:
        proto = m.protocol
        if m.source == "kubernetes" and m.origin == "service":
            node = f"node port {m.node_port}/{proto}" if m.node_port else "a node port"
            if m.type == "NodePort":
                yield (
                    m.file,
                    m.line,
                    m.object,
                    (f"reachable from outside the cluster on {node} of every node's IP"),
                )
            elif m.type == "LoadBalancer":
                yield (
                    m.file,
                    m.line,
                    m.object,
                    (
                        f"reachable from outside the cluster through the cloud load balancer on "
                        f"port {m.port}/{proto} (and on {node} of every node)"
                    ),
                )
            elif m.external_ips:
                yield (
                    m.file,
                    m.line,
                    m.object,
                    (f"reachable on externalIPs {', '.join(m.external_ips)} port {m.port}/{proto}"),
                )
        elif m.origin == "ingress":
            if (m.file, m.object) not in ingresses:
                ingresses.add((m.file, m.object))
                yield (
                    m.file,
                    m.line,
                    m.object,
                    (
                        "routes HTTP(S) from outside the cluster through the ingress controller "
                        f"(80, 443) to Service {m.backend}"
                    ),
                )
        elif m.source == "compose" and m.origin == "ports" and m.exposure is Exposure.PUBLIC:
            port = f"<one of {m.host_port}>" if m.pool else str(m.host_port or "<any free port>")
            where = _addr(m.host_ip, port)
            yield (
                m.file,
                m.host_line or m.line,
                m.object,
                (f"reachable from outside this host on every interface ({where}/{proto})"),
            )


def _declared_in(container_ports: Iterable[Any]) -> str:
    ports = [
        f"{cp.container_port}/{cp.protocol}" + (f" ({cp.name})" if cp.name else "")
        for cp in container_ports
        if cp.container_port is not None
    ]
    return ", ".join(dict.fromkeys(ports)) or "none"


def _check_probe_port(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    """A probe to a port its container does not declare (kube-linter liveness-port,
    readiness-port, startup-port): a named port that does not exist never answers."""
    for w in plan.workloads:
        for probe in w.probes:
            own = [cp for cp in w.ports if cp.container == probe.container]
            where = f"{probe.kind}.{probe.handler}.port"
            if isinstance(probe.port, str) and not probe.port.isdigit():
                if any(cp.name == probe.port for cp in own):
                    continue
                yield (
                    w.file,
                    probe.line,
                    w.object,
                    (
                        f'{where} "{probe.port}" names no port of container {probe.container} '
                        f"(declared: {_declared_in(own)}): the probe cannot connect"
                    ),
                )
                continue
            number = int(probe.port)
            if not own or any(cp.container_port == number for cp in own):
                continue
            yield (
                w.file,
                probe.line,
                w.object,
                (
                    f"{where} {number} is not a containerPort of container {probe.container} "
                    f"(declared: {_declared_in(own)})"
                ),
            )


def _policy_selects(policy: Any, w: KubeWorkload) -> bool:
    same = policy.namespace is None or w.namespace is None or policy.namespace == w.namespace
    return same and all(w.labels.get(k) == v for k, v in policy.selector.items())


def _check_networkpolicy_port(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    """NetworkPolicy ingress ports that select no port of the pods the policy selects."""
    workloads = plan.workloads
    for f in plan.files:
        if f.kube is None:
            continue
        for policy in f.kube.policies:
            if policy.expressions:
                continue
            pods = [w for w in workloads if _policy_selects(policy, w)]
            declared = [cp for w in pods for cp in w.ports]
            if not pods or not declared:
                continue
            names = ", ".join(w.object for w in pods)
            for pp in policy.ports:
                if pp.port is None:
                    continue
                same = [cp for cp in declared if cp.protocol == pp.protocol]
                if isinstance(pp.port, str) and not pp.port.isdigit():
                    if any(cp.name == pp.port for cp in same):
                        continue
                    what = f'"{pp.port}"'
                else:
                    low = int(pp.port)
                    high = pp.end_port or low
                    if any(
                        cp.container_port is not None and low <= cp.container_port <= high
                        for cp in same
                    ):
                        continue
                    what = f"{low}-{high}" if high != low else str(low)
                yield (
                    policy.file,
                    pp.line,
                    policy.object,
                    (
                        f"ingress port {what}/{pp.protocol} matches no port of the pods it selects "
                        f"({names}; declared: {_declared_in(declared)}): the rule allows nothing"
                    ),
                )


def _check_route_backend(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    """Gateway API route backendRefs to a Service port that does not exist."""
    services = plan.services
    for f in plan.files:
        if f.kube is None:
            continue
        for ref in f.kube.routes:
            svc = next(
                (
                    s
                    for s in services
                    if s.name == ref.service
                    and (
                        ref.namespace is None or s.namespace is None or s.namespace == ref.namespace
                    )
                ),
                None,
            )
            if ref.port is None:
                yield (
                    ref.file,
                    ref.line,
                    ref.route,
                    (
                        f"backendRef to Service {ref.service} has no port: a port is required when "
                        "the backend is a Service"
                    ),
                )
                continue
            if svc is None or any(sp.port == ref.port for sp in svc.ports):
                continue
            ports = ", ".join(f"{sp.port}/{sp.protocol}" for sp in svc.ports)
            yield (
                ref.file,
                ref.line,
                ref.route,
                (
                    f"backendRef {ref.service}:{ref.port} matches no port of {svc.object} "
                    f"(ports: {ports or 'none'})"
                ),
            )


def _compose_services(plan: Plan) -> list[Any]:
    return [s for f in plan.files for s in f.compose]


def _check_dockerfile_port(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    """hadolint DL3011: an EXPOSE of a port outside 0-65535."""
    for svc in _compose_services(plan):
        if svc.dockerfile is None:
            continue
        for text, line in svc.dockerfile.invalid:
            yield (
                svc.dockerfile.path,
                line,
                svc.object,
                (f"EXPOSE {text}: Valid UNIX ports range from 0 to 65535 (hadolint DL3011)"),
            )


def _check_target_not_exposed(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    """A published container port the service's own Dockerfile does not EXPOSE."""
    by_name = {s.name: s for s in _compose_services(plan)}
    for m in plan.mappings:
        svc = by_name.get(m.service) if m.source == "compose" else None
        if svc is None or svc.dockerfile is None or not svc.dockerfile.ports:
            continue
        if m.origin != "ports" or m.container_port is None or m.network_host:
            continue
        exposed = svc.dockerfile.ports
        missing = [
            p
            for p in m.container_port
            if not any(lo <= p <= hi and proto == m.protocol for lo, hi, proto, _ in exposed)
        ]
        if missing:
            said = ", ".join(
                f"{lo}/{proto}" if lo == hi else f"{lo}-{hi}/{proto}"
                for lo, hi, proto, _ in exposed
            )
            yield (
                m.file,
                m.line,
                m.object,
                (
                    f"container port {m.container_port}/{m.protocol} is not EXPOSEd by "
                    f"{svc.dockerfile.path} (it exposes {said}): is that the port the app "
                    "listens on?"
                ),
            )


def _check_depends_on(plan: Plan, opts: LintOptions) -> Iterator[Hit]:
    """depends_on that starts the dependent before the dependency is ready."""
    by_name = {s.name: s for s in _compose_services(plan)}
    ports: dict[str, str] = {}
    for m in plan.mappings:
        if m.source == "compose" and m.container_port is not None:
            ports.setdefault(m.service, f"{m.service}:{m.container_port.start}")
    for svc in by_name.values():
        for dep in svc.depends_on:
            target = by_name.get(dep.service)
            if target is None:
                continue
            wait = ports.get(dep.service, f"{dep.service}:PORT")
            file = svc.depends_file or svc.file
            if dep.condition == "service_started":
                if target.healthcheck:
                    yield (
                        file,
                        dep.line,
                        svc.object,
                        (
                            f"depends_on {dep.service} waits for its container to start only, "
                            f"though {dep.service} has a healthcheck: use condition: "
                            "service_healthy"
                        ),
                    )
                else:
                    yield (
                        file,
                        dep.line,
                        svc.object,
                        (
                            f"{svc.name} starts as soon as {dep.service}'s container starts, not "
                            f"when it accepts connections ({dep.service} has no healthcheck): "
                            f"add one and condition: service_healthy, or wait in {svc.name}: "
                            f"portkit wait {wait} -- CMD"
                        ),
                    )
            elif dep.condition == "service_healthy" and not target.healthcheck:
                yield (
                    file,
                    dep.line,
                    svc.object,
                    (
                        f"condition: service_healthy, but {dep.service} has no healthcheck: "
                        f"compose stops with 'dependency failed to start' (add a healthcheck to "
                        f"{dep.service})"
                    ),
                )


# --- the table ---------------------------------------------------------------------

E, W, INFO = Severity.ERROR, Severity.WARNING, Severity.INFO

RULES: tuple[Rule, ...] = (
    Rule(
        "invalid-port",
        E,
        _issues("invalid-port"),
        "Invalid port, port range or address",
        "Ports are 0-65535 for Docker and 1-65535 for Kubernetes; write a range as "
        "START-END with START <= END, and an IPv6 host IP in [brackets].",
    ),
    Rule(
        "invalid-type",
        E,
        _issues("invalid-type"),
        "Field of the wrong type",
        "Give the field the type the API server or compose expects (a list where a list "
        "is expected, a number where a number is): they refuse the file as it is.",
    ),
    Rule(
        "invalid-protocol",
        E,
        _issues("invalid-protocol"),
        "Invalid protocol",
        "Docker accepts tcp, udp and sctp (any case); Kubernetes accepts TCP, UDP and SCTP "
        "in upper case only.",
    ),
    Rule(
        "unequal-ranges",
        E,
        _issues("unequal-ranges"),
        "Host and container port ranges of different lengths",
        "Give both sides the same number of ports (9090-9091:8080-8081), or a single "
        "container port to take one host port out of a pool (8000-9000:80).",
    ),
    Rule(
        "invalid-port-name",
        E,
        _issues("invalid-port-name"),
        "Invalid or missing port name",
        "Container port names (and named targetPorts) are IANA service names: at most 15 "
        "characters of a-z, 0-9 and '-', at least one letter, no '--', no '-' at either "
        "end. A Service with several ports must name each one (a DNS label).",
    ),
    Rule(
        "duplicate-port-name",
        E,
        _issues("duplicate-port-name"),
        "Duplicate port name",
        "Give each port of a container, and each port of a Service, its own name.",
    ),
    Rule(
        "duplicate-port",
        E,
        _issues("duplicate-port"),
        "Duplicate Service port",
        "Each (port, protocol) pair and each nodePort may appear once per Service.",
    ),
    Rule(
        "invalid-service-type",
        E,
        _issues("invalid-service-type"),
        "Invalid Service type",
        "spec.type is ClusterIP (the default), NodePort, LoadBalancer or ExternalName.",
    ),
    Rule(
        "nodeport-on-clusterip",
        E,
        _issues("nodeport-on-clusterip"),
        "nodePort set on a ClusterIP Service",
        "Remove nodePort, or set spec.type to NodePort or LoadBalancer. When changing an "
        "existing Service back to ClusterIP, delete the nodePort values too.",
    ),
    Rule(
        "nodeport-range",
        E,
        _check_nodeport_range,
        "nodePort outside the cluster's NodePort range",
        "Pick a nodePort inside the API server's --service-node-port-range (30000-32767 by "
        "default), or leave it out and let Kubernetes allocate one.",
    ),
    Rule(
        "host-port-conflict",
        E,
        _check_host_port_conflict,
        "Host port taken twice on the same address and protocol",
        "Give one of them another host port, or bind them to different addresses "
        "(0.0.0.0 and no host IP overlap every IPv4 address).",
    ),
    Rule(
        "target-port-unresolved",
        E,
        _check_target_unresolved,
        "Service targetPort reaches no container port",
        "Name the container port the targetPort names (same protocol), or set targetPort "
        "to the containerPort number.",
    ),
    Rule(
        "invalid-interpolation",
        E,
        _issues("invalid-interpolation"),
        "Invalid or failed ${VAR} interpolation",
        "Close every ${ with }, write a literal $ as $$, and set required variables in the "
        "environment or an --env-file.",
    ),
    Rule(
        "invalid-plan",
        E,
        _issues("invalid-plan"),
        "Invalid portkit plan",
        "See docs/plan.md and the JSON Schema portkit/plan/schema.json for the plan format.",
    ),
    Rule(
        "unknown-service",
        E,
        _check_unknown_service,
        "Connection to or from a service the plan does not have",
        "Add the service to the plan, or fix the name (use `external` for clients "
        "outside every host).",
    ),
    Rule(
        "connection-port-mismatch",
        E,
        _check_connection_port,
        "Connection to a port the service does not listen on",
        "Connect to a port the target service lists, or add the port to it.",
    ),
    Rule(
        "connection-unreachable",
        E,
        _check_connection_reach,
        "Planned connection that the target's exposure forbids",
        "Make the target port public (for external clients) or internal (for other "
        "hosts), or move the client next to it.",
    ),
    Rule(
        "dockerfile-invalid-port",
        E,
        _check_dockerfile_port,
        "EXPOSE of an invalid port in a service's Dockerfile",
        "EXPOSE ports 0-65535, as PORT, PORT/PROTO or START-END (hadolint DL3011).",
    ),
    Rule(
        "datastore-public",
        W,
        _public_role_check(datastores=True),
        "Database, cache, search engine or broker reachable on every interface",
        'Bind it to 127.0.0.1 ("127.0.0.1:5432:5432") or drop the published port and let '
        "services reach it over the internal network; in Kubernetes use a ClusterIP "
        "Service. Docker-published ports bypass ufw/firewalld INPUT rules (moby/moby#4737).",
    ),
    Rule(
        "admin-public",
        W,
        _public_role_check(datastores=False),
        "Admin or management interface reachable on every interface",
        "Bind it to 127.0.0.1 and reach it through an SSH tunnel or `portkit forward`, or "
        "put it behind authentication on a private address; the port's registry role says "
        "it controls the service (Docker API, kubelet, Prometheus, Envoy admin, ...).",
    ),
    Rule(
        "ssh-exposed",
        W,
        _check_ssh_exposed,
        "SSH port exposed",
        "Do not run sshd in containers; use docker exec / kubectl exec, or a bastion.",
    ),
    Rule(
        "target-port-mismatch",
        W,
        _check_target_mismatch,
        "Numeric targetPort not declared by the selected pods",
        "Declare the port the application listens on as a containerPort, or fix the "
        "targetPort (a common slip is using the Service port or the NodePort).",
    ),
    Rule(
        "ingress-backend-mismatch",
        W,
        _check_ingress_backend,
        "Ingress backend port matches no port of its Service",
        "An Ingress backend names the Service port (or its name), not the targetPort.",
    ),
    Rule(
        "host-port",
        W,
        _check_host_port,
        "hostPort in use",
        "Avoid hostPort unless needed: it ties pods to nodes with that port free and "
        "bypasses the Service. Use a NodePort or LoadBalancer Service instead.",
    ),
    Rule(
        "host-network",
        W,
        _check_host_network,
        "Host network namespace in use",
        "Remove hostNetwork / network_mode: host unless the workload must see the host's "
        "interfaces; publish only the ports it needs.",
    ),
    Rule(
        "ports-with-host-network",
        W,
        _issues("ports-with-host-network"),
        "ports listed with network_mode: host",
        "With network_mode: host the container already listens on the host: remove "
        "`ports`, or drop network_mode: host.",
    ),
    Rule(
        "unquoted-base60",
        W,
        _check_base60,
        "Unquoted HOST:CONTAINER that YAML 1.1 reads as a base-60 number",
        'Quote port mappings: - "22:22". Docker (YAML 1.2) reads the text, but YAML 1.1 '
        "tools read 22:22 as 1342 (docker/compose#3109).",
    ),
    Rule(
        "unset-variable",
        W,
        _issues("unset-variable"),
        "Variable not set",
        "Set it in the environment or the .env file (--env-file), or give a default: ${VAR:-8080}.",
    ),
    Rule(
        "probe-port",
        W,
        _check_probe_port,
        "Probe to a port the container does not declare",
        "Point the liveness/readiness/startup probe at a containerPort of the same "
        "container (by number or by its name); a named port that does not exist never "
        "answers (kube-linter liveness-port, readiness-port, startup-port).",
    ),
    Rule(
        "networkpolicy-port",
        W,
        _check_networkpolicy_port,
        "NetworkPolicy port that no selected pod listens on",
        "Allow the containerPort (or port name) the selected pods declare; a rule whose "
        "ports select nothing lets no traffic in.",
    ),
    Rule(
        "route-backend-mismatch",
        W,
        _check_route_backend,
        "Gateway API route backend matches no Service port",
        "A backendRef names the Service and one of its ports (spec.ports[].port), not the "
        "targetPort; the port is required for a Service.",
    ),
    Rule(
        "external-service",
        INFO,
        _check_external_service,
        "Reachable from outside",
        "Review what is reachable from outside: a NodePort or LoadBalancer Service, an "
        "Ingress, a compose port on every interface (kube-linter exposed-services, KICS "
        "'Service Type is NodePort'). Use ClusterIP, or bind compose ports to 127.0.0.1, "
        "for what only other services need. Off unless --enable external-service (a "
        "finding per public port: kube-linter's exposed-services is not a default check "
        "either).",
        default=False,
    ),
    Rule(
        "target-not-exposed",
        INFO,
        _check_target_not_exposed,
        "Published container port the image's Dockerfile does not EXPOSE",
        "Publish the port the application listens on (the Dockerfile's EXPOSE says which), "
        "or EXPOSE the port in the Dockerfile.",
    ),
    Rule(
        "depends-on-not-ready",
        INFO,
        _check_depends_on,
        "depends_on that does not wait for the dependency to be ready",
        "Give the dependency a healthcheck and use depends_on: {db: {condition: "
        "service_healthy}}, or wait for its port in the dependent's entrypoint: "
        "portkit wait db:5432 -- CMD.",
    ),
    Rule(
        "dangling-service",
        INFO,
        _check_dangling_service,
        "Service selects no pod in these files",
        "Check the selector against the pod template labels (or lint the file that holds "
        "the workload together with this one).",
    ),
    Rule(
        "privileged-port",
        INFO,
        _check_privileged,
        "Privileged port (below 1024)",
        "Use a port >= 1024 and map it (8080 -> 80), or grant CAP_NET_BIND_SERVICE.",
    ),
    Rule(
        "ephemeral-host-port",
        INFO,
        _check_ephemeral,
        "Host port inside the ephemeral range",
        "Pick a host port below 32768 (Linux) so that outgoing connections cannot hold it.",
    ),
)

RULES_BY_ID: dict[str, Rule] = {r.id: r for r in RULES}


def lint(
    plan: Plan,
    *,
    node_port_range: PortRange = NODEPORT_RANGE,
    ephemeral: PortRange = LINUX_EPHEMERAL,
    ignore: Iterable[str] = (),
    enable: Iterable[str] = (),
) -> list[Finding]:
    """Run every rule of :data:`RULES` over the plan.

    Args:
        plan: the files read by :func:`~portkit.plan.load_plan`.
        node_port_range: the cluster's ``--service-node-port-range``.
        ephemeral: the ephemeral range of the hosts it deploys to.
        ignore: rule ids to skip.
        enable: rule ids that are off by default to run too (``external-service``).

    Returns:
        Every finding, sorted by file and line.
    """
    skip = frozenset(ignore)
    wanted = frozenset(enable)
    unknown = (skip | wanted) - RULES_BY_ID.keys()
    if unknown:
        from portkit.errors import UsageError

        raise UsageError(
            f"unknown rule {sorted(unknown)[0]!r} (see portkit plan lint --list-rules)"
        )
    opts = LintOptions(node_port_range, ephemeral, skip)
    found: set[Finding] = set()
    for order, rule in enumerate(RULES):
        if rule.id in skip or not (rule.default or rule.id in wanted):
            continue
        for file, line, obj, message in rule.check(plan, opts):
            found.add(Finding(file, line, order, rule.id, rule.severity, obj, message, rule.hint))
    files = {f.path: i for i, f in enumerate(plan.files)}
    return sorted(found, key=lambda f: (files.get(f.file, 0), f.line or 0, f.order, f.message))

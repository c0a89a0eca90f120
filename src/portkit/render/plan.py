"""Plans in plain words, tables and JSON: explain, lint findings, check results.

Rendering only: every function takes records from :mod:`portkit.plan` and returns
text or JSON-ready objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from portkit.plan._model import Exposure
from portkit.render import Style, table

if TYPE_CHECKING:
    from portkit.model import PortRange
    from portkit.plan._check import CheckResult
    from portkit.plan._model import PortMapping
    from portkit.plan._plan import Plan
    from portkit.plan._rules import Finding, Rule

__all__ = [
    "check_json",
    "check_text",
    "describe",
    "explain_text",
    "findings_json",
    "findings_text",
    "host_port_rows",
    "mapping_json",
    "rules_text",
]


# --- explain -----------------------------------------------------------------------


def _range(r: PortRange | None) -> str | int | None:
    if r is None:
        return None
    return r.start if r.start == r.end else f"{r.start}-{r.end}"


def _ip(ip: str | None) -> str:
    ip = ip or "0.0.0.0"
    return f"[{ip}]" if ":" in ip else ip


def _reach(m: PortMapping, where: str = "host") -> str:
    if m.exposure is Exposure.LOOPBACK:
        return f"reachable from this {where} only (loopback)"
    if m.exposure is Exposure.ADDRESS:
        return f"reachable on {m.host_ip} only"
    if m.host_ip == "0.0.0.0":
        return f"reachable on every IPv4 interface of the {where}"
    if m.host_ip == "::":
        return f"reachable on every IPv6 interface of the {where}"
    return f"reachable on every interface of the {where}"


def _host_side(m: PortMapping) -> str:
    if m.host_port is None:
        port = "<any free port>"
    elif m.pool:
        port = f"<one of {m.host_port}>"
    else:
        port = str(m.host_port)
    return f"{_ip(m.host_ip)}:{port}/{m.protocol}"


def _compose(m: PortMapping) -> str:
    container = f"container {m.service}:{m.container_port}/{m.protocol}"
    if m.origin == "expose" and not m.network_host:
        return (
            f"{container}, exposed to the other services of the project only "
            "(not published on the host)"
        )
    if m.network_host:
        return (
            f"container {m.service} listens on the host's own network (network_mode: host): "
            f"{_ip(None)}:{m.container_port}/{m.protocol}, {_reach(m)}"
        )
    text = f"host {_host_side(m)} -> {container}, {_reach(m)}"
    if m.host_port is None:
        text += (
            f"; the engine picks the host port (docker compose port {m.service} {m.container_port})"
        )
    elif m.pool:
        text += "; Docker binds one free port of the range"
    if m.mode == "host":
        text += " (mode: host)"
    return text


def _target(m: PortMapping) -> str:
    target = m.target_port
    pods = ", ".join(m.selected)
    proto = m.protocol
    if m.container_port is not None and m.selected:
        named = f"{target} = " if isinstance(target, str) else ""
        who = f"container {m.container}" if m.container else "container port"
        return f"targetPort {named}{who}:{m.container_port}/{proto} of {pods}"
    if m.selected and isinstance(target, str):
        return f'targetPort "{target}", which names no container port of {pods}'
    if isinstance(target, str):
        return f'targetPort "{target}" (a named port of the selected pods)'
    return f"targetPort {target}/{proto} of the selected pods"


def _kube_service(m: PortMapping) -> str:
    target = _target(m)
    port = f"{m.port}/{m.protocol}"
    if m.type == "ExternalName":
        return f"Service port {port}: a DNS alias (ExternalName), nothing is proxied"
    if m.description == "headless":
        return (
            f"Service port {port} -> {target}; headless: DNS returns the pod IPs and "
            "clients connect straight to them"
        )
    external = f"; also on externalIPs {', '.join(m.external_ips)}" if m.external_ips else ""
    if m.type == "NodePort":
        node = m.node_port if m.node_port else "<allocated from 30000-32767>"
        return (
            f"node port {node}/{m.protocol} on every node -> Service port {port} -> {target}, "
            f"reachable from outside the cluster on every node's IP{external}"
        )
    if m.type == "LoadBalancer":
        node = m.node_port if m.node_port else "an allocated node port"
        return (
            f"load balancer {port} (and {node} on every node) -> {target}, reachable from "
            f"outside the cluster through the cloud load balancer{external}"
        )
    return (
        f"Service port {port} -> {target}, reachable inside the cluster only (ClusterIP){external}"
    )


def _kube_container(m: PortMapping) -> str:
    name = f" (name {m.name})" if m.name else ""
    if m.network_host:
        return (
            f"container {m.container} listens on the node's own network (hostNetwork): "
            f"{_ip(None)}:{m.container_port}/{m.protocol}{name}, {_reach(m, 'node')}"
        )
    if m.host_bound:
        return (
            f"host {_ip(m.host_ip)}:{m.host_port}/{m.protocol} on the node -> container "
            f"{m.container}:{m.container_port}/{m.protocol}{name}, {_reach(m, 'node')}"
        )
    return (
        f"container {m.container} listens on {m.container_port}/{m.protocol}{name}, "
        "reachable by pods and Services inside the cluster"
    )


_PLAN_REACH = {
    Exposure.PUBLIC: "reachable from anywhere (public)",
    Exposure.INTERNAL: "reachable by the other services, not from outside (internal)",
    Exposure.LOOPBACK: "reachable from its own host only (loopback)",
    Exposure.ADDRESS: "reachable on its address only",
}


def _host_label(m: PortMapping) -> str:
    if m.host_name and m.scope and m.host_name != m.scope:
        return f"{m.host_name} ({m.scope})"
    return m.host_name or m.scope or ""


def _plan(m: PortMapping) -> str:
    where = f"on host {_host_label(m)}: " if m.host_name or m.scope else ""
    addr = f"{_ip(m.host_ip)}:" if m.host_ip else ""
    text = f"{where}listens on {addr}{m.host_port}/{m.protocol}, {_PLAN_REACH[m.exposure]}"
    if m.forwards_to:
        text += f"; forwards to {m.forwards_to}"
    return text


def describe(m: PortMapping) -> str:
    """One mapping in plain words.

    e.g. ``host 0.0.0.0:8080/tcp -> container web:3000/tcp, reachable on every
    interface of the host``.
    """
    if m.source == "compose":
        return _compose(m)
    if m.source == "plan":
        return _plan(m)
    if m.origin == "service":
        return _kube_service(m)
    if m.origin == "ingress":
        backend = m.port if m.port is not None else f'"{m.name}"'
        return (
            f"{m.description}: HTTP(S) through the ingress controller -> Service {m.backend} "
            f"port {backend}"
        )
    return _kube_container(m)


def _registry_name(port: int, protocol: str) -> str:
    from portkit.registry import service_name

    return service_name(port, protocol) or "-"


def host_port_rows(plan: Plan) -> list[tuple[str, str, str, str, str, str]]:
    """(address, port, proto, what the registry says, taken by, where) per host binding."""
    rows = []
    for m in plan.mappings:
        if not m.host_bound:
            continue
        if m.source == "kubernetes" and m.origin == "service":
            if m.node_port is None:
                continue
            address = "every node"
            port_text = str(m.node_port)
            port = m.node_port
        else:
            if m.host_port is None:
                continue
            address = _ip(m.host_ip)
            if m.source == "kubernetes":
                address = f"node {address}"
            elif m.source == "plan":
                # A plan may leave the address open: show who may reach the port.
                address = _ip(m.host_ip) if m.host_ip else m.exposure.value
                host = m.host_name or m.scope
                address = f"{host} {address}" if host else address
            port_text = f"{m.host_port} (pool)" if m.pool else str(m.host_port)
            port = m.host_port.start
        what = (
            _registry_name(port, m.protocol)
            if m.host_port is None or len(m.host_port) == 1
            else "-"
        )
        where = f"{m.file}:{m.line}" if m.line else m.file
        rows.append((address, port_text, m.protocol, what, m.object, where))
    return sorted(rows, key=lambda r: (int(r[1].split("-")[0].split()[0]), r[2], r[0]))


def explain_text(plan: Plan, style: Style, width: int | None = None) -> str:
    """Every mapping in plain words, grouped by object, then the host ports taken."""
    blocks: list[str] = []
    groups: dict[tuple[str, str], list[PortMapping]] = {}
    for m in plan.mappings:
        groups.setdefault((m.file, m.object), []).append(m)
    for (file, obj), ms in groups.items():
        lines = [style.bold(obj) + style.dim(f"  ({file})")]
        for m in ms:
            where = f"{m.line}: " if m.line else ""
            lines.append(f"  {style.dim(where)}{describe(m)}")
        blocks.append("\n".join(lines))
    for f in plan.files:
        if f.native is not None and f.native.connections:
            lines = [style.bold("connections") + style.dim(f"  ({f.path})")]
            lines.extend(
                f"  {style.dim(f'{c.line}: ' if c.line else '')}{c.text}"
                for c in f.native.connections
            )
            blocks.append("\n".join(lines))
    for f in plan.files:
        if f.inactive:
            lines = [style.bold("not started: no enabled profile") + style.dim(f"  ({f.path})")]
            lines.extend(
                f"  service {name} (profiles: {', '.join(profiles)}): "
                f"--profile {profiles[0]} or COMPOSE_PROFILES={profiles[0]}"
                for name, profiles in f.inactive.items()
            )
            blocks.append("\n".join(lines))
    if not blocks:
        blocks.append("no ports in these files")
    rows = host_port_rows(plan)
    if rows:
        title = style.bold("Host ports these files take")
        blocks.append(
            title
            + "\n"
            + table(
                rows,
                ("ADDRESS", "PORT", "PROTO", "USUALLY", "TAKEN BY", "WHERE"),
                style=style,
                width=width,
            )
        )
    return "\n\n".join(blocks)


def mapping_json(m: PortMapping) -> dict[str, Any]:
    """The JSON object of one mapping; keys depend on the file's format (docs/plan.md)."""
    base: dict[str, Any] = {"format": m.source, "file": m.file, "line": m.line}
    if m.source == "compose":
        host_port = _range(m.host_port) if m.host_bound else None
        base.update(
            service=m.service,
            host_ip=None if m.host_ip in (None,) or m.origin == "expose" else m.host_ip,
            host_port=host_port,
            container_port=_range(m.container_port),
            protocol=m.protocol,
            source=m.origin,
            exposure=m.exposure.value,
            pool=m.pool,
            network_mode_host=m.network_host,
            mode=m.mode,
            name=m.name,
            app_protocol=m.app_protocol,
            unquoted_base60=m.base60,
            text=describe(m),
        )
        return base
    if m.source == "kubernetes":
        service = m.origin == "service"
        base.update(
            kind=m.kind,
            name=m.service,
            namespace=m.namespace,
            port=m.port,
            target_port=m.target_port if service else None,
            node_port=m.node_port if service else None,
            container_port=_range(m.container_port) if m.origin != "ingress" else None,
            host_port=_range(m.host_port) if m.origin == "container" else None,
            host_ip=m.host_ip if m.origin == "container" else None,
            protocol=m.protocol.upper(),
            type=m.type if service else None,
            container=m.container,
            port_name=m.name,
            backend=m.backend,
            host_network=m.network_host,
            selected=list(m.selected),
            exposure=m.exposure.value,
            text=describe(m),
        )
        return base
    base.update(
        service=m.service,
        host=m.host_name,
        host_address=m.scope,
        address=m.host_ip,
        port=_range(m.host_port),
        protocol=m.protocol,
        exposure=m.exposure.value,
        name=m.name,
        forwards_to=m.forwards_to,
        text=describe(m),
    )
    return base


# --- lint ---------------------------------------------------------------------------

_SEVERITY_STYLE = {"error": "red", "warning": "yellow", "info": "dim"}


def findings_json(findings: Sequence[Finding]) -> list[dict[str, Any]]:
    return [f.to_json() for f in findings]


def findings_text(
    findings: Sequence[Finding], files: int, style: Style, width: int | None = None
) -> str:
    """A table of findings, the hint of each rule found, and a one-line summary."""
    counts = {"error": 0, "warning": 0, "info": 0}
    for f in findings:
        counts[str(f.severity)] += 1
    summary = ", ".join(
        f"{n} {k}{'s' if n != 1 and k != 'info' else ''}" for k, n in counts.items()
    )
    noun = "file" if files == 1 else "files"
    if not findings:
        return f"no findings in {files} {noun}"
    rows = [
        (
            f"{f.file}:{f.line}" if f.line else f.file,
            getattr(style, _SEVERITY_STYLE[str(f.severity)])(str(f.severity)),
            f.rule,
            f.object,
            f.message,
        )
        for f in findings
    ]
    parts = [
        table(rows, ("WHERE", "SEVERITY", "RULE", "OBJECT", "MESSAGE"), style=style, width=width)
    ]
    hints = dict.fromkeys((f.rule, f.hint) for f in findings)
    parts.append("\n".join(f"{style.bold(rule)}: {hint}" for rule, hint in hints))
    parts.append(f"{summary} in {files} {noun}")
    return "\n\n".join(parts)


def rules_text(rules: Sequence[Rule], style: Style, width: int | None = None) -> str:
    rows = [
        (r.id, str(r.severity), r.title + ("" if r.default else " (off unless --enable)"))
        for r in rules
    ]
    return table(rows, ("RULE", "SEVERITY", "WHAT"), style=style, width=width)


# --- check --------------------------------------------------------------------------

_STATUS_STYLE = {
    "ok": "green",
    "miss": "red",
    "unexpected": "red",
    "unknown": "yellow",
    "skip": "dim",
}


def check_json(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    return [r.to_json() for r in results]


def check_text(results: Sequence[CheckResult], style: Style, width: int | None = None) -> str:
    """A line per mapping and a summary."""
    rows = [
        (
            getattr(style, _STATUS_STYLE[r.status])(r.status.upper()),
            r.address,
            r.expected,
            r.mapping.object,
            r.detail,
        )
        for r in results
    ]
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    planned = len(results) - counts.get("unexpected", 0)
    summary = f"{planned} mappings: " + ", ".join(
        f"{counts.get(k, 0)} {k}" for k in ("ok", "miss", "unknown", "skip")
    )
    if "unexpected" in counts:
        summary += f"; {counts['unexpected']} unexpected listeners"
    body = table(
        rows, ("STATUS", "ADDRESS", "PLANNED", "OBJECT", "DETAIL"), style=style, width=width
    )
    return f"{body}\n\n{summary}" if rows else summary

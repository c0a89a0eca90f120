"""``plan check``: is the plan true right now, on this machine or on a remote host?

Planning (which port to look at where, what it should look like) and deciding
(what the observation means) are pure functions; the observations come from
``_live`` (this machine's listeners, TCP/UDP probes).

On this machine a port is judged by who listens on it: a public port must listen
on every interface (or a non-loopback address), a loopback port on loopback only,
an internal one on a private or loopback address but not on every interface. A
TCP connect confirms it accepts. On a remote host only probes can tell: a public
port must accept connections, an internal or loopback one must not be reachable
from here.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from portkit.errors import UsageError
from portkit.model import BindScope, PortRange, bind_scope
from portkit.plan._baseline import baseline_mappings, is_baseline, unexpected_listeners
from portkit.plan._model import Exposure, PortMapping

if TYPE_CHECKING:
    from collections.abc import Sequence

    from portkit.containers import Container
    from portkit.plan._plan import Plan

__all__ = [
    "MAX_PORTS",
    "CheckResult",
    "Target",
    "check",
    "decide_compose",
    "decide_local",
    "decide_remote",
    "target_host",
    "targets",
]

#: At most this many ports per mapping are checked (a 5000-5010 range is 11).
MAX_PORTS = 1024


@dataclass(frozen=True)
class Target:
    """What to look at for one mapping: ``where`` is None for this machine, else a host."""

    mapping: PortMapping
    where: str | None
    ports: tuple[int, ...]
    protocol: str
    expected: Exposure
    bind_ip: str | None
    any_of: bool = False
    skip: str | None = None


@dataclass(frozen=True)
class CheckResult:
    """The verdict for one mapping: ``status`` is ok, miss, unknown or skip, or for a
    baseline plan ``unexpected`` (a listener the baseline does not have)."""

    mapping: PortMapping
    where: str
    address: str
    expected: str
    status: str
    detail: str
    listening: tuple[str, ...] = ()
    reachable: bool | None = None

    def to_json(self) -> dict[str, Any]:
        m = self.mapping
        return {
            "file": m.file,
            "line": m.line,
            "object": m.object,
            "where": self.where,
            "address": self.address,
            "protocol": m.protocol,
            "expected": self.expected,
            "status": self.status,
            "listening": list(self.listening),
            "reachable": self.reachable,
            "detail": self.detail,
        }


def _ports_of(r: Any) -> tuple[int, ...]:
    return tuple(list(r)[:MAX_PORTS])


def targets(plan: Plan, host: str | None = None) -> list[Target]:
    """What to check for each mapping of the plan (pure).

    Args:
        plan: the plan.
        host: probe this host instead of looking at this machine (``--host``).
    """
    out: list[Target] = []
    for m in plan.mappings:
        where = host if host is not None else (m.scope if m.source == "plan" else None)
        out.append(_target(m, where))
    return out


def _target(m: PortMapping, where: str | None) -> Target:
    def skip(reason: str) -> Target:
        return Target(m, where, (), m.protocol, m.exposure, m.host_ip, skip=reason)

    if m.origin == "ingress":
        return skip("reached through the ingress controller (HTTP 80 / HTTPS 443)")
    if m.origin == "expose":
        return skip("exposed to other services only, not published on the host")
    if m.source == "kubernetes":
        if m.origin == "service":
            if m.type == "LoadBalancer" and where is not None and m.port and m.port <= 65535:
                return Target(m, where, (m.port,), m.protocol, Exposure.PUBLIC, None)
            if m.type in ("NodePort", "LoadBalancer"):
                if m.node_port is None or not 0 < m.node_port <= 65535:
                    return skip("node port allocated by Kubernetes: see kubectl get svc")
                return Target(m, where, (m.node_port,), m.protocol, Exposure.PUBLIC, None)
            return skip("inside the cluster only")
        if not m.host_bound or m.host_port is None:
            return skip("container port, not bound on the node")
    if m.host_port is None:
        return skip("host port picked by the engine: see docker compose port")
    return Target(
        m,
        where,
        _ports_of(m.host_port),
        m.protocol,
        m.exposure,
        m.host_ip,
        any_of=m.pool,
    )


_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
    r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?"
)


def target_host(text: str) -> str:
    """``--host``: a host name or an IP address, an IPv6 one with or without [ ].

    >>> target_host("[::1]"), target_host("db.internal")
    ('::1', 'db.internal')

    Raises:
        UsageError: empty, or neither an address nor a host name.
    """
    from portkit.plan._spec import parse_ip

    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    if parse_ip(bare) is not None:
        return str(parse_ip(bare))
    if not _HOSTNAME.fullmatch(bare):
        shown = repr(text) if len(text) <= 80 else repr(text[:77] + "...")
        raise UsageError(
            f"--host {shown} is not a host name or an IP address "
            "(accepted: e.g. 10.0.0.5, ::1, [::1], node1.example)"
        )
    return bare


def _is_private(ip: str) -> bool:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.is_private or addr.is_link_local


def decide_local(t: Target, addrs: set[str], reachable: bool | None) -> tuple[str, str]:
    """The verdict for a port on this machine from the addresses it listens on.

    >>> t = Target(None, None, (5432,), "tcp", Exposure.LOOPBACK, "127.0.0.1")  # type: ignore
    >>> decide_local(t, {"0.0.0.0"}, True)
    ('miss', 'planned loopback, but listening on every interface (0.0.0.0)')
    """
    where = ", ".join(sorted(addrs))
    if not addrs:
        if reachable:
            return "ok", "accepts connections (forwarded: no local listener)"
        return "miss", "nothing listens here"
    scopes = {a: bind_scope(a) for a in addrs}
    wildcard = BindScope.WILDCARD in scopes.values()
    loopback_only = all(s is BindScope.LOOPBACK for s in scopes.values())
    if t.expected is Exposure.PUBLIC:
        if loopback_only:
            return "miss", f"planned public, but listening on loopback only ({where})"
        if (
            bind_scope(t.bind_ip) is not BindScope.WILDCARD
            and not wildcard
            and t.bind_ip not in addrs
        ):
            return "miss", f"planned on {t.bind_ip}, but listening on {where}"
        return "ok", f"listening on {where}"
    if t.expected is Exposure.ADDRESS:
        if wildcard:
            return (
                "miss",
                f"planned on {t.bind_ip} only, but listening on every interface ({where})",
            )
        if t.bind_ip is not None and t.bind_ip not in addrs:
            return "miss", f"planned on {t.bind_ip}, but listening on {where}"
        return "ok", f"listening on {where}"
    if t.expected is Exposure.LOOPBACK:
        if wildcard:
            return "miss", f"planned loopback, but listening on every interface ({where})"
        if not loopback_only:
            return "miss", f"planned loopback, but listening on {where}"
        return "ok", f"listening on loopback only ({where})"
    # internal: reachable from the other hosts of the stack, not from everywhere
    if wildcard:
        return "miss", (
            f"planned internal, but listening on every interface ({where}): reachable from "
            "outside unless a firewall blocks it"
        )
    public = sorted(
        a for a, s in scopes.items() if not _is_private(a) and s is not BindScope.LOOPBACK
    )
    if public:
        return "miss", f"planned internal, but listening on public address {', '.join(public)}"
    return "ok", f"listening on {where}"


#: Remote verdicts: (planned reachable?, probe state) -> (status, words).
_REMOTE: dict[tuple[bool, str], tuple[str, str]] = {
    (True, "open"): ("ok", "accepts connections"),
    (True, "closed"): ("miss", "connection refused: nothing listens there"),
    (True, "filtered"): ("miss", "no answer: filtered by a firewall, or the host is down"),
    (True, "open|filtered"): ("unknown", "no answer (UDP cannot tell open from filtered)"),
    (False, "open"): ("miss", "reachable from here, but planned {exposure}"),
    (False, "closed"): ("ok", "not reachable from here (refused), as planned"),
    (False, "filtered"): ("ok", "not reachable from here (no answer), as planned"),
    (False, "open|filtered"): ("unknown", "no answer (UDP cannot tell open from filtered)"),
}


def decide_remote(t: Target, state: str) -> tuple[str, str]:
    """The verdict for a port probed from here: ``state`` is the probe's answer.

    >>> t = Target(None, "db", (5432,), "tcp", Exposure.INTERNAL, None)  # type: ignore
    >>> decide_remote(t, "open")
    ('miss', 'reachable from here, but planned internal')
    """
    planned_reachable = t.expected in (Exposure.PUBLIC, Exposure.ADDRESS)
    status, words = _REMOTE[(planned_reachable, state)]
    return status, words.format(exposure=t.expected.value)


def _address(t: Target) -> str:
    ip = t.where or t.bind_ip or "0.0.0.0"
    host = f"[{ip}]" if ":" in ip else ip
    if not t.ports:
        port = str(t.mapping.host_port) if t.mapping.host_port is not None else "-"
    elif len(t.ports) == 1:
        port = str(t.ports[0])
    else:
        port = f"{t.ports[0]}-{t.ports[-1]}"
    return f"{host}:{port}/{t.protocol}"


def _local_probe_ip(t: Target, addrs: set[str]) -> str:
    if bind_scope(t.bind_ip) is not BindScope.WILDCARD:
        return str(t.bind_ip)
    if addrs and all(":" in a for a in addrs):
        return "::1"
    return "127.0.0.1"


def check(
    plan: Plan,
    *,
    host: str | None = None,
    timeout: float = 1.0,
    netns: str | None = None,
    project: str | None = None,
    containers: Sequence[Container] | None = None,
) -> list[CheckResult]:
    """Verify every mapping of the plan against this machine, or ``host`` by probes.

    Args:
        plan: the plan (compose, Kubernetes or portkit plan files).
        host: probe this host instead of this machine; None: look at this machine's
            listening sockets (plan services with a ``host`` are probed there).
        timeout: seconds to wait for each probe.
        netns: look at the listeners of this ``ip netns`` namespace (and probe from
            inside it) instead of this one's.
        project: the compose project the containers must belong to (``docker compose
            -p``); None: each compose file's own (COMPOSE_PROJECT_NAME, ``name:``, its
            directory).
        containers: the running containers (default: ask the local runtimes through
            :mod:`portkit.containers`). A compose mapping is live only when a
            container of that very service (and project) publishes its host port;
            when no runtime answers, any listener on the port counts.

    Returns:
        One result per mapping, in plan order.
    """
    from portkit.plan import _live

    if host is not None:
        host = target_host(host)
    plan_targets = targets(plan, host)
    local_needed = any(t.where is None and not t.skip for t in plan_targets)
    listening = _live.listeners(netns) if local_needed else {}
    boxes: Sequence[Container] = ()
    notes: list[str] = []
    if any(t.where is None and not t.skip and t.mapping.source == "compose" for t in plan_targets):
        if containers is None:
            found, notes = _live.containers()
            boxes = found
        else:
            boxes = containers
    resolved: dict[str, str] = {}
    for t in plan_targets:
        if t.where is not None and not t.skip and t.where not in resolved:
            resolved[t.where] = _live.resolve(t.where)[0]
    probes: list[tuple[str, int, str]] = []
    for t in plan_targets:
        if t.skip:
            continue
        for port in t.ports:
            if t.where is not None:
                probes.append((resolved[t.where], port, t.protocol))
            elif t.protocol == "tcp":
                addrs = listening.get((t.protocol, port), set())
                probes.append((_local_probe_ip(t, addrs), port, t.protocol))
    states = _live.probe(probes, timeout=timeout, netns=netns)
    results: list[CheckResult] = []
    for t in plan_targets:
        where = t.where or "this host"
        if t.skip:
            results.append(
                CheckResult(t.mapping, where, _address(t), t.expected.value, "skip", t.skip)
            )
            continue
        verdicts: list[tuple[int, str, str, set[str], bool | None]] = []
        for port in t.ports:
            if t.where is not None:
                state = states[(resolved[t.where], port, t.protocol)]
                status, detail = decide_remote(t, state)
                verdicts.append((port, status, detail, set(), state == "open"))
            else:
                addrs = listening.get((t.protocol, port), set())
                reach = None
                if t.protocol == "tcp":
                    reach = states.get((_local_probe_ip(t, addrs), port, t.protocol)) == "open"
                if t.mapping.source == "compose" and boxes:
                    status, detail, addrs = decide_compose(
                        t, port, addrs, reach, boxes, project or t.mapping.project
                    )
                else:
                    status, detail = decide_local(t, addrs, reach)
                    if t.mapping.source == "compose" and notes:
                        detail += f" (containers unknown: {notes[0]})"
                verdicts.append((port, status, detail, addrs, reach))
        results.append(_combine(t, where, verdicts))
    if host is None and is_baseline(plan):
        results.extend(_unexpected(plan, listening, netns))
    return results


def _unexpected(
    plan: Plan, listening: dict[tuple[str, int], set[str]], netns: str | None
) -> list[CheckResult]:
    """A result per listener on a port the baseline does not have at all (a wider bind
    on a planned port is that port's own miss)."""
    from portkit.plan import _live

    planned = {(m.protocol, p) for m in baseline_mappings(plan) for p in m.host_ports}
    observed = [
        (proto, addr, port)
        for (proto, port), addrs in sorted(listening.items(), key=lambda kv: (kv[0][1], kv[0][0]))
        for addr in sorted(addrs)
        if (proto, port) not in planned
    ]
    if not observed:
        return []
    owned, _notes = _live.owned_listeners(netns)
    who = {(ls.protocol, ls.address, ls.port): ls for ls in owned}
    first = next(f for f in plan.files if f.native is not None and f.native.baseline)
    out = []
    for proto, addr, port in unexpected_listeners(plan, observed):
        ls = who.get((proto, addr, port))
        owner = None
        if ls is not None:
            owner = f"container {ls.container}" if ls.container else ls.owner
        scope = bind_scope(addr)
        exposure = {
            BindScope.WILDCARD: Exposure.PUBLIC,
            BindScope.LOOPBACK: Exposure.LOOPBACK,
        }.get(scope, Exposure.ADDRESS)
        m = PortMapping(
            "plan",
            first.path,
            None,
            owner or "unknown owner",
            owner or "",
            "listener",
            proto,
            exposure,
            host_ip=addr,
            host_port=PortRange(port),
            host_bound=True,
        )
        host = f"[{addr}]" if ":" in addr else addr
        out.append(
            CheckResult(
                m,
                "this host",
                f"{host}:{port}/{proto}",
                "-",
                "unexpected",
                f"{owner or 'a process'} listens here: not in the baseline",
                (addr,),
            )
        )
    return out


def decide_compose(
    t: Target,
    port: int,
    addrs: set[str],
    reachable: bool | None,
    boxes: Sequence[Container],
    project: str | None,
) -> tuple[str, str, set[str]]:
    """The verdict for a compose mapping's host port from the containers that publish it.

    Live only when a container of that service (of ``project``, when known) publishes
    the port; its exposure is then judged from the addresses the runtime publishes
    it on (with or without a proxy socket behind them). Returns (status, words, the
    addresses).

    >>> from portkit.containers import Container, Published
    >>> m = PortMapping("compose", "c.yaml", 3, "service web", "web", "ports", "tcp",
    ...                 Exposure.PUBLIC, project="shop")
    >>> t = Target(m, None, (18082,), "tcp", Exposure.PUBLIC, None)
    >>> other = Container("b" * 64, "blog_web_1", "docker", compose_project="blog",
    ...                   compose_service="web",
    ...                   published=(Published("0.0.0.0", 18082, 80, "tcp"),))
    >>> print(decide_compose(t, 18082, {"0.0.0.0"}, True, [other], "shop")[1])
    published by container blog_web_1 (compose blog/web), not by service web of project shop
    """
    m = t.mapping
    owners = [
        (c, p)
        for c in boxes
        for p in c.published
        if p.host_port == port and p.protocol == t.protocol
    ]
    mine = [
        (c, p)
        for c, p in owners
        if c.compose_service == m.service and (not project or c.compose_project == project)
    ]
    of = f"service {m.service}" + (f" of project {project}" if project else "")
    if mine:
        published = {p.host_ip or "0.0.0.0" for _, p in mine}
        status, detail = decide_local(t, published, reachable)
        return status, f"{detail}; published by container {mine[0][0].name}", published
    if owners:
        return "miss", f"published by container {owners[0][0].label()}, not by {of}", addrs
    if addrs:
        where = ", ".join(sorted(addrs))
        return "miss", f"listening on {where}, but no container of {of} publishes it", addrs
    return "miss", f"nothing listens here and no container of {of} publishes it", addrs


def _combine(
    t: Target, where: str, verdicts: list[tuple[int, str, str, set[str], bool | None]]
) -> CheckResult:
    """One result per mapping: a pool needs one good port, a range every port."""
    good = [v for v in verdicts if v[1] == "ok"]
    if t.any_of:
        chosen = good[0] if good else verdicts[0]
        status = "ok" if good else chosen[1]
        detail = (
            f"port {chosen[0]} of the pool: {chosen[2]}"
            if good
            else f"no port of the pool is in use: {chosen[2]}"
        )
    else:
        bad = [v for v in verdicts if v[1] != "ok"]
        chosen = bad[0] if bad else verdicts[0]
        status = chosen[1]
        detail = chosen[2]
        if len(verdicts) > 1 and bad:
            detail = f"port {chosen[0]}: {detail} ({len(bad)} of {len(verdicts)} ports)"
    addrs = tuple(sorted({a for v in verdicts for a in v[3]}))
    reach = chosen[4]
    return CheckResult(
        t.mapping, where, _address(t), t.expected.value, status, detail, addrs, reach
    )

"""The see capability's summaries: ``portkit stats``, the overview, ``portkit who``.

Formatting only: what is grouped, named and judged comes from :mod:`portkit.see`
(:func:`~portkit.see.overview`, :func:`~portkit.see.who`, ``SocketStats``); the
socket listing itself is :mod:`portkit.render.sockets`.
"""

from __future__ import annotations

from portkit.model import BindScope, Protocol, widest_scope
from portkit.render import safe
from portkit.render.sockets import ls_json, ls_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from portkit.model import TcpState
    from portkit.render import Style
    from portkit.render.sockets import Names
    from portkit.see._containers import ContainerPorts
    from portkit.see._overview import ListeningPort, Overview
    from portkit.see._stats import SocketStats
    from portkit.see._who import PortOwners

__all__ = [
    "hidden_owners_note",
    "overview_json",
    "overview_text",
    "scope_words",
    "stats_json",
    "stats_text",
    "who_json",
    "who_text",
]


# --- stats ----------------------------------------------------------------------------


def _addr(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def stats_json(stats: SocketStats, names: Names | None = None) -> dict[str, Any]:
    """``portkit stats --json`` (docs/see.md)."""
    counts: dict[str, dict[str, int]] = {}
    for (proto, state), n in sorted(stats.counts.items(), key=lambda kv: (kv[0][0], kv[0][1].code)):
        counts.setdefault(proto.value, {})[state.value] = n
    names = names or {}
    return {
        "total": stats.total,
        "counts": counts,
        "time_wait": stats.time_wait,
        "listeners": [
            {
                "proto": ls.protocol.value,
                "ip": ls.ip,
                "port": ls.port,
                "service": names.get(ls.protocol.value, {}).get(ls.port),
                "connections": ls.connections,
                "accept_queue": ls.accept_queue,
                "accept_max": ls.accept_max,
                "pid": ls.pid,
                "process": ls.process,
            }
            for ls in stats.listeners
        ],
        "ephemeral": {
            "range": {"start": stats.ephemeral.start, "end": stats.ephemeral.end},
            "size": len(stats.ephemeral),
            "in_use": stats.ephemeral_in_use,
            "fill": round(stats.ephemeral_fill, 4),
        },
        "destinations": [
            {
                "source_ip": d.source_ip,
                "ip": d.ip,
                "port": d.port,
                "in_use": d.in_use,
                "capacity": d.capacity,
                "fill": round(d.fill, 4),
            }
            for d in stats.destinations
        ],
        "forecasts": [
            {
                "source_ip": f.source_ip,
                "ip": f.ip,
                "port": f.port,
                "in_use": f.in_use,
                "time_wait": f.time_wait,
                "capacity": f.capacity,
                "rate": round(f.rate, 3),
                "seconds": None if f.seconds is None else round(f.seconds, 1),
            }
            for f in stats.forecasts
        ],
        "warnings": list(stats.warnings),
    }


def stats_text(stats: SocketStats, style: Style, names: Names | None = None) -> str:
    """``portkit stats`` as a few short tables."""
    from portkit.render import table

    names = names or {}
    blocks = []
    by_proto: dict[Protocol, list[tuple[TcpState, int]]] = {}
    for (proto, state), n in stats.counts.items():
        by_proto.setdefault(proto, []).append((state, n))
    count_rows = [
        (proto.value, ", ".join(f"{s.ss_name} {n}" for s, n in sorted(v, key=lambda x: x[0].code)))
        for proto, v in sorted(by_proto.items())
    ]
    blocks.append(
        style.bold(f"{stats.total} sockets")
        + f", {stats.time_wait} in TIME-WAIT\n"
        + table(count_rows, ["PROTO", "STATES"], style=style)
    )
    if stats.listeners:
        rows = [
            (
                ls.protocol.value,
                _addr(ls.ip, ls.port),
                names.get(ls.protocol.value, {}).get(ls.port),
                ls.connections if ls.protocol is Protocol.TCP else None,
                f"{ls.accept_queue}/{ls.accept_max}" if ls.protocol is Protocol.TCP else None,
                f"{safe(ls.process or '-')}/{ls.pid}" if ls.pid else None,
            )
            for ls in stats.listeners
        ]
        blocks.append(
            table(
                rows,
                ["PROTO", "LISTEN", "SERVICE", "CONNS", "ACCEPT-Q", "PROCESS"],
                style=style,
                right=(3,),
            )
        )
    eph = stats.ephemeral
    line = (
        f"ephemeral ports {eph}: {stats.ephemeral_in_use} of {len(eph)} in use "
        f"({stats.ephemeral_fill:.1%})"
    )
    if stats.destinations:
        rows2 = [
            (d.source_ip, _addr(d.ip, d.port), d.in_use, f"{d.fill:.1%}")
            for d in stats.destinations[:10]
        ]
        line += "\n" + table(
            rows2, ["SOURCE", "DESTINATION", "PORTS", "FILL"], style=style, right=(2, 3)
        )
    busy = [f for f in stats.forecasts if f.rate > 0][:10]
    if busy:
        rows3 = [
            (
                f.source_ip,
                _addr(f.ip, f.port),
                f"{f.rate:.1f}",
                f.time_wait,
                "never" if f.seconds is None else f"{f.seconds:.0f} s",
            )
            for f in busy
        ]
        line += "\nruns out at the connection rate (from TIME-WAIT):\n" + table(
            rows3,
            ["SOURCE", "DESTINATION", "CONN/S", "TIME-WAIT", "EXHAUSTED IN"],
            style=style,
            right=(2, 3, 4),
        )
    blocks.append(line)
    if stats.warnings:
        blocks.append("\n".join(style.yellow("warning: ") + w for w in stats.warnings))
    return "\n\n".join(blocks)


# --- overview -------------------------------------------------------------------------

#: How the overview words a port's bind scope (the addresses themselves otherwise).
_SCOPE_WORDS = {BindScope.WILDCARD: "all interfaces", BindScope.LOOPBACK: "loopback only"}


def scope_words(addresses: Iterable[str]) -> str:
    """``all interfaces``, ``loopback only`` or the addresses themselves.

    >>> scope_words(["0.0.0.0", "::"]), scope_words(["127.0.0.1", "::1"]), scope_words(["10.0.0.5"])
    ('all interfaces', 'loopback only', '10.0.0.5')
    """
    ips = sorted(set(addresses))
    return _SCOPE_WORDS.get(widest_scope(ips)) or ", ".join(ips)


def _listening_json(lp: ListeningPort) -> dict[str, Any]:
    return {
        "proto": lp.protocol.value,
        "port": lp.port,
        "service": lp.service,
        "addresses": list(lp.addresses),
        "scope": scope_words(lp.addresses),
        "bind_scope": lp.scope.value,
        "processes": list(lp.processes),
        "connections": lp.connections,
        "role": lp.role.role if lp.role else None,
        "exposed": lp.exposed,
    }


def overview_json(view: Overview, owners_hidden: int) -> dict[str, Any]:
    stats = view.stats
    return {
        "listening": [_listening_json(lp) for lp in view.listening],
        "sockets": stats.total,
        "time_wait": stats.time_wait,
        "ephemeral": {
            "in_use": stats.ephemeral_in_use,
            "size": len(stats.ephemeral),
            "fill": round(stats.ephemeral_fill, 4),
        },
        "containers": [_container_json(c) for c in view.containers],
        "warnings": list(view.warnings),
        "owners_hidden": owners_hidden,
    }


def _container_json(c: ContainerPorts) -> dict[str, Any]:
    return {
        "container": c.container.as_json(),
        "listening": [{"proto": p, "port": n, "address": a} for p, n, a in c.listening],
        "published": [
            {
                "host_ip": p.host_ip,
                "host_port": p.host_port,
                "container_port": p.container_port,
                "proto": p.protocol,
            }
            for p in c.published
        ],
        "unpublished": [{"proto": p, "port": n} for p, n in c.unpublished],
        "dangling": [{"host_port": p.host_port, "proto": p.protocol} for p in c.dangling],
    }


def _containers_text(containers: tuple[ContainerPorts, ...], style: Style) -> list[str]:
    """The overview's containers: a line each, what listens inside, what is published."""
    lines = [style.bold("Containers")]
    for c in containers:
        inside = ", ".join(f"{n}/{p}" for p, n in sorted({(p, n) for p, n, _ in c.listening}))
        out = ", ".join(
            f"{_addr(p.host_ip, p.host_port)}->{p.container_port}/{p.protocol}" for p in c.published
        )
        line = f"  {safe(c.container.label())}: listens on {inside or 'nothing'}"
        line += f"; published {out}" if out else "; nothing published"
        if c.unpublished:
            line += style.dim(
                " (not published: " + ", ".join(f"{n}/{p}" for p, n in c.unpublished) + ")"
            )
        lines.append(line)
    return lines


def hidden_owners_note(hidden: int, *, as_root: bool) -> str:
    """Why ``hidden`` processes' sockets show no owner, and what would help.

    >>> hidden_owners_note(3, as_root=False)[:44]
    '3 processes of other users could not be insp'
    """
    one = hidden == 1
    if as_root:
        return (
            f"{hidden} {'process' if one else 'processes'} could not be inspected even as "
            "root (reading /proc/PID/fd was denied: a sandbox, a security module, or a "
            f"missing CAP_SYS_PTRACE), so {'its' if one else 'their'} sockets show no owner"
        )
    return (
        f"{hidden} {'process of another user' if one else 'processes of other users'} "
        f"could not be inspected, so {'its' if one else 'their'} sockets show no owner "
        "(run as root to see them)"
    )


def overview_text(
    view: Overview,
    style: Style,
    width: int | None,
    owners_hidden: int,
    *,
    as_root: bool = False,
) -> str:
    """The newcomer's first screen: what listens here, and what deserves attention."""
    from portkit.render import table

    stats = view.stats
    rows = [
        (
            lp.port,
            lp.protocol.value,
            lp.service,
            style.red(scope_words(lp.addresses)) if lp.exposed else scope_words(lp.addresses),
            lp.connections if lp.protocol.value == "tcp" else None,
            safe(", ".join(lp.processes)) or None,
        )
        for lp in view.listening
    ]
    parts = [style.bold("Listening on this machine")]
    if rows:
        parts.append(
            table(
                rows,
                ["PORT", "PROTO", "SERVICE", "BIND", "CONNS", "PROCESS"],
                style=style,
                width=width,
                right=(0, 4),
            )
        )
    else:
        parts.append("nothing is listening")
    counts = ", ".join(
        f"{n} {p.value} {s.ss_name}"
        for (p, s), n in sorted(stats.counts.items(), key=lambda kv: -kv[1])[:4]
    )
    if view.containers:
        parts.append("")
        parts.extend(_containers_text(view.containers, style))
    parts.append(
        f"\n{stats.total} sockets ({counts or 'none'}); ephemeral ports in use: "
        f"{stats.ephemeral_in_use} of {len(stats.ephemeral)} ({stats.ephemeral_fill:.1%})"
    )
    for w in view.warnings[:5]:
        parts.append(style.yellow("warning: ") + w)
    if owners_hidden:
        parts.append(style.dim("note: " + hidden_owners_note(owners_hidden, as_root=as_root)))
    parts.append(
        style.dim("more: portkit ls -tuanp, portkit stats, portkit who PORT, portkit --help")
    )
    return "\n".join(parts)


# --- who -------------------------------------------------------------------------------


def _when(ts: float | None) -> str | None:
    if ts is None:
        return None
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


_NO_CONTAINER: dict[str, Any] = {"container": None, "published_by": None}


def who_json(result: PortOwners, names: Names) -> dict[str, Any]:
    """``portkit who --json``: the port, its service, its holders and its sockets."""
    import json

    boxes = {h.pid: h.container for h in result.holders if h.container is not None}
    behind = result.container
    return {
        "port": result.port,
        "proto": result.protocol.value if result.protocol else None,
        "service": result.service,
        "container": behind.json()["container"] if behind else None,
        "published_by": behind.published_by if behind else None,
        "owners": [
            {
                "pid": h.pid,
                "process": h.process,
                "cmdline": list(h.cmdline),
                "user": h.user,
                "uid": h.uid,
                "started": _when(h.started),
                **(
                    h.container.json() if h.container else {"container": None, "published_by": None}
                ),
            }
            for h in result.holders
        ],
        "sockets": json.loads(ls_json(list(result.rows), names, containers=boxes)),
        "owners_hidden": result.owners_hidden,
    }


def who_text(result: PortOwners, names: Names, style: Style, width: int | None) -> str:
    """``portkit who``: a heading with the service, the holders, then the sockets."""
    from portkit.render import table

    label = f"{result.port}/{result.protocol.value}" if result.protocol else str(result.port)
    head = style.bold(f"port {label}") + (
        f": {result.service}" if result.service else ": no registered service"
    )
    parts = [head]
    behind = result.container
    if behind is not None and behind.container is not None:
        c = behind.container
        what = "published by container" if behind.published_by else "in container"
        line = f"{what} {safe(c.label())}"
        if behind.target:
            line += f" -> {behind.target}"
        if c.image:
            line += f" (image {safe(c.image)})"
        parts.append(line)
    rows = list(result.rows)
    boxes = {h.pid: h.container for h in result.holders if h.container is not None}
    if result.holders:
        parts.append(
            table(
                [
                    (
                        h.pid,
                        safe(h.user or "-"),
                        _when(h.started),
                        safe(" ".join(h.cmdline)) or safe(h.process or "-"),
                    )
                    for h in result.holders
                ],
                ["PID", "USER", "STARTED", "COMMAND"],
                style=style,
                width=width,
            )
        )
    elif rows and result.owners_hidden:
        parts.append("no owner visible (see the note below: some processes are hidden)")
    elif rows:
        parts.append("no process holds it (sockets without an owner, e.g. TIME-WAIT)")
    else:
        parts.append("nothing uses this port")
    if rows:
        parts.append("")
        parts.append(
            ls_text(
                rows,
                names=names,
                owners=True,
                style=style if style.color else None,
                containers=boxes or None,
            )
        )
    return "\n".join(parts)

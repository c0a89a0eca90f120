"""The live side of ``plan check``: this machine's listeners and TCP/UDP probes.

The only network I/O of the plan capability, and all of it borrowed: listeners
come from :func:`portkit.see.sockets` (the see capability), probes from
:func:`portkit.probe.check` (the reach capability: bounded concurrency, nmap's
states). Their packages are imported, never the top ``portkit`` package, which
imports this one.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from portkit.errors import ProbeError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from portkit.containers import Container
    from portkit.plan._baseline import Listener

__all__ = ["containers", "listeners", "owned_listeners", "probe", "resolve"]


def listeners(netns: str | None = None) -> dict[tuple[str, int], set[str]]:
    """(protocol, port) -> the local addresses listening on it (TCP LISTEN, unconnected UDP),
    in this network namespace or the one named ``netns``."""
    from portkit.see import sockets

    found: dict[tuple[str, int], set[str]] = {}
    for s in sockets(listening=True, netns=netns):
        found.setdefault((str(s.protocol), s.local_port), set()).add(s.local_ip)
    return found


def resolve(host: str) -> list[str]:
    """The addresses of ``host`` (an IP literal is returned as is)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {host!r}: {exc.strerror}", host=host) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def owned_listeners(netns: str | None = None) -> tuple[list[Listener], list[str]]:
    """Every listener with its owner's name and, where the owner is a container (or
    publishes a port for one), the container's label; and what could not be learnt."""
    from portkit.containers import Resolver, is_publisher
    from portkit.plan._baseline import Listener
    from portkit.see import sockets

    found = sockets(listening=True, owners=True, netns=netns)
    resolver = Resolver()
    out = []
    for s in found:
        protocol = str(s.protocol)
        box = None
        if s.pid is not None:
            if is_publisher(s.process):
                pub = resolver.publication(s.pid, s.process, s.local_port, protocol)
                box = pub.container if pub is not None else None
            else:
                box = resolver.of_pid(s.pid)
        label = box.label() if box is not None else None
        out.append(Listener(protocol, s.local_ip, s.local_port, s.process, label))
    notes = list(resolver.notes)
    if found.owners_hidden:
        notes.append(
            f"the owners of {found.owners_hidden} process(es) could not be read: "
            "their listeners are under service unknown"
        )
    return out, notes


def containers() -> tuple[list[Container], list[str]]:
    """The running containers the local runtimes report (Docker, Podman: the
    containers capability's Resolver, ``DOCKER_HOST`` honoured), and its notes."""
    from portkit.containers import Resolver

    resolver = Resolver()
    return resolver.containers(cgroup_only=False), resolver.notes


def probe(
    targets: Iterable[tuple[str, int, str]], timeout: float = 1.0, netns: str | None = None
) -> dict[tuple[str, int, str], str]:
    """Probe each (ip, port, protocol) with :func:`portkit.check` (the reach capability).

    Returns nmap's state for each: ``open``, ``closed``, ``filtered`` or
    ``open|filtered`` (UDP cannot tell a silent open port from a filtered one). A
    probe that could not be sent at all counts as ``filtered``: nothing answered.
    """
    from portkit.model import Endpoint
    from portkit.probe import check, parse_origin, run_from

    todo = list(dict.fromkeys(targets))
    if not todo:
        return {}
    origin = parse_origin(f"netns:{netns}") if netns else None
    endpoints = [Endpoint(ip, port, proto) for ip, port, proto in todo]
    results = run_from(origin, check, endpoints, timeout=timeout)
    out: dict[tuple[str, int, str], str] = {}
    for target, result in zip(todo, results, strict=True):
        state = str(result.state)
        out[target] = "filtered" if state == "error" else state
    return out

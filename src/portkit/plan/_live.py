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

__all__ = ["containers", "listeners", "probe", "resolve"]


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

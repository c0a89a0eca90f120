"""Containers are owners too: which container a process (so a socket) belongs to,
and which container a publisher process holds a port for.

* :class:`Resolver`: one run's answers, cached: a pid's container from its cgroup
  (``_cgroup``, pure), named through the runtime's local API (``_api``: Docker Engine
  or Podman over a unix socket, one request per run) when one answers, by the kubelet's
  log links for Kubernetes pods, by its short id otherwise (and ``notes`` says so).
* :func:`container_of`, :func:`published_by`: the same through a per-process resolver
  that is renewed every :data:`MAX_AGE` seconds (for long-lived callers).
* :func:`containers`, :func:`container_pid`, :func:`stop_container`: every running
  container; one by name; stopping one through its runtime.
* Pure parsers, for callers that have the text already: :func:`parse_cgroup`,
  :func:`ref_of_path`, :func:`parse_proxy_argv`, :func:`publisher_kind`,
  :func:`parse_containers`.

Linux only (cgroups, ``/proc``): elsewhere every answer is None or empty.
"""

from __future__ import annotations

import time

# Not `from typing import TYPE_CHECKING`: importing typing costs ~9 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portkit.containers._api import Answer as Answer
    from portkit.containers._api import Listing as Listing
    from portkit.containers._cgroup import ContainerRef as ContainerRef
    from portkit.containers._cgroup import parse_cgroup as parse_cgroup
    from portkit.containers._cgroup import ref_of_path as ref_of_path
    from portkit.containers._proxy import PUBLISHERS as PUBLISHERS
    from portkit.containers._proxy import ProxyMapping as ProxyMapping
    from portkit.containers._proxy import is_publisher as is_publisher
    from portkit.containers._proxy import parse_proxy_argv as parse_proxy_argv
    from portkit.containers._proxy import publisher_kind as publisher_kind
    from portkit.containers._records import Container as Container
    from portkit.containers._records import Publication as Publication
    from portkit.containers._records import Published as Published
    from portkit.containers._records import parse_containers as parse_containers
    from portkit.containers._resolver import Resolver as Resolver

#: Names imported on first use: a listing whose owners are no container and no
#: publisher (:func:`may_be_container`) never loads the parsers or the API client.
_LAZY = {
    "Answer": "portkit.containers._api",
    "Listing": "portkit.containers._api",
    "ContainerRef": "portkit.containers._cgroup",
    "parse_cgroup": "portkit.containers._cgroup",
    "ref_of_path": "portkit.containers._cgroup",
    "PUBLISHERS": "portkit.containers._proxy",
    "ProxyMapping": "portkit.containers._proxy",
    "is_publisher": "portkit.containers._proxy",
    "parse_proxy_argv": "portkit.containers._proxy",
    "publisher_kind": "portkit.containers._proxy",
    "Container": "portkit.containers._records",
    "Publication": "portkit.containers._records",
    "Published": "portkit.containers._records",
    "parse_containers": "portkit.containers._records",
    "Resolver": "portkit.containers._resolver",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'portkit.containers' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "MAX_AGE",
    "PUBLISHERS",
    "Answer",
    "Container",
    "ContainerRef",
    "Listing",
    "ProxyMapping",
    "Publication",
    "Published",
    "Resolver",
    "container_of",
    "container_pid",
    "containers",
    "is_publisher",
    "may_be_container",
    "parse_cgroup",
    "parse_containers",
    "parse_proxy_argv",
    "published_by",
    "publisher_kind",
    "publisher_of",
    "ref_of_path",
    "stop_container",
]

#: Seconds the per-process resolver behind :func:`container_of` and
#: :func:`published_by` is kept before the runtimes are asked again.
MAX_AGE = 2.0

_shared: Resolver | None = None


def _shared_resolver() -> Resolver:
    global _shared
    if _shared is None or time.monotonic() - _shared.created > MAX_AGE:
        from portkit.containers._resolver import Resolver

        _shared = Resolver()
    return _shared


#: Characters that separate the words of a cgroup path (``docker-<id>.scope``).
_CGROUP_SEPARATORS = str.maketrans("-._:\n", "/////")


def may_be_container(cgroup_text: str) -> bool:
    """Whether a process's ``/proc/PID/cgroup`` text can name a container at all: every
    form :func:`parse_cgroup` reads carries a 64-character id as a word of the path, so
    a text without one is a host process's (pure; the cheap test before the parsers).

    >>> may_be_container("0::/user.slice/user-1000.slice/session-2.scope\\n")
    False
    >>> may_be_container("0::/system.slice/docker-" + "ab" * 32 + ".scope\\n")
    True
    """
    return any(len(word) >= 64 for word in cgroup_text.translate(_CGROUP_SEPARATORS).split("/"))


def containers(with_pids: bool = False, cgroup_only: bool = True) -> list[Container]:
    """Every running container the local runtimes (Docker, Podman) report, asked now,
    then those only the processes' cgroups show (:meth:`Resolver.containers`);
    ``with_pids``: with each reported one's main process."""
    from portkit.containers._resolver import Resolver

    return Resolver().containers(with_pids, cgroup_only)


def container_of(pid: int) -> Container | None:
    """The container process ``pid`` runs in, or None for a host process."""
    return _shared_resolver().of_pid(pid)


def published_by(
    pid: int, name: str | None, port: int, protocol: str = "tcp", ip: str | None = None
) -> Publication | None:
    """What the socket ``[ip]:port/protocol`` of publisher process ``pid`` (``name``,
    its comm; None: read it) publishes; None when ``pid`` is no publisher
    (:meth:`Resolver.publication`)."""
    return _shared_resolver().publication(pid, name, port, protocol, ip)


def publisher_of(pid: int, name: str | None, port: int, protocol: str = "tcp") -> Container | None:
    """The container a publisher process holds ``port`` for, or None."""
    return _shared_resolver().publisher_of(pid, name, port, protocol)


def container_pid(name: str) -> int:
    """The main process of a running container, by name, id or unique id prefix.

    Raises:
        ParseError: no such running container (with the runtimes' notes, if any).
    """
    from portkit.containers._resolver import Resolver
    from portkit.errors import ParseError

    resolver = Resolver()
    found = resolver.by_name(name)
    pid = resolver.pid_of(found) if found is not None else None
    if pid is None:
        why = f" ({'; '.join(resolver.notes)})" if resolver.notes else ""
        raise ParseError(
            f"no running container {name!r}{why}",
            text=name,
            accepted="a container name or id from docker ps / podman ps",
        )
    return pid


def stop_container(container: Container, grace: int = 10) -> None:
    """Stop ``container`` through its runtime's API (SIGTERM, SIGKILL after ``grace``
    seconds).

    Raises:
        PermissionDenied: the API socket needs root or the runtime's group.
        PortkitError: no API knows it, or the runtime refused.
    """
    from portkit.containers._api import stop

    stop(container, grace)

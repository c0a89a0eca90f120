"""One run's view of the containers (I/O: ``/proc``, the runtimes' sockets, the
kubelet's log links), asked lazily and once.

A :class:`Resolver` answers "which container is process P in", "which container does
publisher process P hold port N for", "which container has address A" and "which
container is called X". The runtimes are asked on first need, once
(``GET /containers/json``: one request per runtime however many sockets a listing
has); each pid's cgroup is read once; pids of containers (one request each) only
when asked for. ``notes`` says what could not be learnt, one line each.
"""

from __future__ import annotations

import os
import time

from portkit.containers._api import API_BUDGET, fetch, inspect_pids
from portkit.containers._cgroup import ContainerRef, parse_cgroup, ref_of_path
from portkit.containers._kubelet import parse_log_name
from portkit.containers._proxy import parse_proxy_argv, publisher_kind
from portkit.containers._records import Container, Publication
from portkit.errors import ParseError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["KUBELET_LOGS", "Resolver"]

#: Where the kubelet links every container's log under a name that says its pod.
KUBELET_LOGS = "/var/log/containers"
#: Entries of that directory read at most.
MAX_LOG_LINKS = 20000
#: Processes whose cgroup is read at most when looking for every container.
MAX_PROCS = 200_000


def _read(path: str, limit: int = 64 * 1024) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def _wildcard(ip: str | None) -> bool:
    return ip in (None, "", "0.0.0.0", "::")


class Resolver:
    """One run's containers: asked once, cached for the run.

    Args:
        procfs: where ``/proc`` is (a test may point elsewhere).
        sockets: ``[(runtime, path, named)]`` API sockets to ask (default: the
            environment's, :func:`portkit.containers._api.engine_sockets`).
        budget: seconds the runtimes' APIs may take, all requests of the run together.
        api: False to ask no runtime (names from cgroups and kubelet logs only).
        kubelet_logs: the kubelet's log link directory.
    """

    def __init__(
        self,
        procfs: str = "/proc",
        *,
        sockets: Iterable[tuple[str, str, bool]] | None = None,
        budget: float = API_BUDGET,
        api: bool = True,
        kubelet_logs: str = KUBELET_LOGS,
    ) -> None:
        self.procfs = procfs
        self.created = time.monotonic()
        self._sockets = list(sockets) if sockets is not None else None
        self._budget = budget
        self._api = api
        self._kubelet_logs = kubelet_logs
        self._by_id: dict[str, Container] | None = None
        self._kube: dict[str, tuple[str, str, str]] | None = None
        self._refs: dict[int, ContainerRef | None] = {}
        self._pids: dict[str, int] = {}
        self._pids_asked = False
        self._api_notes: list[str] = []
        self._cgroup_only: set[str] = set()

    # --- what the runtimes say ------------------------------------------------------

    def _known(self) -> dict[str, Container]:
        if self._by_id is None:
            self._by_id = {}
            if self._api:
                listing = fetch(self._sockets, self._budget)
                self._by_id = {c.id: c for c in listing.containers}
                self._api_notes.extend(listing.notes)
        return self._by_id

    @property
    def notes(self) -> list[str]:
        """What could not be learnt (a runtime's API denied, slow or garbled;
        containers known by their cgroup only), one line each."""
        notes = list(self._api_notes)
        if self._cgroup_only:
            n = len(self._cgroup_only)
            notes.append(
                f"{n} container{'s' if n > 1 else ''} known by {'their' if n > 1 else 'its'} "
                "cgroup only (no runtime API answered for it): shown by short id"
            )
        return notes

    def containers(self, with_pids: bool = False, cgroup_only: bool = True) -> list[Container]:
        """Every running container the runtimes report, then (``cgroup_only``) those
        only a process's cgroup shows (no runtime API answered for them: found by reading
        every process's cgroup once, each with its lowest pid).

        ``with_pids``: the reported ones with their main process too (one more request
        per container, within the run's budget).
        """
        known = list(self._known().values())
        if with_pids and not self._pids_asked:
            self._pids_asked = True
            pids, notes = inspect_pids([c for c in known if c.id not in self._pids], self._budget)
            self._pids.update(pids)
            self._api_notes.extend(notes)
        out = [c.replace(pid=self._pids[c.id]) if c.id in self._pids else c for c in known]
        if cgroup_only:
            ids = {c.id for c in known}
            for ref, pid in self._scan().items():
                if ref.id not in ids:
                    out.append(self._container(ref).replace(pid=pid))
        return out

    def _scan(self) -> dict[ContainerRef, int]:
        """Every container a process's cgroup names, with its lowest pid."""
        found: dict[ContainerRef, int] = {}
        try:
            entries = sorted(int(e) for e in os.listdir(self.procfs) if e.isdigit())
        except OSError:
            return found
        for pid in entries[:MAX_PROCS]:
            ref = self.ref_of_pid(pid)
            if ref is not None and ref not in found:
                found[ref] = pid
        return found

    def all(self) -> list[Container]:
        """Every running container, with pids: ``containers(with_pids=True)``."""
        return self.containers(with_pids=True)

    def pid_of(self, container: Container) -> int | None:
        """The main process of ``container`` (one request, once)."""
        if container.pid is not None:
            return container.pid
        if container.id not in self._pids and container.api is not None:
            pids, notes = inspect_pids([container], self._budget)
            self._pids.update(pids)
            self._api_notes.extend(notes)
        return self._pids.get(container.id)

    # --- what the kernel says -------------------------------------------------------

    def _kubelet(self) -> dict[str, tuple[str, str, str]]:
        if self._kube is None:
            self._kube = {}
            try:
                with os.scandir(self._kubelet_logs) as entries:
                    for n, entry in enumerate(entries):
                        if n >= MAX_LOG_LINKS:
                            break
                        found = parse_log_name(entry.name)
                        if found is not None:
                            self._kube[found[0]] = found[1:]
            except OSError:
                pass
        return self._kube

    def _container(self, ref: ContainerRef) -> Container:
        known = self._known().get(ref.id)
        if known is not None:
            return known
        self._cgroup_only.add(ref.id)
        if ref.pod_uid is not None or ref.runtime in ("containerd", "cri-o", "kubernetes"):
            kube = self._kubelet().get(ref.id)
            if kube is not None:
                pod, namespace, name = kube
                return Container(
                    ref.id, name, ref.runtime, pod=pod, namespace=namespace, pod_uid=ref.pod_uid
                )
        return Container(ref.id, ref.short_id, ref.runtime, pod_uid=ref.pod_uid)

    def ref_of_pid(self, pid: int) -> ContainerRef | None:
        """The container ``pid``'s cgroup names (no runtime asked), or None."""
        if pid not in self._refs:
            raw = _read(f"{self.procfs}/{pid}/cgroup")
            self._refs[pid] = parse_cgroup(raw.decode("utf-8", "replace")) if raw else None
        return self._refs[pid]

    def of_pid(self, pid: int) -> Container | None:
        """The container process ``pid`` runs in, or None (a host process, or gone)."""
        ref = self.ref_of_pid(pid)
        return self._container(ref) if ref is not None else None

    def of_cgroup(self, path: str | None) -> Container | None:
        """The container a cgroup path names (a socket's cgroup, ``ls -e``), or None."""
        ref = ref_of_path(path) if path else None
        return self._container(ref) if ref is not None else None

    def by_address(self, ip: str | None) -> Container | None:
        """The container whose network address is ``ip`` (a proxy's -container-ip, a
        DNAT target), or None."""
        if not ip:
            return None
        for c in self._known().values():
            if ip in c.addresses:
                return c
        return None

    def by_name(self, name: str) -> Container | None:
        """A running container by name, full id or unique id prefix (4+ characters)."""
        known = self._known()
        for c in known.values():
            if name in (c.name, c.id):
                return c
        if len(name) < 4:
            return None
        prefixed = [c for c in known.values() if c.id.startswith(name)]
        return prefixed[0] if len(prefixed) == 1 else None

    # --- publishers ------------------------------------------------------------------

    def _proxy(self, pid: int) -> tuple[str, str, int, str, int] | None:
        raw = _read(f"{self.procfs}/{pid}/cmdline", 8192)
        if not raw:
            return None
        argv = [a.decode("utf-8", "replace") for a in raw.rstrip(b"\0").split(b"\0")]
        try:
            m = parse_proxy_argv(argv)
        except ParseError:
            return None
        return m.proto, m.host_ip, m.host_port, m.container_ip, m.container_port

    def publication(
        self,
        pid: int,
        name: str | None,
        port: int,
        protocol: str = "tcp",
        ip: str | None = None,
    ) -> Publication | None:
        """What a socket on ``[ip]:port/protocol`` held by publisher process ``pid``
        (named ``name``: its comm) publishes, or None when the process publishes for
        no container (it is no publisher).

        The container comes from docker-proxy's command line (its -container-ip), the
        publisher's own cgroup (Podman's conmon lives in its container's), or the
        runtime's list of published ports; ``container`` is None when none says.
        """
        if name is None:
            comm = _read(f"{self.procfs}/{pid}/comm", 64)
            name = comm.decode("utf-8", "replace").strip() if comm else None
        kind = publisher_kind(name)
        if kind is None:
            return None
        via = (name or "").rpartition("/")[2]
        proxied = self._proxy(pid) if via.startswith("docker-proxy") else None
        if proxied is not None:
            proto, host_ip, host_port, cip, cport = proxied
            return Publication(
                self.by_address(cip), kind, via, proto, host_ip, host_port, cip, cport
            )
        container: Container | None = None
        ref = self.ref_of_pid(pid)
        if ref is not None:
            container = self._container(ref)
        candidates = [container] if container is not None else list(self._known().values())
        for c in candidates:
            for p in c.published:
                if p.host_port != port or p.protocol != protocol:
                    continue
                if not (_wildcard(ip) or _wildcard(p.host_ip) or p.host_ip == ip):
                    continue
                inside = c.addresses[0] if c.addresses else None
                return Publication(c, kind, via, protocol, ip, port, inside, p.container_port)
        return Publication(container, kind, via, protocol, ip, port)

    def publisher_of(
        self, pid: int, name: str | None, port: int, protocol: str = "tcp"
    ) -> Container | None:
        """The container publisher process ``pid`` holds ``port`` for, or None."""
        found = self.publication(pid, name, port, protocol)
        return found.container if found is not None else None

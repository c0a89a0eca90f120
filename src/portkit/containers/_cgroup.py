"""Which container a process runs in, from its ``/proc/PID/cgroup`` (pure).

Every container runtime puts a container's processes in a cgroup whose path names the
container; the forms differ by runtime and cgroup driver (:data:`PATTERNS`, a table):

    /docker/<64 hex>                                 docker, cgroupfs driver (v1 and v2)
    /system.slice/docker-<64 hex>.scope              docker, systemd driver
    /system.slice/containerd.service/.../<64 hex>    containerd (nerdctl, k3s without pods)
    /system.slice/nerdctl-<64 hex>.scope             nerdctl, systemd driver
    /.../cri-containerd-<64 hex>.scope               containerd's CRI, systemd driver
    /.../crio-<64 hex>.scope                         CRI-O (crio-conmon-: its conmon)
    /machine.slice/libpod-<64 hex>.scope             Podman (root; libpod-conmon-: conmon)
    /user.slice/.../libpod-<64 hex>.scope/container  Podman (rootless, split cgroups)
    /libpod_parent/libpod-<64 hex>                   Podman, cgroupfs driver
    /kubepods/<qos>/pod<uid>/<64 hex>                Kubernetes, cgroupfs driver
    /kubepods.slice/.../kubepods-<qos>-pod<uid_with_underscores>.slice/<runtime>-<64 hex>.scope
    /<parent>/<64 hex>                               any runtime under a --cgroup-parent
                                                     (GitHub's /actions_job, containerd's
                                                     /default, /k8s.io namespaces)

The innermost match wins (kind's nodes are Docker containers whose pods are
containerd's: the pod's container is the answer, the node is not). Any other path (a
host process, a systemd service, a session) is no container. A v2 ``0::`` line is
read first, then the v1 hierarchies.

    >>> ref = parse_cgroup("0::/system.slice/docker-" + "ab" * 32 + ".scope\\n")
    >>> ref.runtime, ref.short_id
    ('docker', 'abababababab')
    >>> ref = ref_of_path("/kubepods/burstable/pod2c1b8d0e-5a7f-4e51-9f0a-1f6a2b3c4d5e/"
    ...                   + "0f" * 32)
    >>> ref.runtime, ref.pod_uid
    ('kubernetes', '2c1b8d0e-5a7f-4e51-9f0a-1f6a2b3c4d5e')
    >>> parse_cgroup("0::/user.slice/user-1000.slice/session-2.scope\\n") is None
    True
"""

from __future__ import annotations

import re

from portkit.model import _Record

__all__ = ["PATTERNS", "ContainerRef", "parse_cgroup", "ref_of_path"]

_ID = r"(?P<id>[0-9a-f]{64})"
_START = r"(?:^|(?<=/))"  # a path segment starts here (the slash is not consumed,
_STOP = r"(?=/|$)"  # so that nested containers' segments all match)
_SCOPE = r"(?:\.scope)?"

#: (runtime, pattern): each is tried on the whole path; the match whose id starts last
#: (the innermost cgroup) wins; on a tie, the earlier row.
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("docker", re.compile(rf"{_START}docker-{_ID}\.scope{_STOP}")),
    ("docker", re.compile(rf"{_START}docker/{_ID}{_STOP}")),
    ("containerd", re.compile(rf"{_START}cri-containerd-{_ID}\.scope{_STOP}")),
    ("containerd", re.compile(rf"{_START}nerdctl-{_ID}\.scope{_STOP}")),
    ("cri-o", re.compile(rf"{_START}crio-(?:conmon-)?{_ID}{_SCOPE}{_STOP}")),
    ("podman", re.compile(rf"{_START}libpod-(?:conmon-)?{_ID}{_SCOPE}{_STOP}")),
    ("containerd", re.compile(rf"{_START}containerd\.service/(?:[^/]+/)*{_ID}{_STOP}")),
    ("kubernetes", re.compile(rf"{_START}kubepods[^/]*/(?:[^/]+/)*pod[^/]+/{_ID}{_STOP}")),
    ("container", re.compile(rf"^/(?:[^/]+/)+{_ID}$")),
)
#: A pod's uid in a path: dashes (cgroupfs) or underscores (systemd slice names).
_POD = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
#: Paths longer than this are no cgroup path the kernel writes (PATH_MAX).
MAX_PATH = 4096


class ContainerRef(_Record):
    """A container as its cgroup names it: the runtime whose path form it is, the full
    id, and the Kubernetes pod uid when the path has one.

    ``runtime`` is ``docker``, ``containerd``, ``cri-o``, ``podman``, ``kubernetes``
    (a pod's container under the cgroupfs driver: the runtime does not say) or
    ``container`` (a bare id under some cgroup parent).
    """

    __slots__ = ("runtime", "id", "pod_uid")
    runtime: str
    id: str
    pod_uid: str | None

    def __init__(self, runtime: str, id: str, pod_uid: str | None = None) -> None:
        self._init(runtime=runtime, id=id, pod_uid=pod_uid)

    @property
    def short_id(self) -> str:
        """The 12 characters ``docker ps`` shows."""
        return self.id[:12]


def ref_of_path(path: str) -> ContainerRef | None:
    """The container a single cgroup path names (the innermost one), or None.

    >>> ref_of_path("/docker/" + "1" * 64 + "/docker/" + "2" * 64).id[:4]
    '2222'
    """
    if len(path) > MAX_PATH:
        return None
    best: tuple[int, str, str] | None = None
    for runtime, pattern in PATTERNS:
        for m in pattern.finditer(path):
            if best is None or m.start("id") > best[0]:
                best = (m.start("id"), runtime, m.group("id"))
    if best is None:
        return None
    start, runtime, cid = best
    # the pod that holds this container: the last pod uid before its id
    pods = [m for m in _POD.finditer(path) if m.end() <= start]
    pod_uid = pods[-1].group(1).replace("_", "-") if pods else None
    if runtime == "container" and pod_uid is not None:
        runtime = "kubernetes"
    return ContainerRef(runtime, cid, pod_uid)


def parse_cgroup(text: str) -> ContainerRef | None:
    """The container of a ``/proc/PID/cgroup`` text (v1 or v2), or None for a host
    process. A malformed line is skipped; the unified (``0::``) line is read first."""
    lines = [line.split(":", 2) for line in text.splitlines() if line.count(":") >= 2]
    lines.sort(key=lambda parts: parts[0] != "0")
    for parts in lines:
        found = ref_of_path(parts[2].strip())
        if found is not None:
            return found
    return None

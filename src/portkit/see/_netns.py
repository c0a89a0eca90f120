"""Entering another network namespace for the time it takes to open a socket (I/O).

A socket belongs to the namespace it was created in, so listing another namespace
only needs the netlink socket (or the /proc/net read) to happen inside it: enter
with ``setns(2)``, do that, come back. Only the calling thread moves.
"""

from __future__ import annotations

import os

from portkit.errors import ParseError, PermissionDenied

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

__all__ = ["MAX_PIDS_KEPT", "Namespace", "namespaces", "netns_path", "run_in_netns"]

CLONE_NEWNET = 0x40000000
NETNS_RUN_DIR = "/run/netns"


def netns_path(name: str | None, pid: int | None, procfs: str = "/proc") -> str | None:
    """The namespace file for ``ip netns`` name ``name`` or process ``pid`` (None: ours).

    >>> netns_path(None, 1)
    '/proc/1/ns/net'

    Raises:
        ParseError: a name that is not a plain file name.
    """
    if name is not None and pid is not None:
        from portkit.errors import UsageError

        raise UsageError("give --netns or --pid-netns, not both")
    if name is not None:
        if not name or "/" in name or name in (".", ".."):
            raise ParseError(
                f"bad namespace name {name!r}", text=name, accepted="an `ip netns` name"
            )
        return os.path.join(NETNS_RUN_DIR, name)
    if pid is not None:
        if pid <= 0:
            raise ParseError(f"bad pid {pid}", text=str(pid), accepted="a positive process id")
        return f"{procfs}/{pid}/ns/net"
    return None


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python 3.12+
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def run_in_netns(path: str, work: Callable[[], T]) -> T:
    """Run ``work()`` inside the network namespace at ``path`` and come back.

    Raises:
        ParseError: no such namespace (exit 2: the name given was wrong).
        PermissionDenied: entering it needs CAP_SYS_ADMIN.
    """
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ParseError(
            f"no network namespace at {path}",
            text=path,
            accepted="a name from `ip netns list` or the pid of a running process",
        ) from None
    except PermissionError as exc:
        raise PermissionDenied(f"cannot open {path}", needed="root") from exc
    try:
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                _setns(target)
            except PermissionError as exc:
                raise PermissionDenied(
                    f"cannot enter the network namespace {path}", needed="root or CAP_SYS_ADMIN"
                ) from exc
            except OSError as exc:
                raise ParseError(
                    f"{path} is not a network namespace", text=path, accepted="a network namespace"
                ) from exc
            try:
                return work()
            finally:
                _setns(own)
        finally:
            os.close(own)
    finally:
        os.close(target)


class Namespace:
    """A network namespace on this machine: where to enter it, and who lives there.

    ``path`` is a file to ``setns`` into (``/run/netns/NAME`` for a named one, else
    ``/proc/PID/ns/net`` of one of its processes); ``inode`` identifies it (the number in
    ``net:[...]``); ``names`` are its ``ip netns`` names; ``pids`` the processes in it
    (up to :data:`MAX_PIDS_KEPT`, lowest first); ``own`` is True for the caller's.
    """

    __slots__ = ("inode", "path", "names", "pids", "own", "container")

    def __init__(
        self, inode: int, path: str, names: tuple[str, ...], pids: tuple[int, ...], own: bool
    ) -> None:
        self.inode = inode
        self.path = path
        self.names = names
        self.pids = pids
        self.own = own
        #: the container whose namespace this is (set by whoever looked it up), or None
        self.container: Any = None

    def __repr__(self) -> str:
        return f"Namespace(inode={self.inode}, path={self.path!r}, names={self.names!r})"

    @property
    def label(self) -> str:
        """``netns:NAME``, ``container:NAME``, ``pid:PID`` or ``host`` (the caller's)."""
        if self.own:
            return "host"
        if self.container is not None:
            return f"container:{self.container.name}"
        if self.names:
            return f"netns:{self.names[0]}"
        return f"pid:{self.pids[0]}" if self.pids else f"inode:{self.inode}"


#: Processes remembered per namespace (a host namespace holds thousands).
MAX_PIDS_KEPT = 16


def _inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def namespaces(procfs: str = "/proc", run_dir: str = NETNS_RUN_DIR) -> list[Namespace]:
    """Every network namespace that has a name (``ip netns``) or a process, the
    caller's first, then by inode. Processes that cannot be inspected are skipped.
    """
    own = _inode(f"{procfs}/thread-self/ns/net") or _inode(f"{procfs}/self/ns/net")
    found: dict[int, tuple[str, list[str], list[int]]] = {}
    try:
        names = sorted(os.listdir(run_dir))
    except OSError:
        names = []
    for name in names:
        path = os.path.join(run_dir, name)
        ino = _inode(path)
        if ino is not None:
            found.setdefault(ino, (path, [], []))[1].append(name)
    try:
        entries = os.listdir(procfs)
    except OSError:
        entries = []
    for entry in entries:
        if not entry.isdigit():
            continue
        path = f"{procfs}/{entry}/ns/net"
        ino = _inode(path)
        if ino is None:
            continue
        slot = found.setdefault(ino, (path, [], []))
        slot[2].append(int(entry))
    out = []
    for ino, (path, ns_names, pids) in found.items():
        pids.sort()
        out.append(Namespace(ino, path, tuple(ns_names), tuple(pids[:MAX_PIDS_KEPT]), ino == own))
    out.sort(key=lambda n: (not n.own, n.inode))
    return out

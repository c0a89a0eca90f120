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
    from typing import TypeVar

    T = TypeVar("T")

__all__ = ["netns_path", "run_in_netns"]

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

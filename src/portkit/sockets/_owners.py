"""Who holds a socket: one pass over ``/proc/*/fd`` into a dict (I/O).

``ss -p`` keeps the same map in a fixed 256-bucket hash and walks a chain per
socket, which is what makes it slow at 100k sockets; a dict is O(1). The scan
opens each ``/proc/PID/fd`` once and reads its links relative to that directory
(``readlinkat``), so the kernel does not resolve the full path per descriptor.

Processes come and go during the scan: a pid or fd that vanished is skipped, never
an error. A pid whose fds we may not read (another user's, without root) is
counted, so the caller can say that owners are hidden.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = ["ProcInfo", "process_info", "scan_owners"]

_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def scan_owners(
    wanted: Collection[int] | None, procfs: str = "/proc"
) -> tuple[dict[int, list[int]], int]:
    """Map socket inodes to the pids holding them.

    Args:
        wanted: only these inodes (a set), or None for every socket.
        procfs: the proc mount to read.

    Returns:
        ``({inode: [pid, ...]}, hidden)`` where ``hidden`` counts the processes whose
        descriptors could not be read (permission denied).
    """
    found: dict[int, list[int]] = {}
    hidden = 0
    readlink, listdir, close, open_ = os.readlink, os.listdir, os.close, os.open
    try:
        entries = listdir(procfs)
    except OSError:
        return found, 0
    for name in entries:
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            dfd = open_(f"{procfs}/{name}/fd", _O_DIR)
        except PermissionError:
            hidden += 1
            continue
        except OSError:
            continue  # gone, or a kernel thread without fds
        try:
            try:
                fds = listdir(dfd)
            except PermissionError:
                hidden += 1
                continue
            except OSError:
                continue
            for fd in fds:
                try:
                    link = readlink(fd, dir_fd=dfd)
                except OSError:
                    continue  # closed meanwhile
                if link[:8] != "socket:[":
                    continue
                inode = int(link[8:-1])
                if wanted is not None and inode not in wanted:
                    continue
                holders = found.get(inode)
                if holders is None:
                    found[inode] = [pid]
                elif holders[-1] != pid:
                    holders.append(pid)
        finally:
            close(dfd)
    return found, hidden


class ProcInfo:
    """What ``who`` shows of a process; fields are None where /proc did not say."""

    __slots__ = ("pid", "name", "cmdline", "uid", "user", "started")

    def __init__(
        self,
        pid: int,
        name: str | None,
        cmdline: tuple[str, ...],
        uid: int | None,
        user: str | None,
        started: float | None,
    ) -> None:
        self.pid = pid
        self.name = name
        self.cmdline = cmdline
        self.uid = uid
        self.user = user
        self.started = started


_users: dict[int, str | None] = {}


def user_name(uid: int | None) -> str | None:
    """The login name of ``uid`` (cached), or its number as text when unknown."""
    if uid is None:
        return None
    name = _users.get(uid, "")
    if name == "":
        try:
            import pwd

            name = pwd.getpwuid(uid).pw_name
        except (KeyError, ImportError):
            name = str(uid)
        _users[uid] = name
    return name


def _btime(procfs: str) -> float | None:
    try:
        with open(f"{procfs}/stat") as f:
            for line in f:
                if line.startswith("btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def process_info(
    pids: Collection[int], procfs: str = "/proc", *, full: bool = False
) -> dict[int, ProcInfo]:
    """Name and user (and with ``full``: command line and start time) per pid.

    A pid that exited meanwhile is left out.
    """
    out: dict[int, ProcInfo] = {}
    btime = _btime(procfs) if full else None
    ticks = os.sysconf("SC_CLK_TCK") if full else 100
    for pid in pids:
        base = f"{procfs}/{pid}"
        try:
            with open(f"{base}/comm", "rb") as f:
                name = f.read().rstrip(b"\n").decode("utf-8", "replace")
            uid: int | None = os.stat(base).st_uid
        except OSError:
            continue
        cmdline: tuple[str, ...] = ()
        started = None
        if full:
            try:
                with open(f"{base}/cmdline", "rb") as f:
                    raw = f.read()
                cmdline = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
                with open(f"{base}/stat", "rb") as f:
                    stat = f.read()
                # Field 22 (starttime) counted after the ")" that closes the command name.
                after = stat[stat.rindex(b")") + 2 :].split()
                if btime is not None:
                    started = btime + int(after[19]) / ticks
            except (OSError, ValueError, IndexError):
                pass
        out[pid] = ProcInfo(pid, name, cmdline, uid, user_name(uid), started)
    return out

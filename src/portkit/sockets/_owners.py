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

__all__ = ["OwnerScan", "ProcInfo", "process_info", "scan_owners"]

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
    try:
        names = [n for n in os.listdir(procfs) if n.isdigit()]
    except OSError:
        return {}, 0
    found, hidden = _scan(names, procfs)
    return _only(found, wanted), hidden


def _only(found: dict[int, list[int]], wanted: Collection[int] | None) -> dict[int, list[int]]:
    if wanted is None:
        return found
    return {ino: found[ino] for ino in wanted if ino in found}


def _scan(names: list[str], procfs: str) -> tuple[dict[int, list[int]], int]:
    """``({socket inode: [pid, ...]}, hidden)`` for the processes ``names`` (pids as
    listed in /proc, ascending)."""
    found: dict[int, list[int]] = {}
    hidden = 0
    readlink, listdir, close, open_ = os.readlink, os.listdir, os.close, os.open
    for name in names:
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
                except PermissionError:
                    # Listing was allowed but reading the links is not (a non-dumpable
                    # process, or a sandbox that denies it even to root): hidden.
                    hidden += 1
                    break
                except OSError:
                    continue  # closed meanwhile
                if link[:8] != "socket:[":
                    continue
                inode = int(link[8:-1])
                holders = found.get(inode)
                if holders is None:
                    found[inode] = [pid]
                elif holders[-1] != pid:
                    holders.append(pid)
        finally:
            close(dfd)
    return found, hidden


#: Below this many descriptors in all, one process scans them (a fork costs more).
PARALLEL_MIN_FDS = 20000
#: At most this many scanning processes.
MAX_WORKERS = 4


class OwnerScan:
    """The ``/proc/*/fd`` pass, started before the socket dump and collected after it.

    The pass is kernel work per descriptor (``readlinkat``: about 4 us each, half a
    second at 100,000), and threads do not overlap it. So when there are many
    descriptors and more than one CPU, processes are split into groups of about
    equal descriptor counts (``stat`` of ``/proc/PID/fd`` gives the count), each
    group is scanned by a forked worker while this process dumps and decodes the
    sockets, and the workers send back their maps (``marshal``, through a pipe).
    Anything that goes wrong in a worker makes :meth:`result` scan its group here.
    Small scans, single-CPU machines and processes already running threads (where
    fork is unsafe) scan in :meth:`result`, as :func:`scan_owners` does.
    """

    def __init__(self, procfs: str = "/proc", *, min_fds: int = PARALLEL_MIN_FDS) -> None:
        self.procfs = procfs
        self.min_fds = min_fds
        self.names: list[str] = []
        self.workers: list[tuple[int, int, list[str]]] = []  # (pid, read fd, names)
        try:
            self.names = [n for n in os.listdir(procfs) if n.isdigit()]
        except OSError:
            return
        groups = self._groups()
        if groups:
            self._start(groups)
            self.names = []

    def _groups(self) -> list[list[str]]:
        cpus = os.cpu_count() or 1
        if cpus < 2 or _threaded():
            return []
        sized = []
        total = 0
        for name in self.names:
            try:
                count = os.stat(f"{self.procfs}/{name}/fd").st_size  # Linux 6.2+: fd count
            except OSError:
                count = 0
            sized.append((count, name))
            total += count
        if total < self.min_fds:
            return []  # or an older kernel that reports no counts: scan here
        n = min(cpus, MAX_WORKERS)
        groups: list[list[str]] = [[] for _ in range(n)]
        load = [0] * n
        for count, name in sorted(sized, reverse=True):  # largest first, to the lightest
            i = load.index(min(load))
            groups[i].append(name)
            load[i] += max(count, 1)
        return [sorted(g, key=int) for g in groups if g]

    def _start(self, groups: list[list[str]]) -> None:
        import marshal

        for group in groups:
            r, w = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(r)
                os.close(w)
                self.names.extend(group)  # scanned in result()
                continue
            if pid == 0:  # the worker: scan, send, and leave without any cleanup
                code = 1
                try:
                    os.close(r)
                    data = marshal.dumps(_packed(*_scan(group, self.procfs)))
                    view = memoryview(data)
                    while view:
                        view = view[os.write(w, view) :]
                    code = 0
                finally:
                    os._exit(code)
            os.close(w)
            self.workers.append((pid, r, group))

    def result(self, wanted: Collection[int] | None) -> tuple[dict[int, list[int]], int]:
        """``({inode: [pid, ...]}, hidden)`` as :func:`scan_owners` gives them."""
        import marshal

        found, hidden = _scan(self.names, self.procfs) if self.names else ({}, 0)
        for pid, r, group in self.workers:
            with os.fdopen(r, "rb") as f:
                data = f.read()
            _, status = os.waitpid(pid, 0)
            part: dict[int, list[int]]
            try:
                if status:
                    raise ValueError(status)
                part, part_hidden = _unpacked(marshal.loads(data))
            except (ValueError, EOFError, TypeError, IndexError):
                part, part_hidden = _scan(group, self.procfs)
            hidden += part_hidden
            if found:
                for ino in part.keys() & found.keys():  # one socket held in two groups
                    part[ino] = sorted({*found[ino], *part[ino]})
            found.update(part)
        self.workers = []
        return _only(found, wanted), hidden

    def cancel(self) -> None:
        """Stop and reap the workers (the listing failed before their maps were read)."""
        import signal

        for pid, r, _ in self.workers:
            os.close(r)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass
        self.workers = []


def _packed(
    found: dict[int, list[int]], hidden: int
) -> tuple[bytes, bytes, dict[int, list[int]], int]:
    """A worker's map as two arrays (inodes, their single holder) and the few
    sockets held by several processes: 100,000 one-item lists take about 50 ms to
    unmarshal, the arrays a few."""
    from array import array

    multi = {ino: pids for ino, pids in found.items() if len(pids) > 1}
    single = [ino for ino, pids in found.items() if len(pids) == 1]
    return (
        array("Q", single).tobytes(),
        array("q", [found[ino][0] for ino in single]).tobytes(),
        multi,
        hidden,
    )


def _unpacked(
    packed: tuple[bytes, bytes, dict[int, list[int]], int],
) -> tuple[dict[int, list[int]], int]:
    from array import array

    inodes, pids = array("Q"), array("q")
    inodes.frombytes(packed[0])
    pids.frombytes(packed[1])
    if len(inodes) != len(pids):
        raise ValueError("torn worker reply")
    found = dict(zip(inodes, [[pid] for pid in pids]))  # noqa: B905 (checked above)
    found.update(packed[2])
    return found, packed[3]


def _threaded() -> bool:
    """Whether other threads run here (fork would copy their locks, held)."""
    import sys

    threading = sys.modules.get("threading")
    return threading is not None and threading.active_count() > 1


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

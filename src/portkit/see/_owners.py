"""Who holds a socket: one pass over every process's open files into a dict (I/O).

The pass is the kernel's BPF ``task_file`` iterator where it can be loaded
(``_bpfiter``; :class:`OwnerScan` picks it), else ``/proc/*/fd``. ``ss -p`` keeps
the same map in a fixed 256-bucket hash and walks a chain per socket, which is
what makes it slow at 100k sockets; a dict is O(1). The ``/proc`` scan opens each
``/proc/PID/fd`` once and reads its links relative to that directory
(``readlinkat``), so the kernel does not resolve the full path per descriptor.

Processes come and go during the scan: a pid or fd that vanished is skipped, never
an error. A pid whose fds we may not read (another user's, without root) is
counted, so the caller can say that owners are hidden.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from typing import Any

    #: ``{socket inode: (pid, ...)}``: the processes holding each socket.
    Owners = dict[int, tuple[int, ...]]

__all__ = ["OwnerScan", "Owners", "ProcInfo", "process_info", "scan_owners"]

_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)


def scan_owners(wanted: Collection[int] | None, procfs: str = "/proc") -> tuple[Owners, int]:
    """Map socket inodes to the pids holding them.

    Args:
        wanted: only these inodes (a set), or None for every socket.
        procfs: the proc mount to read.

    Returns:
        ``({inode: (pid, ...)}, hidden)`` where ``hidden`` counts the processes whose
        descriptors could not be read (permission denied).
    """
    try:
        names = [n for n in os.listdir(procfs) if n.isdigit()]
    except OSError:
        return {}, 0
    found, hidden = _scan(names, procfs)
    return _only(found, wanted), hidden


def _only(found: Owners, wanted: Collection[int] | None) -> Owners:
    if wanted is None:
        return found
    return {ino: found[ino] for ino in wanted if ino in found}


def _scan(names: list[str], procfs: str) -> tuple[Owners, int]:
    """``({socket inode: (pid, ...)}, hidden)`` for the processes ``names`` (pids as
    listed in /proc, ascending)."""
    found: Owners = {}
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
                    found[inode] = (pid,)
                elif holders[-1] != pid:
                    found[inode] = (*holders, pid)
        finally:
            close(dfd)
    return found, hidden


#: Below this many descriptors in all, the pass runs here, over /proc (a fork, or
#: reading the kernel's BTF for the BPF pass, costs more than it saves).
PARALLEL_MIN_FDS = 20000
#: At most this many scanning processes.
MAX_WORKERS = 4
#: A worker's exit status when the BPF pass could not run (the parent scans /proc).
_NO_BPF = 3


class OwnerScan:
    """The owner pass, started before the socket dump and collected after it.

    Two sources, one result: the kernel's BPF ``task_file`` iterator
    (``_bpfiter``: every process's open files in one pass, about 0.4 us a file) where
    it can be used (root, BTF, Linux 5.11+), else ``/proc/*/fd``, which is kernel
    work per descriptor (``readlinkat``: about 4 us each, half a second at 100,000)
    that threads do not overlap. With many descriptors and more than one CPU either
    runs in forked workers while this process dumps and decodes the sockets: one
    worker for the BPF pass (it reads the kernel's BTF, about 40 ms, and loads the
    program), or groups of processes of about equal descriptor counts (``stat`` of
    ``/proc/PID/fd`` gives the count) for ``/proc``. Workers send their maps back
    (``marshal``, through a pipe); anything that goes wrong in one makes
    :meth:`result` do its part here. Small scans, single-CPU machines and processes
    already running threads (where fork is unsafe) scan in :meth:`result`, as
    :func:`scan_owners` does, except that a process whose BPF program is already
    loaded (``portkit top``, the exporter) always takes the BPF pass.

    Args:
        procfs: the proc mount to read.
        min_fds: below this many descriptors in all, no workers and no BPF (unless
            the program is loaded already).
        bpf: False to use ``/proc`` only.
    """

    def __init__(
        self, procfs: str = "/proc", *, min_fds: int = PARALLEL_MIN_FDS, bpf: bool = True
    ) -> None:
        self.procfs = procfs
        self.names: list[str] = []  # scanned over /proc in result()
        self.workers: list[tuple[int, int, list[str]]] = []  # (pid, read fd, names)
        self.bpf_here = False  # the BPF pass runs in result()
        self.source = "proc"
        try:
            names = [n for n in os.listdir(procfs) if n.isdigit()]
        except OSError:
            return
        self.names = names
        forkable = (os.cpu_count() or 1) > 1 and not _threaded()
        sized: list[tuple[int, str]] | None = None
        if bpf:
            from portkit.see import _bpfiter

            if _bpfiter.available(procfs):
                if _bpfiter.loaded():
                    self.bpf_here = True
                else:
                    sized, total = self._sizes()
                    if total >= min_fds and (not forkable or not self._start_bpf()):
                        self.bpf_here = True
            if self.bpf_here or self.workers:
                self.source = "bpf"
                return
        if not forkable:
            return
        if sized is None:
            sized, total = self._sizes()
        if total >= min_fds:  # or an older kernel that reports no counts: scan here
            self._start(self._groups(sized))

    def _sizes(self) -> tuple[list[tuple[int, str]], int]:
        """``([(descriptor count, pid name)], total)`` (Linux 6.2+ gives the count as
        the size of ``/proc/PID/fd``; older kernels say 0)."""
        sized = []
        total = 0
        for name in self.names:
            try:
                count = os.stat(f"{self.procfs}/{name}/fd").st_size
            except OSError:
                count = 0
            sized.append((count, name))
            total += count
        return sized, total

    @staticmethod
    def _groups(sized: list[tuple[int, str]]) -> list[list[str]]:
        n = min(os.cpu_count() or 1, MAX_WORKERS)
        groups: list[list[str]] = [[] for _ in range(n)]
        load = [0] * n
        for count, name in sorted(sized, reverse=True):  # largest first, to the lightest
            i = load.index(min(load))
            groups[i].append(name)
            load[i] += max(count, 1)
        return [sorted(g, key=int) for g in groups if g]

    @staticmethod
    def _fork(
        job: Callable[[list[str], str], Any],
        names: list[str],
        procfs: str,
        *,
        holding: bool = True,
    ) -> tuple[int, int] | None:
        """Run ``job(names, procfs)`` in a worker that sends what it returns back
        (``marshal``): ``(its pid, the read end)``; None when fork failed. A job that
        returns None exits with :data:`_NO_BPF`. Without ``holding`` the worker first
        closes the descriptors it inherited (one ``close_range``), so that a pass
        over every process's files does not count it as a holder of our sockets."""
        import marshal

        r, w = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(r)
            os.close(w)
            return None
        if pid == 0:  # the worker: scan, send, and leave without any cleanup
            code = 1
            try:
                os.close(r)
                if not holding:
                    os.closerange(3, w)
                    os.closerange(w + 1, 1 << 30)
                got = job(names, procfs)
                if got is None:
                    code = _NO_BPF
                else:
                    view = memoryview(marshal.dumps(got))
                    while view:
                        view = view[os.write(w, view) :]
                    code = 0
            finally:
                os._exit(code)
        os.close(w)
        return pid, r

    def _start_bpf(self) -> bool:
        started = self._fork(_bpf_records, self.names, self.procfs, holding=False)
        if started is None:
            return False
        self.workers.append((*started, self.names))
        self.names = []
        return True

    def _start(self, groups: list[list[str]]) -> None:
        self.names = []
        for group in groups:
            started = self._fork(_scan_packed, group, self.procfs)
            if started is None:
                self.names.extend(group)  # scanned in result()
            else:
                self.workers.append((*started, group))

    def result(self, wanted: Collection[int] | None) -> tuple[Owners, int]:
        """``({inode: (pid, ...)}, hidden)`` as :func:`scan_owners` gives them."""
        import marshal

        found: Owners = {}
        hidden = 0
        if self.bpf_here:
            records = _bpf_records(self.names, self.procfs)
            if records is None:
                self.source = "proc"
            else:
                found, hidden = _unpacked(records)
                self.names = []
        if self.names:
            found, hidden = _scan(self.names, self.procfs)
        for pid, r, group in self.workers:
            with os.fdopen(r, "rb") as f:
                data = f.read()
            _, status = os.waitpid(pid, 0)
            part: Owners
            try:
                if status:
                    raise ValueError(status)
                part, part_hidden = _unpacked(marshal.loads(data))
            except (ValueError, EOFError, TypeError, IndexError):
                self.source = "proc"
                part, part_hidden = _scan(group, self.procfs)
            hidden += part_hidden
            if found:
                for ino in part.keys() & found.keys():  # one socket held in two groups
                    part[ino] = tuple(sorted({*found[ino], *part[ino]}))
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


def _bpf_records(names: list[str], procfs: str) -> Packed | None:
    """The BPF pass (in a worker, or here), packed as a ``/proc`` worker packs its
    map; None where the pass cannot run.

    The processes of ``names`` (the pids /proc listed) that the kernel showed no file
    of (kernel threads, processes started meanwhile, or ones a security module hides)
    go through the ``/proc`` scan, which also counts the hidden ones."""
    from portkit.see import _bpfiter, _btf

    raw = _bpfiter.task_files()
    if raw is None:
        return None
    try:
        seen = _btf.pids(raw)
        inodes, pids, several = _btf.holders(raw)
    except ValueError:
        return None
    more, hidden = _scan([n for n in names if int(n) not in seen], procfs)
    if more:  # rare: merged through the slow path
        have: Owners = dict(zip(inodes, zip(pids), strict=True))
        have.update(several)
        for ino, held in more.items():
            first = have.get(ino, ())
            several[ino] = (*first, *(p for p in held if p not in first))
    return inodes.tobytes(), pids.tobytes(), several, hidden


def _scan_packed(names: list[str], procfs: str) -> Packed:
    return _packed(*_scan(names, procfs))


if TYPE_CHECKING:
    #: A worker's map: inodes and their single holder as two arrays, the few
    #: sockets held by several processes, and the hidden count.
    Packed = tuple[bytes, bytes, Owners, int]


def _packed(found: Owners, hidden: int) -> Packed:
    """A worker's map as two arrays (inodes, their single holder) and the few
    sockets held by several processes: 100,000 one-item tuples take about 50 ms to
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


def _unpacked(packed: Packed) -> tuple[Owners, int]:
    from array import array

    inodes, pids = array("Q"), array("q")
    inodes.frombytes(packed[0])
    pids.frombytes(packed[1])
    if len(inodes) != len(pids):
        raise ValueError("torn worker reply")
    found: Owners = dict(zip(inodes, zip(pids)))  # noqa: B905 (checked above)
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

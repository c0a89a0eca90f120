"""Socket owners from a BPF ``task_file`` iterator (I/O; Linux 5.11+, root).

One pass in the kernel over every open file of every process of this PID namespace,
instead of a ``readlinkat`` per descriptor under ``/proc`` (``_owners``): at 100,000
sockets about 45 ms instead of about 600 ms of CPU. The program comes from ``_btf``
(pure); this module loads it with the ``bpf(2)`` system call, attaches it as an
iterator, reads the records and hands them to ``_btf.holders``.

Anything that does not work (no root or CAP_BPF, no BTF, a kernel lockdown, a
seccomp filter, another architecture, a verifier that refuses the program) makes
:func:`task_files` return None, and the caller scans ``/proc`` as before. The loaded
program is kept for the life of the process (``portkit top`` and the exporter list
sockets every few seconds), and a failure is remembered too.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from portkit.see import _btf

__all__ = ["available", "loaded", "task_files"]

BTF_PATH = "/sys/kernel/btf/vmlinux"
#: bpf(2) by machine (arch/*/entry/syscalls tables).
_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}
_PROG_LOAD, _LINK_CREATE, _ITER_CREATE = 5, 28, 33
_PROG_TYPE_TRACING, _TRACE_ITER = 26, 28
_READ_SIZE = 1 << 20

# The attached iterator link's fd once loaded; _failed once loading did not work.
_link: int | None = None
_failed = False


def available(procfs: str = "/proc") -> bool:
    """Whether the iterator may be tried here (cheap checks only; loading may still
    fail). ``PORTKIT_NO_BPF`` set to anything turns it off."""
    return (
        not _failed
        and procfs == "/proc"
        and not os.environ.get("PORTKIT_NO_BPF")
        and os.uname().machine in _SYS_BPF
        and os.path.exists(BTF_PATH)
        and _capable()
    )


# CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON (Linux 5.8+), loads tracing programs.
_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39


def _capable() -> bool:
    """Whether this process's effective capabilities allow loading the program."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"CapEff:"):
                    caps = int(line.split()[1], 16)
                    break
            else:
                return False
    except (OSError, ValueError, IndexError):
        return False
    return bool(caps >> _CAP_SYS_ADMIN & 1) or bool(
        caps >> _CAP_BPF & 1 and caps >> _CAP_PERFMON & 1
    )


def loaded() -> bool:
    """Whether this process has the program loaded already (a pass then costs only
    the walk)."""
    return _link is not None


def task_files() -> bytes | None:
    """The raw records (``_btf.RECORD`` bytes per open file) of one pass, or None
    where the iterator cannot be used."""
    global _link, _failed
    if _link is None:
        if _failed:
            return None
        try:
            _link = _attach()
        except (OSError, ValueError, AttributeError, ImportError):  # ctypes may be missing
            _failed = True
            return None
    try:
        return _read(_iter_create(_link))
    except OSError:
        return None


def _syscall() -> Callable[[int, object, int], int]:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    number = _SYS_BPF[os.uname().machine]

    def bpf(cmd: int, attr: object, size: int) -> int:
        fd = int(libc.syscall(ctypes.c_long(number), ctypes.c_int(cmd), attr, ctypes.c_uint(size)))
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return fd

    return bpf


_bpf: Callable[[int, object, int], int] | None = None


def _call(cmd: int, attr: bytes) -> int:
    import ctypes

    global _bpf
    if _bpf is None:
        _bpf = _syscall()
    buf = ctypes.create_string_buffer(attr, len(attr))
    return _bpf(cmd, buf, len(attr))


def _attach() -> int:
    """Load the program and attach it as a ``task_file`` iterator: the link's fd."""
    import ctypes
    import struct

    from portkit.see import _btf

    lay = _layout()
    code = _btf.program(lay)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"GPL")  # the seq and probe helpers are GPL-only
    attr = bytearray(120)  # union bpf_attr, BPF_PROG_LOAD
    struct.pack_into(
        "<IIQQ",
        attr,
        0,
        _PROG_TYPE_TRACING,
        len(code) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license_),
    )
    struct.pack_into("<16s", attr, 48, b"portkit_owners")  # prog_name
    struct.pack_into("<I", attr, 68, _TRACE_ITER)  # expected_attach_type
    struct.pack_into("<I", attr, 108, lay.func_id)  # attach_btf_id
    prog = _call(_PROG_LOAD, bytes(attr))
    try:
        link = bytearray(48)  # BPF_LINK_CREATE: prog_fd, target_fd, attach_type
        struct.pack_into("<III", link, 0, prog, 0, _TRACE_ITER)
        fd = _call(_LINK_CREATE, bytes(link))
    finally:
        os.close(prog)  # the link holds the program
    return fd  # bpf(2) descriptors are close-on-exec


#: Where the layout of this boot's kernel is kept: reading it from the BTF takes
#: about 40 ms, more than the whole pass. /run is emptied at every boot, and a file
#: there is trusted only when root owns it and nobody else may write it.
CACHE_DIR = "/run/portkit"


def _layout() -> _btf.Layout:
    """This kernel's :class:`_btf.Layout`: from the cache when it is there and its
    key (the kernel's release, build and BTF size) matches, else read from the BTF
    and kept for the next run."""
    from portkit.see import _btf

    st = os.stat(BTF_PATH)
    u = os.uname()
    key = f"{u.release} {u.version} {st.st_size} {st.st_mtime_ns}"
    path = f"{CACHE_DIR}/btf-layout"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            text = os.read(fd, 4096).decode() if _trusted(info) else ""
        finally:
            os.close(fd)
        cached = _btf.Layout.from_text(text, key)
        if cached is not None:
            return cached
    except (OSError, UnicodeDecodeError):
        pass
    with open(BTF_PATH, "rb") as f:
        lay = _btf.layout(f.read())
    _keep(path, lay.to_text(key))
    return lay


def _trusted(info: os.stat_result) -> bool:
    return info.st_uid == 0 and not info.st_mode & 0o022


def _keep(path: str, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (a temporary file renamed)."""
    try:
        os.mkdir(CACHE_DIR, 0o755)
    except FileExistsError:
        pass
    except OSError:
        return
    try:
        if not _trusted(os.stat(CACHE_DIR, follow_symlinks=False)):
            return
        tmp = f"{path}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError:
        pass


def _iter_create(link: int) -> int:
    import struct

    return _call(_ITER_CREATE, struct.pack("<II", link, 0))


def _read(fd: int) -> bytes:
    chunks = []
    try:
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)

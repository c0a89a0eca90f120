"""``--from``: run a probe from inside another network namespace (netns:NAME, pid:PID,
container:NAME).

:func:`parse_origin` is pure (text -> :class:`Origin`); a container's origin is only a
name until :func:`locate` asks its runtime for the container's main process (the
containers capability, :func:`portkit.containers.container_pid`). :func:`run_from` is
the I/O: it
forks a worker that joins the namespace with ``setns(2)`` and runs the probe there, so
a container with nothing installed is checked from its own point of view, and the
caller's process never leaves its namespace. Names resolve the way the other side
would resolve them: the worker also gets a private mount namespace in which that
side's ``/etc/hosts`` and ``/etc/resolv.conf`` are bind-mounted over its own (what
``ip netns exec`` does with ``/etc/netns/NAME/``; for ``pid:`` they are read from the
process's own root, ``/proc/PID/root/etc``). Results come back pickled over a pipe.

    >>> parse_origin("netns:lab").ns_path, parse_origin("pid:1").etc_dir
    ('/run/netns/lab', '/proc/1/root/etc')
    >>> parse_origin("container:web").kind, parse_origin("container:web").ns_path
    ('container', '')
"""

from __future__ import annotations

import os
import pickle
import re
from typing import TYPE_CHECKING, Any, TypeVar

from portkit.errors import ParseError, PermissionDenied, PortkitError
from portkit.model import _Record

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Origin", "locate", "parse_origin", "run_from"]

T = TypeVar("T")

ACCEPTED = "netns:NAME (ip netns), pid:PID or container:NAME"
_NETNS_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
#: Docker's and Podman's container names (and ids, or unique id prefixes).
_CONTAINER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

# <sched.h> and <sys/mount.h>
_CLONE_NEWNS = 0x00020000
_CLONE_NEWNET = 0x40000000
_MS_BIND = 4096
_MS_REC = 16384
_MS_PRIVATE = 1 << 18

#: The resolver's files that the other side's copies replace in the worker.
_RESOLVER_FILES = ("hosts", "resolv.conf")


class Origin(_Record):
    """Where a probe runs from: ``kind`` (netns, pid, container), the network namespace
    file and the directory holding that side's ``hosts`` and ``resolv.conf`` (both ""
    for a container not yet located, see :func:`locate`)."""

    __slots__ = ("text", "kind", "ns_path", "etc_dir")
    text: str
    kind: str
    ns_path: str
    etc_dir: str

    def __init__(self, text: str, kind: str, ns_path: str, etc_dir: str) -> None:
        self._init(text=text, kind=kind, ns_path=ns_path, etc_dir=etc_dir)


def _netns(text: str, name: str) -> Origin:
    if not _NETNS_NAME.fullmatch(name) or name in (".", ".."):
        raise ParseError(f"bad namespace name {name!r}", text=text, accepted=ACCEPTED)
    return Origin(text, "netns", f"/run/netns/{name}", f"/etc/netns/{name}")


def _pid(text: str, value: str) -> Origin:
    if not value.isdigit() or len(value) > 10 or int(value) <= 0:
        raise ParseError(f"bad PID {value!r}", text=text, accepted=ACCEPTED)
    pid = int(value)
    return Origin(text, "pid", f"/proc/{pid}/ns/net", f"/proc/{pid}/root/etc")


def _container(text: str, value: str) -> Origin:
    if not _CONTAINER_NAME.fullmatch(value):
        raise ParseError(f"bad container name {value!r}", text=text, accepted=ACCEPTED)
    return Origin(text, "container", "", "")


def locate(origin: Origin) -> Origin:
    """``origin`` with its namespace file known: a container's becomes its main
    process's (asked of its runtime now); the others are returned as they are.

    Raises:
        ParseError: no such running container.
        PermissionDenied: the runtime's API needs root or its group.
    """
    if origin.kind != "container" or origin.ns_path:
        return origin
    from portkit.containers import container_pid

    pid = container_pid(origin.text.partition(":")[2])
    return Origin(origin.text, "container", f"/proc/{pid}/ns/net", f"/proc/{pid}/root/etc")


#: Kind -> parser of its value.
_KINDS: dict[str, Callable[[str, str], Origin]] = {
    "netns": _netns,
    "pid": _pid,
    "container": _container,
}


def parse_origin(text: str) -> Origin:
    """``netns:NAME``, ``pid:PID`` or ``container:NAME`` (a name or id, see
    :func:`locate`).

    Raises:
        ParseError: naming the bad part and the accepted forms.
    """
    kind, sep, value = text.strip().partition(":")
    parse = _KINDS.get(kind.lower())
    if not sep or parse is None or not value:
        raise ParseError(f"bad --from {text!r}", text=text, accepted=ACCEPTED)
    return parse(text, value)


# --- the worker (I/O) ---------------------------------------------------------------------


def _rebuild(cls: type[_Record], values: tuple[Any, ...]) -> _Record:
    obj = object.__new__(cls)
    for name, value in zip(cls.__slots__, values, strict=True):
        object.__setattr__(obj, name, value)
    return obj


class _Pickler(pickle.Pickler):
    """Records are immutable (``__setattr__`` refuses): they travel as (class, values)."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, _Record):
            return _rebuild, (type(obj), obj._values())
        return NotImplemented


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _resolver_files(origin: Origin) -> dict[str, bytes]:
    """The other side's hosts and resolv.conf, read before joining it (at most 1 MiB)."""
    found: dict[str, bytes] = {}
    for name in _RESOLVER_FILES:
        try:
            with open(os.path.join(origin.etc_dir, name), "rb") as f:
                found[name] = f.read(1 << 20)
        except OSError:
            continue  # none of its own: ours stays (as `ip netns exec` does)
    return found


def _enter(ns_fd: int, files: dict[str, bytes]) -> None:
    """In the worker: join the network namespace, then lay the resolver files over ours."""
    libc = _libc()
    _check(libc.setns(ns_fd, _CLONE_NEWNET), "setns")
    if not files:
        return
    import tempfile

    _check(libc.unshare(_CLONE_NEWNS), "unshare")
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate")
    for name, data in files.items():
        fd, path = tempfile.mkstemp(prefix=f"portkit-{name}-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        target = f"/etc/{name}".encode()
        _check(libc.mount(path.encode(), target, None, _MS_BIND, None), f"bind {name}")
        os.unlink(path)  # the mount keeps it


def run_from(origin: Origin | None, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` run inside ``origin``'s network namespace (None: here).

    Raises:
        ParseError: no such namespace or process.
        PermissionDenied: joining it needs root (CAP_SYS_ADMIN).
        PortkitError: whatever ``fn`` raised, as it raised it.
    """
    if origin is None:
        return fn(*args, **kwargs)
    origin = locate(origin)
    try:
        ns_fd = os.open(origin.ns_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        what = {"netns": "network namespace", "pid": "process"}.get(origin.kind, "container")
        raise ParseError(
            f"--from {origin.text}: no such {what}", text=origin.text, accepted=ACCEPTED
        ) from None
    except PermissionError as exc:
        raise PermissionDenied(
            f"--from {origin.text}: cannot open {origin.ns_path}", needed="root"
        ) from exc
    try:
        files = _resolver_files(origin)
        return _fork(ns_fd, files, origin, fn, args, kwargs)
    finally:
        os.close(ns_fd)


def _fork(
    ns_fd: int,
    files: dict[str, bytes],
    origin: Origin,
    fn: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> T:
    import io
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: never returns
        os.close(read_end)
        status = 0
        try:
            try:
                _enter(ns_fd, files)
            except OSError as exc:
                raise PermissionDenied(
                    f"--from {origin.text}: cannot enter its namespace ({exc.strerror})",
                    needed="root (CAP_SYS_ADMIN)",
                ) from None
            answer: tuple[str, Any] = ("ok", fn(*args, **kwargs))
        except PortkitError as exc:
            answer = ("error", exc)
        except BaseException as exc:
            answer = ("error", PortkitError(f"--from {origin.text}: {type(exc).__name__}: {exc}"))
            status = 1
        try:
            buf = io.BytesIO()
            try:
                _Pickler(buf).dump(answer)
            except Exception as exc:  # an answer that does not pickle: say what it was
                buf = io.BytesIO()
                pickle.dump(("error", PortkitError(f"--from {origin.text}: {exc}")), buf)
            with os.fdopen(write_end, "wb") as out:
                out.write(buf.getvalue())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        raise PortkitError(f"--from {origin.text}: the worker died without an answer")
    try:
        kind, value = pickle.loads(data)
    except Exception as exc:  # an exception class that cannot be rebuilt from its args
        raise PortkitError(f"--from {origin.text}: {exc}") from None
    if kind == "error":
        raise value
    result: T = value
    return result

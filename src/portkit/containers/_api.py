"""The container runtimes' local APIs (I/O): read-only, bounded, never fatal.

Docker's Engine API and Podman's compatible one are HTTP/1.1 over a unix socket
(``DOCKER_HOST=unix://...``, else ``/var/run/docker.sock``; ``CONTAINER_HOST``, else
``/run/podman/podman.sock``; the rootless ones under ``$XDG_RUNTIME_DIR``). portkit
asks two things: ``GET /containers/json`` (every running container, its labels, ports
and addresses: one request per run) and, only where a pid is needed,
``GET /containers/{id}/json``.

Why the standard library: the exchange is one short GET per socket. Measured here
(``python -X importtime``, one busy machine, so ratios only): ``httpx`` 0.29 with its
``httpcore``, ``h11``, ``anyio``, ``certifi``, ``idna`` costs about 100 ms to import,
``requests-unixsocket`` 0.4 with ``requests`` and ``urllib3`` about 125 ms, the Docker
SDK (Debian's python3-docker 5.0) about 270 ms, against about 40 ms for ``http.client``
(imported only when there is an answer to parse): each of them costs more than a whole
``portkit ls`` for two GET requests, and is one more dependency. None of them gives a
deadline for the whole exchange either (their timeouts apply to each read, so a daemon
that drips a byte a second holds the caller for as long as it likes). Here one deadline
covers connect, send and every read, the answer is capped at :data:`MAX_ANSWER` bytes,
and ``http.client`` parses it (``_records.parse_response``: status line, headers,
chunked bodies), so there is no HTTP parsing of our own either.

Any failure (no socket, no permission, a refused connection, no answer within the
budget, an answer that is not HTTP or not JSON) becomes an :class:`Answer` with a
one-line note, never an exception: the listing goes on with the short ids the cgroups
give. Nothing here contacts anything but a local unix socket (``DOCKER_HOST=tcp://``
is noted, not asked).
"""

from __future__ import annotations

import errno
import os
import time

from portkit.containers._records import (
    Container,
    decode_answer,
    parse_containers,
    parse_inspect,
    parse_response,
)
from portkit.errors import ParseError, PermissionDenied, PortkitError
from portkit.model import _Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = [
    "API_BUDGET",
    "MAX_ANSWER",
    "Answer",
    "Listing",
    "engine_sockets",
    "fetch",
    "inspect_pids",
    "request",
    "stop",
]

#: Seconds all API calls of one run may take together.
API_BUDGET = 1.0
#: Bytes of one answer at most (a host with a thousand containers answers about 2 MB).
MAX_ANSWER = 8 * 1024 * 1024
#: Containers whose pid is asked for one by one at most, in one run.
MAX_INSPECT = 256


class Answer(_Record):
    """How one runtime's socket answered: ``status`` is ``ok``, ``absent`` (no socket),
    ``refused`` (a socket nobody serves), ``denied``, ``timeout`` or ``garbage``;
    ``note`` the one line a command prints about it (None when there is nothing to
    say: ``ok``, or a default socket that does not exist)."""

    __slots__ = ("runtime", "path", "status", "note")
    runtime: str
    path: str
    status: str
    note: str | None

    def __init__(self, runtime: str, path: str, status: str, note: str | None) -> None:
        self._init(runtime=runtime, path=path, status=status, note=note)


class Listing(_Record):
    """Every running container the runtimes reported, and how each socket answered."""

    __slots__ = ("containers", "answers")
    containers: tuple[Container, ...]
    answers: tuple[Answer, ...]

    def __init__(self, containers: tuple[Container, ...], answers: tuple[Answer, ...]) -> None:
        self._init(containers=containers, answers=answers)

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(a.note for a in self.answers if a.note)


def engine_sockets(environ: Mapping[str, str] | None = None) -> list[tuple[str, str, bool]]:
    """``[(runtime, socket path, named)]`` to ask, without duplicates (a podman-docker
    symlink is asked once, as podman): ``DOCKER_HOST`` / ``CONTAINER_HOST`` when they
    name a unix socket (``named``: absent is worth a note), else the usual sockets.

    >>> engine_sockets({"DOCKER_HOST": "unix:///run/x.sock"})
    [('docker', '/run/x.sock', True)]
    """
    env = os.environ if environ is None else environ
    found: list[tuple[str, str, bool]] = []
    for runtime, variable in (("docker", "DOCKER_HOST"), ("podman", "CONTAINER_HOST")):
        value = env.get(variable, "")
        if value.startswith("unix://"):
            found.append((runtime, value[len("unix://") :], True))
        elif value:
            found.append((runtime, value, True))  # tcp://, ssh://: noted, never asked
    if not found:
        found = [
            ("docker", "/var/run/docker.sock", False),
            ("podman", "/run/podman/podman.sock", False),
        ]
        runtime_dir = env.get("XDG_RUNTIME_DIR")
        if runtime_dir and os.getuid() != 0:
            found += [
                ("docker", os.path.join(runtime_dir, "docker.sock"), False),
                ("podman", os.path.join(runtime_dir, "podman", "podman.sock"), False),
            ]
    unique: dict[str, tuple[str, str, bool]] = {}
    for runtime, path, named in found:
        real = os.path.realpath(path) if path.startswith("/") else path
        if "podman" in os.path.basename(real):
            runtime = "podman"
        unique.setdefault(real, (runtime, path, named))
    return list(unique.values())


def _expected(head: bytes) -> int | bool | None:
    """What ends an answer whose header block is ``head``: its Content-Length, True
    for a chunked body (the last chunk), None for the end of the connection."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length" and value.strip().isdigit():
            return int(value.strip())
        if name == b"transfer-encoding" and b"chunked" in value.lower():
            return True
    return None


def request(
    path: str, method: str, url: str, deadline: float, limit: int = MAX_ANSWER
) -> tuple[int, bytes]:
    """One HTTP exchange over the unix socket at ``path``, all of it before
    ``deadline`` (time.monotonic()), the answer at most ``limit`` bytes.

    Raises:
        OSError: no socket (FileNotFoundError), no permission (PermissionError), nobody
            serving it (ConnectionRefusedError), ``TimeoutError`` past the deadline.
        ParseError: the answer is larger than ``limit`` or is not HTTP.
    """
    import socket  # here: a listing that meets no container never asks a runtime

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:

        def left() -> float:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(errno.ETIMEDOUT, "no answer in time")
            return remaining

        sock.settimeout(left())
        sock.connect(path)
        head = f"{method} {url} HTTP/1.1\r\nHost: docker\r\nAccept: application/json\r\n"
        extra = "Content-Length: 0\r\n" if method == "POST" else ""
        sock.settimeout(left())
        sock.sendall(f"{head}{extra}Connection: close\r\n\r\n".encode("ascii"))
        buf = bytearray()
        body_at = -1
        ends: int | bool | None = None
        while True:
            sock.settimeout(left())
            data = sock.recv(65536)
            if not data:
                break
            buf += data
            if len(buf) > limit + 65536:
                raise ParseError(f"an answer larger than {limit} bytes", text=url)
            if body_at < 0 and (found := buf.find(b"\r\n\r\n")) >= 0:
                body_at = found + 4
                ends = _expected(bytes(buf[:found]))
            # a whole answer: do not wait for a server that keeps the connection open
            if body_at >= 0 and (
                (ends is True and buf.endswith(b"0\r\n\r\n"))
                or (isinstance(ends, int) and ends is not True and len(buf) - body_at >= ends)
            ):
                break
    finally:
        sock.close()
    status, body = parse_response(bytes(buf))
    if len(body) > limit:
        raise ParseError(f"an answer larger than {limit} bytes", text=url)
    return status, body


#: What each way of failing says (``{where}``: the runtime and its socket).
NOTES = {
    "absent": "{where}: no such socket",
    "refused": "{where}: nothing serves the socket (is the daemon running?)",
    "denied": "{where}: permission denied{detail} (root or the {runtime} group): "
    "containers shown by their short ids",
    "timeout": "{where}: no answer in time: containers shown by their short ids",
    "garbage": "{where}: unusable answer{detail}: containers shown by their short ids",
    "remote": "{where}: not a local unix socket, not asked",
}


def _note(runtime: str, path: str, status: str, detail: str = "") -> Answer:
    text = NOTES[status].format(
        where=f"{runtime} API at {path}",
        runtime=runtime,
        detail=f" ({' '.join(detail.split())[:120]})" if detail else "",
    )
    return Answer(runtime, path, status, text)


def _ask(runtime: str, path: str, url: str, deadline: float) -> tuple[Any, Answer]:
    """``(decoded JSON or None, how the socket answered)``; never raises."""
    detail = ""
    try:
        code, body = request(path, "GET", url, deadline)
        if code in (401, 403):  # an authorization plugin, a proxy in front of the socket
            try:
                decode_answer(code, body)
            except ParseError as exc:
                return None, _note(runtime, path, "denied", str(exc))
        return decode_answer(code, body), Answer(runtime, path, "ok", None)
    except FileNotFoundError:
        status = "absent"
    except PermissionError:
        status = "denied"
    except ConnectionRefusedError:
        status = "refused"
    except TimeoutError:
        status = "timeout"
    except ParseError as exc:
        status, detail = "garbage", str(exc)
    except OSError as exc:
        status, detail = "garbage", exc.strerror or type(exc).__name__
    return None, _note(runtime, path, status, detail)


def fetch(
    sockets: Iterable[tuple[str, str, bool]] | None = None, budget: float = API_BUDGET
) -> Listing:
    """Every running container the local runtimes report (one ``GET /containers/json``
    per socket, all within ``budget`` seconds), and how each socket answered. A default
    socket that does not exist is not worth a note; one named by the environment is."""
    deadline = time.monotonic() + budget
    found: dict[str, Container] = {}
    answers: list[Answer] = []
    for runtime, path, named in engine_sockets() if sockets is None else sockets:
        if not path.startswith("/"):
            answers.append(_note(runtime, path, "remote"))
            continue
        doc, answer = _ask(runtime, path, "/containers/json", deadline)
        if answer.status == "absent" and not named:
            answer = Answer(runtime, path, "absent", None)
        if doc is not None:
            try:
                listed = parse_containers(doc, runtime, path)
            except ParseError as exc:
                answer = _note(runtime, path, "garbage", str(exc))
                listed = []
            for c in listed:
                found.setdefault(c.id, c)
        answers.append(answer)
    return Listing(tuple(found.values()), tuple(answers))


def inspect_pids(
    containers: Iterable[Container], budget: float = API_BUDGET
) -> tuple[dict[str, int], list[str]]:
    """``{container id: main pid}`` asked of each container's API
    (``GET /containers/{id}/json``), all within ``budget`` seconds; notes for what
    could not be asked."""
    deadline = time.monotonic() + budget
    pids: dict[str, int] = {}
    failed = 0
    for n, c in enumerate(containers):
        if c.api is None:
            continue
        if n >= MAX_INSPECT or deadline <= time.monotonic():
            failed += 1
            continue
        doc, answer = _ask(c.runtime, c.api, f"/containers/{c.id}/json", deadline)
        pid = None
        if doc is not None:
            try:
                pid = parse_inspect(doc)
            except ParseError:
                pid = None
        if pid is not None:
            pids[c.id] = pid
        elif answer.status != "ok":
            failed += 1
    notes = [f"the main process of {failed} container(s) was not learnt in time"] if failed else []
    return pids, notes


def stop(container: Container, grace: int = 10) -> None:
    """Stop a container through its runtime's API (``docker stop``: SIGTERM, then
    SIGKILL after ``grace`` seconds).

    Raises:
        PortkitError: no API to ask, or the runtime refused (its message).
        PermissionDenied: the API socket needs root or the runtime's group.
    """
    if container.api is None:
        raise PortkitError(
            f"container {container.name} is known from its cgroup only (no runtime API "
            "answered), so it cannot be stopped from here"
        )
    deadline = time.monotonic() + grace + 30.0
    try:
        status, body = request(
            container.api, "POST", f"/containers/{container.id}/stop?t={int(grace)}", deadline
        )
    except PermissionError as exc:
        raise PermissionDenied(
            f"cannot ask {container.api} to stop {container.name}",
            needed=f"root or the {container.runtime} group",
        ) from exc
    except (OSError, ParseError) as exc:
        raise PortkitError(f"cannot stop container {container.name}: {exc}") from exc
    if status not in (204, 304):
        try:
            decode_answer(status, body)
        except ParseError as exc:
            raise PortkitError(f"the runtime did not stop {container.name}: {exc}") from None

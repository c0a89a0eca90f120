"""The live side of ``plan check``: this machine's listeners and TCP/UDP probes.

The only network I/O of the plan capability. Listeners come from
:func:`portkit.sockets` (the see capability). Probes are plain non-blocking
connects, at most :data:`MAX_CONCURRENCY` at a time, each bounded by a timeout;
UDP probes send an empty datagram on a connected socket and read the ICMP answer
(``ECONNREFUSED`` means closed).
"""

from __future__ import annotations

import errno
import selectors
import socket
import time
from typing import TYPE_CHECKING

from portkit.errors import PermissionDenied, ProbeError, ResourceExhausted

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["MAX_CONCURRENCY", "listeners", "probe", "resolve"]

MAX_CONCURRENCY = 256
#: connect() outcomes that mean "nothing listens there".
_REFUSED = {errno.ECONNREFUSED, errno.ECONNRESET}


def listeners() -> dict[tuple[str, int], set[str]]:
    """(protocol, port) -> the local addresses listening on it (TCP LISTEN, unconnected UDP)."""
    import portkit

    found: dict[tuple[str, int], set[str]] = {}
    for s in portkit.sockets(listening=True):
        found.setdefault((str(s.protocol), s.local_port), set()).add(s.local_ip)
    return found


def resolve(host: str) -> list[str]:
    """The addresses of ``host`` (an IP literal is returned as is)."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {host!r}: {exc.strerror}", host=host) from exc
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _family(ip: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


def probe(
    targets: Iterable[tuple[str, int, str]], timeout: float = 1.0
) -> dict[tuple[str, int, str], str]:
    """Probe each (ip, port, protocol): ``open``, ``closed``, ``filtered`` or ``open|filtered``.

    TCP: a completed connect is open, a refusal closed, silence until ``timeout``
    filtered. UDP: an ICMP port-unreachable (seen as ``ECONNREFUSED``) is closed, a
    reply open, silence ``open|filtered`` (UDP cannot tell those apart).
    """
    todo = list(dict.fromkeys(targets))
    out: dict[tuple[str, int, str], str] = {}
    for start in range(0, len(todo), MAX_CONCURRENCY):
        out.update(_batch(todo[start : start + MAX_CONCURRENCY], timeout))
    return out


def _open_socket(ip: str, kind: int) -> socket.socket:
    try:
        sock = socket.socket(_family(ip), kind)
    except OSError as exc:
        if exc.errno in (errno.EMFILE, errno.ENFILE):
            raise ResourceExhausted(f"out of file descriptors: {exc.strerror}") from exc
        if exc.errno in (errno.EPERM, errno.EACCES):
            raise PermissionDenied(f"cannot open a socket: {exc.strerror}") from exc
        raise ProbeError(f"cannot open a socket for {ip}: {exc.strerror}", host=ip) from exc
    sock.setblocking(False)
    return sock


def _batch(batch: list[tuple[str, int, str]], timeout: float) -> dict[tuple[str, int, str], str]:
    out: dict[tuple[str, int, str], str] = {}
    sel = selectors.DefaultSelector()
    socks: list[socket.socket] = []
    try:
        for target in batch:
            ip, port, proto = target
            udp = proto == "udp"
            sock = _open_socket(ip, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
            socks.append(sock)
            try:
                if udp:
                    sock.connect((ip, port))
                    sock.send(b"")
                    sel.register(sock, selectors.EVENT_READ, target)
                    continue
                code = sock.connect_ex((ip, port))
            except OSError as exc:
                out[target] = "closed" if exc.errno in _REFUSED else "filtered"
                continue
            if code == 0:
                out[target] = "open"
            elif code == errno.EINPROGRESS:
                sel.register(sock, selectors.EVENT_WRITE, target)
            else:
                out[target] = "closed" if code in _REFUSED else "filtered"
        deadline = time.monotonic() + timeout
        while sel.get_map():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for key, _ in sel.select(left):
                target = key.data
                sock = key.fileobj  # type: ignore[assignment]
                sel.unregister(sock)
                if target[2] == "udp":
                    try:
                        sock.recv(2048)
                        out[target] = "open"
                    except OSError as exc:
                        out[target] = "closed" if exc.errno in _REFUSED else "open|filtered"
                    continue
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code == 0:
                    out[target] = "open"
                else:
                    out[target] = "closed" if code in _REFUSED else "filtered"
        for key in list(sel.get_map().values()):
            out[key.data] = "open|filtered" if key.data[2] == "udp" else "filtered"
    finally:
        sel.close()
        for sock in socks:
            sock.close()
    return out

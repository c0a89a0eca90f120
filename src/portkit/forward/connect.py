"""A netcat-like client: stdin -> socket -> stdout, TCP or UDP.

TCP: after stdin's end the socket is half-closed (``shutdown(SHUT_WR)``) and the
answer is still read to its end, so ``printf 'GET / HTTP/1.0\\r\\n\\r\\n' | portkit
connect host:80`` works. UDP: one datagram per input line (without its newline);
each datagram received is printed on its own line; after stdin's end the client waits
``wait`` seconds of silence for late replies. The local ephemeral endpoint the OS gave
the socket is reported first (the guide's "client gets a random ephemeral port").
"""

from __future__ import annotations

import os
import select
import socket
import threading
from typing import TYPE_CHECKING

from portkit.errors import ProbeError
from portkit.model import Endpoint, Protocol

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["connect"]

_CHUNK = 65536


def _text(addr: tuple[object, ...]) -> str:
    host = str(addr[0])
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _open(target: Endpoint, kind: int, timeout: float) -> socket.socket:
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=kind)
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {target.host}: {exc.strerror}", host=target.host) from exc
    last: OSError | None = None
    for family, stype, proto, _, addr in infos:
        sock = socket.socket(family, stype, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(addr)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        sock.settimeout(None)
        return sock
    reason = "timed out" if isinstance(last, TimeoutError) else (last.strerror if last else "")
    raise ProbeError(
        f"cannot connect to {target.address}: {reason or last}",
        host=target.host,
        port=target.port,
        errno=last.errno if last else None,
    ) from last


def _pump_stdin_tcp(sock: socket.socket, stdin: int) -> None:
    try:
        while data := os.read(stdin, _CHUNK):
            sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _pump_stdin_udp(sock: socket.socket, stdin: int, done: threading.Event) -> None:
    pending = b""
    try:
        while data := os.read(stdin, _CHUNK):
            pending += data
            *lines, pending = pending.split(b"\n")
            for line in lines:
                sock.send(line)
        if pending:
            sock.send(pending)
    except OSError:
        pass
    finally:
        done.set()


def connect(
    target: Endpoint,
    *,
    timeout: float = 10.0,
    wait: float = 1.0,
    stdin: int = 0,
    stdout: int = 1,
    on_connected: Callable[[str, str], None] | None = None,
) -> int:
    """Relay ``stdin`` to ``target`` and what comes back to ``stdout``.

    Args:
        target: where to connect; its protocol picks TCP or UDP.
        timeout: connect timeout in seconds (TCP).
        wait: UDP only: seconds of silence after stdin's end before returning.
        stdin, stdout: file descriptors.
        on_connected: called with ``("local ip:port", "remote ip:port")`` once connected.

    Returns:
        The number of bytes received.

    Raises:
        ProbeError: the name did not resolve or the connection was refused/timed out.
    """
    udp = target.protocol is Protocol.UDP
    sock = _open(target, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM, timeout)
    received = 0
    with sock:
        if on_connected is not None:
            on_connected(_text(sock.getsockname()), _text(sock.getpeername()))
        if not udp:
            threading.Thread(target=_pump_stdin_tcp, args=(sock, stdin), daemon=True).start()
            while True:
                try:
                    data = sock.recv(_CHUNK)
                except ConnectionResetError:
                    break
                if not data:
                    break
                received += len(data)
                _write_all(stdout, data)
            return received
        done = threading.Event()
        threading.Thread(target=_pump_stdin_udp, args=(sock, stdin, done), daemon=True).start()
        while True:
            ready, _, _ = select.select([sock], [], [], wait if done.is_set() else 0.2)
            if not ready:
                if done.is_set():
                    return received
                continue
            try:
                data = sock.recv(_CHUNK)
            except ConnectionRefusedError:
                continue  # ICMP: nobody listens there (yet); keep going like nc -u
            received += len(data)
            _write_all(stdout, data if data.endswith(b"\n") else data + b"\n")

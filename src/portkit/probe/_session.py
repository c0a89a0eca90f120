"""After the connect: banner, TLS handshake, HTTP status on one blocking socket (I/O).

Used by ``check`` (on the socket the connect engine kept open) and by ``scan
--banner`` (a fresh connection per open port, in a small thread pool).
"""

from __future__ import annotations

import socket
import ssl
import time
from typing import TYPE_CHECKING

from portkit.errors import ParseError
from portkit.probe._payloads import parse_status_line, summarize_banner, tcp_probe_for
from portkit.probe._records import TlsInfo
from portkit.probe._x509 import read_certificate

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["BANNER_WAIT", "TlsConn", "grab_banner", "http_status", "tls_handshake"]

#: How long a service may take to speak first before it gets a probe (nmap waits 6 s
#: for its NULL probe; services that talk first do so within milliseconds on a LAN).
BANNER_WAIT = 1.0


def _recv_some(sock: socket.socket | TlsConn, timeout: float, limit: int = 4096) -> bytes:
    sock.settimeout(timeout)
    try:
        return sock.recv(limit)
    except (TimeoutError, BlockingIOError):
        return b""


def grab_banner(sock: socket.socket | TlsConn, port: int, wait: float) -> str:
    """What the service says first; if it says nothing within ``wait``, its answer to
    the probe for its port (``_payloads.TCP_PROBES``, else an HTTP HEAD)."""
    try:
        data = _recv_some(sock, wait)
        if not data:
            sock.sendall(tcp_probe_for(port))
            data = _recv_some(sock, wait)
    except OSError:
        return ""
    return summarize_banner(data)


def banner_of(ip: str, port: int, timeout: float) -> str:
    """Connect to ``ip:port`` afresh and grab its banner ("" on any failure)."""
    try:
        sock = socket.create_connection((ip, port), timeout=timeout)
    except OSError:
        return ""
    try:
        return grab_banner(sock, port, timeout)
    finally:
        sock.close()


class TlsConn:
    """TLS over a blocking socket through ``ssl.MemoryBIO``: no ``SSLSocket`` at all.

    ``SSLContext.wrap_socket`` on a socket the peer has just reset raises from inside
    ``SSLSocket._create`` without closing the SSLSocket it made (CPython 3.11's
    pre-handshake ``recv`` check), leaking an fd until garbage collection. Driving
    an ``SSLObject`` by hand keeps the one socket in our hands. It offers what the
    checks use: ``sendall``, ``recv``, ``settimeout`` and ``close``.
    """

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext, server_name: str | None) -> None:
        self.sock = sock
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self._in, self._out, server_hostname=server_name)

    def _flush(self) -> None:
        data = self._out.read()
        if data:
            self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(16384)
        if data:
            self._in.write(data)
        else:
            self._in.write_eof()

    def handshake(self) -> None:
        while True:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
            else:
                self._flush()
                return

    def sendall(self, data: bytes) -> None:
        self.obj.write(data)
        self._flush()

    def recv(self, limit: int) -> bytes:
        while True:
            try:
                return self.obj.read(limit)
            except ssl.SSLWantReadError:
                self._flush()
                self._fill()
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                return b""

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def close(self) -> None:
        self.sock.close()


def _info(tls: TlsConn, verified: bool, error: str) -> TlsInfo:
    der = tls.obj.getpeercert(binary_form=True)
    cipher = tls.obj.cipher()
    fields: dict[str, object] = {}
    if der:
        try:
            cert = read_certificate(der)
        except ParseError as exc:
            error = error or f"cannot read the certificate: {exc}"
        else:
            days = None
            if cert.not_after:
                import calendar

                end = calendar.timegm(time.strptime(cert.not_after, "%Y-%m-%dT%H:%M:%SZ"))
                days = int((end - time.time()) // 86400)
            fields = {
                "subject": cert.subject,
                "issuer": cert.issuer,
                "not_before": cert.not_before,
                "not_after": cert.not_after,
                "days_left": days,
                "san": cert.san,
            }
    return TlsInfo(
        version=tls.obj.version() or "",
        cipher=cipher[0] if cipher else "",
        verified=verified,
        verify_error=error,
        **fields,  # type: ignore[arg-type]
    )


def tls_handshake(
    sock: socket.socket,
    server_name: str | None,
    timeout: float,
    reconnect: Callable[[], socket.socket],
) -> tuple[TlsConn, TlsInfo]:
    """Handshake on ``sock``, verifying against the system CAs and ``server_name``.

    When verification fails, the reason is kept and a second connection (from
    ``reconnect``) handshakes without verifying, to show the certificate anyway.
    The caller closes the returned connection (and ``sock`` when this raises).

    Raises:
        ssl.SSLError, OSError: when no handshake succeeds at all.
    """
    sock.settimeout(timeout)
    ctx = ssl.create_default_context()
    if server_name is None:
        ctx.check_hostname = False
    tls = TlsConn(sock, ctx, server_name)
    try:
        tls.handshake()
    except ssl.SSLCertVerificationError as exc:
        error = exc.verify_message or str(exc)
    else:
        return tls, _info(tls, True, "")
    sock.close()
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    raw = reconnect()
    try:
        raw.settimeout(timeout)
        tls = TlsConn(raw, insecure, server_name)
        tls.handshake()
        return tls, _info(tls, False, error)
    except BaseException:
        raw.close()
        raise


def http_status(sock: socket.socket | TlsConn, host: str, path: str, timeout: float) -> int:
    """Send ``GET path`` and return the response's status code.

    Raises:
        ParseError: the answer is not HTTP.
        OSError: the connection failed or timed out.
    """
    if not path.startswith("/"):
        path = "/" + path
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: portkit\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode("latin-1", "replace")
    sock.settimeout(timeout)
    sock.sendall(request)
    data = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in data and len(data) < 8192:
        sock.settimeout(max(0.001, deadline - time.monotonic()))
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return parse_status_line(data)

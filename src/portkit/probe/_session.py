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

__all__ = ["BANNER_WAIT", "grab_banner", "http_status", "tls_handshake"]

#: How long a service may take to speak first before it gets a probe (nmap waits 6 s
#: for its NULL probe; services that talk first do so within milliseconds on a LAN).
BANNER_WAIT = 1.0


def _recv_some(sock: socket.socket, timeout: float, limit: int = 4096) -> bytes:
    sock.settimeout(timeout)
    try:
        return sock.recv(limit)
    except (TimeoutError, BlockingIOError):
        return b""


def grab_banner(sock: socket.socket, port: int, wait: float) -> str:
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


def _info(tls_sock: ssl.SSLSocket, verified: bool, error: str) -> TlsInfo:
    der = tls_sock.getpeercert(binary_form=True)
    cipher = tls_sock.cipher()
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
        version=tls_sock.version() or "",
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
) -> tuple[ssl.SSLSocket, TlsInfo]:
    """Handshake on ``sock``, verifying against the system CAs and ``server_name``.

    When verification fails, the reason is kept and a second connection (from
    ``reconnect``) handshakes without verifying, to show the certificate anyway.

    Raises:
        ssl.SSLError, OSError: when no handshake succeeds at all.
    """
    sock.settimeout(timeout)
    ctx = ssl.create_default_context()
    if server_name is None:
        ctx.check_hostname = False
    try:
        tls = ctx.wrap_socket(sock, server_hostname=server_name)
        return tls, _info(tls, True, "")
    except ssl.SSLCertVerificationError as exc:
        error = exc.verify_message or str(exc)
        sock.close()
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    raw = reconnect()
    raw.settimeout(timeout)
    try:
        tls = insecure.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise
    return tls, _info(tls, False, error)


def http_status(sock: socket.socket, host: str, path: str, timeout: float) -> int:
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

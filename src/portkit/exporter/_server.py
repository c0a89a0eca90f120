"""The exporter's HTTP side (I/O): ``/metrics``, a landing page at ``/``, nothing else.

prometheus_client's own ``start_http_server`` answers every path with the metrics
and has no landing page, so this is a small ``http.server`` of our own that asks
prometheus_client only for the encoding (text or OpenMetrics, as the scraper's
``Accept`` header chooses) and gzip when asked. Concurrency is bounded: at most
:data:`MAX_CLIENTS` requests are served at once, the rest are closed at once, and
a client that sends nothing is dropped after :data:`CLIENT_TIMEOUT` seconds.
"""

from __future__ import annotations

import errno
import html
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from portkit.errors import PermissionDenied, PortkitError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CLIENT_TIMEOUT", "MAX_CLIENTS", "MetricsServer"]

MAX_CLIENTS = 8
CLIENT_TIMEOUT = 30.0

_LANDING = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>portkit exporter</title></head>
<body>
<h1>portkit exporter</h1>
<p>Sockets of this host as Prometheus metrics: connections by state per listening
port, accept queues, ephemeral port use{dest_note}.</p>
<p><a href="/metrics">Metrics</a></p>
<p>portkit {version}</p>
</body></html>
"""


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer
    timeout = CLIENT_TIMEOUT
    server_version = "portkit-exporter"

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, *, body: bool) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            try:
                status, headers, payload = self.server.render_metrics(
                    self.headers.get("Accept", ""), self.headers.get("Accept-Encoding", "")
                )
            except Exception as exc:  # a bug must answer 500, not drop the connection
                self.server.report(f"scrape failed: {type(exc).__name__}: {exc}")
                status, headers = 500, [("Content-Type", "text/plain")]
                payload = f"scrape failed: {type(exc).__name__}\n".encode()
        elif path == "/":
            status, headers, payload = (
                200,
                [("Content-Type", "text/html; charset=utf-8")],
                (self.server.landing.encode()),
            )
        else:
            status, headers, payload = 404, [("Content-Type", "text/plain")], b"not found\n"
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: a scrape every 15 s would fill the journal."""


class MetricsServer(ThreadingHTTPServer):
    """Serves a prometheus_client registry on ``(host, port)``; port 0 picks one.

    Args:
        host: an IP literal (IPv4 or IPv6).
        port: the TCP port.
        registry: a prometheus_client ``CollectorRegistry``.
        landing_note: a line for the landing page (e.g. the watched destinations).

    Raises:
        PermissionDenied: the port needs privileges.
        PortkitError: the address is in use or cannot be bound.
    """

    daemon_threads = True
    request_queue_size = 64  # the listen() backlog; http.server's default is 5
    allow_reuse_address = True  # restart at once after a crash: TIME-WAIT must not block

    def __init__(self, host: str, port: int, registry: Any, *, landing_note: str = "") -> None:
        from portkit._version import __version__

        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.registry = registry
        self.landing = _LANDING.format(
            version=html.escape(__version__),
            dest_note=html.escape(f" ({landing_note})" if landing_note else ""),
        )
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        try:
            super().__init__((host, port), _Handler)
        except PermissionError as exc:
            raise PermissionDenied(
                f"cannot listen on {_addr(host, port)}", needed="root or CAP_NET_BIND_SERVICE"
            ) from exc
        except OSError as exc:
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise PortkitError(f"cannot listen on {_addr(host, port)}: {reason}") from exc

    def report(self, message: str) -> None:
        """One line on stderr about a failed request."""
        import sys

        sys.stderr.write(f"portkit exporter: {message}\n")
        sys.stderr.flush()

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` actually bound."""
        host, port = self.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{_addr(host, port)}"

    def render_metrics(
        self, accept: str, accept_encoding: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Encode the registry as the scraper asked (text or OpenMetrics; gzip)."""
        import gzip

        from prometheus_client.exposition import choose_encoder, gzip_accepted

        encoder, content_type = choose_encoder(accept)
        payload = encoder(self.registry)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(accept_encoding):
            payload = gzip.compress(payload, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return 200, headers, payload

    def process_request(self, request: Any, client_address: Any) -> None:
        # Bounded: a flood of connections gets closed, not a thread each.
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


def _addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

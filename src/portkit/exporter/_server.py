"""The exporter's HTTP side (I/O): ``/metrics``, a landing page at ``/``, nothing else.

prometheus_client's own ``start_http_server`` answers every path with the metrics,
has no landing page and gives each connection a thread that waits as long as the
client likes, so a handful of idle connections starve every scrape. This server is
one asyncio loop: HTTP/1.1 is read with h11 (sans-I/O), prometheus_client only
encodes (text or OpenMetrics, as the scraper's ``Accept`` header chooses; gzip when
asked), and the collection runs in one worker thread. What a client can hold is
bounded:

- a request must arrive whole within :data:`REQUEST_DEADLINE` seconds of its first
  byte (a slow drip does not reset the clock) and be at most :data:`MAX_REQUEST` bytes;
- a kept-alive connection may idle for :data:`IDLE_TIMEOUT` seconds between requests;
- at most :data:`MAX_CONNECTIONS` connections are open; one more closes the one that
  has waited longest without a request in progress, so a crowd of slow or idle
  clients never keeps a scraper out;
- a reply must be taken within :data:`WRITE_DEADLINE` seconds.

A client that goes away is not an error: nothing is logged for it.
"""

from __future__ import annotations

import asyncio
import errno
import html
import socket
import threading
import time

from portkit.errors import PermissionDenied, PortkitError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_REQUEST",
    "REQUEST_DEADLINE",
    "WRITE_DEADLINE",
    "MetricsServer",
]

MAX_CONNECTIONS = 256
MAX_REQUEST = 16 * 1024
REQUEST_DEADLINE = 10.0
IDLE_TIMEOUT = 120.0
WRITE_DEADLINE = 30.0

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

Response = tuple[int, list[tuple[str, str]], bytes]


class _Conn:
    """One client connection and when it began to wait for its next request."""

    __slots__ = ("writer", "waiting_since", "busy")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.waiting_since = time.monotonic()
        self.busy = False  # a reply is being prepared or written: never evicted


class MetricsServer:
    """Serves a prometheus_client registry on ``(host, port)``; port 0 picks one.

    The socket is bound at once (so :attr:`address` is known and errors surface
    here); :meth:`serve_forever` runs the loop in the calling thread until
    :meth:`shutdown` is called from another one; :meth:`server_close` closes the socket.

    Args:
        host: an IP literal (IPv4 or IPv6).
        port: the TCP port.
        registry: a prometheus_client ``CollectorRegistry``.
        landing_note: a line for the landing page (e.g. the watched destinations).

    Raises:
        PermissionDenied: the port needs privileges.
        PortkitError: the address is in use or cannot be bound.
    """

    def __init__(self, host: str, port: int, registry: Any, *, landing_note: str = "") -> None:
        from portkit._version import __version__

        self.registry = registry
        self.landing = _LANDING.format(
            version=html.escape(__version__),
            dest_note=html.escape(f" ({landing_note})" if landing_note else ""),
        )
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            # Restart at once after a crash: TIME-WAIT must not block the port.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(128)
        except PermissionError as exc:
            sock.close()
            raise PermissionDenied(
                f"cannot listen on {_addr(host, port)}", needed="root or CAP_NET_BIND_SERVICE"
            ) from exc
        except OSError as exc:
            sock.close()
            reason = "address already in use" if exc.errno == errno.EADDRINUSE else exc.strerror
            raise PortkitError(f"cannot listen on {_addr(host, port)}: {reason}") from exc
        self._sock = sock
        self._conns: dict[asyncio.StreamWriter, _Conn] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._stopped = threading.Event()
        self._scrape = threading.Lock()

    # --- the public surface (what http.server offered) ---------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """The ``(host, port)`` actually bound."""
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{_addr(host, port)}"

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown`; call it in the thread that should run the loop."""
        asyncio.run(self._serve())

    def shutdown(self) -> None:
        """Stop :meth:`serve_forever` (from another thread) and wait until it has."""
        self._started.wait(30)
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        self._stopped.wait(30)

    def server_close(self) -> None:
        self._sock.close()

    def report(self, message: str) -> None:
        """One line on stderr about a failed request."""
        import sys

        sys.stderr.write(f"portkit exporter: {message}\n")
        sys.stderr.flush()

    def render_metrics(self, accept: str, accept_encoding: str) -> Response:
        """Encode the registry as the scraper asked (text or OpenMetrics; gzip)."""
        import gzip

        from prometheus_client.exposition import choose_encoder, gzip_accepted

        encoder, content_type = choose_encoder(accept)
        with self._scrape:  # one collection at a time
            payload = encoder(self.registry)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(accept_encoding):
            payload = gzip.compress(payload, compresslevel=1)
            headers.append(("Content-Encoding", "gzip"))
        return 200, headers, payload

    # --- the loop ------------------------------------------------------------------------

    async def _serve(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="portkit-scrape")
        server = await asyncio.start_server(self._client, sock=self._sock, limit=MAX_REQUEST)
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            server.close()
            for conn in list(self._conns.values()):
                conn.writer.close()
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._stopped.set()

    def _make_room(self) -> None:
        """At the limit: close the connection that has waited longest for a request."""
        if len(self._conns) < MAX_CONNECTIONS:
            return
        idle = [c for c in self._conns.values() if not c.busy]
        if idle:
            oldest = min(idle, key=lambda c: c.waiting_since)
            oldest.writer.close()
            self._conns.pop(oldest.writer, None)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._make_room()
        conn = self._conns[writer] = _Conn(writer)
        try:
            await self._converse(reader, writer, conn)
        except (ConnectionError, TimeoutError, OSError, asyncio.IncompleteReadError):
            pass  # the client went away or was too slow: nothing to report
        finally:
            self._conns.pop(writer, None)
            writer.close()

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn
    ) -> None:
        import h11

        http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
        while True:
            conn.waiting_since = time.monotonic()
            request = await self._read_request(reader, http)
            if request is None:
                return
            conn.busy = True
            response = await self._respond(request)
            status, headers, payload = response
            head = request.method == b"HEAD"
            keep = http.our_state is h11.SEND_RESPONSE and not self._stop_requested()
            out = [*headers, ("Content-Length", str(len(payload)))]
            if not keep:
                out.append(("Connection", "close"))
            data = http.send(h11.Response(status_code=status, headers=out))
            data += http.send(h11.Data(data=b"" if head else payload)) or b""
            data += http.send(h11.EndOfMessage()) or b""
            writer.write(data)
            await asyncio.wait_for(writer.drain(), WRITE_DEADLINE)
            conn.busy = False
            if http.our_state is h11.MUST_CLOSE or not keep:
                return
            try:
                http.start_next_cycle()
            except h11.LocalProtocolError:
                return

    async def _read_request(self, reader: asyncio.StreamReader, http: Any) -> Any:
        """The next request's head, or None when the client ends or breaks the rules."""
        import h11

        deadline: float | None = None
        while True:
            try:
                event = http.next_event()
            except h11.RemoteProtocolError:
                return None  # not HTTP, or a head past MAX_REQUEST: close
            if event is h11.NEED_DATA:
                if deadline is None:
                    # Between requests: an idle keep-alive connection may wait.
                    data = await asyncio.wait_for(reader.read(4096), IDLE_TIMEOUT)
                    deadline = time.monotonic() + REQUEST_DEADLINE
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return None
                    data = await asyncio.wait_for(reader.read(4096), left)
                if not data:
                    return None
                http.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                # GET and HEAD carry no body worth reading; drain it if one is sent.
                return event
            return None

    def _stop_requested(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def _respond(self, request: Any) -> Response:
        path = request.target.split(b"?", 1)[0]
        if request.method not in (b"GET", b"HEAD"):
            return 405, [("Content-Type", "text/plain"), ("Allow", "GET, HEAD")], b"GET only\n"
        if path == b"/metrics":
            headers = {k.lower(): v for k, v in request.headers}
            accept = headers.get(b"accept", b"").decode("latin-1")
            encoding = headers.get(b"accept-encoding", b"").decode("latin-1")
            assert self._loop is not None
            try:
                return await self._loop.run_in_executor(
                    self._executor, self.render_metrics, accept, encoding
                )
            except Exception as exc:  # a bug must answer 500, not drop the connection
                self.report(f"scrape failed: {type(exc).__name__}: {exc}")
                payload = f"scrape failed: {type(exc).__name__}\n".encode()
                return 500, [("Content-Type", "text/plain")], payload
        if path == b"/":
            return 200, [("Content-Type", "text/html; charset=utf-8")], self.landing.encode()
        return 404, [("Content-Type", "text/plain")], b"not found\n"


def _addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

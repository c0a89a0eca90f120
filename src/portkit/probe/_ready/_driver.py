"""The one piece of I/O of the readiness handshakes: a codec over a connected socket.

:func:`handshake` takes the socket ``check`` kept open, does the TLS handshake first
when the protocol runs inside TLS (``probe/_session.tls_handshake``, the one
``check --tls`` uses), then sends the codec's request and feeds it what comes back
until it gives a verdict, the stream ends or the deadline passes. Reads are
bounded by the codec's own limit. Everything the codec or the socket can raise
for a peer's fault becomes a verdict here; nothing else escapes.
"""

from __future__ import annotations

import ssl
import time
from typing import TYPE_CHECKING

from portkit.errors import ProtocolError
from portkit.probe._ready._base import ReadyState, Verdict, printable
from portkit.probe._ready._tls import tls_error_verdict, tls_verdict

if TYPE_CHECKING:
    import socket
    from collections.abc import Callable

    from portkit.probe._ready import Spec
    from portkit.probe._ready._base import Codec, Options
    from portkit.probe._records import TlsInfo
    from portkit.probe._session import TlsConn

__all__ = ["converse", "handshake"]

#: Largest single read; the codec's limit bounds the total.
_CHUNK = 65536


def _ms(start: float) -> float:
    return round((time.monotonic() - start) * 1000, 3)


def handshake(
    sock: socket.socket,
    spec: Spec,
    opts: Options,
    *,
    timeout: float,
    server_name: str | None,
    reconnect: Callable[[], socket.socket],
) -> tuple[Verdict, TlsInfo | None]:
    """Run ``spec``'s handshake on ``sock`` (closed afterwards by the caller).

    Returns:
        The verdict (with its round-trip time) and, for TLS protocols, what the TLS
        handshake showed.
    """
    from portkit.probe import _session

    start = time.monotonic()
    deadline = start + timeout
    conn: socket.socket | TlsConn = sock
    info = None
    if spec.tls:
        try:
            conn, info = _session.tls_handshake(sock, server_name, timeout, reconnect)
        except ssl.SSLError as exc:
            verdict = tls_error_verdict(str(exc.reason or ""), exc.strerror or str(exc), spec.name)
            return verdict.timed(_ms(start)), None
        except TimeoutError:
            return _silent(spec.name, b"", timeout).timed(_ms(start)), None
        except OSError as exc:
            reason = f"TLS handshake failed: {exc.strerror or exc}"
            return Verdict(spec.name, ReadyState.NOT_READY, reason).timed(_ms(start)), None
        verdict = tls_verdict(info, opts.min_days, spec.name)
        if not verdict.ready or spec.make is None:
            _close_quietly(conn, sock)
            return verdict.timed(_ms(start)), info
    codec = spec.codec(opts)
    assert codec is not None
    try:
        verdict = converse(conn, codec, deadline)
    finally:
        _close_quietly(conn, sock)
    return verdict.timed(_ms(start), spec.name), info


def _close_quietly(conn: socket.socket | TlsConn, sock: socket.socket) -> None:
    if conn is not sock:  # a TlsConn over a second socket (after a failed verification)
        conn.close()


def converse(conn: socket.socket | TlsConn, codec: Codec, deadline: float) -> Verdict:
    """Send the codec's request and read until it has a verdict (or time runs out)."""
    start = time.monotonic()
    try:
        first = codec.start()
        if first:
            conn.sendall(first)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return _silent(codec.name, codec.buf, time.monotonic() - start, codec)
            conn.settimeout(left)
            try:
                data = conn.recv(min(_CHUNK, codec.limit - len(codec.buf) + 1))
            except (TimeoutError, BlockingIOError):
                return _silent(codec.name, codec.buf, time.monotonic() - start, codec)
            except ConnectionResetError:
                data = b""
            verdict = codec.feed(data)
            out = codec.outgoing()
            if out and verdict is None:
                conn.sendall(out)
            if verdict is not None:
                _goodbye(conn, codec.farewell)
                return verdict
    except ProtocolError as exc:
        return Verdict(codec.name, ReadyState.NOT_THIS_PROTOCOL, printable(str(exc)))
    except OSError as exc:  # a send refused (EPIPE), a TLS record gone bad
        reason = f"the connection failed: {getattr(exc, 'reason', None) or exc.strerror or exc}"
        return Verdict(codec.name, ReadyState.NOT_READY, reason)


def _goodbye(conn: socket.socket | TlsConn, farewell: bytes) -> None:
    if not farewell:
        return
    try:
        conn.settimeout(0.2)
        conn.sendall(farewell)
    except OSError:
        pass  # the peer has gone already: nothing to be polite to


def _silent(name: str, got: bytes, waited: float, codec: Codec | None = None) -> Verdict:
    """No verdict before the deadline: nothing said, or something incomplete."""
    if not got:
        return Verdict(name, ReadyState.NOT_READY, f"no answer within {waited:.1f} s")
    if codec is not None:
        return codec.other(f"an incomplete or unknown answer: {printable(got[:48], 60)}")
    return Verdict(name, ReadyState.NOT_THIS_PROTOCOL, printable(got[:60], 60))

"""gRPC readiness: ``grpc.health.v1.Health/Check`` over HTTP/2 (h2c, or inside TLS). Sans-I/O.

The request and answer are in https://github.com/grpc/grpc/blob/master/doc/health-checking.md
and the HTTP/2 mapping in https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md:
a POST to ``/grpc.health.v1.Health/Check`` with a length-prefixed protobuf
``HealthCheckRequest { string service = 1; }``; the answer is
``HealthCheckResponse { ServingStatus status = 1; }`` and, in the trailers,
``grpc-status``. SERVING is ready; NOT_SERVING, SERVICE_UNKNOWN and a NOT_FOUND
status (an unknown service name) are not; a server without the health service
(UNIMPLEMENTED) or one that wants credentials is serving gRPC, and says so.

Why the ``h2`` library and not hand-written framing: sending is easy (a preface,
a SETTINGS frame, literal header fields), but *reading* the answer means HPACK
(RFC 7541): the static and dynamic tables and the Huffman code of 257 symbols,
because servers compress their response headers and trailers, and ``grpc-status``
lives there. That is a few hundred lines of someone else's well-tested code,
and ``h2`` (python-hyper, pure Python, itself sans-I/O: bytes in, events out) is
that code. It is an optional extra (``portkit[grpc]``), imported only here, only
when ``--proto grpc`` is asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portkit.errors import PortkitError
from portkit.probe._ready._base import Codec, Options, ReadyState, Verdict, printable

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["GRPC_STATUSES", "SERVING_STATUSES", "GrpcCodec", "health_request"]

#: HealthCheckResponse.ServingStatus -> (name, readiness).
SERVING_STATUSES: dict[int, tuple[str, ReadyState]] = {
    0: ("UNKNOWN", ReadyState.NOT_READY),
    1: ("SERVING", ReadyState.READY),
    2: ("NOT_SERVING", ReadyState.NOT_READY),
    3: ("SERVICE_UNKNOWN", ReadyState.NOT_READY),
}

#: grpc-status -> (name, readiness, what it means here) for a failed Check call.
GRPC_STATUSES: dict[int, tuple[str, ReadyState, str]] = {
    1: ("CANCELLED", ReadyState.NOT_READY, ""),
    2: ("UNKNOWN", ReadyState.NOT_READY, ""),
    4: ("DEADLINE_EXCEEDED", ReadyState.NOT_READY, ""),
    5: ("NOT_FOUND", ReadyState.NOT_READY, "the health service does not know this service"),
    7: ("PERMISSION_DENIED", ReadyState.READY, "serving gRPC, needs auth"),
    8: ("RESOURCE_EXHAUSTED", ReadyState.NOT_READY, ""),
    12: ("UNIMPLEMENTED", ReadyState.READY, "serving gRPC, without grpc.health.v1"),
    13: ("INTERNAL", ReadyState.NOT_READY, ""),
    14: ("UNAVAILABLE", ReadyState.NOT_READY, ""),
    16: ("UNAUTHENTICATED", ReadyState.READY, "serving gRPC, needs auth"),
}

_PATH = "/grpc.health.v1.Health/Check"


def health_request(service: str) -> bytes:
    """The length-prefixed gRPC message ``HealthCheckRequest{service}``."""
    raw = service.encode()
    msg = b""
    if raw:  # field 1, wire type 2 (length-delimited); proto3 omits the empty string
        msg = b"\x0a" + _varint(len(raw)) + raw
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _read_status(message: bytes) -> int | None:
    """Field 1 (a varint) of a HealthCheckResponse, skipping unknown fields."""
    pos = 0
    while pos < len(message):
        key, pos = _read_varint(message, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _read_varint(message, pos)
            if field == 1:
                return value
        elif wire == 2:
            length, pos = _read_varint(message, pos)
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"protobuf wire type {wire}")
    return 0 if pos == len(message) else None  # proto3: an absent enum is 0


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ValueError("protobuf varint cut short")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _h2() -> Any:
    try:
        import h2.config
        import h2.connection
        import h2.events
        import h2.exceptions
    except ImportError:
        raise PortkitError(
            "--proto grpc needs the h2 package: pip install 'portkit[grpc]'"
        ) from None
    return h2


class GrpcCodec(Codec):
    name = "grpc"
    limit = 64 * 1024

    def __init__(self, opts: Options | None = None) -> None:
        super().__init__(opts)
        h2 = _h2()
        self._h2 = h2
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config=config)
        self._seen = 0
        self._status: dict[str, str] = {}
        self._data = b""
        self._http_status = ""
        self._scheme = "http"

    def start(self) -> bytes:
        conn = self.conn
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        conn.send_headers(
            sid,
            [
                (":method", "POST"),
                (":scheme", self._scheme),
                (":path", _PATH),
                (":authority", self.opts.host),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
                ("user-agent", "portkit"),
            ],
        )
        conn.send_data(sid, health_request(self.opts.service), end_stream=True)
        return bytes(conn.data_to_send())

    def over_tls(self) -> GrpcCodec:
        """Mark the request as ``https`` (for gRPC inside TLS)."""
        self._scheme = "https"
        return self

    def judge(self, final: bool) -> Verdict | None:
        h2 = self._h2
        if self._seen == 0:
            # RFC 9113 3.4: the server's preface is a SETTINGS frame (type 4) of at most
            # the default maximum frame size; "HTTP/1.1 400" or an HTML page is not.
            if self.buf.startswith(b"HTTP/"):
                return self.other("an HTTP/1 server, not HTTP/2 (h2c)")
            if len(self.buf) < 4:
                return None if not final else self.other()
            if self.buf[3] != 4 or int.from_bytes(self.buf[:3], "big") > 16384:
                return self.other()
        new, self._seen = self.buf[self._seen :], len(self.buf)
        errors = (h2.exceptions.H2Error, *_frame_errors())
        try:
            events = self.conn.receive_data(new) if new else []
        except errors as exc:
            raise self.error(f"not HTTP/2: {printable(str(exc), 80)}") from None
        verdict = self._events(events)
        self._out += bytes(self.conn.data_to_send())
        if verdict is None and final and self._status:
            return self._decide()
        return verdict

    def _events(self, events: Iterable[Any]) -> Verdict | None:
        ev = self._h2.events
        for event in events:
            if isinstance(event, ev.ResponseReceived | ev.TrailersReceived):
                headers = dict(event.headers)
                self._http_status = headers.get(":status", self._http_status)
                self._status.update(headers)
                if isinstance(event, ev.ResponseReceived) and self._http_status != "200":
                    return self.other(f"an HTTP/2 server, not gRPC (status {self._http_status})")
            elif isinstance(event, ev.DataReceived):
                self._data += event.data
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, ev.StreamEnded):
                return self._decide()
            elif isinstance(event, ev.StreamReset):
                return self.not_ready(f"the server reset the stream (error {event.error_code})")
            elif isinstance(event, ev.ConnectionTerminated):
                extra = printable(event.additional_data or b"", 80)
                reason = f"GOAWAY (error {event.error_code})" + (f": {extra}" if extra else "")
                return self.not_ready(reason)
        return None

    def _decide(self) -> Verdict:
        status_text = self._status.get("grpc-status")
        message = printable(self._status.get("grpc-message", ""))
        if status_text is None or not status_text.isdigit():
            ctype = self._status.get("content-type", "")
            return self.other(f"an HTTP/2 answer without grpc-status ({ctype or 'no type'})")
        status = int(status_text)
        if status != 0:
            name, state, meaning = GRPC_STATUSES.get(
                status, (f"status {status}", ReadyState.NOT_READY, "")
            )
            text = f"{name}: {message}" if message else name
            if state is ReadyState.READY:
                return self.ready(meaning, code=status, detail=text)
            return self.not_ready(meaning or text, code=status, detail=text if meaning else "")
        data = self._data
        if len(data) < 5 or data[0] != 0:
            raise self.error("no uncompressed HealthCheckResponse in the answer")
        size = int.from_bytes(data[1:5], "big")
        try:
            serving = _read_status(data[5 : 5 + size])
        except ValueError as exc:
            raise self.error(str(exc)) from None
        if serving is None:
            raise self.error("HealthCheckResponse cut short")
        name, state = SERVING_STATUSES.get(serving, (f"status {serving}", ReadyState.NOT_READY))
        if state is ReadyState.READY:
            return self.ready(name, code=name)
        return self.not_ready(name, code=name)


def _frame_errors() -> tuple[type[Exception], ...]:
    """hyperframe's and hpack's base errors, should one get past h2 unwrapped."""
    found: list[type[Exception]] = []
    try:
        from hyperframe.exceptions import HyperframeError

        found.append(HyperframeError)
    except ImportError:  # pragma: no cover - h2 depends on both
        pass
    try:
        from hpack import HPACKError

        found.append(HPACKError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)

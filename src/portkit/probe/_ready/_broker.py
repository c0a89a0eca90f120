"""Message brokers: AMQP 0-9-1 (protocol header -> Connection.Start) and Kafka
(ApiVersions). Pure.

**AMQP 0-9-1** (the AMQP 0-9-1 specification, section 4.2.2 "Protocol Header" and
4.2.3 "General Frame Format"; RabbitMQ's amqp0-9-1.xml for class/method ids): the
client sends ``AMQP 0 0 9 1``; a serving broker answers a method frame (type 1,
channel 0) carrying Connection.Start (class 10, method 10). A broker that does
not speak this version answers its own protocol header instead (an AMQP 1.0 broker:
``AMQP 0 1 0 0``), and one that refuses sends Connection.Close (10, 50) with its
reply text.

**Kafka** (https://kafka.apache.org/protocol, "The Messages ApiVersions", API key 18):
``ApiVersions`` v0 asks nothing and every broker answers it, even one that wants
SASL first. ``error_code`` 0 is ready; 35 (UNSUPPORTED_VERSION: a broker that
dropped v0) still comes from a serving broker.

    >>> KafkaCodec().feed(bytes.fromhex("0000000a" "706b3135" "0000" "00000000")).state.value
    'ready'
"""

from __future__ import annotations

from portkit.probe._ready._base import Codec, Verdict, printable, starts_like

__all__ = ["AmqpCodec", "KafkaCodec"]

AMQP_HEADER = b"AMQP\x00\x00\x09\x01"
_FRAME_END = 0xCE

#: (class, method) -> name of the AMQP methods a broker may send first.
AMQP_METHODS: dict[tuple[int, int], str] = {
    (10, 10): "Connection.Start",
    (10, 50): "Connection.Close",
}


class AmqpCodec(Codec):
    name = "amqp"
    limit = 64 * 1024  # Connection.Start carries the server's properties table

    def start(self) -> bytes:
        return AMQP_HEADER

    def judge(self, final: bool) -> Verdict | None:
        buf = self.buf
        if starts_like(buf, b"AMQP"):
            if len(buf) < 8:
                return None if not final else self.other()
            version = ".".join(str(b) for b in buf[5:8])
            return self.not_ready(
                f"the broker speaks AMQP {version} (protocol id {buf[4]}), not 0-9-1",
                detail="AMQP",
            )
        if buf[:1] != b"\x01":
            return self.other()
        if len(buf) < 7:
            return None if not final else self.other()
        channel = int.from_bytes(buf[1:3], "big")
        size = int.from_bytes(buf[3:7], "big")
        if channel != 0 or size < 4 or size > self.limit - 8:
            return self.other()
        if len(buf) < 8 + size:
            if final:
                raise self.error("method frame cut short")
            return None
        if buf[7 + size] != _FRAME_END:
            raise self.error("method frame without its frame-end octet")
        payload = buf[7 : 7 + size]
        key = (int.from_bytes(payload[:2], "big"), int.from_bytes(payload[2:4], "big"))
        method = AMQP_METHODS.get(key)
        if method == "Connection.Start":
            if len(payload) < 6:
                raise self.error("Connection.Start without a version")
            return self.ready(method, detail=f"AMQP {payload[4]}-{payload[5]}")
        if method == "Connection.Close" and len(payload) >= 7:
            code = int.from_bytes(payload[4:6], "big")
            text_len = payload[6]
            return self.not_ready(printable(payload[7 : 7 + text_len]), code=code)
        return self.other(f"AMQP method {key[0]}.{key[1]}, not Connection.Start")


#: Kafka error codes an ApiVersions answer may carry (the protocol guide's table).
KAFKA_ERRORS: dict[int, str] = {
    -1: "UNKNOWN_SERVER_ERROR",
    35: "UNSUPPORTED_VERSION",
    44: "POLICY_VIOLATION",
    58: "SASL_AUTHENTICATION_FAILED",
}

_KAFKA_CORRELATION = b"pk15"


def _api_versions_v0() -> bytes:
    client = b"portkit"
    body = (
        (18).to_bytes(2, "big")  # api_key ApiVersions
        + (0).to_bytes(2, "big")  # api_version 0
        + _KAFKA_CORRELATION  # correlation_id
        + len(client).to_bytes(2, "big")
        + client  # client_id (NULLABLE_STRING)
    )
    return len(body).to_bytes(4, "big") + body


class KafkaCodec(Codec):
    name = "kafka"
    limit = 64 * 1024

    def start(self) -> bytes:
        return _api_versions_v0()

    def judge(self, final: bool) -> Verdict | None:
        buf = self.buf
        if len(buf) < 4:
            if buf[:1] not in (b"", b"\x00"):
                return self.other()
            return None if not final else self.other()
        size = int.from_bytes(buf[:4], "big")
        if size < 6 or size > self.limit - 4:
            return self.other()
        if len(buf) < 10:
            return None if not final else self.other()
        if buf[4:8] != _KAFKA_CORRELATION:
            return self.other("the answer's correlation id is not our request's")
        error = int.from_bytes(buf[8:10], "big", signed=True)
        if error == 0:
            if len(buf) >= 14:
                count = int.from_bytes(buf[10:14], "big", signed=True)
                return self.ready("ApiVersions", code=0, detail=f"{count} APIs")
            return None if not final else self.ready("ApiVersions", code=0)
        name = KAFKA_ERRORS.get(error, f"error {error}")
        if error == 35:  # UNSUPPORTED_VERSION: a serving broker that dropped v0
            return self.ready("ApiVersions", code=error, detail=name)
        return self.not_ready(name, code=error)

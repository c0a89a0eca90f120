"""SQL servers: PostgreSQL (StartupMessage) and MySQL/MariaDB (the server's greeting). Pure.

**PostgreSQL** (https://www.postgresql.org/docs/current/protocol-flow.html, "Start-up";
message formats in protocol-message-formats.html): a StartupMessage for protocol 3.0
gets an ``AuthenticationRequest`` (``R``) from a server that accepts sessions, or an
``ErrorResponse`` (``E``). SQLSTATE ``57P03`` (cannot_connect_now: "the database system
is starting up", "... is shutting down", "... is not accepting connections") and
``53300`` ("sorry, too many clients already") mean not ready; any other error comes
from a server that is up (an unknown role, a pg_hba.conf refusal), as libpq's
``PQping`` (``pg_isready``) judges it. Unlike ``pg_isready``, too many clients is not
ready: a new client would be turned away.

**MySQL/MariaDB** (https://dev.mysql.com/doc/dev/mysql-server/latest/page_protocol_connection_phase.html):
the server speaks first, a packet ``len:3 seq:1 payload``; ``0x0a`` starts the
Protocol::HandshakeV10 greeting (ready), ``0xff`` an ERR_Packet: 1040 "Too many
connections", 1129 "Host is blocked because of many connection errors" and the rest:
not ready, in the server's words.

    >>> PostgresCodec().feed(bytes.fromhex("520000000800000000")).state.value
    'ready'
"""

from __future__ import annotations

from portkit.probe._ready._base import Codec, ReadyState, Verdict, printable

__all__ = ["MysqlCodec", "PostgresCodec"]

#: SQLSTATE -> readiness; every other error comes from a server that is up.
PG_SQLSTATES: dict[str, ReadyState] = {
    "57P03": ReadyState.NOT_READY,  # cannot_connect_now: starting up / shutting down
    "53300": ReadyState.NOT_READY,  # too_many_connections
    "57P01": ReadyState.NOT_READY,  # admin_shutdown
    "53000": ReadyState.NOT_READY,  # insufficient_resources
}

#: AuthenticationRequest codes -> what the server asks for.
PG_AUTH: dict[int, str] = {
    0: "trust (no password)",
    2: "Kerberos V5",
    3: "cleartext password",
    5: "MD5 password",
    7: "GSSAPI",
    9: "SSPI",
    10: "SASL (SCRAM)",
}


def _pg_startup(user: str = "postgres", database: str = "postgres") -> bytes:
    params = b"".join(
        k.encode() + b"\0" + v.encode() + b"\0"
        for k, v in (("user", user), ("database", database), ("application_name", "portkit"))
    )
    body = (196608).to_bytes(4, "big") + params + b"\0"  # protocol 3.0
    return (len(body) + 4).to_bytes(4, "big") + body


class PostgresCodec(Codec):
    name = "postgres"
    limit = 8192
    farewell = b"X\x00\x00\x00\x04"  # Terminate

    def start(self) -> bytes:
        return _pg_startup()

    def judge(self, final: bool) -> Verdict | None:
        buf, pos = self.buf, 0
        while True:  # NoticeResponses may come first: read past them
            kind = buf[pos : pos + 1]
            if kind not in (b"R", b"E", b"N"):
                return self.other() if kind or pos == 0 else None
            if len(buf) - pos < 5:
                return None if not final else self.other()
            length = int.from_bytes(buf[pos + 1 : pos + 5], "big")
            if kind == b"E" and not 4 <= length < self.limit:
                # A pre-3.0 server's error: 'E' and a C string ("FATAL: ...").
                end = buf.find(b"\0", pos + 1)
                if end < 0:
                    return None if not final else self.not_ready(printable(buf[pos + 1 :]))
                return self.not_ready(printable(buf[pos + 1 : end]))
            if not (8 if kind == b"R" else 4) <= length < self.limit:
                raise self.error(f"message {kind!r} of length {length}")
            if len(buf) < pos + 1 + length:
                if final:
                    raise self.error("message cut short")
                return None
            body = buf[pos + 5 : pos + 1 + length]
            pos += 1 + length
            if kind != b"N":
                break
        if kind == b"R":
            code = int.from_bytes(body[:4], "big")
            return self.ready(
                "accepts sessions", code=code, detail="auth: " + PG_AUTH.get(code, str(code))
            )
        fields = self._fields(body)
        state = fields.get("C", "")
        message = fields.get("M", "")
        severity = fields.get("V") or fields.get("S", "")
        text = f"{severity}: {message}" if severity else message
        if PG_SQLSTATES.get(state, ReadyState.READY) is ReadyState.NOT_READY:
            return self.not_ready(printable(message), code=state)
        return self.ready("serving", code=state or None, detail=printable(text))

    def _fields(self, body: bytes) -> dict[str, str]:
        """ErrorResponse/NoticeResponse fields: (type byte, C string)*, then a zero."""
        out: dict[str, str] = {}
        pos = 0
        while pos < len(body) and body[pos] != 0:
            end = body.find(b"\0", pos + 1)
            if end < 0:
                raise self.error("unterminated error field")
            out[chr(body[pos])] = body[pos + 1 : end].decode("utf-8", "replace")
            pos = end + 1
        return out


#: MySQL error numbers worth naming (all errors in the greeting mean not ready).
MYSQL_ERRORS: dict[int, str] = {
    1040: "too many connections",
    1129: "host blocked after too many connection errors",
    1130: "this host may not connect",
    1203: "user has too many connections",
}


class MysqlCodec(Codec):
    name = "mysql"
    limit = 4096

    def judge(self, final: bool) -> Verdict | None:
        buf = self.buf
        if len(buf) < 5:
            # The first packet is small: a length of a few hundred bytes, sequence 0.
            if len(buf) >= 3 and (int.from_bytes(buf[:3], "little") > self.limit or buf[2]):
                return self.other()
            return None if not final else self.other()
        length, seq = int.from_bytes(buf[:3], "little"), buf[3]
        if seq != 0 or length == 0 or length > self.limit - 4 or buf[4] not in (0x0A, 0x09, 0xFF):
            return self.other()
        if len(buf) < 4 + length:
            return None if not final else self.other()
        payload = buf[4 : 4 + length]
        if payload[0] == 0xFF:
            if len(payload) < 3:
                raise self.error("ERR packet without an error number")
            errno = int.from_bytes(payload[1:3], "little")
            message = payload[3:]
            if message[:1] == b"#":  # '#' and a 5-character SQLSTATE (4.1 protocol)
                message = message[6:]
            text = printable(message) or MYSQL_ERRORS.get(errno, "error")
            named = MYSQL_ERRORS.get(errno, "")
            return self.not_ready(text, code=errno, detail="" if named in text.lower() else named)
        end = payload.find(b"\0", 1)
        if end < 0:
            raise self.error("greeting without a server version")
        return self.ready("greeting", code=payload[0], detail=printable(payload[1:end], 80))

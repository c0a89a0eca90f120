"""MongoDB readiness: the ``hello`` command in an OP_MSG. Pure.

The MongoDB Wire Protocol (https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/,
"Standard Message Header" and "OP_MSG"): a 16-byte header (messageLength, requestID,
responseTo, opCode 2013), flagBits, then a kind-0 section holding one BSON document
(https://bsonspec.org/spec.html). The command is ``{hello: 1, $db: "admin"}`` (the
``hello`` command page: 4.4.2+ and 5.0; it needs no authentication). ``ok: 1`` is
ready, with the member's role (primary, secondary, arbiter, standalone); ``ok: 0``
is not ready with ``errmsg``, except ``CommandNotFound`` (59: a server older than
``hello``), which is serving.

    >>> c = MongoCodec()
    >>> c.feed(op_msg_reply({"ok": 1.0, "isWritablePrimary": True, "setName": "rs0"}, 1)).detail
    'primary of rs0'
"""

from __future__ import annotations

import struct
from typing import Any

from portkit.probe._ready._base import Codec, Verdict, printable

__all__ = ["MongoCodec", "bson_document", "bson_encode", "op_msg_reply"]

OP_MSG = 2013
OP_REPLY = 1
_REQUEST_ID = 0x706B3135

#: BSON type -> fixed size of its value (types with a length prefix are read apart).
_FIXED = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16}
_FIXED.update({0xFF: 0, 0x7F: 0, 0x06: 0})
#: Types whose value starts with an int32 length, and what to add to it (documents,
#: arrays and code-with-scope count the length itself; strings and binaries do not).
_SIZED = {0x02: 4, 0x03: 0, 0x04: 0, 0x05: 5, 0x0D: 4, 0x0E: 4, 0x0F: 0}
_SELF_SIZED = (0x03, 0x04, 0x0F)


def bson_document(data: bytes, start: int = 0) -> dict[str, Any]:
    """The top-level fields of the BSON document at ``start``: numbers, booleans and
    strings decoded, nested documents and other values left as None.

    Raises:
        ValueError: a document that does not parse.
    """
    if start + 5 > len(data):
        raise ValueError("BSON document cut short")
    size = int.from_bytes(data[start : start + 4], "little", signed=True)
    end = start + size
    if size < 5 or end > len(data) or data[end - 1] != 0:
        raise ValueError(f"bad BSON document size {size}")
    out: dict[str, Any] = {}
    pos = start + 4
    while pos < end - 1:
        kind = data[pos]
        name_end = data.find(b"\0", pos + 1, end)
        if name_end < 0:
            raise ValueError("BSON element name without its end")
        name = data[pos + 1 : name_end].decode("utf-8", "replace")
        pos = name_end + 1
        if kind in _FIXED:
            width = _FIXED[kind]
        elif kind in _SIZED:
            if pos + 4 > end:
                raise ValueError("BSON value cut short")
            n = int.from_bytes(data[pos : pos + 4], "little", signed=True)
            width = n if kind in _SELF_SIZED else n + _SIZED[kind]
            if width < 0:
                raise ValueError("negative BSON length")
        elif kind == 0x0B:  # regex: two C strings
            a = data.find(b"\0", pos, end)
            b = data.find(b"\0", a + 1, end) if a >= 0 else -1
            if b < 0:
                raise ValueError("BSON regex without its end")
            width = b + 1 - pos
        else:
            raise ValueError(f"unknown BSON type 0x{kind:02x}")
        value = data[pos : pos + width]
        if pos + width > end - 1 or len(value) != width:
            raise ValueError("BSON value overruns its document")
        out[name] = _value(kind, value)
        pos += width
    return out


def _value(kind: int, raw: bytes) -> Any:
    readers: dict[int, Any] = {
        0x01: lambda b: struct.unpack("<d", b)[0],
        0x02: lambda b: b[4:-1].decode("utf-8", "replace"),
        0x08: lambda b: b != b"\x00",
        0x10: lambda b: int.from_bytes(b, "little", signed=True),
        0x12: lambda b: int.from_bytes(b, "little", signed=True),
    }
    read = readers.get(kind)
    return read(raw) if read is not None else None


def bson_encode(doc: dict[str, Any]) -> bytes:
    """A flat document of floats, ints, bools and strings as BSON (for requests and the
    recorded answers the tests use)."""
    body = b""
    for key, value in doc.items():
        name = key.encode() + b"\0"
        if isinstance(value, bool):
            body += b"\x08" + name + (b"\x01" if value else b"\x00")
        elif isinstance(value, int):
            body += b"\x10" + name + value.to_bytes(4, "little", signed=True)
        elif isinstance(value, float):
            body += b"\x01" + name + struct.pack("<d", value)
        else:
            text = str(value).encode() + b"\0"
            body += b"\x02" + name + len(text).to_bytes(4, "little") + text
    return (len(body) + 5).to_bytes(4, "little") + body + b"\0"


def _op_msg(doc: dict[str, Any], request_id: int, response_to: int) -> bytes:
    body = (0).to_bytes(4, "little") + b"\x00" + bson_encode(doc)
    head = struct.pack("<iiii", 16 + len(body), request_id, response_to, OP_MSG)
    return head + body


def op_msg_reply(doc: dict[str, Any], request_id: int = 1) -> bytes:
    """A server's OP_MSG answer to our hello carrying ``doc`` (a recorded-answer builder)."""
    return _op_msg(doc, request_id, _REQUEST_ID)


#: hello fields -> the member's role, first match wins.
_ROLES = (
    ("isWritablePrimary", "primary"),
    ("ismaster", "primary"),
    ("secondary", "secondary"),
    ("arbiterOnly", "arbiter"),
)


class MongoCodec(Codec):
    name = "mongodb"
    limit = 64 * 1024

    def start(self) -> bytes:
        return _op_msg({"hello": 1, "$db": "admin"}, _REQUEST_ID, 0)

    def judge(self, final: bool) -> Verdict | None:
        buf = self.buf
        if len(buf) < 16:
            if len(buf) >= 4 and int.from_bytes(buf[:4], "little", signed=True) < 16:
                return self.other()
            return None if not final else self.other()
        size, _, response_to, opcode = struct.unpack("<iiii", buf[:16])
        if opcode not in (OP_MSG, OP_REPLY) or not 21 <= size <= self.limit:
            return self.other()
        if response_to != _REQUEST_ID:
            return self.other("the answer is not to our request")
        if len(buf) < size:
            if final:
                raise self.error("OP_MSG cut short")
            return None
        if opcode == OP_REPLY:
            return self.ready("serving (legacy OP_REPLY)", detail="a server older than 3.6")
        if buf[20] != 0:
            raise self.error("the first section is not a body (kind 0)")
        try:
            doc = bson_document(buf[:size], 21)
        except ValueError as exc:
            raise self.error(str(exc)) from None
        ok = doc.get("ok")
        if ok in (1, 1.0, True):
            role = next((name for key, name in _ROLES if doc.get(key) is True), "")
            if doc.get("msg") == "isdbgrid":
                role = "mongos"
            rs = doc.get("setName")
            detail = (f"{role} of {rs}" if rs else role) if role else ""
            return self.ready("hello", detail=detail or "standalone")
        code = doc.get("code")
        message = printable(str(doc.get("errmsg") or "not ok"))
        if code == 59:  # CommandNotFound: a server older than hello, serving
            return self.ready("serving", code=code, detail=message)
        return self.not_ready(message, code=code if isinstance(code, int) else None)

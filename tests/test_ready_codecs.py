"""The readiness codecs on bytes: known answers (recorded from the protocol specs) and
hypothesis: any bytes give a verdict or a ProtocolError, never more than the cap read."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.errors import ParseError, ProtocolError, UsageError
from portkit.probe._ready import (
    PROTOCOLS,
    Options,
    ReadyState,
    auto_protocol,
    judge_datagram,
    parse_statuses,
    protocol,
)
from portkit.probe._ready._mongo import bson_document, bson_encode, op_msg_reply

READY, NOT_READY, OTHER = ReadyState.READY, ReadyState.NOT_READY, ReadyState.NOT_THIS_PROTOCOL


def verdict(name: str, *chunks: bytes, opts: Options | None = None):
    codec = protocol(name).codec(opts or Options("svc"))
    assert codec is not None
    codec.start()
    for chunk in (*chunks, b""):
        found = codec.feed(chunk)
        if found is not None:
            return found
    raise AssertionError("no verdict at the end of the stream")


def _pg_error(code: str, message: str) -> bytes:
    body = b"SFATAL\0VFATAL\0C" + code.encode() + b"\0M" + message.encode() + b"\0\0"
    return b"E" + (len(body) + 4).to_bytes(4, "big") + body


def _mysql_err(errno: int, message: str) -> bytes:
    payload = b"\xff" + errno.to_bytes(2, "little") + b"#08004" + message.encode()
    return len(payload).to_bytes(3, "little") + b"\x00" + payload


def _kafka_api_versions_v0(error: int, apis: list[tuple[int, int, int]]) -> bytes:
    # kafka.apache.org/protocol, "ApiVersions Response (Version: 0)":
    # correlation_id INT32, error_code INT16, api_keys [api_key INT16 min INT16 max INT16]
    body = b"pk15" + struct.pack(">h", error) + struct.pack(">i", len(apis))
    body += b"".join(struct.pack(">hhh", *a) for a in apis)
    return len(body).to_bytes(4, "big") + body


#: (protocol, answer chunks, expected state, a word of the reason or detail)
KNOWN: list[tuple[str, tuple[bytes, ...], ReadyState, str]] = [
    ("http", (b"HTTP/1.1 200 OK\r\nServer: nginx\r\n\r\n",), READY, "200 OK"),
    ("http", (b"HTTP/1.1 503 Service Unavailable\r\n\r\n",), NOT_READY, "503"),
    ("http", (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",), READY, "204"),
    ("http", (b"HTTP/1.0 301 Moved\r\nLocation: /x\r\n\r\n",), READY, "301"),
    ("http", (b"SSH-2.0-OpenSSH_9.2\r\n",), OTHER, "SSH"),
    ("redis", (b"+PONG\r\n",), READY, "PONG"),
    ("redis", (b"-LOADING Redis is loading the dataset in memory\r\n",), NOT_READY, "LOADING"),
    ("redis", (b"-MASTERDOWN Link with MASTER is down\r\n",), NOT_READY, "MASTERDOWN"),
    ("redis", (b"-NOAUTH Authentication required.\r\n",), READY, "needs auth"),
    ("redis", (b"SSH-2.0-x\r\n",), OTHER, ""),
    ("memcached", (b"VERSION 1.6.18\r\n",), READY, "1.6.18"),
    ("memcached", (b"SERVER_ERROR out of memory\r\n",), NOT_READY, "out of memory"),
    ("postgres", (bytes.fromhex("52000000080000000a"),), READY, "SASL"),
    ("postgres", (_pg_error("57P03", "the database system is starting"),), NOT_READY, "starting"),
    ("postgres", (_pg_error("53300", "sorry, too many clients already"),), NOT_READY, "too many"),
    ("postgres", (_pg_error("28000", 'role "x" does not exist'),), READY, "serving"),
    ("postgres", (b"HTTP/1.1 400 Bad\r\n\r\n",), OTHER, ""),
    ("mysql", (b"\x15\x00\x00\x00\x0a10.11.6-MariaDB\x00rest",), READY, "MariaDB"),
    ("mysql", (_mysql_err(1040, "Too many connections"),), NOT_READY, "Too many"),
    ("mysql", (_mysql_err(1129, "Host 'x' is blocked"),), NOT_READY, "blocked"),
    ("smtp", (b"220-mx ESMTP\r\n220 ready\r\n",), READY, ""),
    ("smtp", (b"421 4.3.2 Service not available\r\n",), NOT_READY, "421"),
    ("smtp", (b"554 no SMTP service here\r\n",), NOT_READY, "554"),
    ("ftp", (b"120 Service ready in 5 minutes\r\n",), NOT_READY, "120"),
    ("ftp", (b"220 (vsFTPd 3.0.3)\r\n",), READY, ""),
    ("ssh", (b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n",), READY, "OpenSSH"),
    ("ssh", (b"Exceeded MaxStartups\r\n",), NOT_READY, "MaxStartups"),
    ("ssh", (b"",), NOT_READY, "without answering"),
    ("pop3", (b"+OK Dovecot ready.\r\n",), READY, "Dovecot"),
    ("pop3", (b"-ERR [SYS/TEMP] busy\r\n",), NOT_READY, "busy"),
    ("imap", (b"* OK [CAPABILITY IMAP4rev1] ready\r\n",), READY, ""),
    ("imap", (b"* BYE shutting down\r\n",), NOT_READY, "shutting"),
    ("nats", (b'INFO {"server_name":"n1","version":"2.9.10"}\r\n', b"PONG\r\n"), READY, "2.9.10"),
    ("nats", (b"INFO {}\r\n-ERR 'maximum connections exceeded'\r\n",), NOT_READY, "maximum"),
    ("nats", (b"INFO {}\r\n", b"-ERR 'Authorization Violation'\r\n"), READY, "needs auth"),
    ("nats", (b"-ERR 'maximum connections exceeded'\r\n",), NOT_READY, "maximum"),
    ("ldap", (bytes.fromhex("300c02010161070a010004000400"),), READY, "anonymous"),
    ("ldap", (bytes.fromhex("300c02010161070a013504000400"),), NOT_READY, "unwilling"),
    ("ldap", (bytes.fromhex("300c02010161070a013004000400"),), READY, "needs auth"),
    ("amqp", (b"AMQP\x00\x01\x00\x00",), NOT_READY, "AMQP 1.0.0"),
    ("kafka", (_kafka_api_versions_v0(0, [(0, 0, 9), (18, 0, 3)]),), READY, "2 APIs"),
    ("kafka", (_kafka_api_versions_v0(35, []),), READY, "UNSUPPORTED"),
    ("kafka", (b"HTTP/1.1 400 Bad Request\r\n",), OTHER, ""),
]


@pytest.mark.parametrize(("name", "chunks", "state", "word"), KNOWN)
def test_known_answers(name: str, chunks: tuple[bytes, ...], state: ReadyState, word: str) -> None:
    found = verdict(name, *chunks)
    assert found.state is state, found
    assert word in f"{found.reason} {found.detail}"
    # The same answer one byte at a time gives the same verdict.
    split = [bytes([b]) for chunk in chunks for b in chunk]
    assert verdict(name, *split).state is state


def test_amqp_connection_start() -> None:
    # AMQP 0-9-1 spec 4.2.3: type 1 (method), channel 0, size, payload, 0xCE.
    # Connection.Start: class 10 method 10, version 0-9, server-properties (empty
    # table), mechanisms "PLAIN", locales "en_US" (longstr: 4-byte length).
    args = b"\x00\x09" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x05PLAIN" + b"\x00\x00\x00\x05en_US"
    payload = b"\x00\x0a\x00\x0a" + args
    frame = b"\x01\x00\x00" + len(payload).to_bytes(4, "big") + payload + b"\xce"
    found = verdict("amqp", frame)
    assert found.state is READY and found.detail == "AMQP 0-9"
    close = b"\x00\x0a\x00\x32" + b"\x01\x40" + b"\x0bnot allowed" + bytes(4)
    frame = b"\x01\x00\x00" + len(close).to_bytes(4, "big") + close + b"\xce"
    found = verdict("amqp", frame)
    assert found.state is NOT_READY and found.reason == "not allowed" and found.code == 320


def test_mongodb_recorded_hello() -> None:
    # The MongoDB Wire Protocol (OP_MSG, opCode 2013, responseTo = our requestID) and the
    # hello command's reply fields (docs: "hello" command, "Output").
    primary = op_msg_reply(
        {"isWritablePrimary": True, "setName": "rs0", "maxWireVersion": 21, "ok": 1.0}
    )
    found = verdict("mongodb", primary)
    assert found.state is READY and found.detail == "primary of rs0"
    secondary = op_msg_reply({"isWritablePrimary": False, "secondary": True, "ok": 1.0})
    assert verdict("mongodb", secondary).detail == "secondary"
    err = op_msg_reply({"ok": 0.0, "errmsg": "node is recovering", "code": 91})
    found = verdict("mongodb", err)
    assert found.state is NOT_READY and found.reason == "node is recovering" and found.code == 91
    old = op_msg_reply({"ok": 0.0, "errmsg": "no such command: 'hello'", "code": 59})
    assert verdict("mongodb", old).state is READY


def test_bson_round_trip() -> None:
    doc = {"a": 1, "b": 2.5, "c": True, "d": "text"}
    assert bson_document(bson_encode(doc)) == doc


def test_dns_over_udp_and_tcp() -> None:
    spec = protocol("dns", udp=True)
    codec = spec.codec(Options(tcp=False))
    assert codec is not None
    query = codec.start()
    answer = query[:2] + b"\x81\x80" + b"\x00\x01\x00\x01\x00\x00\x00\x00"
    assert judge_datagram(spec, Options(tcp=False), answer).reason == "NOERROR"
    formerr = query[:2] + b"\x81\x81" + bytes(8)
    assert judge_datagram(spec, Options(tcp=False), formerr).state is NOT_READY
    other_id = b"zz\x81\x80" + bytes(8)
    assert judge_datagram(spec, Options(tcp=False), other_id).state is OTHER
    framed = len(answer).to_bytes(2, "big") + answer
    assert verdict("dns", framed[:5], framed[5:], opts=Options(tcp=True)).state is READY


def test_http_body_and_statuses() -> None:
    opts = Options("svc", expect_body=r'"status":\s*"UP"', statuses=parse_statuses("200"))
    body = b'{"status": "UP"}'
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)
    assert verdict("http", head, body, opts=opts).state is READY
    down = b'{"status": "DOWN"}'
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunked += b"%x\r\n%s\r\n0\r\n\r\n" % (len(down), down)
    assert verdict("http", chunked, opts=opts).state is NOT_READY
    moved = b"HTTP/1.1 302 Found\r\n\r\n"
    assert verdict("http", moved, opts=Options(statuses=parse_statuses("2xx"))).code == 302
    assert verdict("http", moved, opts=Options(statuses=parse_statuses("2xx"))).state is NOT_READY


def test_status_sets() -> None:
    assert parse_statuses("200-299,304") == ((200, 299), (304, 304))
    assert parse_statuses("5xx") == ((500, 599),)
    for bad in ("", "abc", "99", "700", "300-200", "2xy"):
        with pytest.raises(ParseError):
            parse_statuses(bad)


def test_protocol_table() -> None:
    assert protocol("PostgreSQL").name == "postgres"
    assert protocol("http", tls=True).name == "https"
    assert protocol("redis", tls=True).name == "rediss"
    with pytest.raises(ParseError, match="accepted: auto, amqp"):
        protocol("gopher")
    with pytest.raises(UsageError):
        protocol("redis", udp=True)
    with pytest.raises(UsageError):
        protocol("ssh", tls=True)
    assert auto_protocol(6379).name == "redis"
    assert auto_protocol(5672).name == "amqp"
    assert auto_protocol(53, "udp").name == "dns"
    assert auto_protocol(9090).name == "http"  # prometheus: a metrics role speaks HTTP
    assert auto_protocol(1) is None


def _all_codec_names() -> list[str]:
    return [name for name, spec in PROTOCOLS.items() if spec.make is not None]


@pytest.mark.parametrize("name", _all_codec_names())
@given(chunks=st.lists(st.binary(max_size=300), max_size=8))
def test_any_bytes_give_a_verdict_or_protocol_error(name: str, chunks: list[bytes]) -> None:
    codec = protocol(name).codec(Options("svc", expect_body="x"))
    assert codec is not None
    assert isinstance(codec.start(), bytes)
    try:
        for chunk in (*chunks, b""):
            found = codec.feed(chunk)
            assert len(codec.buf) <= codec.limit
            codec.outgoing()
            if found is not None:
                assert found.state in ReadyState
                assert "\n" not in found.reason
                break
        else:
            raise AssertionError("end of stream without a verdict")
    except ProtocolError:
        pass


@pytest.mark.parametrize("name", ["redis", "postgres", "mysql", "smtp", "kafka", "mongodb"])
@given(prefix=st.binary(min_size=1, max_size=40))
def test_cap_is_enforced(name: str, prefix: bytes) -> None:
    codec = protocol(name).codec(Options("svc"))
    assert codec is not None
    codec.start()
    junk = prefix + b"\x00" * (codec.limit * 2)
    try:
        found = codec.feed(junk)
    except ProtocolError:
        found = None
    assert len(codec.buf) <= codec.limit
    assert found is None or found.state in ReadyState


@pytest.mark.parametrize(
    "args",
    [
        ("wait", "127.0.0.1:0", "--timeout", "30"),
        ("check", "127.0.0.1:0"),
        ("scan", "127.0.0.1", "-p", "0-5"),
        ("check", "127.0.0.1:22", "--proto", "gopher"),
        ("check", "127.0.0.1:22", "--proto", "redis", "--expect-body", "x"),
        ("check", "127.0.0.1:22", "--proto", "http", "--expect-body", "("),
        ("check", "127.0.0.1:22", "--proto", "http", "--status", "700"),
        ("check", "127.0.0.1:53/udp", "--proto", "redis"),
        ("wait", "127.0.0.1:1", "--closed", "--proto", "redis"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: tuple[str, ...]) -> None:
    from tests.conftest import run_portkit

    done = run_portkit(*args, timeout=20)
    assert done.returncode == 2, done
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert done.stdout == ""

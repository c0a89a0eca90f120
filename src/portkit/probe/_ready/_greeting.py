"""Services that speak first: SMTP, FTP, SSH, POP3, IMAP and NATS greetings. Pure.

Nothing is sent; the first line (or multi-line reply) says it all:

* SMTP (RFC 5321 section 4.2, 4.3.2): ``220`` ready; ``421`` "service not available,
  closing", ``554`` "no SMTP service here": not ready. FTP (RFC 959 section 4.2):
  ``220`` ready, ``120`` "ready in nnn minutes" and ``421``: not ready. Both take
  continuation lines (``220-``) until ``220 ``.
* SSH (RFC 4253 section 4.2): ``SSH-2.0-...``; other lines may come first, and
  sshd sends ``Exceeded MaxStartups`` (or nothing) before closing when it is full.
* POP3 (RFC 1939 section 4): ``+OK`` / ``-ERR``; IMAP (RFC 9051 section 7.1):
  ``* OK``, ``* PREAUTH`` / ``* BYE``; NATS (https://docs.nats.io/reference/reference-protocols/nats-protocol):
  ``INFO {json}``, then our ``CONNECT`` and ``PING`` get ``PONG``, or
  ``-ERR 'maximum connections exceeded'``.

    >>> SmtpCodec().feed(b"421 mx.example Service not available\\r\\n").reason
    '421 mx.example Service not available'
    >>> SshCodec().feed(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\\r\\n").detail
    'OpenSSH_9.2p1 Debian-2'
"""

from __future__ import annotations

import json
from typing import ClassVar

from portkit.probe._ready._base import (
    Codec,
    Options,
    ReadyState,
    Verdict,
    printable,
    starts_like,
)

__all__ = [
    "FtpCodec",
    "ImapCodec",
    "NatsCodec",
    "Pop3Codec",
    "SmtpCodec",
    "SshCodec",
]


class _ReplyCodeCodec(Codec):
    """``NNN text`` greetings with ``NNN-`` continuation lines (SMTP, FTP)."""

    limit = 8192

    def judge(self, final: bool) -> Verdict | None:
        lines = self.buf.split(b"\n")
        complete = lines[:-1] if not final else [ln for ln in lines if ln]
        if self.buf[:1] not in (b"1", b"2", b"3", b"4", b"5"):
            return self.other()
        for raw in complete:
            line = raw.rstrip(b"\r")
            code_text, mark = line[:3], line[3:4]
            if len(line) < 3 or not code_text.isdigit() or mark not in (b" ", b"-", b""):
                return self.other()
            if mark == b"-":
                continue
            code = int(code_text)
            text = printable(line)
            if code // 100 == 2:  # 220; 120, 421, 554 and the rest are not ready
                return self.ready(code=code, detail=printable(line[4:]))
            return self.not_ready(text, code=code)
        return None


class SmtpCodec(_ReplyCodeCodec):
    name = "smtp"
    farewell = b"QUIT\r\n"


class FtpCodec(_ReplyCodeCodec):
    name = "ftp"
    farewell = b"QUIT\r\n"


class _PrefixCodec(Codec):
    """One greeting line whose first bytes decide (POP3, IMAP, NATS)."""

    limit = 8192
    #: Line prefix -> state, longest first where they overlap.
    prefixes: ClassVar[dict[bytes, ReadyState]] = {}

    def judge(self, final: bool) -> Verdict | None:
        if not starts_like(self.buf, *self.prefixes):
            return self.other()
        line = self.line(final)
        if line is None:
            return None
        for prefix, state in self.prefixes.items():
            if line.startswith(prefix):
                text = printable(line)
                if state is ReadyState.READY:
                    return self.ready(detail=self.describe(line[len(prefix) :]))
                return self.not_ready(text)
        return self.other()

    def describe(self, rest: bytes) -> str:
        return printable(rest)


class Pop3Codec(_PrefixCodec):
    name = "pop3"
    farewell = b"QUIT\r\n"
    prefixes: ClassVar[dict[bytes, ReadyState]] = {
        b"+OK": ReadyState.READY,
        b"-ERR": ReadyState.NOT_READY,
    }


class ImapCodec(_PrefixCodec):
    name = "imap"
    farewell = b"pk1 LOGOUT\r\n"
    prefixes: ClassVar[dict[bytes, ReadyState]] = {
        b"* OK": ReadyState.READY,
        b"* PREAUTH": ReadyState.READY,
        b"* BYE": ReadyState.NOT_READY,
    }


class NatsCodec(Codec):
    """NATS: the server's ``INFO {json}``, then ``CONNECT`` + ``PING`` must get ``PONG``.

    A server at its connection limit still sends INFO, then ``-ERR 'maximum connections
    exceeded'`` and closes: the INFO alone proves nothing.
    """

    name = "nats"
    limit = 64 * 1024  # INFO carries the cluster's URLs; it can be long
    #: Sent after INFO: a plain client (no echo of our own messages), then a ping.
    hello = b'CONNECT {"verbose":false,"pedantic":false,"name":"portkit"}\r\nPING\r\n'

    def __init__(self, opts: Options | None = None) -> None:
        super().__init__(opts)
        self._greeted = ""

    def judge(self, final: bool) -> Verdict | None:
        if not starts_like(self.buf, b"INFO ", b"-ERR"):
            return self.other()
        lines = self.buf.split(b"\n")
        for raw in lines if final else lines[:-1]:
            line = raw.rstrip(b"\r")
            if line.startswith(b"INFO ") and not self._greeted:
                self._greeted = _nats_info(line[5:]) or "INFO"
                self._out += self.hello
            elif line.startswith(b"-ERR"):
                text = printable(line[4:].strip().strip(b"'"))
                if "authoriz" in text.lower() or "authentic" in text.lower():
                    return self.ready("serving, needs auth", detail=text)
                return self.not_ready(text)
            elif line == b"PONG" and self._greeted:
                return self.ready("PONG", detail=self._greeted if self._greeted != "INFO" else "")
        if final and self._greeted:
            return self.not_ready("closed the connection after INFO, before PONG")
        return None


def _nats_info(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode("utf-8", "replace"))
    except ValueError:
        return ""
    if not isinstance(info, dict):
        return ""
    fields = [info.get("server_name"), info.get("version")]
    return printable(" ".join(str(f) for f in fields if isinstance(f, str | int)), 80)


class SshCodec(Codec):
    name = "ssh"
    limit = 8192  # RFC 4253 4.2: lines before the version string are allowed

    def judge(self, final: bool) -> Verdict | None:
        lines = self.buf.split(b"\n")
        complete = lines if final else lines[:-1]
        others: list[bytes] = []
        for raw in complete:
            line = raw.rstrip(b"\r")
            if line.startswith(b"SSH-"):
                version, _, software = line[4:].partition(b"-")
                if version not in (b"2.0", b"1.99"):
                    return self.not_ready(f"SSH protocol {printable(version, 20)} only")
                return self.ready(detail=printable(software))
            if line:
                others.append(line)
        if not final:
            return None
        if others:  # sshd when full: "Exceeded MaxStartups", then it closes
            return self.not_ready(printable(others[-1]))
        return None

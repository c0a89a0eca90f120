"""HTTP/1.1 readiness: ``GET path`` -> a status in the accepted set (and a body match).

Pure. Redirects are not followed (a 301 is an answer like any other: in the default
set 200-399). The body is read only when ``--expect-body`` asks for it, at most
:attr:`HttpCodec.limit` bytes of it, by Content-Length, chunked coding (RFC 9112
section 7.1) or until the server closes.

    >>> from portkit.probe._ready._base import Options
    >>> c = HttpCodec(Options("api"))
    >>> c.feed(b"HTTP/1.1 503 Service Unavailable\\r\\nContent-Length: 0\\r\\n\\r\\n").reason
    '503 Service Unavailable'
"""

from __future__ import annotations

import re

from portkit.probe._ready._base import Codec, Verdict, printable, starts_like, status_text

__all__ = ["HttpCodec", "dechunk"]


def dechunk(body: bytes) -> tuple[bytes, bool]:
    """Decode a chunked body as far as it goes: (data, complete).

    >>> dechunk(b"3\\r\\nabc\\r\\n0\\r\\n\\r\\n")
    (b'abc', True)
    >>> dechunk(b"3\\r\\nab")
    (b'ab', False)
    """
    out = b""
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return out, False
        size_text = body[pos:end].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            return out, False
        if size == 0:
            return out, True
        start = end + 2
        out += body[start : start + size]
        if start + size + 2 > len(body):
            return out, False
        pos = start + size + 2


class HttpCodec(Codec):
    name = "http"
    limit = 64 * 1024

    def start(self) -> bytes:
        o = self.opts
        return (
            f"GET {o.path} HTTP/1.1\r\nHost: {o.host}\r\nUser-Agent: portkit\r\n"
            "Accept: */*\r\nConnection: close\r\n\r\n"
        ).encode("latin-1", "replace")

    def judge(self, final: bool) -> Verdict | None:
        buf = self.buf
        while True:  # interim 1xx answers come first; the real one follows
            if not starts_like(buf, b"HTTP/"):
                return self.other()
            head_end, sep = buf.find(b"\r\n\r\n"), 4
            if head_end < 0:
                head_end, sep = buf.find(b"\n\n"), 2
            if head_end < 0:
                if not final:
                    return None
                head_end, sep = len(buf), 0
            lines = buf[:head_end].split(b"\n")
            parts = lines[0].rstrip(b"\r").split(None, 2)
            if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
                raise self.error(f"bad status line {printable(lines[0], 60)!r}")
            code = int(parts[1])
            if not (100 <= code < 200 and code != 101):
                break
            buf = buf[head_end + sep :]
            if not buf:
                return None if not final else self.not_ready(f"only an interim {code} answer")
        phrase = printable(parts[2], 80) if len(parts) > 2 else ""
        headers: dict[bytes, bytes] = {}
        for raw in lines[1:]:
            key, colon, value = raw.partition(b":")
            if colon:
                headers[key.strip().lower()] = value.strip()
        server = printable(headers.get(b"server", b""), 60)
        status = f"{code} {phrase}".strip()
        if not any(lo <= code <= hi for lo, hi in self.opts.statuses):
            accepted = status_text(self.opts.statuses)
            return self.not_ready(status, code=code, detail=f"accepted: {accepted}")
        pattern = self.opts.expect_body
        if pattern is None:
            return self.ready(status, code=code, detail=server)
        body, complete = self._body(buf[head_end + sep :], headers)
        if not complete and not final:
            return None
        text = body.decode("utf-8", "replace")
        if re.search(pattern, text) is None:
            return self.not_ready(f"{status}, body does not match {pattern!r}", code=code)
        return self.ready(status, code=code, detail=server)

    @staticmethod
    def _body(raw: bytes, headers: dict[bytes, bytes]) -> tuple[bytes, bool]:
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            return dechunk(raw)
        length = headers.get(b"content-length", b"")
        if length.isdigit():
            return raw[: int(length)], len(raw) >= int(length)
        return raw, False  # until the server closes (Connection: close)

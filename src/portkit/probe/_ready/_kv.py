"""Key-value stores: Redis (RESP ``PING``) and memcached (``version``). Pure.

Redis answers ``+PONG`` when it serves; while it loads its dataset ``-LOADING``,
a replica that lost its master ``-MASTERDOWN``, a server stuck in a script
``-BUSY``: not ready, in the server's own words. A server that wants a password
answers ``-NOAUTH`` (or ``-WRONGPASS``): it is serving, it needs auth
(https://redis.io/docs/latest/develop/reference/protocol-spec/, "Simple errors").

    >>> RedisCodec().feed(b"-LOADING Redis is loading the dataset in memory\\r\\n").state.value
    'not-ready'
    >>> MemcachedCodec().feed(b"VERSION 1.6.18\\r\\n").detail
    '1.6.18'
"""

from __future__ import annotations

from portkit.probe._ready._base import Codec, ReadyState, Verdict, printable, starts_like

__all__ = ["MemcachedCodec", "RedisCodec"]

#: The first word of a Redis error -> what it says about readiness (None: serving,
#: the text is a detail).
REDIS_ERRORS: dict[str, ReadyState] = {
    "LOADING": ReadyState.NOT_READY,
    "MASTERDOWN": ReadyState.NOT_READY,
    "BUSY": ReadyState.NOT_READY,
    "TRYAGAIN": ReadyState.NOT_READY,
    "CLUSTERDOWN": ReadyState.NOT_READY,
    "DENIED": ReadyState.NOT_READY,  # protected mode: this client may not use it
    "NOAUTH": ReadyState.READY,
    "WRONGPASS": ReadyState.READY,
    "NOPERM": ReadyState.READY,
}

#: The first byte of every RESP2/RESP3 reply type.
_RESP_TYPES = b"+-:$*_,#!=(%~>|"


class RedisCodec(Codec):
    name = "redis"
    limit = 4096

    def start(self) -> bytes:
        return b"*1\r\n$4\r\nPING\r\n"

    def judge(self, final: bool) -> Verdict | None:
        first = self.buf[:1]
        if not first or first[0] not in _RESP_TYPES:
            return self.other()
        line = self.line(final)
        if line is None:
            return None
        if first not in (b"+", b"-"):
            return self.ready("answers in RESP", detail=printable(line, 60))
        text = printable(line[1:])
        if line[:1] == b"+":
            return self.ready(text)
        word = text.split(" ", 1)[0]
        if word == "ERR" and "AUTH" in text.upper():  # Redis < 6: "-ERR operation not permitted"
            word = "NOAUTH"
        state = REDIS_ERRORS.get(word, ReadyState.NOT_READY)
        if state is ReadyState.READY:
            return self.ready("serving, needs auth", code=word, detail=text)
        return self.not_ready(text, code=word)


class MemcachedCodec(Codec):
    name = "memcached"
    limit = 1024
    farewell = b"quit\r\n"

    def start(self) -> bytes:
        return b"version\r\n"

    def judge(self, final: bool) -> Verdict | None:
        if not starts_like(self.buf, b"VERSION ", b"SERVER_ERROR"):
            return self.other()
        line = self.line(final)
        if line is None:
            return None
        text = printable(line)
        if line.startswith(b"VERSION "):
            return self.ready(detail=text[8:])
        return self.not_ready(text)

"""The shape every readiness codec shares: options in, bytes out, bytes in, a verdict out.

A codec is sans-I/O (as h11 is): :meth:`Codec.start` gives the bytes to send first,
:meth:`Codec.feed` takes whatever the peer sent (``b""`` for end of stream) and
returns a :class:`Verdict` once it can, else None. :meth:`Codec.outgoing` holds bytes
the codec wants sent meanwhile (an HTTP/2 SETTINGS ack); :attr:`Codec.farewell` the
polite goodbye after the verdict (SMTP ``QUIT``, Postgres ``Terminate``).

Every codec reads at most :attr:`Codec.limit` bytes: a peer that sends more without
giving a verdict gets a :class:`~portkit.errors.ProtocolError`, as do bytes that do
not parse. Nothing else may escape ``feed`` (the hypothesis tests hold every codec
to that).
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from portkit.errors import ParseError, ProtocolError
from portkit.model import _Record

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "DEFAULT_STATUSES",
    "Codec",
    "Options",
    "ReadyState",
    "Verdict",
    "parse_statuses",
    "printable",
    "starts_like",
    "status_text",
]


class ReadyState(StrEnum):
    """What a handshake showed about the service behind an open port."""

    READY = "ready"
    NOT_READY = "not-ready"
    NOT_THIS_PROTOCOL = "not-this-protocol"


class Verdict(_Record):
    """The answer of one handshake.

    ``reason`` is the server's own words where it gave some (``the database system is
    starting up``), else portkit's; ``code`` the protocol's own status where it has one
    (an HTTP status, an SMTP reply code, a MySQL errno, an LDAP resultCode);
    ``detail`` what else is worth showing (a server version, ``needs auth``);
    ``rtt_ms`` the time from the first byte sent to the verdict (set by the driver).
    """

    __slots__ = ("proto", "state", "reason", "code", "detail", "rtt_ms")
    proto: str
    state: ReadyState
    reason: str
    code: int | str | None
    detail: str
    rtt_ms: float | None

    def __init__(
        self,
        proto: str,
        state: ReadyState,
        reason: str = "",
        *,
        code: int | str | None = None,
        detail: str = "",
        rtt_ms: float | None = None,
    ) -> None:
        self._init(proto=proto, state=state, reason=reason, code=code, detail=detail, rtt_ms=rtt_ms)

    @property
    def ready(self) -> bool:
        return self.state is ReadyState.READY

    def timed(self, rtt_ms: float | None, proto: str | None = None) -> Verdict:
        """The same verdict with its round-trip time (and the name it was asked by:
        ``https`` for the http codec inside TLS)."""
        return Verdict(
            proto or self.proto,
            self.state,
            self.reason,
            code=self.code,
            detail=self.detail,
            rtt_ms=rtt_ms,
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "proto": self.proto,
            "verdict": self.state.value,
            "reason": self.reason or None,
            "code": self.code,
            "detail": self.detail or None,
            "rtt_ms": self.rtt_ms,
        }


#: HTTP statuses accepted by default: success and redirects (redirects are not followed).
DEFAULT_STATUSES: tuple[tuple[int, int], ...] = ((200, 399),)


def parse_statuses(text: str) -> tuple[tuple[int, int], ...]:
    """An accepted set of status codes: ``200``, ``200-299,301``, ``2xx,304``.

    >>> parse_statuses("2xx,304")
    ((200, 299), (304, 304))

    Raises:
        ParseError: naming the bad item.
    """
    accepted = "codes 100-599, ranges (200-299) or classes (2xx), comma-separated"
    out: list[tuple[int, int]] = []
    for item in text.split(","):
        item = item.strip().lower()
        lo_text, sep, hi_text = item.partition("-")
        if len(item) == 3 and item[0].isdigit() and item[1:] == "xx":
            lo, hi = int(item[0]) * 100, int(item[0]) * 100 + 99
        elif lo_text.isdigit() and (not sep or hi_text.isdigit()):
            lo = int(lo_text)
            hi = int(hi_text) if sep else lo
        else:
            raise ParseError(f"bad status {item!r}", text=text, part=item, accepted=accepted)
        if not 100 <= lo <= hi <= 599:
            raise ParseError(f"bad status range {item!r}", text=text, part=item, accepted=accepted)
        out.append((lo, hi))
    return tuple(out)


def status_text(statuses: Iterable[tuple[int, int]]) -> str:
    """``200-399,418``: the set as the user would write it."""
    return ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in statuses)


class Options(_Record):
    """What a handshake may need to know besides the bytes.

    ``host`` names the service (HTTP ``Host``, gRPC ``:authority``, TLS SNI); ``path``
    the HTTP path; ``statuses`` the accepted HTTP statuses; ``expect_body`` a regular
    expression the HTTP body must match; ``min_days`` the fewest days a TLS
    certificate may have left; ``service`` the gRPC health service name ("" = the
    server as a whole); ``tcp`` whether DNS runs over TCP (length-prefixed).
    """

    __slots__ = ("host", "path", "statuses", "expect_body", "min_days", "service", "tcp")
    host: str
    path: str
    statuses: tuple[tuple[int, int], ...]
    expect_body: str | None
    min_days: int | None
    service: str
    tcp: bool

    def __init__(
        self,
        host: str = "localhost",
        *,
        path: str = "/",
        statuses: tuple[tuple[int, int], ...] = DEFAULT_STATUSES,
        expect_body: str | None = None,
        min_days: int | None = None,
        service: str = "",
        tcp: bool = True,
    ) -> None:
        self._init(
            host=host,
            path=path if path.startswith("/") else "/" + path,
            statuses=statuses,
            expect_body=expect_body,
            min_days=min_days,
            service=service,
            tcp=tcp,
        )


def printable(data: bytes | str, limit: int = 200) -> str:
    """Peer text made safe to print on one line: control bytes escaped, length capped.

    >>> printable(b"-LOADING Redis is loading\\r\\n")
    '-LOADING Redis is loading'
    """
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    out = "".join(c if c.isprintable() else f"\\x{ord(c) & 0xFF:02x}" for c in text)
    return out if len(out) <= limit else out[: limit - 1] + "…"


class Codec:
    """Base of the readiness codecs. Subclasses set :attr:`name` and write :meth:`judge`.

    The base keeps the bytes received so far in :attr:`buf` (never more than
    :attr:`limit`), and calls ``judge(final)`` after every chunk; ``final`` is True
    when no more bytes will come (end of stream, or the limit reached). ``judge``
    returns a verdict, None to wait for more, or raises ProtocolError.
    """

    name: ClassVar[str] = ""
    #: The most bytes read before a verdict must be given.
    limit: ClassVar[int] = 16 * 1024
    #: Bytes sent after the verdict, best effort (QUIT, Terminate, LOGOUT).
    farewell: ClassVar[bytes] = b""

    def __init__(self, opts: Options | None = None) -> None:
        self.opts = opts if opts is not None else Options()
        self.buf = b""
        self._out = b""
        self.eof = False

    # --- the interface the driver uses ---------------------------------------------

    def start(self) -> bytes:
        """The bytes to send first (empty when the server speaks first)."""
        return b""

    def feed(self, data: bytes) -> Verdict | None:
        """Take the next bytes from the peer (``b""``: it closed the stream).

        Raises:
            ProtocolError: the bytes are not this protocol, or no verdict within
                :attr:`limit` bytes.
        """
        if not data:
            self.eof = True
            if not self.buf:
                return self.not_ready("closed the connection without answering")
            found = self.judge(final=True)
            if found is None:
                raise self.error(f"the answer stops after {len(self.buf)} bytes")
            return found
        room = self.limit - len(self.buf)
        self.buf += data[:room]
        full = len(self.buf) >= self.limit
        found = self.judge(final=full)
        if found is None and full:
            raise self.error(f"no complete answer in {self.limit} bytes")
        return found

    def outgoing(self) -> bytes:
        """Bytes to send now (taken: a second call returns ``b""``)."""
        out, self._out = self._out, b""
        return out

    # --- for subclasses ----------------------------------------------------------------

    def judge(self, final: bool) -> Verdict | None:
        raise NotImplementedError

    def error(self, message: str) -> ProtocolError:
        return ProtocolError(message, protocol=self.name)

    def ready(
        self, reason: str = "", *, code: int | str | None = None, detail: str = ""
    ) -> Verdict:
        return Verdict(self.name, ReadyState.READY, reason, code=code, detail=detail)

    def not_ready(self, reason: str, *, code: int | str | None = None, detail: str = "") -> Verdict:
        return Verdict(self.name, ReadyState.NOT_READY, reason, code=code, detail=detail)

    def other(self, reason: str = "") -> Verdict:
        """Something else answers here."""
        said = printable(self.buf[:48], 60)
        return Verdict(
            self.name,
            ReadyState.NOT_THIS_PROTOCOL,
            reason or (f"the answer is not {self.name}: {said}" if said else ""),
        )

    def line(self, final: bool, *, sep: bytes = b"\n") -> bytes | None:
        """The first line of :attr:`buf` without its end (None: not complete yet).

        On ``final`` a line without its end counts as complete.
        """
        end = self.buf.find(sep)
        if end < 0:
            return self.buf if final else None
        return self.buf[:end].rstrip(b"\r")


def starts_like(buf: bytes, *prefixes: bytes) -> bool:
    """True when ``buf`` could still become one of ``prefixes`` (or already starts so)."""
    return any(buf[: len(p)] == p[: len(buf)] for p in prefixes)

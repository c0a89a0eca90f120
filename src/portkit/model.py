"""The socket vocabulary of the guide, as small immutable records and pure parsers.

This module does no I/O: every function takes text or numbers and returns records,
or raises :class:`~portkit.errors.ParseError` naming the bad part.

    >>> Endpoint.parse("192.168.1.100:8080/TCP")
    Endpoint(host='192.168.1.100', port=8080, protocol=<Protocol.TCP: 'tcp'>)
    >>> str(Endpoint.parse("[2001:db8::1]:443"))
    '[2001:db8::1]:443/tcp'
    >>> [str(r) for r in parse_ports("22,80,8000-8100")]
    ['22', '80', '8000-8100']

It is imported by the quickest commands (``portkit lookup 22``), so it stays cheap
to import: no ``dataclasses`` (which pulls in ``inspect``, about 15 ms), no runtime
``typing`` and no ``enum`` (the StrEnums are ``portkit._constants.StrConstants`` at run
time). Records are ``__slots__`` classes built on :class:`_Record`.
"""

from __future__ import annotations

from portkit._sockrow import (
    CGROUP,
    FAMILY,
    INODE,
    LOCAL_IP,
    LOCAL_PORT,
    PID,
    PIDS,
    PROCESS,
    PROTOCOL,
    RECV_Q,
    REMOTE_IP,
    REMOTE_PORT,
    ROLE,
    SEND_Q,
    SOCKET_FIELDS,
    STATE,
    UID,
    USER,
)
from portkit.errors import ParseError

# Not `from typing import TYPE_CHECKING`: importing typing costs ~9 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from enum import StrEnum
    from typing import Any
else:
    # enum.StrEnum for type checkers; at run time the same behaviour without the ~6 ms
    # import and build cost of enum (see portkit/_constants.py).
    from portkit._constants import StrConstants as StrEnum

__all__ = [
    "ENDPOINT_FORMS",
    "NODEPORT_RANGE",
    "SOCKET_FIELDS",
    "SS_STATE_GROUPS",
    "BindScope",
    "Connection",
    "Endpoint",
    "PortClass",
    "PortRange",
    "Protocol",
    "RangeClass",
    "SocketRecord",
    "TcpState",
    "bind_scope",
    "classify_port",
    "iter_ports",
    "parse_float",
    "parse_int",
    "parse_port",
    "parse_ports",
    "parse_state_filter",
    "shorten",
    "widest_scope",
]

MAX_PORT = 65535
ENDPOINT_FORMS = "HOST:PORT[/PROTO], [IPv6]:PORT[/PROTO] or (IP, PORT, PROTO)"


class _Record:
    """Base for small immutable records: equality, hash and repr from ``__slots__``."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined, no-any-return,unused-ignore]

    def __hash__(self) -> int:
        return hash((type(self).__name__, *self._values()))

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"{type(self).__name__}({args})"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def as_dict(self) -> dict[str, Any]:
        """The fields by name, in declaration order."""
        return {name: getattr(self, name) for name in self.__slots__}

    def _init(self, **values: object) -> None:
        for name, value in values.items():
            object.__setattr__(self, name, value)


# --- protocols and ports -------------------------------------------------------------


class Protocol(StrEnum):
    """Transport protocols the IANA registry assigns ports for."""

    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"
    DCCP = "dccp"

    @classmethod
    def parse(cls, text: str) -> Protocol:
        """Parse a protocol name, case-insensitively.

        >>> Protocol.parse("TCP")
        <Protocol.TCP: 'tcp'>
        """
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise ParseError(
                f"unknown protocol {text!r}", text=text, accepted="tcp, udp, sctp, dccp"
            ) from None


def shorten(text: str, limit: int = 40) -> str:
    """``text`` cut to ``limit`` characters for an error message (a 5,000-digit number
    is named, not echoed).

    >>> shorten("1" * 50)
    '1111111111111111111111111111111111111111...'
    """
    return text if len(text) <= limit else text[:limit] + "..."


def parse_int(
    text: str | int, *, what: str = "number", low: int = 0, high: int, accepted: str = ""
) -> int:
    """Parse a whole number in ``low..high``: the one bounded number parser of portkit.

    Only ASCII digits (and a leading ``-`` where ``low`` is negative) are accepted, and
    the length is checked before converting, so a number of thousands of digits is
    "out of range" at once rather than Python's int-conversion error.

    >>> parse_int(" 42 ", what="count", low=1, high=100)
    42
    >>> parse_int("9" * 5000, what="port", high=65535)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    portkit.errors.ParseError: port 99999...9999... is out of range (accepted: 0-65535)
    """
    accepted = accepted or f"{low}-{high}"
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        raw = str(text)
        digits = raw.strip()
        negative = digits.startswith("-") and low < 0
        body = digits[1:] if negative else digits
        if not body.isdigit() or not body.isascii():
            raise ParseError(
                f"{what} {shorten(raw)!r} is not a number", text=shorten(raw), accepted=accepted
            )
        body = body.lstrip("0") or "0"
        if len(body) > len(str(max(abs(low), abs(high)))):
            raise ParseError(
                f"{what} {shorten(digits)} is out of range", text=shorten(raw), accepted=accepted
            )
        value = -int(body) if negative else int(body)
    if not low <= value <= high:
        raise ParseError(
            f"{what} {shorten(str(value))} is out of range",
            text=shorten(str(text)),
            accepted=accepted,
        )
    return value


def parse_float(
    text: str | float, *, what: str = "number", low: float, high: float, low_open: bool = False
) -> float:
    """Parse a finite decimal number in ``low..high`` (``(low..high]`` with ``low_open``).

    NaN, infinities and anything out of the bounds are refused: a timeout of ``nan``
    would never expire, an interval of ``1e-300`` would spin.

    >>> parse_float("2.5", what="--timeout", low=0, high=3600, low_open=True)
    2.5
    >>> parse_float("nan", what="--timeout", low=0, high=3600)
    Traceback (most recent call last):
    ...
    portkit.errors.ParseError: --timeout 'nan' is not a finite number (accepted: 0-3600)
    """
    accepted = f"{low:g}-{high:g}" + (f", more than {low:g}" if low_open else "")
    raw = shorten(str(text))
    try:
        value = float(text.strip() if isinstance(text, str) and len(text) <= 64 else text)
    except (TypeError, ValueError, OverflowError):
        raise ParseError(f"{what} {raw!r} is not a number", text=raw, accepted=accepted) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise ParseError(f"{what} {raw!r} is not a finite number", text=raw, accepted=accepted)
    if value < low or value > high or (low_open and value == low):
        raise ParseError(f"{what} {raw} is out of range", text=raw, accepted=accepted)
    return value


def parse_port(text: str | int, *, what: str = "port") -> int:
    """Parse one port number, 0-65535.

    >>> parse_port(" 5432 ")
    5432
    """
    return parse_int(text, what=what, low=0, high=MAX_PORT)


class PortRange(_Record):
    """An inclusive range of ports; a single port is a range of one.

    >>> r = PortRange.parse("8000-8100")
    >>> len(r), 8080 in r, str(r)
    (101, True, '8000-8100')
    """

    __slots__ = ("start", "end")
    start: int
    end: int

    def __init__(self, start: int, end: int | None = None) -> None:
        end = start if end is None else end
        start = parse_port(start)
        end = parse_port(end)
        if end < start:
            raise ParseError(
                f"port range {start}-{end} is reversed",
                text=f"{start}-{end}",
                accepted=f"START-END with START <= END, e.g. {end}-{start}",
            )
        self._init(start=start, end=end)

    @classmethod
    def parse(cls, text: str) -> PortRange:
        """Parse ``"22"`` or ``"8000-8100"``."""
        raw = text.strip()
        first, sep, last = raw.partition("-")
        if not sep:
            return cls(parse_port(raw))
        if not first or not last:
            raise ParseError(
                f"port range {text!r} is incomplete",
                text=text,
                accepted="START-END, e.g. 8000-8100",
            )
        return cls(parse_port(first, what="range start"), parse_port(last, what="range end"))

    def __len__(self) -> int:
        return self.end - self.start + 1

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self.end + 1))

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.start <= port <= self.end

    def overlaps(self, other: PortRange) -> bool:
        return self.start <= other.end and other.start <= self.end

    def __str__(self) -> str:
        return str(self.start) if self.start == self.end else f"{self.start}-{self.end}"


def parse_ports(text: str) -> tuple[PortRange, ...]:
    """Parse a port list such as ``"22,80,8000-8100"`` into ranges, in the order given.

    >>> parse_ports("80, 443")
    (PortRange(start=80, end=80), PortRange(start=443, end=443))
    """
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise ParseError(
            f"empty item in port list {text!r}", text=text, accepted="PORT[,PORT|START-END...]"
        )
    return tuple(PortRange.parse(p) for p in parts)


def iter_ports(ranges: Iterable[PortRange]) -> list[int]:
    """The distinct ports of several ranges, sorted."""
    seen: set[int] = set()
    for r in ranges:
        seen.update(range(r.start, r.end + 1))
    return sorted(seen)


# --- endpoints -------------------------------------------------------------------------


def _ip_literal(host: str) -> str | None:
    """Return the canonical text of an IP literal, None if ``host`` is not one."""
    if not host or not (":" in host or host.replace(".", "").isdigit()):
        return None
    import ipaddress  # deferred: about 2 ms, and only endpoints with IPs need it

    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return None


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _check_hostname(host: str, text: str) -> None:
    """Host names per RFC 1123, with '_' allowed as compose and DNS-SD names use it."""
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    ok = (
        0 < len(host) <= 253
        and set(host) <= _HOST_CHARS
        and all(0 < len(lb) <= 63 and lb[0] != "-" and lb[-1] != "-" for lb in labels)
    )
    if not ok:
        raise ParseError(
            f"bad host {host!r} in {text!r}",
            text=text,
            part=host,
            accepted="an IPv4 address, [IPv6] in brackets, or a DNS name",
        )


class Endpoint(_Record):
    """One side of a connection: the guide's ``IP:Port/Protocol``.

    ``host`` is an IP literal (kept in canonical form) or a DNS name (kept as given).
    """

    __slots__ = ("host", "port", "protocol")
    host: str
    port: int
    protocol: Protocol

    def __init__(self, host: str, port: int, protocol: Protocol | str = Protocol.TCP) -> None:
        proto = protocol if isinstance(protocol, Protocol) else Protocol.parse(protocol)
        canonical = _ip_literal(host.strip("[]"))
        if canonical is None:
            _check_hostname(host, host)
        self._init(host=canonical or host, port=parse_port(port), protocol=proto)

    @classmethod
    def parse(cls, text: str, *, default_protocol: Protocol = Protocol.TCP) -> Endpoint:
        """Parse the guide's notation and its everyday variants.

        Accepted: ``192.168.1.100:8080/TCP``, ``192.168.1.100:8080`` (tcp by default),
        ``[2001:db8::1]:443/tcp``, ``localhost:5432``, ``db.internal:6379/tcp`` and the
        tuple form ``(192.168.1.100, 8080, TCP)``.

        Raises:
            ParseError: naming the bad part (host, port or protocol).
        """
        raw = text.strip()
        if not raw:
            raise ParseError("empty endpoint", text=text, accepted=ENDPOINT_FORMS)
        if raw.startswith("("):
            return cls._parse_tuple(raw, text)
        protocol = default_protocol
        body = raw
        if "/" in raw:
            body, _, proto = raw.rpartition("/")
            protocol = Protocol.parse(proto)
        if body.startswith("["):
            host, sep, rest = body[1:].partition("]")
            if not sep or not rest.startswith(":"):
                raise ParseError(
                    f"bad endpoint {text!r}: expected [IPv6]:PORT",
                    text=text,
                    accepted=ENDPOINT_FORMS,
                )
            if _ip_literal(host) is None or ":" not in host:
                raise ParseError(
                    f"bad IPv6 address {host!r} in {text!r}",
                    text=text,
                    part=host,
                    accepted="an IPv6 address inside [ ]",
                )
            port_text = rest[1:]
        else:
            colons = body.count(":")
            if colons == 0:
                raise ParseError(f"missing port in {text!r}", text=text, accepted=ENDPOINT_FORMS)
            if colons > 1:
                hint = (
                    "IPv6 addresses go in brackets, e.g. [2001:db8::1]:443"
                    if _ip_literal(body.rpartition(":")[0])
                    else f"too many ':' in {text!r}"
                )
                raise ParseError(
                    f"bad endpoint {text!r}: {hint}", text=text, accepted=ENDPOINT_FORMS
                )
            host, _, port_text = body.partition(":")
            if not host:
                raise ParseError(f"missing host in {text!r}", text=text, accepted=ENDPOINT_FORMS)
        return cls(host, parse_port(port_text), protocol)

    @classmethod
    def _parse_tuple(cls, raw: str, text: str) -> Endpoint:
        if not raw.endswith(")"):
            raise ParseError(f"unclosed '(' in {text!r}", text=text, accepted=ENDPOINT_FORMS)
        parts = [p.strip().strip("'\"") for p in raw[1:-1].split(",")]
        if len(parts) not in (2, 3) or not all(parts):
            raise ParseError(
                f"bad socket tuple {text!r}", text=text, accepted="(IP, PORT) or (IP, PORT, PROTO)"
            )
        protocol = Protocol.parse(parts[2]) if len(parts) == 3 else Protocol.TCP
        return cls(parts[0], parse_port(parts[1]), protocol)

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    @property
    def is_ip(self) -> bool:
        return _ip_literal(self.host) is not None

    @property
    def address(self) -> str:
        """``host:port`` with IPv6 in brackets, without the protocol."""
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        return f"{host}:{self.port}"

    def as_tuple(self) -> tuple[str, int, str]:
        """The guide's full socket definition: ``(192.168.1.100, 8080, 'TCP')``."""
        return (self.host, self.port, self.protocol.value.upper())

    def __str__(self) -> str:
        return f"{self.address}/{self.protocol.value}"


# --- bind scope ------------------------------------------------------------------------


class BindScope(StrEnum):
    """Which interfaces a bind address (or a published host IP) listens on."""

    WILDCARD = "wildcard"  # 0.0.0.0, ::, * or no address: every interface
    LOOPBACK = "loopback"  # 127.0.0.0/8, ::1, ::ffff:127.x.y.z, localhost: this host only
    LINK_LOCAL = "link-local"  # 169.254.0.0/16, fe80::/10: this link only
    SPECIFIC = "specific"  # one other address: the networks that reach it


def _v4_scope(packed: bytes) -> BindScope:
    if packed == b"\0\0\0\0":
        return BindScope.WILDCARD
    if packed[0] == 127:
        return BindScope.LOOPBACK
    if packed[:2] == b"\xa9\xfe":
        return BindScope.LINK_LOCAL
    return BindScope.SPECIFIC


def bind_scope(address: str | None) -> BindScope:
    """The scope of a bind address, for IPv4 and IPv6 (``::ffff:`` mapped included).

    ``None`` and ``""`` mean no address given, i.e. every interface (Docker's ``-p 80:80``,
    a compose ``ports:`` entry without a host IP); ``*`` is how ``ss`` prints it.
    A host name other than ``localhost`` is ``specific``.

    >>> [bind_scope(a).value for a in ("0.0.0.0", "[::]", "127.0.0.53", "::ffff:127.0.0.1")]
    ['wildcard', 'wildcard', 'loopback', 'loopback']
    >>> [bind_scope(a).value for a in ("fe80::1%eth0", "169.254.1.1", "10.0.0.5", None)]
    ['link-local', 'link-local', 'specific', 'wildcard']
    """
    if not address or address == "*":
        return BindScope.WILDCARD
    text = address.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    text = text.split("%", 1)[0]
    import socket  # cheap, and already loaded by every caller that has an address

    if ":" not in text:
        try:
            return _v4_scope(socket.inet_pton(socket.AF_INET, text))
        except (OSError, ValueError):  # not an address (ValueError: a NUL inside)
            return BindScope.LOOPBACK if text.lower() == "localhost" else BindScope.SPECIFIC
    try:
        packed = socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return BindScope.SPECIFIC
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return _v4_scope(packed[12:])
    if packed == b"\0" * 16:
        return BindScope.WILDCARD
    if packed == b"\0" * 15 + b"\x01":
        return BindScope.LOOPBACK
    if packed[0] == 0xFE and packed[1] & 0xC0 == 0x80:
        return BindScope.LINK_LOCAL
    return BindScope.SPECIFIC


#: How wide each scope reaches, narrowest first: a group of listeners on one port is
#: as wide as its widest address.
_SCOPE_WIDTH = {
    BindScope.LOOPBACK: 0,
    BindScope.LINK_LOCAL: 1,
    BindScope.SPECIFIC: 2,
    BindScope.WILDCARD: 3,
}


def widest_scope(addresses: Iterable[str | None]) -> BindScope:
    """The scope of a port bound on several addresses (IPv4 and IPv6 listeners, say):
    its widest one. No address at all is ``loopback`` (nothing listens).

    >>> widest_scope(["127.0.0.1", "::1"]).value, widest_scope(["127.0.0.1", "::"]).value
    ('loopback', 'wildcard')
    """
    return max(
        (bind_scope(a) for a in addresses), key=_SCOPE_WIDTH.__getitem__, default=BindScope.LOOPBACK
    )


# --- TCP states ------------------------------------------------------------------------


class TcpState(StrEnum):
    """Every Linux TCP state (include/net/tcp_states.h), named as netstat names them."""

    ESTABLISHED = "ESTABLISHED"
    SYN_SENT = "SYN_SENT"
    SYN_RECV = "SYN_RECV"
    FIN_WAIT1 = "FIN_WAIT1"
    FIN_WAIT2 = "FIN_WAIT2"
    TIME_WAIT = "TIME_WAIT"
    CLOSE = "CLOSE"
    CLOSE_WAIT = "CLOSE_WAIT"
    LAST_ACK = "LAST_ACK"
    LISTEN = "LISTEN"
    CLOSING = "CLOSING"
    NEW_SYN_RECV = "NEW_SYN_RECV"

    @property
    def code(self) -> int:
        """The kernel's number for the state (``TCP_ESTABLISHED`` = 1, ...)."""
        return _STATE_CODES[self]

    @property
    def meaning(self) -> str:
        """One line on what the state means, in the guide's words where it has them."""
        return _STATE_MEANINGS[self]

    @property
    def ss_name(self) -> str:
        """The name ``ss`` prints (``ESTAB``, ``TIME-WAIT``, ``UNCONN``, ...)."""
        return _SS_DISPLAY[self]

    @classmethod
    def from_code(cls, code: int) -> TcpState:
        return _CODE_STATES[code]


_STATE_CODES: dict[TcpState, int] = {state: i for i, state in enumerate(TcpState, start=1)}
_CODE_STATES: dict[int, TcpState] = {i: state for state, i in _STATE_CODES.items()}

_STATE_MEANINGS: dict[TcpState, str] = {
    TcpState.ESTABLISHED: "connection is active: data can flow between the endpoints",
    TcpState.SYN_SENT: "client trying to establish a connection: waiting for the server's response",
    TcpState.SYN_RECV: "server got the SYN and answered SYN-ACK: waiting for the final ACK",
    TcpState.FIN_WAIT1: "this side closed and sent FIN: waiting for the peer to acknowledge it",
    TcpState.FIN_WAIT2: "this side's FIN was acknowledged: waiting for the peer to close its side",
    TcpState.TIME_WAIT: (
        "connection closed but port reserved, prevents old packets from interfering "
        "(usually lasts 60 seconds)"
    ),
    TcpState.CLOSE: "port is not accepting connections (an unconnected UDP socket shows this)",
    TcpState.CLOSE_WAIT: (
        "the peer closed its side: waiting for the local application to close "
        "(many of these point at an application bug)"
    ),
    TcpState.LAST_ACK: "both sides closed: waiting for the acknowledgement of this side's FIN",
    TcpState.LISTEN: "port is open and accepting connections: a server is actively listening",
    TcpState.CLOSING: "both sides sent FIN at the same time: waiting for the acknowledgement",
    TcpState.NEW_SYN_RECV: "a connection request waiting in the listener's SYN queue",
}

_SS_DISPLAY: dict[TcpState, str] = {
    TcpState.ESTABLISHED: "ESTAB",
    TcpState.SYN_SENT: "SYN-SENT",
    TcpState.SYN_RECV: "SYN-RECV",
    TcpState.FIN_WAIT1: "FIN-WAIT-1",
    TcpState.FIN_WAIT2: "FIN-WAIT-2",
    TcpState.TIME_WAIT: "TIME-WAIT",
    TcpState.CLOSE: "UNCONN",
    TcpState.CLOSE_WAIT: "CLOSE-WAIT",
    TcpState.LAST_ACK: "LAST-ACK",
    TcpState.LISTEN: "LISTEN",
    TcpState.CLOSING: "CLOSING",
    TcpState.NEW_SYN_RECV: "NEW-SYN-RECV",
}

_S = TcpState
#: ``ss state FILTER`` names and groups (ss(8), "STATE-FILTER"), each a set of states.
SS_STATE_GROUPS: dict[str, frozenset[TcpState]] = {
    "established": frozenset({_S.ESTABLISHED}),
    "syn-sent": frozenset({_S.SYN_SENT}),
    "syn-recv": frozenset({_S.SYN_RECV, _S.NEW_SYN_RECV}),
    "fin-wait-1": frozenset({_S.FIN_WAIT1}),
    "fin-wait-2": frozenset({_S.FIN_WAIT2}),
    "time-wait": frozenset({_S.TIME_WAIT}),
    "closed": frozenset({_S.CLOSE}),
    "close-wait": frozenset({_S.CLOSE_WAIT}),
    "last-ack": frozenset({_S.LAST_ACK}),
    "listening": frozenset({_S.LISTEN}),
    "closing": frozenset({_S.CLOSING}),
    "all": frozenset(TcpState),
    "connected": frozenset(TcpState) - {_S.LISTEN, _S.CLOSE},
    "synchronized": frozenset(TcpState) - {_S.LISTEN, _S.CLOSE, _S.SYN_SENT},
    "bucket": frozenset({_S.SYN_RECV, _S.NEW_SYN_RECV, _S.TIME_WAIT}),
    "big": frozenset(TcpState) - {_S.SYN_RECV, _S.NEW_SYN_RECV, _S.TIME_WAIT},
}
del _S


def parse_state_filter(names: Iterable[str]) -> frozenset[TcpState]:
    """Union of ss state names and groups (``established``, ``connected``, ...).

    >>> sorted(parse_state_filter(["time-wait", "listening"]))
    [<TcpState.LISTEN: 'LISTEN'>, <TcpState.TIME_WAIT: 'TIME_WAIT'>]
    """
    states: set[TcpState] = set()
    for name in names:
        key = name.strip().lower().replace("_", "-")
        key = {"estab": "established", "listen": "listening", "close": "closed"}.get(key, key)
        try:
            states |= SS_STATE_GROUPS[key]
        except KeyError:
            raise ParseError(
                f"unknown state {name!r}", text=name, accepted=", ".join(SS_STATE_GROUPS)
            ) from None
    return frozenset(states)


class Connection(_Record):
    """Two sockets joined: the guide's "Client Socket <-> Server Socket".

    ``remote`` is None for a listener or an unconnected UDP socket.
    """

    __slots__ = ("protocol", "local", "remote", "state")
    protocol: Protocol
    local: Endpoint
    remote: Endpoint | None
    state: TcpState

    def __init__(
        self, protocol: Protocol, local: Endpoint, remote: Endpoint | None, state: TcpState
    ) -> None:
        self._init(protocol=protocol, local=local, remote=remote, state=state)

    def __str__(self) -> str:
        far = str(self.remote) if self.remote else "*"
        return f"{self.local} <-> {far} {self.state}"


# --- range classification --------------------------------------------------------------


class RangeClass(StrEnum):
    """IANA port ranges (RFC 6335, section 6)."""

    WELL_KNOWN = "well-known"
    REGISTERED = "registered"
    DYNAMIC = "dynamic"

    @property
    def ports(self) -> PortRange:
        return _CLASS_RANGES[self]

    @property
    def description(self) -> str:
        """``well-known (system) port, 0-1023`` and so on."""
        return _CLASS_TITLES[self]


_CLASS_RANGES = {
    RangeClass.WELL_KNOWN: PortRange(0, 1023),
    RangeClass.REGISTERED: PortRange(1024, 49151),
    RangeClass.DYNAMIC: PortRange(49152, 65535),
}
_CLASS_TITLES = {
    RangeClass.WELL_KNOWN: "well-known (system) port, 0-1023",
    RangeClass.REGISTERED: "registered (user) port, 1024-49151",
    RangeClass.DYNAMIC: "dynamic/private port, 49152-65535",
}

#: Kubernetes' default ``--service-node-port-range``.
NODEPORT_RANGE = PortRange(30000, 32767)


class PortClass(_Record):
    """Where a port stands: its IANA range, this OS's ephemeral range, the NodePort range."""

    __slots__ = ("port", "range_class", "ephemeral", "nodeport")
    port: int
    range_class: RangeClass
    ephemeral: bool | None
    nodeport: bool

    def __init__(
        self, port: int, range_class: RangeClass, ephemeral: bool | None, nodeport: bool
    ) -> None:
        self._init(port=port, range_class=range_class, ephemeral=ephemeral, nodeport=nodeport)


def classify_port(port: int, ephemeral: PortRange | None = None) -> PortClass:
    """Classify ``port``; ``ephemeral`` is the OS's ephemeral range (None if unknown).

    >>> c = classify_port(32768, PortRange(32768, 60999))
    >>> c.range_class.value, c.ephemeral, c.nodeport
    ('registered', True, False)
    """
    port = parse_port(port)
    cls = next(c for c, r in _CLASS_RANGES.items() if port in r)
    return PortClass(
        port,
        cls,
        None if ephemeral is None else port in ephemeral,
        port in NODEPORT_RANGE,
    )


# --- sockets ---------------------------------------------------------------------------

#: Field names of :class:`SocketRecord`, in the order of its row tuple.


class SocketRecord(_Record):
    """One socket as ``portkit ls`` shows it (``ss``'s columns, plus owner and role).

    ``family`` is 4 or 6; ``state`` a :class:`TcpState` (an unconnected UDP socket is
    ``CLOSE``, shown as ``UNCONN``). ``remote_ip``/``remote_port`` are None for a
    listener or an unconnected UDP socket. ``role`` is ``"server"`` when the local port
    is listening here (the guide's server socket), else ``"client"``. ``recv_q`` and
    ``send_q`` are, for a listener, the accept queue's current length and its maximum.
    ``pid``, ``process`` and ``user`` name the first owner and stay None unless owners
    were asked for (``pids`` then lists every process holding the socket); ``cgroup``
    is filled only on request (``ls -e``).

    The fields live in one tuple (:attr:`row`) so that a listing of 100,000 sockets
    builds 100,000 small objects, not 1.7 million attributes.
    """

    __slots__ = ("row",)
    row: tuple[Any, ...]

    def __init__(
        self,
        protocol: Protocol,
        family: int,
        state: TcpState,
        local_ip: str,
        local_port: int,
        remote_ip: str | None = None,
        remote_port: int | None = None,
        recv_q: int = 0,
        send_q: int = 0,
        uid: int = 0,
        inode: int = 0,
        role: str = "client",
        pid: int | None = None,
        process: str | None = None,
        user: str | None = None,
        pids: tuple[int, ...] = (),
        cgroup: str | None = None,
    ) -> None:
        self._init(
            row=(
                protocol,
                family,
                state,
                local_ip,
                local_port,
                remote_ip,
                remote_port,
                recv_q,
                send_q,
                uid,
                inode,
                role,
                pid,
                process,
                user,
                pids,
                cgroup,
            )
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> SocketRecord:
        """Wrap a row tuple in :data:`SOCKET_FIELDS` order without checks (the fast path)."""
        rec = object.__new__(cls)
        object.__setattr__(rec, "row", row)
        return rec

    @property
    def protocol(self) -> Protocol:
        return self.row[PROTOCOL]  # type: ignore[no-any-return]

    @property
    def family(self) -> int:
        return self.row[FAMILY]  # type: ignore[no-any-return]

    @property
    def state(self) -> TcpState:
        return self.row[STATE]  # type: ignore[no-any-return]

    @property
    def local_ip(self) -> str:
        return self.row[LOCAL_IP]  # type: ignore[no-any-return]

    @property
    def local_port(self) -> int:
        return self.row[LOCAL_PORT]  # type: ignore[no-any-return]

    @property
    def remote_ip(self) -> str | None:
        return self.row[REMOTE_IP]  # type: ignore[no-any-return]

    @property
    def remote_port(self) -> int | None:
        return self.row[REMOTE_PORT]  # type: ignore[no-any-return]

    @property
    def recv_q(self) -> int:
        return self.row[RECV_Q]  # type: ignore[no-any-return]

    @property
    def send_q(self) -> int:
        return self.row[SEND_Q]  # type: ignore[no-any-return]

    @property
    def uid(self) -> int:
        return self.row[UID]  # type: ignore[no-any-return]

    @property
    def inode(self) -> int:
        return self.row[INODE]  # type: ignore[no-any-return]

    @property
    def role(self) -> str:
        return self.row[ROLE]  # type: ignore[no-any-return]

    @property
    def pid(self) -> int | None:
        return self.row[PID]  # type: ignore[no-any-return]

    @property
    def process(self) -> str | None:
        return self.row[PROCESS]  # type: ignore[no-any-return]

    @property
    def user(self) -> str | None:
        return self.row[USER]  # type: ignore[no-any-return]

    @property
    def pids(self) -> tuple[int, ...]:
        return self.row[PIDS]  # type: ignore[no-any-return]

    @property
    def cgroup(self) -> str | None:
        return self.row[CGROUP]  # type: ignore[no-any-return]

    @property
    def is_listener(self) -> bool:
        """A TCP listener or an unconnected (bound) UDP socket."""
        return self.row[REMOTE_IP] is None

    @property
    def local(self) -> str:
        """``ip:port`` with IPv6 in brackets."""
        return _join_address(self.row[LOCAL_IP], self.row[LOCAL_PORT])

    @property
    def remote(self) -> str | None:
        return (
            None
            if self.row[REMOTE_IP] is None
            else _join_address(self.row[REMOTE_IP], self.row[REMOTE_PORT])
        )

    def as_dict(self) -> dict[str, Any]:
        return dict(zip(SOCKET_FIELDS, self.row, strict=True))

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={v!r}" for n, v in zip(SOCKET_FIELDS, self.row, strict=True))
        return f"SocketRecord({args})"

    def __str__(self) -> str:
        return f"{self.protocol.value} {self.state.ss_name} {self.local} {self.remote or '*'}"


def _join_address(ip: str, port: int | None) -> str:
    host = f"[{ip}]" if ":" in ip else ip
    return f"{host}:{'*' if port is None else port}"

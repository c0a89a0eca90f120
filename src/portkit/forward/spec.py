"""Forward specs as people already write them: docker ``-p`` and ``ssh -L``. Pure, no I/O.

Accepted forms (the protocol suffix ``/tcp`` or ``/udp`` is optional, tcp by default):

* docker style ``[BIND_IP:]LISTEN_PORT:TARGET_PORT[/udp]``: the target is on this host,
* ssh -L style ``[BIND_IP:]LISTEN_PORT:TARGET_HOST:TARGET_PORT[/udp]``,
* equal-length ranges on both sides: ``8000-8010:9000-9010`` (one mapping per port),
* IPv6 addresses in brackets: ``[::1]:8080:[2001:db8::5]:80``.

Without a bind address a mapping listens on 127.0.0.1 only (unlike ``docker -p``, whose
0.0.0.0 default reaches past host firewalls); :attr:`Mapping.explicit_bind` remembers
whether the address was given so the caller can say so.

    >>> [str(m) for m in parse_spec("8080:3000")]
    ['127.0.0.1:8080 -> localhost:3000/tcp']
    >>> [str(m) for m in parse_spec("0.0.0.0:5353:dns.internal:53/udp")]
    ['0.0.0.0:5353 -> dns.internal:53/udp']
    >>> [m.target_port for m in parse_spec("8000-8002:9000-9002")]
    [9000, 9001, 9002]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portkit.errors import ParseError
from portkit.model import (
    BindScope,
    Protocol,
    _check_hostname,
    _ip_literal,
    _Record,
    bind_scope,
    parse_port,
)

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "DEFAULT_BIND",
    "LOCAL_TARGET",
    "SPEC_FORMS",
    "Mapping",
    "parse_spec",
    "parse_specs",
]

#: Where a mapping listens when the spec names no address: loopback only.
DEFAULT_BIND = "127.0.0.1"
#: The target host of a docker-style spec (``8080:3000``): this machine.
LOCAL_TARGET = "localhost"
#: What the error messages offer instead of a bad spec.
SPEC_FORMS = (
    "[BIND_IP:]LISTEN_PORT:TARGET_PORT[/udp], [BIND_IP:]LISTEN_PORT:TARGET_HOST:TARGET_PORT[/udp],"
    " ranges 8000-8010:9000-9010, IPv6 in brackets"
)
#: The most ports one range spec may expand to (each one is a listening socket).
MAX_RANGE = 4096
_PROTOCOLS = {"tcp": Protocol.TCP, "udp": Protocol.UDP}


class Mapping(_Record):
    """One listening port forwarded to one target.

    ``listen_port`` may be 0 (the OS picks a port; useful in tests). ``target_host`` is
    an IP literal in canonical form or a DNS name; ``localhost`` means this machine.
    """

    __slots__ = (
        "protocol",
        "listen_host",
        "listen_port",
        "target_host",
        "target_port",
        "explicit_bind",
    )
    protocol: Protocol
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int
    explicit_bind: bool

    def __init__(
        self,
        listen_port: int,
        target_host: str,
        target_port: int,
        *,
        protocol: Protocol | str = Protocol.TCP,
        listen_host: str = DEFAULT_BIND,
        explicit_bind: bool = True,
    ) -> None:
        proto = protocol if isinstance(protocol, Protocol) else Protocol.parse(protocol)
        if proto not in _PROTOCOLS.values():
            raise ParseError(f"cannot forward {proto.value}", text=proto.value, accepted="tcp, udp")
        bind = _ip_literal(listen_host.strip("[]"))
        if bind is None:
            raise ParseError(
                f"bind address {listen_host!r} is not an IP address",
                text=listen_host,
                accepted="an IPv4 address or [IPv6] in brackets, e.g. 127.0.0.1 or [::1]",
            )
        target = _ip_literal(target_host.strip("[]"))
        if target is None:
            _check_hostname(target_host, target_host)
        tport = parse_port(target_port, what="target port")
        if tport == 0:
            raise ParseError("target port 0 cannot be connected to", text="0", accepted="1-65535")
        self._init(
            protocol=proto,
            listen_host=bind,
            listen_port=parse_port(listen_port, what="listen port"),
            target_host=target or target_host,
            target_port=tport,
            explicit_bind=explicit_bind,
        )

    @property
    def is_wildcard(self) -> bool:
        """True when the mapping listens on every interface (0.0.0.0 or ::)."""
        return bind_scope(self.listen_host) is BindScope.WILDCARD

    @property
    def listen(self) -> str:
        """``127.0.0.1:8080`` (IPv6 in brackets)."""
        return _hostport(self.listen_host, self.listen_port)

    @property
    def target(self) -> str:
        """``localhost:3000`` (IPv6 in brackets)."""
        return _hostport(self.target_host, self.target_port)

    def bound_to(self, host: str, port: int) -> Mapping:
        """This mapping as bound: the address and port the OS gave its socket.

        >>> Mapping(0, "localhost", 3000).bound_to("127.0.0.1", 41234).listen
        '127.0.0.1:41234'
        """
        return Mapping(
            port,
            self.target_host,
            self.target_port,
            protocol=self.protocol,
            listen_host=host,
            explicit_bind=self.explicit_bind,
        )

    def spec(self) -> str:
        """The ssh -L form, which parses back to an equal mapping.

        >>> Mapping(8080, "::1", 80, listen_host="::1").spec()
        '[::1]:8080:[::1]:80/tcp'
        """
        return f"{self.listen}:{_bracket(self.target_host)}:{self.target_port}/{self.protocol}"

    def __str__(self) -> str:
        return f"{self.listen} -> {self.target}/{self.protocol}"


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _hostport(host: str, port: int) -> str:
    return f"{_bracket(host)}:{port}"


def _split_fields(body: str, text: str) -> list[str]:
    """Split on ':' outside brackets, keeping the brackets on their field.

    >>> _split_fields("[::1]:8080:80", "")
    ['[::1]', '8080', '80']
    """
    fields: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in body:
        if ch == "[":
            if depth or current:
                raise ParseError(f"misplaced '[' in {text!r}", text=text, accepted=SPEC_FORMS)
            depth = 1
        elif ch == "]":
            if not depth:
                raise ParseError(f"unmatched ']' in {text!r}", text=text, accepted=SPEC_FORMS)
            depth = 0
        elif ch == ":" and not depth:
            fields.append("".join(current))
            current = []
            continue
        elif not depth and current and current[0] == "[":
            raise ParseError(
                f"text after ']' in {text!r}: expected ':'", text=text, accepted=SPEC_FORMS
            )
        current.append(ch)
    if depth:
        raise ParseError(f"unclosed '[' in {text!r}", text=text, accepted=SPEC_FORMS)
    fields.append("".join(current))
    return fields


def _port_span(field: str, text: str, what: str) -> tuple[int, int]:
    """``"8000"`` -> (8000, 8000); ``"8000-8010"`` -> (8000, 8010)."""
    first, sep, last = field.partition("-")
    start = parse_port(first, what=what) if first else -1
    end = parse_port(last, what=what) if sep and last else start
    if start < 0 or end < 0:
        raise ParseError(
            f"bad {what} {field!r} in {text!r}", text=text, part=field, accepted="PORT or START-END"
        )
    if end < start:
        raise ParseError(
            f"{what} range {field!r} is reversed in {text!r}",
            text=text,
            part=field,
            accepted="START-END with START <= END",
        )
    return start, end


def _is_ports(field: str) -> bool:
    return bool(field) and all(c.isdigit() or c == "-" for c in field) and field.isascii()


def _host(field: str, text: str, what: str) -> str:
    if not field:
        raise ParseError(f"empty {what} in {text!r}", text=text, accepted=SPEC_FORMS)
    if field.startswith("["):
        inner = field[1:-1]
        literal = _ip_literal(inner)
        if literal is None or ":" not in inner:
            raise ParseError(
                f"bad IPv6 address {field!r} in {text!r}",
                text=text,
                part=field,
                accepted="an IPv6 address inside [ ]",
            )
        return literal
    if ":" in field:
        raise ParseError(
            f"bad {what} {field!r} in {text!r}: IPv6 addresses go in brackets",
            text=text,
            part=field,
            accepted=SPEC_FORMS,
        )
    return field


def parse_spec(text: str, *, default_bind: str = DEFAULT_BIND) -> tuple[Mapping, ...]:
    """Parse one forward spec into its mappings (several for a port range).

    Args:
        text: ``8080:3000``, ``127.0.0.1:8080:db:5432``, ``[::1]:53:53/udp``,
            ``8000-8010:9000-9010``...
        default_bind: the listen address when the spec names none.

    Returns:
        One :class:`Mapping` per listening port, in port order.

    Raises:
        ParseError: naming the bad part and the accepted forms.

    >>> parse_spec("[::1]:8443:[2001:db8::5]:443")[0].target
    '[2001:db8::5]:443'
    >>> parse_spec("127.0.0.1:8080:80")[0].listen
    '127.0.0.1:8080'
    """
    raw = text.strip()
    if not raw:
        raise ParseError("empty forward spec", text=text, accepted=SPEC_FORMS)
    protocol = Protocol.TCP
    body = raw
    if "/" in raw:
        body, _, proto_text = raw.rpartition("/")
        proto = _PROTOCOLS.get(proto_text.strip().lower())
        if proto is None:
            raise ParseError(
                f"unknown protocol {proto_text!r} in {text!r}", text=text, accepted="tcp, udp"
            )
        protocol = proto
    fields = _split_fields(body, text)
    bind: str | None = None
    if len(fields) == 2:
        listen, target_host, target = fields[0], LOCAL_TARGET, fields[1]
    elif len(fields) == 3 and _is_ports(fields[0]):
        listen, target_host, target = fields  # ssh -L: LISTEN:HOST:PORT
    elif len(fields) == 3:
        bind, listen, target = fields  # docker: BIND:LISTEN:PORT
        target_host = LOCAL_TARGET
    elif len(fields) == 4:
        bind, listen, target_host, target = fields
    else:
        raise ParseError(
            f"bad forward spec {text!r}: expected 2 to 4 ':'-separated fields",
            text=text,
            accepted=SPEC_FORMS,
        )
    bind_host = default_bind if bind is None else _host(bind, text, "bind address")
    host = _host(target_host, text, "target host")
    lstart, lend = _port_span(listen, text, "listen port")
    tstart, tend = _port_span(target, text, "target port")
    count = lend - lstart + 1
    if count != tend - tstart + 1:
        raise ParseError(
            f"ranges {listen} and {target} in {text!r} differ in length",
            text=text,
            accepted="equal-length ranges, e.g. 8000-8010:9000-9010",
        )
    if count > 1 and lstart == 0:
        raise ParseError(
            f"listen range {listen!r} cannot start at port 0", text=text, accepted="1-65535"
        )
    if count > MAX_RANGE:
        raise ParseError(
            f"range {listen} in {text!r} has {count} ports", text=text, accepted=f"<= {MAX_RANGE}"
        )
    if _ip_literal(bind_host) is None:
        raise ParseError(
            f"bind address {bind_host!r} in {text!r} is not an IP address",
            text=text,
            part=bind_host,
            accepted="an IPv4 address or [IPv6] in brackets, e.g. 127.0.0.1:8080:80",
        )
    if host != LOCAL_TARGET and _ip_literal(host) is None:
        _check_hostname(host, text)
    return tuple(
        Mapping(
            lstart + i,
            host,
            tstart + i,
            protocol=protocol,
            listen_host=bind_host,
            explicit_bind=bind is not None,
        )
        for i in range(count)
    )


def parse_specs(texts: Iterable[str], *, default_bind: str = DEFAULT_BIND) -> tuple[Mapping, ...]:
    """Parse several specs; refuse two mappings on the same listening socket.

    >>> len(parse_specs(["8080:80", "8080:53/udp"]))
    2
    """
    mappings: list[Mapping] = []
    seen: dict[tuple[Protocol, str, int], str] = {}
    for text in texts:
        for m in parse_spec(text, default_bind=default_bind):
            key = (m.protocol, m.listen_host, m.listen_port)
            if m.listen_port and key in seen:
                raise ParseError(
                    f"{m.listen}/{m.protocol} is given twice ({seen[key]!r} and {text!r})",
                    text=text,
                    accepted="each listening address and port once per protocol",
                )
            seen[key] = text
            mappings.append(m)
    return tuple(mappings)

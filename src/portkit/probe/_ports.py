"""Which ports to probe: nmap-style port specs (pure).

``--top N`` and the names shown for ports are the registry's answers
(:func:`portkit.registry.top_ports`, :func:`portkit.registry.service_names`): no
nmap-services data is shipped or read.

    >>> parse_port_spec("22,80,8000-8002").tcp
    (22, 80, 8000, 8001, 8002)
    >>> plan = parse_port_spec("U:53,161,T:22")
    >>> plan.tcp, plan.udp
    ((22,), (53, 161))
    >>> len(parse_port_spec("-").tcp)
    65535
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portkit.errors import ParseError
from portkit.model import MAX_PORT, _Record, parse_port

if TYPE_CHECKING:
    pass

__all__ = ["PortPlan", "parse_port_spec"]

ACCEPTED = "PORT, START-END, -END, START-, - (all), lists with ',', T:/U: prefixes"
_PREFIXES = {"T": "tcp", "U": "udp"}


class PortPlan(_Record):
    """The ports to probe per protocol, in the order given, without repeats."""

    __slots__ = ("tcp", "udp")
    tcp: tuple[int, ...]
    udp: tuple[int, ...]

    def __init__(self, tcp: tuple[int, ...] = (), udp: tuple[int, ...] = ()) -> None:
        self._init(tcp=tcp, udp=udp)

    def __len__(self) -> int:
        return len(self.tcp) + len(self.udp)

    def items(self) -> list[tuple[str, tuple[int, ...]]]:
        return [(p, ports) for p, ports in (("tcp", self.tcp), ("udp", self.udp)) if ports]


def _item(item: str, text: str, proto: str = "tcp") -> range | tuple[int, ...]:
    if item == "-":
        return range(1, MAX_PORT + 1)
    if item[0].isalpha():  # a service name or pattern, as nmap's -p ssh,http*
        from portkit.registry import ports_matching

        return ports_matching(item, proto)
    first, sep, last = item.partition("-")
    if not sep:
        port = parse_port(first)
        return range(port, port + 1)
    start = parse_port(first, what="range start") if first else 1
    end = parse_port(last, what="range end") if last else MAX_PORT
    if end < start:
        raise ParseError(
            f"port range {item!r} is reversed", text=text, part=item, accepted="START <= END"
        )
    return range(start, end + 1)


def parse_port_spec(text: str, *, default: str = "tcp") -> PortPlan:
    """Parse nmap's ``-p`` syntax.

    A ``T:`` or ``U:`` prefix sets the protocol for its item and the items after
    it; items without one use ``default``. ``-`` alone is 1-65535, ``-100`` is
    1-100 and ``60000-`` is 60000-65535 (nmap's forms).

    Raises:
        ParseError: naming the bad item.
    """
    raw = text.strip()
    if not raw:
        raise ParseError("empty port list", text=text, accepted=ACCEPTED)
    ports: dict[str, dict[int, None]] = {"tcp": {}, "udp": {}}
    proto = default
    for part in raw.split(","):
        item = part.strip()
        if len(item) >= 2 and item[1] == ":":
            prefix = _PREFIXES.get(item[0].upper())
            if prefix is None:
                raise ParseError(
                    f"unknown protocol prefix {item[:2]!r} in {text!r}",
                    text=text,
                    part=item,
                    accepted="T: (tcp) or U: (udp)",
                )
            proto, item = prefix, item[2:].strip()
        if not item:
            raise ParseError(f"empty item in port list {text!r}", text=text, accepted=ACCEPTED)
        try:
            span = _item(item, text, proto)
        except ParseError as exc:
            raise ParseError(
                f"bad port {item!r} in {text!r}: {exc.message}",
                text=text,
                part=item,
                accepted=ACCEPTED,
            ) from None
        ports[proto].update(dict.fromkeys(span))
    return PortPlan(tuple(ports["tcp"]), tuple(ports["udp"]))

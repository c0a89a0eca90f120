"""Which ports to probe: nmap-style port specs, ``--top N`` and service names.

:func:`parse_port_spec` is pure. :func:`top_ports` and :func:`service_name` read
portkit's own registry (the guide's table, the curated DevOps defaults, Prometheus
allocations, IANA): no nmap-services data is shipped or read.

    >>> parse_port_spec("22,80,8000-8002").tcp
    (22, 80, 8000, 8001, 8002)
    >>> plan = parse_port_spec("U:53,161,T:22")
    >>> plan.tcp, plan.udp
    ((22,), (53, 161))
    >>> len(parse_port_spec("-").tcp)
    65535
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from portkit.errors import ParseError
from portkit.model import MAX_PORT, _Record, parse_port

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable

__all__ = ["PortPlan", "parse_port_spec", "service_name", "service_names", "top_ports"]

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


def _item(item: str, text: str) -> range:
    if item == "-":
        return range(1, MAX_PORT + 1)
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
            span = _item(item, text)
        except ParseError as exc:
            raise ParseError(
                f"bad port {item!r} in {text!r}: {exc.message}",
                text=text,
                part=item,
                accepted=ACCEPTED,
            ) from None
        ports[proto].update(dict.fromkeys(span))
    return PortPlan(tuple(ports["tcp"]), tuple(ports["udp"]))


# --- the registry's view: top ports and names -----------------------------------------

_ORDER = ("guide", "devops", "iana-well-known", "prometheus", "iana")
_top: dict[str, tuple[int, ...]] = {}
_names: dict[str, dict[int, str]] = {}


def _is_service(entry: object) -> bool:
    return getattr(entry, "status", "") in ("assigned", "everyday") and not getattr(
        entry, "is_range", False
    )


def top_ports(n: int, protocol: str = "tcp") -> tuple[int, ...]:
    """The ``n`` most common ports of ``protocol`` by portkit's registry.

    The order: the guide's table of common ports, then the DevOps everyday defaults
    (Kubernetes, databases, queues, monitoring), then IANA's assigned well-known
    ports, then Prometheus exporter allocations, then the rest of IANA's assigned
    ports. There is no traffic-frequency data behind it (nmap-services has that,
    and it is not shipped): it is the ports DevOps engineers meet first.

    >>> top_ports(3)
    (20, 21, 22)
    """
    if n < 1:
        raise ParseError(f"--top needs at least 1, got {n}", text=str(n), accepted="1 or more")
    ranked = _top.get(protocol)
    if ranked is None:
        from portkit.registry import all_entries

        buckets: dict[str, list[int]] = {k: [] for k in _ORDER}
        for e in all_entries():
            if e.port is None or e.protocol != protocol or not _is_service(e) or e.port == 0:
                continue
            key = e.source
            if key == "iana" and e.port <= 1023:
                key = "iana-well-known"
            buckets[key].append(e.port)
        seen: dict[int, None] = {}
        for key in _ORDER:
            ports = buckets[key] if key in ("guide", "devops") else sorted(buckets[key])
            seen.update(dict.fromkeys(ports))
        ranked = _top[protocol] = tuple(seen)
    return ranked[:n]


def _slug(name: str) -> str:
    return "-".join(name.lower().split())[:24]


_RANK = {"guide": 0, "devops": 1, "iana": 2, "prometheus": 3}


def _best_names(entries: Iterable[Any], protocol: str) -> dict[int, str]:
    rank = _RANK
    best: dict[int, tuple[int, str]] = {}
    for e in entries:  # 15,000 rows for a full map: plain attribute reads only
        port = e.port
        if (
            port is None
            or e.protocol != protocol
            or not e.service
            or port != e.port_end
            or e.status not in ("assigned", "everyday")
        ):
            continue
        r = rank.get(e.source, 9)
        old = best.get(port)
        if old is None or r < old[0]:
            best[port] = (r, e.service)
    return {p: _slug(name) for p, (_, name) in best.items()}


def service_names(protocol: str = "tcp", ports: Collection[int] | None = None) -> dict[int, str]:
    """Port -> everyday service name for ``protocol`` (see :func:`service_name`).

    With ``ports``, only those (a few hundred at most are looked up one by one in
    the registry's index, much quicker than loading all of it).
    """
    names = _names.get(protocol)
    if names is None and ports is not None and len(ports) <= 500:
        from portkit.registry import lookup

        found: dict[int, str] = {}
        for port in ports:
            entries = lookup(f"{port}/{protocol}")[0].entries
            found.update(_best_names(entries, protocol))
        return found
    if names is None:
        from portkit.registry import all_entries

        names = _names[protocol] = _best_names(all_entries(), protocol)
    return names


def service_name(port: int, protocol: str = "tcp") -> str:
    """The everyday name of a service on ``port`` ("" when the registry has none).

    The guide's name wins, then the DevOps defaults, then IANA, then Prometheus:
    ``8080`` is ``http-alt``, ``9092`` is ``kafka`` (IANA: XmlIpcRegSvc).

    >>> service_name(22), service_name(53, "udp"), service_name(9092)
    ('ssh', 'dns', 'kafka')
    """
    return service_names(protocol, [port]).get(port, "")

"""The compose ``ports`` short syntax and ``expose`` entries, parsed as Docker parses them.

Docker Compose hands each short-syntax entry to go-connections' ``nat.ParsePortSpec``
(via compose-go ``types.ParsePortConfig``); this is a faithful, pure port of that
parser, and its errors are Docker's own words, naming the bad value:

    ``[[IP:][HOST]:]CONTAINER[/PROTO]`` where HOST and CONTAINER are a port or
    ``START-END``; split on ``:`` (one part: container; two: host and container;
    three: ip, host, container; more: everything before the last two is an IPv6 IP).

    >>> spec = parse_port_spec("127.0.0.1:8001:8001")
    >>> spec.host_ip, spec.host, spec.container, spec.protocol
    ('127.0.0.1', PortRange(start=8001, end=8001), PortRange(start=8001, end=8001), 'tcp')
    >>> str(parse_port_spec("[::1]:6001:6001/udp"))
    '[::1]:6001:6001/udp'
    >>> parse_port_spec("8000-9000:80").pool
    True
    >>> try:
    ...     parse_port_spec("80:70000")
    ... except ParseError as exc:
    ...     print(exc.message)
    invalid containerPort: 70000

One deliberate difference: go-connections reads ``"1-2-3"`` as the range 1-2 (it
ignores everything after the second ``-``); here it is an invalid port, because a
lint that silently drops part of what was written would hide a typo.
"""

from __future__ import annotations

from dataclasses import dataclass

from portkit.errors import ParseError
from portkit.model import PortRange

__all__ = [
    "PROTOCOLS",
    "PortSpec",
    "parse_expose",
    "parse_ip",
    "parse_port_range",
    "parse_port_spec",
]

#: go-connections ``validateProto``: the protocols Docker publishes.
PROTOCOLS = ("tcp", "udp", "sctp")
SHORT_SYNTAX = "[[IP:][HOST]:]CONTAINER[/PROTO], e.g. 127.0.0.1:8080:80/tcp"


@dataclass(frozen=True, slots=True)
class PortSpec:
    """One short-syntax entry.

    ``host_ip`` is None when no IP was given (Docker binds every interface);
    ``host`` is None when the engine picks the host port. When ``host`` is a range
    and ``container`` a single port, the host range is a *pool*: Docker binds one
    free port out of it (:attr:`pool`).
    """

    host_ip: str | None
    host: PortRange | None
    container: PortRange
    protocol: str

    @property
    def pool(self) -> bool:
        return self.host is not None and len(self.host) > 1 and len(self.container) == 1

    def __str__(self) -> str:
        out = str(self.container) + ("" if self.protocol == "tcp" else f"/{self.protocol}")
        if self.host is not None or self.host_ip is not None:
            out = f"{self.host if self.host is not None else ''}:{out}"
        if self.host_ip is not None:
            ip = f"[{self.host_ip}]" if ":" in self.host_ip else self.host_ip
            out = f"{ip}:{out}"
        return out


def _parse_uint16(text: str) -> int | None:
    """Go's ``strconv.ParseUint(text, 10, 16)``: ASCII digits only, at most 65535."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= 65535 else None


def parse_port_range(text: str) -> PortRange | None:
    """go-connections ``ParsePortRange``: ``"80"`` or ``"8000-9000"``; None if invalid.

    >>> parse_port_range("8000-9000"), parse_port_range("9000-8000")
    (PortRange(start=8000, end=9000), None)
    """
    if "-" not in text:
        value = _parse_uint16(text)
        return None if value is None else PortRange(value)
    parts = text.split("-")
    if len(parts) != 2:
        return None
    start, end = _parse_uint16(parts[0]), _parse_uint16(parts[1])
    if start is None or end is None or end < start:
        return None
    return PortRange(start, end)


def parse_ip(text: str) -> str | None:
    """Go's ``net.ParseIP``: canonical text of an IPv4/IPv6 literal, None if it is not one.

    Unlike Python's ``ipaddress``, Go refuses IPv6 zones (``fe80::1%eth0``).

    >>> parse_ip("::FFFF:10.0.0.1"), parse_ip("localhost")
    ('::ffff:a00:1', None)
    """
    import ipaddress

    if "%" in text or "/" in text:
        return None
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        return None


def _split_parts(raw: str) -> tuple[str, str, str]:
    parts = raw.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    return ":".join(parts[:-2]), parts[-2], parts[-1]


def _split_proto(raw: str) -> tuple[str, str]:
    """go-connections ``SplitProtoPort``: ``"80/udp"`` -> ("udp", "80"); tcp by default."""
    port, _, proto = raw.partition("/")
    if not port:
        return "", ""
    return proto or "tcp", port


def parse_port_spec(text: str) -> PortSpec:
    """Parse one compose ``ports`` short-syntax entry.

    Args:
        text: e.g. ``"3000"``, ``"8000:8000"``, ``"9090-9091:8080-8081"``,
            ``"8000-9000:80"``, ``"127.0.0.1:5000-5010:5000-5010"``,
            ``"[::1]:6001:6001"``, ``"6060:6060/udp"``.

    Returns:
        The entry, with the IP in canonical form.

    Raises:
        ParseError: worded as Docker words it (``invalid containerPort: 70000``,
            ``invalid hostPort: 99999``, ``invalid proto: http``,
            ``invalid IP address: 1.2.3``, ``no port specified: 80:<empty>``,
            ``invalid ranges specified for container and host Ports: 80-81 and 90-92``).
    """
    ip, host_port, container_port = _split_parts(text)
    proto, container_port = _split_proto(container_port)
    if not container_port:
        raise ParseError(f"no port specified: {text}<empty>", text=text, accepted=SHORT_SYNTAX)
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise ParseError(
            f"invalid proto: {proto}", text=text, part=proto, accepted="tcp, udp or sctp"
        )
    host_ip: str | None = None
    if ip:
        bare = ip
        if ip.startswith("["):
            # net.SplitHostPort(ip + ":") accepts exactly "[addr]".
            if not ip.endswith("]") or ip.count("[") != 1 or ip.count("]") != 1:
                raise ParseError(
                    f"invalid IP address {ip}: address {ip}:: missing ']' in address",
                    text=text,
                    part=ip,
                    accepted="an IPv4 address or an IPv6 address, optionally in [ ]",
                )
            bare = ip[1:-1]
        host_ip = parse_ip(bare)
        if host_ip is None:
            raise ParseError(
                f"invalid IP address: {bare}",
                text=text,
                part=bare,
                accepted="an IPv4 address or an IPv6 address, optionally in [ ]",
            )
    container = parse_port_range(container_port)
    if container is None:
        raise ParseError(
            f"invalid containerPort: {container_port}",
            text=text,
            part=container_port,
            accepted="a port 0-65535 or START-END",
        )
    host: PortRange | None = None
    if host_port:
        host = parse_port_range(host_port)
        if host is None:
            raise ParseError(
                f"invalid hostPort: {host_port}",
                text=text,
                part=host_port,
                accepted="a port 0-65535 or START-END",
            )
        # A host range with a single container port is a pool to allocate one from.
        if len(host) != len(container) and len(container) != 1:
            raise ParseError(
                "invalid ranges specified for container and host Ports: "
                f"{container_port} and {host_port}",
                text=text,
                accepted="ranges of the same length, e.g. 9090-9091:8080-8081",
            )
    return PortSpec(host_ip, host, container, proto)


def parse_expose(text: str) -> tuple[PortRange, str]:
    """Parse an ``expose`` entry: ``"3000"``, ``"8000-8010"``, ``"53/udp"``.

    >>> parse_expose("53/udp")
    (PortRange(start=53, end=53), 'udp')
    """
    proto, port = _split_proto(text)
    if not port:
        raise ParseError(f"no port specified: {text}<empty>", text=text, accepted="PORT[/PROTO]")
    proto = proto.lower()
    if proto not in PROTOCOLS:
        raise ParseError(
            f"invalid proto: {proto}", text=text, part=proto, accepted="tcp, udp or sctp"
        )
    ports = parse_port_range(port)
    if ports is None:
        raise ParseError(
            f"invalid containerPort: {port}",
            text=text,
            part=port,
            accepted="a port 0-65535 or START-END",
        )
    return ports, proto

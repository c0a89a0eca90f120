"""Free ports: bind-tested, not guessed, and outside the ephemeral range by default.

A port picked inside the OS's ephemeral range can be taken a moment later by an
outgoing connection, so by default candidates come from the registered range minus
the ephemeral range (as portpicker does). Each candidate is bound (and released) on
the requested address and protocol; only ports that bound are returned.
"""

from __future__ import annotations

import errno
import random
import socket

from portkit.errors import ParseError, PermissionDenied, ResourceExhausted
from portkit.model import PortRange, Protocol
from portkit.system import ephemeral_range

__all__ = ["free_port", "free_ports"]

#: Candidates start above the privileged ports.
_DEFAULT_SPAN = PortRange(1024, 65535)
_SOCK_TYPES = {Protocol.TCP: socket.SOCK_STREAM, Protocol.UDP: socket.SOCK_DGRAM}


def _candidates(port_range: PortRange | None, avoid: PortRange | None) -> list[int]:
    span = port_range or _DEFAULT_SPAN
    # Port 0 is never free to hand out: binding it means "any port", so it always binds.
    ports = [p for p in span if p and (avoid is None or p not in avoid)]
    random.shuffle(ports)
    return ports


def _hosts(host: str | None) -> list[tuple[socket.AddressFamily, tuple[str, ...]]]:
    """Where to bind, as (family, address without the port): the given address, or
    every address of both families. ``::ffff:a.b.c.d`` is tested as ``a.b.c.d`` (what
    a dual-stack socket bound there takes), a link-local IPv6 address needs its zone
    (``fe80::1%eth0``)."""
    if host is None:
        found: list[tuple[socket.AddressFamily, tuple[str, ...]]] = [(socket.AF_INET, ("0.0.0.0",))]
        if socket.has_ipv6:
            found.append((socket.AF_INET6, ("::",)))
        return found
    from portkit.model import BindScope, _ip_literal, bind_scope

    text = host.strip().strip("[]")
    address, _, zone = text.partition("%")
    literal = _ip_literal(address)
    if literal is None or (zone and ":" not in literal):
        raise ParseError(
            f"bad address {host!r}",
            text=host,
            accepted="an IPv4 or IPv6 address, e.g. 127.0.0.1, ::1 or fe80::1%eth0",
        )
    if ":" not in literal:
        return [(socket.AF_INET, (literal,))]
    packed = socket.inet_pton(socket.AF_INET6, literal)
    if packed[:12] == b"\0" * 10 + b"\xff\xff":
        return [(socket.AF_INET, (socket.inet_ntop(socket.AF_INET, packed[12:]),))]
    if bind_scope(literal) is BindScope.LINK_LOCAL:
        if not zone:
            raise ParseError(
                f"link-local address {literal} needs a zone: {literal}%INTERFACE",
                text=host,
                accepted="fe80::1%eth0",
            )
        try:
            scope = socket.if_nametoindex(zone)
        except OSError:
            raise ParseError(
                f"no interface {zone!r} on this host", text=host, accepted="fe80::1%eth0"
            ) from None
        return [(socket.AF_INET6, (literal, "0", str(scope)))]
    return [(socket.AF_INET6, (literal,))]


def _sockaddr(where: tuple[str, ...], port: int) -> tuple[str, int] | tuple[str, int, int, int]:
    if len(where) == 3:
        return (where[0], port, int(where[1]), int(where[2]))
    return (where[0], port)


def _bindable(
    port: int, sock_type: int, hosts: list[tuple[socket.AddressFamily, tuple[str, ...]]]
) -> bool:
    for family, where in hosts:
        addr = where[0]
        try:
            with socket.socket(family, sock_type) as s:
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind(_sockaddr(where, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return False
            if exc.errno in (errno.EADDRNOTAVAIL, errno.EINVAL):
                if addr in ("::", "0.0.0.0"):
                    continue  # no IPv6 on this host: IPv4 alone decides
                raise ParseError(
                    f"address {addr} is not on this host",
                    text=addr,
                    accepted="an address of this host",
                ) from exc
            raise
    return True


def free_ports(
    n: int = 1,
    *,
    protocol: Protocol | str = Protocol.TCP,
    host: str | None = None,
    port_range: PortRange | None = None,
    allow_ephemeral: bool = False,
) -> list[int]:
    """Return ``n`` distinct ports free right now for ``protocol`` on ``host``.

    Args:
        n: how many ports.
        protocol: ``tcp`` or ``udp``.
        host: the address to test; None tests all addresses, IPv4 and IPv6.
        port_range: where to look; by default 1024-65535.
        allow_ephemeral: also offer ports in the OS's ephemeral range.

    Raises:
        ResourceExhausted: fewer than ``n`` free ports in the range.
        PermissionDenied: the range holds only privileged ports and we are not root.

    >>> len(set(free_ports(3)))
    3
    """
    proto = protocol if isinstance(protocol, Protocol) else Protocol.parse(protocol)
    if proto not in _SOCK_TYPES:
        raise ParseError(
            f"cannot bind-test {proto.value} ports", text=proto.value, accepted="tcp, udp"
        )
    if n < 1:
        raise ParseError(f"cannot pick {n} ports", text=str(n), accepted="1 or more")
    if port_range is not None and port_range.end == 0:
        raise ParseError(
            "port 0 is not a port to hand out (binding it means: any port)",
            text="0",
            accepted="a range of ports 1-65535",
        )
    hosts = _hosts(host)
    avoid = None if allow_ephemeral or port_range is not None else ephemeral_range()
    found: list[int] = []
    denied = 0
    for port in _candidates(port_range, avoid):
        try:
            ok = _bindable(port, _SOCK_TYPES[proto], hosts)
        except PermissionError:
            denied += 1
            continue
        if ok:
            found.append(port)
            if len(found) == n:
                return sorted(found)
    if denied and not found:
        raise PermissionDenied(
            f"cannot bind ports in {port_range}",
            needed="root or CAP_NET_BIND_SERVICE for ports below 1024",
        )
    where = port_range or f"{_DEFAULT_SPAN} outside the ephemeral range {avoid}"
    raise ResourceExhausted(f"only {len(found)} of {n} {proto.value} ports are free in {where}")


def free_port(*, protocol: Protocol | str = Protocol.TCP, host: str | None = None) -> int:
    """One free port, for a test fixture: ``server.bind(("127.0.0.1", free_port()))``."""
    return free_ports(1, protocol=protocol, host=host)[0]

"""NAT mappings: what a DNAT (or REDIRECT) rule publishes, as data (pure).

One :class:`NatMapping` per (packets taken, destination) pair of a rule: which packets
(family, protocol, destination address, destination ports, incoming interface), where
they go, and which rule does it (origin, table, chain, handle, the chains walked to
reach it from a nat hook, its comment). Both readers produce them, by walking the nat
hooks' chains and carrying what each jump's rule matched down to the rule that
rewrites the destination: :mod:`._nft` (libnftables' JSON) and :mod:`._iptables`
(``iptables-save`` text). :class:`Match` is what they carry.
"""

from __future__ import annotations

import ipaddress

from portkit.model import _Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ANY_PORTS", "Match", "NatMapping", "dedupe"]

#: The ports of a rule that matches no destination port (a whole address is NATed).
ANY_PORTS = (1, 65535)


def _host(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


class NatMapping(_Record):
    """``protocol [daddr]:dport[-dport_end] -> to_addr[:to_port]`` for packets that match.

    ``daddr`` is None for any address the hook sees (Docker's ``-p 8080:80`` takes every
    local address); ``protocol`` is ``all`` for a rule that names none; ``iifname`` the
    incoming interface the rule requires (``!docker0``: any but docker0); ``kind`` is
    ``dnat`` or ``redirect`` (to this host itself: ``to_addr`` None); ``to_port`` is
    None when the rule keeps the packet's port, ``to_port_end`` above it when the rule
    picks a port from a range. ``hooks`` are the nat hooks that reach the rule
    (``prerouting``: packets from outside, ``output``: this host's own); ``path`` the
    chains walked from the hook. ``origin`` is ``nft``, ``iptables``, ``ip6tables`` or
    their ``-legacy`` twins; ``table`` is the table as its tool names it
    (``ip nat``, ``inet netavark``; ``nat``), ``handle`` the rule's nft handle, or its
    position in its chain for iptables; ``text`` the rule in its tool's words.
    """

    __slots__ = (
        "family",
        "protocol",
        "daddr",
        "dport",
        "dport_end",
        "iifname",
        "kind",
        "to_addr",
        "to_port",
        "to_port_end",
        "hooks",
        "path",
        "origin",
        "table",
        "chain",
        "handle",
        "comment",
        "text",
    )
    family: int
    protocol: str
    daddr: str | None
    dport: int
    dport_end: int
    iifname: str | None
    kind: str
    to_addr: str | None
    to_port: int | None
    to_port_end: int | None
    hooks: tuple[str, ...]
    path: tuple[str, ...]
    origin: str
    table: str
    chain: str
    handle: int | None
    comment: str | None
    text: str

    def __init__(
        self,
        family: int,
        protocol: str,
        daddr: str | None,
        dport: int,
        dport_end: int,
        iifname: str | None,
        kind: str,
        to_addr: str | None,
        to_port: int | None,
        *,
        to_port_end: int | None = None,
        hooks: tuple[str, ...] = (),
        path: tuple[str, ...] = (),
        origin: str = "nft",
        table: str = "",
        chain: str = "",
        handle: int | None = None,
        comment: str | None = None,
        text: str = "",
    ) -> None:
        self._init(
            family=family,
            protocol=protocol,
            daddr=daddr,
            dport=dport,
            dport_end=dport_end,
            iifname=iifname,
            kind=kind,
            to_addr=to_addr,
            to_port=to_port,
            to_port_end=to_port_end if to_port_end != to_port else None,
            hooks=hooks,
            path=path,
            origin=origin,
            table=table,
            chain=chain,
            handle=handle,
            comment=comment,
            text=text,
        )

    @property
    def where(self) -> str:
        """``nft ip nat DOCKER handle 9``, ``iptables nat DOCKER rule 2``."""
        if self.origin.startswith(("iptables", "ip6tables")):
            return f"{self.origin} {self.table} {self.chain} rule {self.handle}"
        return f"{self.origin} {self.table} {self.chain} handle {self.handle}"

    def effect(self) -> tuple[Any, ...]:
        """What the mapping does: the packets it takes and where it sends them (the
        key two copies of one rule, read twice, share)."""
        return (
            self.family,
            self.protocol,
            self.daddr,
            self.dport,
            self.dport_end,
            self.iifname,
            self.kind,
            self.to_addr,
            self.to_port,
        )

    def covers(self, port: int, protocol: str, address: str | None = None) -> bool:
        """Whether a packet to ``address:port/protocol`` is taken by this mapping
        (``address`` None: any address the rule takes).

        >>> m = NatMapping(4, "tcp", "10.0.0.0/8", 8000, 8010, None, "dnat", "10.9.0.2", 80)
        >>> m.covers(8005, "tcp", "10.1.2.3"), m.covers(8005, "tcp", "192.0.2.1")
        (True, False)
        """
        if self.protocol not in ("all", protocol) or not self.dport <= port <= self.dport_end:
            return False
        if address is None or self.daddr is None:
            return True
        try:
            return ipaddress.ip_address(address) in ipaddress.ip_network(self.daddr, strict=False)
        except ValueError:
            return False

    def target(self, port: int) -> tuple[str | None, int]:
        """Where a packet to ``port`` goes: ``(address, port)``; the address is None
        for a redirect to this host."""
        return self.to_addr, port if self.to_port is None else self.to_port

    def destination(self) -> str:
        """``172.17.0.2:80``, ``[fd00::2]:80``, the address alone when the port
        stays, ``:8080`` for a redirect to this host."""
        host = _host(self.to_addr) if self.to_addr else ""
        if self.to_port is None:
            return host or ":(same port)"
        ports = f"{self.to_port}-{self.to_port_end}" if self.to_port_end else str(self.to_port)
        return f"{host}:{ports}"

    def published(self) -> str:
        """``tcp 0.0.0.0:8080``, ``udp [::1]:5353-5354``: the side the rule takes."""
        addr = self.daddr or ("::" if self.family == 6 else "0.0.0.0")
        ports = (
            str(self.dport) if self.dport == self.dport_end else f"{self.dport}-{self.dport_end}"
        )
        return f"{self.protocol} {_host(addr)}:{ports}"

    def as_dict(self) -> dict[str, Any]:
        """Every field by name, with ``where`` (JSON-ready)."""
        out = {name: getattr(self, name) for name in self.__slots__}
        out["hooks"] = list(self.hooks)
        out["path"] = list(self.path)
        out["where"] = self.where
        return out


def _network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def _within(inner: str, outer: str) -> bool:
    a, b = _network(inner), _network(outer)
    return a is not None and b is not None and a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]


class Match:
    """What the rules on a walk's way have required of a packet so far.

    ``ports`` and ``daddrs`` are None for "any"; a further requirement narrows them
    (ranges intersected, addresses kept where both allow them); ``not_daddrs`` are the
    addresses and prefixes a rule on the way excluded (Docker's ``! -d 127.0.0.0/8``).
    ``empty`` turns True when no packet can meet them all (the walk stops there).
    """

    __slots__ = ("protocol", "ports", "daddrs", "not_daddrs", "iifname", "empty")

    def __init__(self) -> None:
        self.protocol: str | None = None
        self.ports: tuple[tuple[int, int], ...] | None = None
        self.daddrs: tuple[str, ...] | None = None
        self.not_daddrs: tuple[str, ...] = ()
        self.iifname: str | None = None
        self.empty = False

    def copy(self) -> Match:
        new = Match()
        new.protocol, new.ports, new.daddrs = self.protocol, self.ports, self.daddrs
        new.not_daddrs, new.iifname, new.empty = self.not_daddrs, self.iifname, self.empty
        return new

    def without_daddrs(self, addrs: list[str] | tuple[str, ...]) -> Match:
        new = self.copy()
        new.not_daddrs += tuple(a for a in addrs if _network(a) is not None)
        if new.daddrs is not None:
            new.daddrs = tuple(
                a for a in new.daddrs if not any(_within(a, b) for b in new.not_daddrs)
            )
            new.empty = new.empty or not new.daddrs
        return new

    def with_protocol(self, protocol: str) -> Match:
        new = self.copy()
        if new.protocol not in (None, protocol):
            new.empty = True
        new.protocol = protocol
        return new

    def with_ports(self, ranges: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> Match:
        new = self.copy()
        ranges = tuple((lo, hi) for lo, hi in ranges if 0 <= lo <= hi <= 65535)
        if new.ports is None:
            new.ports = ranges
        else:
            new.ports = tuple(
                (max(lo, a), min(hi, b))
                for lo, hi in new.ports
                for a, b in ranges
                if max(lo, a) <= min(hi, b)
            )
        new.empty = new.empty or not new.ports
        return new

    def with_daddrs(self, addrs: list[str] | tuple[str, ...]) -> Match:
        new = self.copy()
        addrs = tuple(a for a in addrs if _network(a) is not None)
        if new.daddrs is None:
            kept = list(addrs)
        else:
            kept = [a for a in addrs if any(_within(a, b) for b in new.daddrs)]
            kept += [b for b in new.daddrs if any(_within(b, a) for a in addrs) and b not in kept]
        new.daddrs = tuple(a for a in kept if not any(_within(a, b) for b in new.not_daddrs))
        new.empty = new.empty or not new.daddrs
        return new

    def with_iifname(self, name: str, negated: bool = False) -> Match:
        new = self.copy()
        new.iifname = ("!" if negated else "") + name
        return new


def _daddr(addr: str) -> str:
    """``10.0.0.1/32`` -> ``10.0.0.1``; prefixes stay."""
    net = _network(addr)
    if net is not None and net.prefixlen == net.max_prefixlen:
        return str(net.network_address)
    return addr


def emit(
    match: Match,
    family: int | None,
    kind: str,
    to_addr: str | None,
    to_port: int | None,
    to_port_end: int | None,
    **where: Any,
) -> list[NatMapping]:
    """The mappings of one rewriting rule reached with ``match`` (one per address and
    port range it takes); ``family`` None: both, or the target's."""
    if match.empty:
        return []
    if family:
        families: tuple[int, ...] = (family,)
    elif to_addr:
        families = (6,) if ":" in to_addr else (4,)
    else:
        families = (4, 6)
    out = []
    for fam in families:
        addrs: tuple[str | None, ...] = (None,)
        if match.daddrs is not None:
            addrs = tuple(_daddr(a) for a in match.daddrs if (":" in a) == (fam == 6))
        for addr in addrs:
            for lo, hi in match.ports if match.ports is not None else (ANY_PORTS,):
                out.append(
                    NatMapping(
                        fam,
                        match.protocol or "all",
                        addr,
                        lo,
                        hi,
                        match.iifname,
                        kind,
                        to_addr,
                        to_port,
                        to_port_end=to_port_end,
                        **where,
                    )
                )
    return out


def dedupe(mappings: list[NatMapping]) -> list[NatMapping]:
    """One mapping per rule and packets taken; the hooks and paths of the copies
    reached on several walks (PREROUTING and OUTPUT) merged into it."""
    out: dict[tuple[Any, ...], NatMapping] = {}
    for m in mappings:
        key = (*m.effect(), m.origin, m.table, m.chain, m.handle)
        seen = out.get(key)
        if seen is None:
            out[key] = m
            continue
        hooks = tuple(dict.fromkeys(seen.hooks + m.hooks))
        if hooks != seen.hooks:
            values = dict(zip(NatMapping.__slots__, seen._values(), strict=True))
            values["hooks"] = hooks
            out[key] = NatMapping(**values)
    return list(out.values())

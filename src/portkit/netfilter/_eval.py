"""The verdict of a netfilter ruleset for one packet (pure: no I/O, data in, data out).

:func:`evaluate` runs one packet through every base chain of one hook, as the kernel
does: the chains of the tables that see the packet's family (``ip`` or ``ip6``, and
``inet``) in priority order; an ``accept`` ends one base chain and the packet goes on
to the next, ``drop`` and ``reject`` end it all; ``jump``/``goto``/``return`` with the
kernel's 16 levels; verdict maps; named and anonymous sets (intervals, prefixes,
concatenations such as ``ip daddr . meta l4proto . th dport``); ``nat`` chains only for
a connection's first packet, where ``dnat``/``redirect`` rewrite its destination for
the hooks after. :func:`traverse` takes the packet through the hooks it meets arriving
at a host (``prerouting``, then ``input`` or ``forward``, ``postrouting``).

It reads the :class:`~portkit.netfilter.Ruleset` that :func:`parse_ruleset` builds from
``nft -j list ruleset``; :func:`ruleset_from_save` turns ``iptables-save`` text (legacy
x_tables, or iptables-nft whose matches libnftables shows only as opaque ``xt``) into
the same model, so one evaluator reads both.

**Never a guess.** What the rules ask and the packet does not say (``meta skuid``,
``ct mark``, an ``xt`` match, ``fib daddr type`` without the host's addresses, a
reverse-path lookup (``fib saddr . iif oif missing``) without routes or where the
preferred route back leaves by another interface, an interface not given) is an
*unknown*: the evaluation is run for each way it could go
(it matches, it does not), and when they disagree the verdict is ``undecided``, naming
what could not be known. When every way gives the same verdict, that verdict stands
(an opaque ``conntrack`` match before a rule that accepts anyway does not matter). A
random choice (``numgen random mod 2`` between two endpoints, ``-m statistic``) is run
for each value too: the verdict stands when all agree, and the other destinations are
the decision's ``alternatives``.

**Bounded.** Work is counted (rules, statements, set elements read) over all the ways
explored; past :data:`MAX_WORK`, or :data:`MAX_BRANCHES` ways, or 16 jumps deep, the
answer is ``undecided`` with the reason ``too complex``.

    >>> from portkit.netfilter import Packet, evaluate, parse_ruleset
    >>> doc = {"nftables": [
    ...   {"chain": {"family": "inet", "table": "fw", "name": "input", "handle": 1,
    ...              "type": "filter", "hook": "input", "prio": 0, "policy": "drop"}},
    ...   {"rule": {"family": "inet", "table": "fw", "chain": "input", "handle": 2, "expr": [
    ...     {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
    ...                "right": {"set": [22, {"range": [8000, 8100]}]}}},
    ...     {"accept": None}]}}]}
    >>> ruleset = parse_ruleset(doc)
    >>> web = Packet(4, "tcp", "192.0.2.7", "198.51.100.1", 40000, 8080, iif="eth0")
    >>> d = evaluate(ruleset, web, "input")
    >>> d.verdict, d.rule.where, d.rule.text
    ('accept', 'nft inet fw input handle 2', 'tcp dport { 22, 8000-8100 } accept')
    >>> d = evaluate(ruleset, Packet(4, "udp", "192.0.2.7", "198.51.100.1", 40000, 53), "input")
    >>> d.verdict, d.rule.text
    ('drop', 'policy drop')
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right

from portkit.errors import ParseError
from portkit.model import _Record
from portkit.netfilter._nft import Chain, Rule, Ruleset, _expr_text, _int, _verdict, render_rule

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = [
    "HOOKS",
    "Decision",
    "Packet",
    "RuleRef",
    "evaluate",
    "traverse",
]

#: The hooks a packet can meet, in the order the kernel's IPv4/IPv6 paths name them.
HOOKS = ("prerouting", "input", "forward", "output", "postrouting")
#: Verdicts a decision can carry.
VERDICTS = ("accept", "drop", "reject", "undecided")
#: Jumps deep (the kernel's NFT_JUMP_STACK_SIZE).
MAX_DEPTH = 16
#: Steps (rules, statements, set elements) one evaluation may take over all its ways.
MAX_WORK = 400_000
#: Ways (unknowns and random choices run each way) one evaluation may explore.
MAX_BRANCHES = 256
#: Choices (unknowns met) along one way.
MAX_CHOICES = 24
#: How far expressions nest (``&`` of ``|`` of ...).
MAX_NESTING = 24
#: A random choice or an unknown verdict-map key with more outcomes than this is not
#: run one by one.
MAX_FANOUT = 64
#: The handle of a chain read from iptables-save (nft's handles are positive).
SAVE_HANDLE = -1
#: Entries kept in a decision's path.
MAX_PATH = 200

_FAMILY_TABLES = {4: ("ip", "inet"), 6: ("ip6", "inet")}
_TABLE_FAMILY = {"ip": 4, "ip6": 6}
#: The priority the kernel's NAT hook runs at: every ``nat`` chain of a hook is called
#: from it, in their own priority order (nf_nat_proto.c: NF_IP_PRI_NAT_DST/SRC).
_NAT_SLOT = {"prerouting": -100, "output": -100, "input": 100, "postrouting": 100}
#: Whether a hook sees an incoming and an outgoing device; where it does not, the
#: kernel reads an empty name (nft_meta_store_ifname) and index 0.
_DEVICES = {
    "prerouting": (True, False),
    "input": (True, False),
    "forward": (True, True),
    "output": (False, True),
    "postrouting": (True, True),
}
#: Below this priority a chain runs before conntrack (``notrack`` there works).
_CONNTRACK_PRIO = -200
_CT_STATES = ("new", "established", "related", "invalid", "untracked")
_PROTOCOLS = {"tcp": 6, "udp": 17}
_PROTOCOL_NUMBERS = {
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmpv6": 58,
    "ipv6-icmp": 58,
    "sctp": 132,
    "udplite": 136,
    "dccp": 33,
    "comp": 108,
    "ipip": 4,
    "ipv6": 41,
}
#: Transport headers a payload expression can name: a packet of another protocol
#: fails the rule's implicit ``meta l4proto`` dependency.
_TRANSPORTS = ("tcp", "udp", "th", "sctp", "dccp", "udplite", "icmp", "icmpv6", "ah", "esp")
_NAMED = {
    "nfproto": {"ipv4": 2, "ipv6": 10, "inet": 1, "arp": 3, "bridge": 7, "netdev": 5},
    "ethertype": {"ip": 0x0800, "ip6": 0x86DD, "arp": 0x0806, "vlan": 0x8100, "8021ad": 0x88A8},
    "proto": _PROTOCOL_NUMBERS,
}
#: Opaque targets that may set the packet's mark.
_MARKING_TARGETS = frozenset({"CONNMARK"})
#: iptables-nft targets that neither decide nor change what the rules read.
_HARMLESS_TARGETS = frozenset(
    {
        "LOG",
        "NFLOG",
        "ULOG",
        "TRACE",
        "TCPMSS",
        "CHECKSUM",
        "CONNMARK",
        "AUDIT",
        "IDLETIMER",
        "LED",
        "CLASSIFY",
        "DSCP",
        "TOS",
        "TTL",
        "HL",
        "TEE",
        "SECMARK",
        "CONNSECMARK",
    }
)


# --- records ------------------------------------------------------------------------------


def _address(text: Any) -> tuple[int, int] | None:
    """``"10.0.0.5"`` -> ``(4, 167772165)``; None when it is no address."""
    if not isinstance(text, str):
        return None
    try:
        a = ipaddress.ip_address(text)
    except ValueError:
        return None
    return a.version, int(a)


def _address_text(addr: tuple[int, int]) -> str:
    return str(ipaddress.ip_address(addr[1]) if addr[0] == 4 else ipaddress.IPv6Address(addr[1]))


class Packet(_Record):
    """One packet, as the rules would see it: ``family`` 4 or 6, ``protocol`` ``tcp``
    or ``udp``, addresses and ports (``sport`` None: the client's port is not known),
    ``iif``/``oif`` the interfaces it comes in and goes out by (None: not known),
    ``ct_state`` its connection's state (``new`` for the first packet), ``mark`` its
    mark (0 for a packet from another host; None: not known).

    >>> Packet(4, "tcp", "10.0.0.1", "10.0.0.2", 40000, 5432, iif="eth0")
    Packet(family=4, protocol='tcp', saddr='10.0.0.1', daddr='10.0.0.2', sport=40000, \
dport=5432, iif='eth0', oif=None, ct_state='new', mark=0)

    Raises:
        ParseError: an address of another family, a port out of range, a protocol or
            state it does not know.
    """

    __slots__ = (
        "family",
        "protocol",
        "saddr",
        "daddr",
        "sport",
        "dport",
        "iif",
        "oif",
        "ct_state",
        "mark",
    )
    family: int
    protocol: str
    saddr: str
    daddr: str
    sport: int | None
    dport: int
    iif: str | None
    oif: str | None
    ct_state: str
    mark: int | None

    def __init__(
        self,
        family: int,
        protocol: str,
        saddr: str,
        daddr: str,
        sport: int | None,
        dport: int,
        iif: str | None = None,
        oif: str | None = None,
        ct_state: str = "new",
        mark: int | None = 0,
    ) -> None:
        if family not in _FAMILY_TABLES:
            raise ParseError(f"family {family!r}", text=str(family), accepted="4 or 6")
        if protocol not in _PROTOCOLS:
            raise ParseError(f"protocol {protocol!r}", text=str(protocol), accepted="tcp, udp")
        for addr in (saddr, daddr):
            parsed = _address(addr)
            if parsed is None or parsed[0] != family:
                raise ParseError(
                    f"{addr!r} is no IPv{family} address", text=str(addr), accepted="an address"
                )
        for port in (sport, dport):
            if port is not None and (not isinstance(port, int) or not 0 <= port <= 65535):
                raise ParseError(f"port {port!r}", text=str(port), accepted="0-65535")
        if ct_state not in _CT_STATES:
            raise ParseError(
                f"conntrack state {ct_state!r}", text=str(ct_state), accepted=", ".join(_CT_STATES)
            )
        if mark is not None and (not isinstance(mark, int) or not 0 <= mark < 2**32):
            raise ParseError(f"mark {mark!r}", text=str(mark), accepted="0 to 2**32-1")
        self._init(
            family=family,
            protocol=protocol,
            saddr=saddr,
            daddr=daddr,
            sport=sport,
            dport=dport,
            iif=iif,
            oif=oif,
            ct_state=ct_state,
            mark=mark,
        )


class RuleRef(_Record):
    """Where a decision was made: a rule (``handle``: its nft handle, or its position
    in the chain for iptables) or a chain's policy (``handle`` None, ``text``
    ``policy drop``). ``origin`` is ``nft``, or ``iptables``/``ip6tables`` for rules
    read from ``iptables-save``; ``text`` the rule in its tool's words."""

    __slots__ = ("origin", "family", "table", "chain", "handle", "text")
    origin: str
    family: str
    table: str
    chain: str
    handle: int | None
    text: str

    def __init__(
        self, origin: str, family: str, table: str, chain: str, handle: int | None, text: str
    ) -> None:
        self._init(origin=origin, family=family, table=table, chain=chain, handle=handle, text=text)

    @property
    def where(self) -> str:
        """``nft inet fw input handle 4``, ``iptables filter INPUT rule 2``,
        ``nft ip filter FORWARD policy``."""
        if self.origin == "nft":
            head = f"nft {self.family} {self.table} {self.chain}"
            return f"{head} handle {self.handle}" if self.handle is not None else f"{head} policy"
        head = f"{self.origin} {self.table} {self.chain}"
        return f"{head} rule {self.handle}" if self.handle is not None else f"{head} policy"


class Decision(_Record):
    """The verdict of one hook for one packet.

    ``verdict`` is ``accept``, ``drop``, ``reject`` or ``undecided``; ``rule`` the rule
    or policy that decided (for an accept, the last base chain's), None when no chain
    of the hook sees the packet; ``path`` the chains and the rules that acted on the
    way, in order; ``reason`` what could not be known (undecided only: ``meta skuid``,
    ``xt match addrtype``, ``too complex``); ``dnat`` the ``(address, port)`` a nat rule
    of this hook rewrote the destination to (address None: ``redirect``, to this host);
    ``alternatives`` the other decisions a random choice leads to (kube-proxy's
    endpoints), each with its own ``dnat``.
    """

    __slots__ = ("hook", "verdict", "rule", "path", "reason", "dnat", "alternatives")
    hook: str
    verdict: str
    rule: RuleRef | None
    path: tuple[str, ...]
    reason: str | None
    dnat: tuple[str | None, int] | None
    alternatives: tuple[Decision, ...]

    def __init__(
        self,
        hook: str,
        verdict: str,
        rule: RuleRef | None = None,
        path: tuple[str, ...] = (),
        reason: str | None = None,
        dnat: tuple[str | None, int] | None = None,
        alternatives: tuple[Decision, ...] = (),
    ) -> None:
        self._init(
            hook=hook,
            verdict=verdict,
            rule=rule,
            path=path,
            reason=reason,
            dnat=dnat,
            alternatives=alternatives,
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the rule with its ``where``, lists for tuples."""
        rule = None
        if self.rule is not None:
            rule = {**self.rule.as_dict(), "where": self.rule.where}
        return {
            "hook": self.hook,
            "verdict": self.verdict,
            "rule": rule,
            "path": list(self.path),
            "reason": self.reason,
            "dnat": list(self.dnat) if self.dnat is not None else None,
            "alternatives": [a.as_dict() for a in self.alternatives],
        }


# --- control flow inside one way ----------------------------------------------------------


class _Undecided(Exception):
    """This way cannot go on: a statement portkit cannot run (``queue``, an ``xt``
    target), or a ruleset that breaks the kernel's own limits."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _TooComplex(Exception):
    """The work or branch budget is spent."""


class _Unknown:
    """A value the packet does not say; ``candidates`` the values it may take when
    they are few (``fib daddr type`` of an address that is not local)."""

    __slots__ = ("label", "candidates")

    def __init__(self, label: str, candidates: tuple[Any, ...] | None = None) -> None:
        self.label = label
        self.candidates = candidates


_ABSENT = object()  # the expression's header is not in this packet: the rule fails
_NO_MATCH = object()  # a match failed: the rule is passed over


class _Interval:
    __slots__ = ("lo", "hi")

    def __init__(self, lo: Any, hi: Any) -> None:
        self.lo, self.hi = lo, hi


class _Pattern:
    """An interface name ending in ``*`` (nft) or ``+`` (iptables): a prefix."""

    __slots__ = ("prefix",)

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix


class _Bad:
    """A value of the rules that does not read as its type."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _hit(matcher: Any, value: Any) -> bool:
    """Whether one canonical ``value`` meets one element of a set (or the right side
    of a match)."""
    if isinstance(matcher, _Interval):
        try:
            return bool(matcher.lo <= value <= matcher.hi)
        except TypeError:
            return False
    if isinstance(matcher, _Pattern):
        return isinstance(value, str) and value.startswith(matcher.prefix)
    if isinstance(matcher, tuple) and isinstance(value, tuple) and len(matcher) == len(value):
        return all(_hit(m, v) for m, v in zip(matcher, value, strict=True))
    return bool(matcher == value)


# --- the rules' values, by type -------------------------------------------------------------


def _coerce_addr(x: Any) -> Any:
    if isinstance(x, str):
        return _address(x) or _Bad(x)
    if isinstance(x, dict) and isinstance(x.get("prefix"), dict):
        p = x["prefix"]
        try:
            net = ipaddress.ip_network(f"{p.get('addr')}/{p.get('len')}", strict=False)
        except ValueError:
            return _Bad(str(p))
        return _Interval(
            (net.version, int(net.network_address)), (net.version, int(net.broadcast_address))
        )
    return _coerce_range(x, _coerce_addr)


def _coerce_range(x: Any, each: Callable[[Any], Any]) -> Any:
    if isinstance(x, dict) and isinstance(x.get("range"), list) and len(x["range"]) == 2:
        lo, hi = each(x["range"][0]), each(x["range"][1])
        if isinstance(lo, (_Bad, _Interval, _Pattern)) or isinstance(hi, (_Bad, _Interval)):
            return _Bad(str(x))
        return _Interval(lo, hi)
    return _Bad(str(x)[:80])


def _coerce_int(x: Any, names: dict[str, int] | None = None) -> Any:
    if isinstance(x, int) and not isinstance(x, bool):
        return x
    if isinstance(x, str):
        if names is not None and x.lower() in names:
            return names[x.lower()]
        try:
            return int(x, 0)
        except ValueError:
            # a named value of another kind (``icmp`` for l4proto) is none of ours
            return ("other", x) if names is not None else _Bad(x)
    return _coerce_range(x, lambda v: _coerce_int(v, names))


def _coerce_ifname(x: Any) -> Any:
    if not isinstance(x, str):
        return _Bad(str(x)[:80])
    if x.endswith("*") and not x.endswith("\\*"):
        return _Pattern(x[:-1])
    return x.replace("\\*", "*")


def _coerce_text(x: Any) -> Any:
    return x.lower() if isinstance(x, str) else _Bad(str(x)[:80])


#: A value kind -> how a value of the rules reads as it (canonical, interval, pattern).
_COERCE: dict[str, Callable[[Any], Any]] = {
    "addr": _coerce_addr,
    "int": _coerce_int,
    "proto": lambda x: _coerce_int(x, _NAMED["proto"]),
    "nfproto": lambda x: _coerce_int(x, _NAMED["nfproto"]),
    "ethertype": lambda x: _coerce_int(x, _NAMED["ethertype"]),
    "ifname": _coerce_ifname,
    "ifexact": lambda x: x if isinstance(x, str) else _Bad(str(x)[:80]),
    "text": _coerce_text,
    "bool": lambda x: x if isinstance(x, bool) else _Bad(str(x)[:80]),
}


def _coerce(kind: Any, x: Any) -> Any:
    """A value of the rules (or a set element) read as ``kind`` (a tuple of kinds for
    a concatenation)."""
    if isinstance(x, dict) and isinstance(x.get("elem"), dict):
        x = x["elem"].get("val")
    if isinstance(kind, tuple):
        parts = x.get("concat") if isinstance(x, dict) else None
        if not isinstance(parts, list) or len(parts) != len(kind):
            return _Bad(str(x)[:80])
        out = tuple(_coerce(k, p) for k, p in zip(kind, parts, strict=True))
        bad = next((p for p in out if isinstance(p, _Bad)), None)
        return bad if bad is not None else out
    return _COERCE.get(kind, _coerce_text)(x)


class _Index:
    """A set's or map's elements, read once per evaluation: exact values hashed,
    intervals sorted (with the highest end so far, for a bisect), the rest scanned."""

    __slots__ = ("exact", "los", "spans", "reach", "scan", "bad")

    def __init__(self) -> None:
        self.exact: dict[Any, Any] = {}
        self.los: list[Any] = []
        self.spans: list[tuple[Any, Any, Any]] = []
        self.reach: list[Any] = []
        self.scan: list[tuple[Any, Any]] = []
        self.bad: str | None = None

    def find(self, run: _Run, value: Any) -> tuple[bool, Any]:
        try:
            if value in self.exact:
                return True, self.exact[value]
        except TypeError:
            pass
        if self.spans:
            try:
                i = bisect_right(self.los, value) - 1
            except TypeError:
                i = -1
            if i >= 0 and _hit(_Interval(self.los[0], self.reach[i]), value):
                for lo, hi, data in reversed(self.spans[: i + 1]):
                    run.tick()
                    if _hit(_Interval(lo, hi), value):
                        return True, data
        for matcher, data in self.scan:
            run.tick()
            if _hit(matcher, value):
                return True, data
        return False, None


def _build_index(run: _Run, elements: Any, kind: Any, is_map: bool) -> _Index:
    index = _Index()
    spans: list[tuple[Any, Any, Any]] = []
    for elem in elements:
        run.tick()
        data: Any = True
        if is_map:
            if not (isinstance(elem, list) and len(elem) == 2):
                index.bad = str(elem)[:80]
                continue
            elem, data = elem
        m = _coerce(kind, elem)
        if isinstance(m, _Bad):
            index.bad = index.bad or m.text
        elif isinstance(m, _Interval) and not isinstance(kind, tuple):
            spans.append((m.lo, m.hi, data))
        elif isinstance(m, (_Pattern, _Interval)) or (
            isinstance(m, tuple) and any(isinstance(p, (_Interval, _Pattern)) for p in m)
        ):
            index.scan.append((m, data))
        else:
            try:
                index.exact.setdefault(m, data)
            except TypeError:
                index.bad = index.bad or str(elem)[:80]
    try:
        spans.sort(key=lambda s: s[0])
    except TypeError:
        index.scan.extend((_Interval(lo, hi), d) for lo, hi, d in spans)
        spans = []
    index.spans = spans
    index.los = [s[0] for s in spans]
    top: Any = None
    for _, hi, _ in spans:
        top = hi if top is None or _greater(hi, top) else top
        index.reach.append(top)
    return index


def _greater(a: Any, b: Any) -> bool:
    try:
        return bool(a > b)
    except TypeError:
        return False


# --- the state of the packet along one way --------------------------------------------------


class _State:
    """The packet as the rules see it now (a DNAT or a mark change alters it)."""

    __slots__ = (
        "family",
        "proto",
        "saddr",
        "daddr",
        "sport",
        "dport",
        "iif",
        "oif",
        "ct_state",
        "ct_dnat",
        "mark",
        "hook",
        "nat_done",
    )

    def __init__(self, packet: Packet) -> None:
        self.family = packet.family
        self.proto = _PROTOCOLS[packet.protocol]
        self.saddr: tuple[int, int] | None = _address(packet.saddr)
        self.daddr: tuple[int, int] | None = _address(packet.daddr)
        self.sport = packet.sport
        self.dport = packet.dport
        self.iif = packet.iif
        self.oif = packet.oif
        self.ct_state = packet.ct_state
        self.ct_dnat = False
        self.mark = packet.mark
        self.hook = ""
        self.nat_done = False


class _Context:
    """One call's ruleset, what the caller told about the host, the set indexes read
    so far and the work budget (shared by every way explored)."""

    def __init__(
        self,
        ruleset: Ruleset,
        local_addresses: Iterable[str],
        route: Callable[[str], str | None] | None = None,
    ) -> None:
        self.ruleset = ruleset
        self.route = route
        addrs = set()
        for text in local_addresses:
            parsed = _address(text)
            if parsed is None:
                raise ParseError(f"{text!r} is no address", text=str(text), accepted="addresses")
            addrs.add(parsed)
        self.local: frozenset[tuple[int, int]] | None = frozenset(addrs) if addrs else None
        self.indexes: dict[tuple[int, Any, bool], tuple[Any, _Index]] = {}
        self.chains: dict[tuple[int, str], list[Chain]] = {}
        self.work = 0

    def hook_chains(self, family: int, hook: str) -> list[Chain]:
        """The base chains of a hook that see a family's packets, in the order the
        kernel calls them (nat chains all at the NAT hook's priority)."""
        key = (family, hook)
        if key not in self.chains:
            families = _FAMILY_TABLES[family]
            found = [
                c for c in self.ruleset.chains.values() if c.hook == hook and c.family in families
            ]

            def order(c: Chain) -> tuple[int, int, int, str, str, str]:
                prio = c.prio if c.prio is not None else 0
                if c.type == "nat" and hook in _NAT_SLOT:
                    return (_NAT_SLOT[hook], 1, prio, c.family, c.table, c.name)
                return (prio, 0, 0, c.family, c.table, c.name)

            self.chains[key] = sorted(found, key=order)
        return self.chains[key]

    def is_local(self, addr: tuple[int, int]) -> bool | None:
        """Whether an address is this host's (None: the caller did not say)."""
        if _loopback(addr):
            return True
        if self.local is None:
            return None
        return addr in self.local


def _loopback(addr: tuple[int, int]) -> bool:
    return ipaddress.ip_address(addr[1]).is_loopback if addr[0] == 4 else addr == (6, 1)


# --- one way through the rules --------------------------------------------------------------


class _Out:
    """What one hook decided along one way."""

    __slots__ = ("hook", "verdict", "rule", "path", "reason", "dnat")

    def __init__(
        self,
        hook: str,
        verdict: str,
        rule: RuleRef | None,
        path: tuple[str, ...],
        reason: str | None,
        dnat: tuple[str | None, int] | None,
    ) -> None:
        self.hook, self.verdict, self.rule, self.path = hook, verdict, rule, path
        self.reason, self.dnat = reason, dnat

    def key(self) -> tuple[str, str, tuple[str | None, int] | None]:
        return self.hook, self.verdict, self.dnat

    def decision(self, alternatives: tuple[Decision, ...] = ()) -> Decision:
        return Decision(
            self.hook, self.verdict, self.rule, self.path, self.reason, self.dnat, alternatives
        )


def _render(rule: Rule) -> str:
    first = rule.expr[0] if rule.expr else None
    if isinstance(first, dict) and isinstance(first.get("iptables"), dict):
        return str(first["iptables"].get("text", ""))
    try:
        return render_rule(rule)
    except RecursionError:
        return "(a rule nested too deep to show)"


def _ref(rule: Rule) -> RuleRef:
    return RuleRef(_origin(rule), rule.family, rule.table, rule.chain, rule.handle, _render(rule))


def _origin(rule: Rule) -> str:
    first = rule.expr[0] if rule.expr else None
    if isinstance(first, dict) and isinstance(first.get("iptables"), dict):
        return str(first["iptables"].get("tool", "iptables"))
    return "nft"


def _policy(chain: Chain) -> RuleRef:
    origin = "nft"
    if chain.handle == SAVE_HANDLE:
        origin = "ip6tables" if chain.family == "ip6" else "iptables"
    return RuleRef(
        origin, chain.family, chain.table, chain.name, None, f"policy {chain.policy or 'accept'}"
    )


def _label(expr: Any) -> str:
    try:
        return _expr_text(expr)
    except RecursionError:
        return "(an expression nested too deep)"


class _Run:
    """One way through the rules: the choices made at each unknown or random point
    come from ``script`` (0 past its end), and are recorded for the explorer."""

    def __init__(self, ctx: _Context, packet: Packet, script: list[int]) -> None:
        self.ctx = ctx
        self.packet = packet
        self.script = script
        self.taken: list[int] = []
        self.sizes: list[int] = []
        self.unknowns: list[str] = []
        self.randoms: list[str] = []
        self.points: list[tuple[str, bool, Rule | None]] = []
        self.memo: dict[str, int] = {}
        self.state = _State(packet)
        self.path: list[str] = []
        self.chain: Chain | None = None
        self.rule: Rule | None = None
        self.touched: set[str] = set()
        self.dnat: tuple[str | None, int] | None = None
        self.position = 0

    # the budget and the choices

    def tick(self, n: int = 1) -> None:
        self.ctx.work += n
        if self.ctx.work > MAX_WORK:
            raise _TooComplex

    def choose(self, label: str, n: int, *, random: bool = False, memo: str | None = None) -> int:
        """Which of ``n`` ways this run takes at an unknown (``random`` False) or a
        random choice; the same unknown asked twice (``memo``) answers the same."""
        if memo is not None and memo in self.memo:
            return self.memo[memo]
        if n > MAX_FANOUT:
            raise _Undecided(f"{label} ({n} ways)")
        i = len(self.taken)
        if i >= MAX_CHOICES:
            raise _TooComplex
        value = self.script[i] if i < len(self.script) else 0
        self.taken.append(value)
        self.sizes.append(n)
        (self.randoms if random else self.unknowns).append(label)
        self.points.append((label, random, self.rule))
        if memo is not None:
            self.memo[memo] = value
        return value

    def note(self, text: str) -> None:
        if len(self.path) < MAX_PATH:
            self.path.append(text)

    # hooks and chains

    def hook(self, hook: str, *, nat: bool = True) -> _Out:
        """Every base chain of ``hook`` for the packet; ``nat`` False: the nat chains
        are passed over (a looped-back packet, whose NAT was set on the way out)."""
        st = self.state
        st.hook = hook
        st.nat_done = False
        before = len(self.path)
        rewritten = None
        last: RuleRef | None = None
        last_nat = False
        try:
            for chain in self.ctx.hook_chains(st.family, hook):
                if chain.type == "nat" and (not nat or st.nat_done or st.ct_state != "new"):
                    continue
                verdict, ref = self.base(chain)
                if self.dnat is not None:
                    rewritten, self.dnat = self.dnat, None
                if verdict != "accept":
                    return self.out(hook, verdict, ref, before, None, rewritten)
                if chain.type != "nat" or last is None or last_nat:
                    # an accept is the filter chains' to tell (a nat chain's policy says
                    # little), unless only nat chains saw the packet
                    last, last_nat = ref, chain.type == "nat"
        except _Undecided as exc:
            ref = _ref(self.rule) if self.rule is not None else None
            return self.out(hook, "undecided", ref, before, exc.reason, rewritten)
        return self.out(hook, "accept", last, before, None, rewritten)

    def out(
        self,
        hook: str,
        verdict: str,
        ref: RuleRef | None,
        before: int,
        reason: str | None,
        dnat: tuple[str | None, int] | None,
    ) -> _Out:
        return _Out(hook, verdict, ref, tuple(self.path[before:]), reason, dnat)

    def base(self, chain: Chain) -> tuple[str, RuleRef | None]:
        """One base chain: ``(verdict, the rule or policy)``."""
        self.chain = chain
        self.note(f"{chain.family} {chain.table} {chain.name}")
        stack: list[tuple[Chain, int]] = []
        current, i = chain, 0
        while True:
            self.tick()
            if i >= len(current.rules):
                if stack:
                    current, i = stack.pop()
                    continue
                return self.policy(chain)
            rule = current.rules[i]
            i += 1
            self.rule = rule
            result = self.run_rule(rule)
            if result is None:
                continue
            verb, target = result
            if verb in ("accept", "drop", "reject"):
                self.note(_render(rule))
                return verb, _ref(rule)
            self.note(_render(rule))
            if verb == "return":
                if stack:
                    current, i = stack.pop()
                    continue
                return self.policy(chain)
            nxt = self.ctx.ruleset.chains.get((current.family, current.table, str(target)))
            if nxt is None:
                raise _Undecided(f"{verb} to chain {target}, which does not exist")
            if nxt.hook is not None:
                raise _Undecided(f"{verb} to base chain {target} (the kernel refuses it)")
            if verb == "jump":
                if len(stack) >= MAX_DEPTH:
                    raise _Undecided("too complex (jumps deeper than 16)")
                stack.append((current, i))
            current, i = nxt, 0

    def policy(self, chain: Chain) -> tuple[str, RuleRef]:
        self.rule = None
        verdict = chain.policy or "accept"
        if verdict not in ("accept", "drop"):
            raise _Undecided(f"policy {verdict}")
        self.note(f"policy {verdict}")
        return verdict, _policy(chain)

    def acts(self) -> bool:
        """Whether the statements after the current one may do anything (a verdict, a
        rewrite, a mark): when not, an unknown match before them need not be run both
        ways."""
        rule = self.rule
        if rule is None:
            return True
        return any(not _inert(stmt) for stmt in rule.expr[self.position + 1 :])

    def run_rule(self, rule: Rule) -> tuple[str, Any] | None:
        """A rule's statements in order: a verdict, or None (the rule passed over or
        done without one)."""
        for self.position, stmt in enumerate(rule.expr):
            self.tick()
            if not isinstance(stmt, dict) or len(stmt) != 1:
                raise _Undecided("a statement portkit cannot read")
            key, body = next(iter(stmt.items()))
            handler = _STATEMENTS.get(key)
            if handler is None:
                raise _Undecided(f"statement {key}")
            result = handler(self, rule, body)
            if result is _NO_MATCH:
                return None
            if result is not None:
                return result  # type: ignore[no-any-return]
        return None

    # values

    def value(self, expr: Any, depth: int = 0) -> Any:
        """What the packet holds for an expression: ``(kind, value)``, ``_ABSENT``
        (its header is not in the packet) or an ``_Unknown``."""
        if depth > MAX_NESTING:
            raise _Undecided("too complex (expressions nested too deep)")
        if isinstance(expr, int) and not isinstance(expr, bool):
            return ("int", expr)
        if isinstance(expr, dict) and len(expr) == 1:
            key, body = next(iter(expr.items()))
            reader = _EXPRESSIONS.get(key)
            if reader is not None:
                return reader(self, body, depth)
        return _Unknown(_label(expr))

    def elements(self, rule: Rule, ref: Any) -> tuple[Any, str | None] | None:
        """The elements a set reference stands for, and the set's name; None for a
        plain value."""
        if isinstance(ref, str) and ref.startswith("@"):
            found = self.ctx.ruleset.sets.get((rule.family, rule.table, ref[1:]))
            if found is None:
                raise _Undecided(f"set {ref}, which does not exist")
            return found.elements, ref
        if isinstance(ref, dict) and isinstance(ref.get("set"), list):
            return ref["set"], None
        if isinstance(ref, list):
            return ref, None
        return None

    def lookup(self, elements: Any, kind: Any, value: Any, is_map: bool) -> tuple[bool, Any]:
        key = (id(elements), kind, is_map)
        cached = self.ctx.indexes.get(key)
        if cached is None or cached[0] is not elements:
            cached = (elements, _build_index(self, elements, kind, is_map))
            self.ctx.indexes[key] = cached
        index = cached[1]
        found, data = index.find(self, value)
        if not found and index.bad is not None:
            label = f"a set element portkit cannot read ({index.bad})"
            return self.choose(label, 2) == 1, None
        return found, data

    def member(self, rule: Rule, kind: Any, value: Any, right: Any) -> bool:
        """Whether ``value`` is in ``right``: a set, a list of flags, or one value."""
        ref = self.elements(rule, right)
        if ref is None:
            m = _coerce(kind, right)
            if isinstance(m, _Bad):
                raise _Undecided(f"a value portkit cannot read ({m.text})")
            return _hit(m, value)
        elements, name = ref
        found, _ = self.lookup(elements, kind, value, False)
        if not found and name is not None and name in self.touched:
            return self.choose(f"{name} (added to by the rules)", 2) == 1
        return found

    def test(self, rule: Rule, op: str, value: tuple[Any, Any], right: Any) -> bool:
        kind, v = value
        if kind == "flags":
            names = self.elements(rule, right)
            wanted = {x for x in (names[0] if names else [right]) if isinstance(x, str)}
            if op == "in":
                return bool(v & wanted)
            return bool(v == wanted) != (op == "!=")
        if op in ("==", "!=", "in"):
            return self.member(rule, kind, v, right) != (op == "!=")
        compare = _ORDER.get(op)
        if compare is None:
            raise _Undecided(f"operator {op}")
        m = _coerce(kind, right)
        if isinstance(m, (_Bad, _Interval, _Pattern)):
            raise _Undecided(f"{op} against {str(right)[:40]}")
        try:
            return compare(v, m)
        except TypeError:
            return False


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": lambda a, b: bool(a < b),
    ">": lambda a, b: bool(a > b),
    "<=": lambda a, b: bool(a <= b),
    ">=": lambda a, b: bool(a >= b),
}


# --- expressions: what the packet holds -------------------------------------------------------


def _unknown_device(name: str) -> _Unknown:
    return _Unknown(f"meta {name} (the packet's interface is not given)")


def _device(run: _Run, incoming: bool, name: str, kind: str) -> Any:
    st = run.state
    present = _DEVICES.get(st.hook, (True, True))[0 if incoming else 1]
    if not present:
        return (kind, "")
    dev = st.iif if incoming else st.oif
    return (kind, dev) if dev is not None else _unknown_device(name)


def _meta_mark(run: _Run) -> Any:
    mark = run.state.mark
    return ("int", mark) if mark is not None else _Unknown("meta mark")


def _meta_nfproto(run: _Run) -> Any:
    return ("nfproto", 2 if run.state.family == 4 else 10)


def _meta_protocol(run: _Run) -> Any:
    return ("ethertype", 0x0800 if run.state.family == 4 else 0x86DD)


#: ``meta KEY`` -> what the packet holds.
_META: dict[str, Callable[[_Run], Any]] = {
    "l4proto": lambda run: ("proto", run.state.proto),
    "nfproto": _meta_nfproto,
    "protocol": _meta_protocol,
    "iifname": lambda run: _device(run, True, "iifname", "ifname"),
    "oifname": lambda run: _device(run, False, "oifname", "ifname"),
    "i" + "if": lambda run: _device(run, True, "i" + "if", "ifexact"),
    "oif": lambda run: _device(run, False, "oif", "ifexact"),
    "mark": _meta_mark,
}


def _meta(run: _Run, body: Any, depth: int) -> Any:
    key = body.get("key") if isinstance(body, dict) else None
    reader = _META.get(str(key))
    return reader(run) if reader is not None else _Unknown(f"meta {key}")


def _ct_state(run: _Run) -> Any:
    return ("text", run.state.ct_state)


def _ct_status(run: _Run) -> Any:
    st = run.state
    if st.ct_state != "new":
        return _Unknown("ct status (of an established connection)")
    # a connection's first packet: not yet confirmed, seen-reply nor assured; dnat
    # once a nat rule rewrote its destination
    return ("flags", frozenset({"dnat"}) if st.ct_dnat else frozenset())


#: ``ct KEY`` -> what the packet's connection holds.
_CT: dict[str, Callable[[_Run], Any]] = {
    "state": _ct_state,
    "status": _ct_status,
    "direction": lambda run: ("text", "original"),
    "l3proto": _meta_nfproto,
    "protocol": lambda run: ("proto", run.state.proto),
}


def _ct(run: _Run, body: Any, depth: int) -> Any:
    if not isinstance(body, dict) or "dir" in body or "family" in body:
        return _Unknown(_label({"ct": body}))
    reader = _CT.get(str(body.get("key")))
    return reader(run) if reader is not None else _Unknown(f"ct {body.get('key')}")


def _addr_of(run: _Run, which: str, version: int) -> Any:
    st = run.state
    if st.family != version:
        return _ABSENT
    addr = st.saddr if which == "saddr" else st.daddr
    return ("addr", addr) if addr is not None else _Unknown(f"{which} (after a redirect)")


def _port_of(run: _Run, which: str, proto: str) -> Any:
    st = run.state
    if proto != "th" and _PROTOCOLS.get(proto) != st.proto:
        return _ABSENT
    port = st.sport if which == "sport" else st.dport
    return ("int", port) if port is not None else _Unknown(f"{proto} sport (the client's port)")


#: ``(protocol, field)`` of a payload expression -> what the packet holds.
_PAYLOAD: dict[tuple[str, str], Callable[[_Run], Any]] = {
    ("ip", "saddr"): lambda run: _addr_of(run, "saddr", 4),
    ("ip", "daddr"): lambda run: _addr_of(run, "daddr", 4),
    ("ip6", "saddr"): lambda run: _addr_of(run, "saddr", 6),
    ("ip6", "daddr"): lambda run: _addr_of(run, "daddr", 6),
    ("ip", "protocol"): lambda run: (
        ("proto", run.state.proto) if run.state.family == 4 else _ABSENT
    ),
    ("ip6", "nexthdr"): lambda run: (
        ("proto", run.state.proto) if run.state.family == 6 else _ABSENT
    ),
    ("ip", "version"): lambda run: ("int", 4) if run.state.family == 4 else _ABSENT,
    ("ip6", "version"): lambda run: ("int", 6) if run.state.family == 6 else _ABSENT,
}


def _port_reader(which: str, proto: str) -> Callable[[_Run], Any]:
    return lambda run: _port_of(run, which, proto)


_PAYLOAD.update(
    {(p, w): _port_reader(w, p) for p in ("tcp", "udp", "th") for w in ("sport", "dport")}
)


def _payload(run: _Run, body: Any, depth: int) -> Any:
    if not isinstance(body, dict):
        return _Unknown("payload")
    proto, field = str(body.get("protocol")), str(body.get("field"))
    reader = _PAYLOAD.get((proto, field))
    if reader is not None:
        return reader(run)
    st = run.state
    if proto in _TRANSPORTS and proto != "th" and _PROTOCOLS.get(proto) != st.proto:
        return _ABSENT
    if proto in _TABLE_FAMILY and _TABLE_FAMILY[proto] != st.family:
        return _ABSENT
    if "base" in body:
        return _Unknown("a raw payload expression")
    return _Unknown(f"{proto} {field}")


#: What ``fib daddr type`` may say of an address that is not the host's: it depends
#: on routes and broadcast addresses portkit is not told.
_NOT_LOCAL_TYPES = ("unicast", "broadcast", "unreachable", "blackhole", "prohibit", "throw")


#: The flags of a reverse-path lookup (``fib saddr . mark . iif oif missing drop``,
#: firewalld's and Fedora's rpfilter): a route back to the source, by the interface the
#: packet came in on when ``iif`` is among them.
_RPFILTER_FLAGS = frozenset(("saddr", "iif", "mark"))


def _fib(run: _Run, body: Any, depth: int) -> Any:
    if not isinstance(body, dict):
        return _Unknown("fib")
    flags = body.get("flags")
    flags = [flags] if isinstance(flags, str) else flags
    label = f"fib {' . '.join(map(str, flags)) if isinstance(flags, list) else flags} " + str(
        body.get("result")
    )
    if (
        body.get("result") == "oif"
        and isinstance(flags, list)
        and "saddr" in flags
        and set(flags) <= _RPFILTER_FLAGS
    ):
        return _fib_back(run, label, "iif" in flags)
    if body.get("result") != "type" or flags not in (["daddr"], ["saddr"]):
        return _Unknown(label)
    addr = run.state.daddr if flags == ["daddr"] else run.state.saddr
    if addr is None:
        return _Unknown(label)
    local = run.ctx.is_local(addr)
    if local is None:
        return _Unknown(f"{label} (the host's addresses are not given)")
    if local:
        return ("text", "local")
    ip = ipaddress.ip_address(addr[1]) if addr[0] == 4 else ipaddress.IPv6Address(addr[1])
    if ip.is_multicast:
        return ("text", "multicast")
    if addr == (4, 0xFFFFFFFF):
        return ("text", "broadcast")
    return _Unknown(label, tuple(("text", t) for t in _NOT_LOCAL_TYPES))


def _fib_back(run: _Run, label: str, by_iif: bool) -> Any:
    """Whether a route leads back to the packet's source (``oif`` found: True, missing:
    False), from the caller's route lookup. Only what the lookup proves is said: the
    preferred route going out by the interface the packet came in on (or by any, without
    ``iif``) is a route back; no route at all is none; a preferred route by another
    interface leaves room for a second one by ``iif`` (and the mark may choose another
    table), so that is an unknown."""
    st = run.state
    route = run.ctx.route
    if route is None or st.saddr is None:
        return _Unknown(f"{label} (routes are not given)")
    family, number = st.saddr
    text = str(ipaddress.IPv4Address(number) if family == 4 else ipaddress.IPv6Address(number))
    back = route(text)
    if back is None:
        return ("bool", False)
    if not by_iif:
        return ("bool", True)
    if st.iif is None:
        return _unknown_device("iif")
    return ("bool", True) if back == st.iif else _Unknown(label)


def _concat(run: _Run, body: Any, depth: int) -> Any:
    if not isinstance(body, list) or not body:
        return _Unknown("concat")
    kinds, values = [], []
    unknown = None
    for part in body:
        v = run.value(part, depth + 1)
        if v is _ABSENT:
            return _ABSENT
        if isinstance(v, _Unknown):
            unknown = unknown or v
            continue
        kinds.append(v[0])
        values.append(v[1])
    if unknown is not None:
        return _Unknown(unknown.label)
    return (tuple(kinds), tuple(values))


#: Bit operations on a value (``meta mark & 0x4000``).
_BITS: dict[str, Callable[[int, int], int]] = {
    "&": lambda a, b: a & b,
    "|": lambda a, b: a | b,
    "^": lambda a, b: a ^ b,
    "<<": lambda a, b: (a << min(b, 64)) & 0xFFFFFFFF,
    ">>": lambda a, b: a >> min(b, 64),
}


def _bits(op: str) -> Callable[[_Run, Any, int], Any]:
    def read(run: _Run, body: Any, depth: int) -> Any:
        if not isinstance(body, list) or len(body) != 2:
            return _Unknown(op)
        a, b = run.value(body[0], depth + 1), body[1]
        if a is _ABSENT or isinstance(a, _Unknown):
            return a
        if isinstance(b, str):
            b = _coerce_int(b)
        elif not isinstance(b, int):
            b = run.value(b, depth + 1)
            if b is _ABSENT or isinstance(b, _Unknown):
                return b
            b = b[1]
        if not isinstance(a[1], int) or not isinstance(b, int):
            return _Unknown(f"{op} on {_label(body[0])}")
        return ("int", _BITS[op](a[1], b))

    return read


def _numgen(run: _Run, body: Any, depth: int) -> Any:
    if not isinstance(body, dict) or _int(body.get("mod")) is None or body["mod"] < 1:
        return _Unknown("numgen")
    mod, offset = body["mod"], _int(body.get("offset")) or 0
    label = f"numgen {body.get('mode')} mod {mod}"
    return ("int", offset + run.choose(label, mod, random=True))


def _hash(run: _Run, body: Any, depth: int) -> Any:
    if not isinstance(body, dict) or _int(body.get("mod")) is None or body["mod"] < 1:
        return _Unknown("hash")
    mod, offset = body["mod"], _int(body.get("offset")) or 0
    # the hash's seed is the kernel's: which bucket a packet lands in is not known
    return ("int", offset + run.choose(f"hash mod {mod}", mod))


def _exthdr(run: _Run, body: Any, depth: int) -> Any:
    """An IPv6 extension header or IPv4 option: a plain packet carries none, so a
    field of one is absent and ``exthdr rt exists`` is false."""
    if isinstance(body, dict) and body.get("field") is not None:
        return _ABSENT
    return ("bool", False)


#: Expression kinds -> what the packet holds for them.
_EXPRESSIONS: dict[str, Callable[[_Run, Any, int], Any]] = {
    "payload": _payload,
    "meta": _meta,
    "ct": _ct,
    "fib": _fib,
    "concat": _concat,
    "numgen": _numgen,
    "jhash": _hash,
    "symhash": _hash,
    "exthdr": _exthdr,
    "ip option": _exthdr,
    **{op: _bits(op) for op in _BITS},
}


# --- statements ---------------------------------------------------------------------------------


def _match(run: _Run, rule: Rule, body: Any) -> Any:
    if not isinstance(body, dict):
        raise _Undecided("a match portkit cannot read")
    op, right = str(body.get("op", "==")), body.get("right")
    value = run.value(body.get("left"))
    if value is _ABSENT:
        return _NO_MATCH
    if isinstance(value, _Unknown):
        answers = (
            {run.test(rule, op, c, right) for c in value.candidates}
            if value.candidates is not None
            else set()
        )
        if len(answers) == 1:
            hit = answers.pop()
        elif not run.acts():
            return _NO_MATCH  # matched or not, the rest of the rule does nothing
        else:
            memo = repr((body.get("left"), op, right))
            run.tick(len(memo) // 256)
            hit = run.choose(value.label, 2, memo=memo) == 1
    else:
        hit = run.test(rule, op, value, right)
    return None if hit else _NO_MATCH


def _verdict_of(data: Any) -> tuple[str, Any] | None:
    """A verdict object (``{"accept": null}``, ``{"jump": {"target": "x"}}``, or the
    bare word) -> ``(verb, target)``; None for ``continue``."""
    if isinstance(data, str) and data in _VERBS:
        data = {data: None}
    jump = _verdict(data)
    if jump is not None:
        return jump
    if isinstance(data, dict) and len(data) == 1:
        verb = next(iter(data))
        if verb in _VERBS:
            return _VERBS[verb]
    raise _Undecided(f"verdict {str(data)[:40]}")


_VERBS: dict[str, tuple[str, Any] | None] = {
    "accept": ("accept", None),
    "drop": ("drop", None),
    "reject": ("reject", None),
    "return": ("return", None),
    "continue": None,
}


def _vmap(run: _Run, rule: Rule, body: Any) -> Any:
    if not isinstance(body, dict):
        raise _Undecided("a verdict map portkit cannot read")
    ref = run.elements(rule, body.get("data"))
    if ref is None:
        raise _Undecided("a verdict map portkit cannot read")
    elements = ref[0]
    value = run.value(body.get("key"))
    if value is _ABSENT:
        return _NO_MATCH
    if isinstance(value, _Unknown):
        n = len(elements)
        i = run.choose(value.label, n + 1)
        if i == n:
            return _NO_MATCH
        pair = elements[i]
        found, data = isinstance(pair, list) and len(pair) == 2, pair
        data = pair[1] if found else None
    else:
        found, data = run.lookup(elements, value[0], value[1], True)
    if not found:
        return _NO_MATCH
    return _verdict_of(data)


def _in_nat_chain(run: _Run, hooks: tuple[str, ...], what: str) -> None:
    chain = run.chain
    if chain is None or chain.type != "nat" or run.state.hook not in hooks:
        raise _Undecided(f"{what} outside a nat chain of {' or '.join(hooks)}")


def _other_family(run: _Run, body: dict[str, Any]) -> bool:
    """``dnat ip to`` in an inet table does nothing to an IPv6 packet (nft_nat_inet)."""
    family = body.get("family")
    return family in _TABLE_FAMILY and _TABLE_FAMILY[family] != run.state.family


def _map_lookup(run: _Run, rule: Rule, expr: dict[str, Any]) -> Any:
    """``key map { k : v }`` in a nat statement -> ``v`` (None: no element)."""
    ref = run.elements(rule, expr.get("data"))
    if ref is None:
        raise _Undecided("a map portkit cannot read")
    value = run.value(expr.get("key"))
    if value is _ABSENT:
        return None
    if isinstance(value, _Unknown):
        raise _Undecided(value.label)
    found, data = run.lookup(ref[0], value[0], value[1], True)
    return data if found else None


def _nat_address(run: _Run, rule: Rule, addr: Any) -> tuple[tuple[int, int] | None, int | None]:
    """Where a dnat sends the packet: ``(address, port from the map or None)``."""
    if isinstance(addr, dict) and isinstance(addr.get("map"), dict):
        addr = _map_lookup(run, rule, addr["map"])
        if addr is None:
            raise _NoNat
    if isinstance(addr, dict) and isinstance(addr.get("concat"), list) and len(addr["concat"]) == 2:
        target, port = _address(addr["concat"][0]), _int(addr["concat"][1])
        if target is None or port is None:
            raise _Undecided(f"dnat to {str(addr)[:40]}")
        return target, port
    if isinstance(addr, dict) and isinstance(addr.get("range"), list) and len(addr["range"]) == 2:
        lo, hi = (_address(x) for x in addr["range"])
        if lo is None or hi is None or lo[0] != hi[0] or hi[1] < lo[1]:
            raise _Undecided(f"dnat to {str(addr)[:40]}")
        pick = run.choose(f"dnat to the range {_label(addr)}", hi[1] - lo[1] + 1, random=True)
        return (lo[0], lo[1] + pick), None
    target = _address(addr)
    if target is None:
        raise _Undecided(f"dnat to {_label(addr)}")
    return target, None


class _NoNat(Exception):
    """A nat map without an element for the packet: the statement does nothing."""


def _nat_port(run: _Run, rule: Rule, port: Any) -> int:
    st = run.state
    if port is None:
        return st.dport
    if isinstance(port, dict) and isinstance(port.get("map"), dict):
        port = _map_lookup(run, rule, port["map"])
        if port is None:
            raise _NoNat
    if isinstance(port, dict) and isinstance(port.get("range"), list) and len(port["range"]) == 2:
        lo, hi = (_int(x) for x in port["range"])
        if lo is not None and hi is not None and lo <= st.dport <= hi:
            return st.dport
        raise _Undecided("dnat to a port range the packet's port is outside of")
    value = _int(port)
    if value is None or not 0 <= value <= 65535:
        raise _Undecided(f"dnat to port {str(port)[:40]}")
    return value


def _dnat(run: _Run, rule: Rule, body: Any) -> Any:
    _in_nat_chain(run, ("prerouting", "output"), "dnat")
    if not isinstance(body, dict):
        raise _Undecided("a dnat portkit cannot read")
    if _other_family(run, body):
        return None
    st = run.state
    try:
        target, mapped = (
            (st.daddr, None) if "addr" not in body else _nat_address(run, rule, body["addr"])
        )
        port = mapped if mapped is not None else _nat_port(run, rule, body.get("port"))
    except _NoNat:
        return None
    st.daddr, st.dport, st.ct_dnat, st.nat_done = target, port, True, True
    run.dnat = (None if target is None else _address_text(target), port)
    return ("accept", None)


def _redirect(run: _Run, rule: Rule, body: Any) -> Any:
    _in_nat_chain(run, ("prerouting", "output"), "redirect")
    body = body if isinstance(body, dict) else {}
    if _other_family(run, body):
        return None
    st = run.state
    try:
        port = _nat_port(run, rule, body.get("port"))
    except _NoNat:
        return None
    # to the incoming interface's first address (127.0.0.1 on output): this host
    st.daddr, st.dport, st.ct_dnat, st.nat_done = None, port, True, True
    run.dnat = (None, port)
    return ("accept", None)


def _snat(run: _Run, rule: Rule, body: Any) -> Any:
    _in_nat_chain(run, ("postrouting", "input"), "snat")
    if isinstance(body, dict) and _other_family(run, body):
        return None
    run.state.nat_done = True  # the source changes; nothing read here does
    return ("accept", None)


def _mangle(run: _Run, rule: Rule, body: Any) -> Any:
    if not isinstance(body, dict):
        raise _Undecided("a statement portkit cannot read")
    key = body.get("key")
    if key == {"meta": {"key": "mark"}}:
        value = run.value(body.get("value"))
        if isinstance(value, tuple) and isinstance(value[1], int):
            run.state.mark = value[1] & 0xFFFFFFFF
        else:
            run.state.mark = None
        return None
    if isinstance(key, dict) and "payload" in key:
        field = key["payload"].get("field") if isinstance(key["payload"], dict) else None
        if field in ("saddr", "daddr", "sport", "dport", "protocol", "nexthdr"):
            raise _Undecided(f"{_label(key)} set")
    return None  # ct mark/zone, meta priority/nftrace, ip dscp: nothing read here


def _xt(run: _Run, rule: Rule, body: Any) -> Any:
    body = body if isinstance(body, dict) else {}
    name = str(body.get("name"))
    if body.get("type") == "match":
        # iptables-nft's match: its arguments are not in the JSON
        if not run.acts():
            return _NO_MATCH
        return None if run.choose(f"xt match {name}", 2) else _NO_MATCH
    if body.get("type") == "target" and name in _HARMLESS_TARGETS:
        if name in _MARKING_TARGETS:
            run.state.mark = None  # CONNMARK --restore-mark may set it: not in the JSON
        return None
    raise _Undecided(f"xt {body.get('type')} {name}")


def _maybe(what: str) -> Callable[[_Run, Rule, Any], Any]:
    """A statement that passes or stops the packet by a state portkit cannot see
    (``limit``, ``quota``, a meter)."""

    def run_it(run: _Run, rule: Rule, body: Any) -> Any:
        return None if run.choose(what, 2) else _NO_MATCH

    return run_it


def _set_update(run: _Run, rule: Rule, body: Any) -> Any:
    if isinstance(body, dict):
        if body.get("stmt"):
            return _maybe(f"{body.get('set')} (a meter)")(run, rule, body)
        if isinstance(body.get("set"), str):
            run.touched.add(body["set"])
    return None


def _notrack(run: _Run, rule: Rule, body: Any) -> Any:
    chain = run.chain
    if chain is not None and (chain.prio or 0) < _CONNTRACK_PRIO:
        run.state.ct_state = "untracked"
    return None


def _verb(verb: str) -> Callable[[_Run, Rule, Any], Any]:
    return lambda run, rule, body: (verb, None)


def _jump(verb: str) -> Callable[[_Run, Rule, Any], Any]:
    def go(run: _Run, rule: Rule, body: Any) -> Any:
        if not isinstance(body, dict) or not isinstance(body.get("target"), str):
            raise _Undecided(f"a {verb} portkit cannot read")
        return (verb, body["target"])

    return go


def _ignore(run: _Run, rule: Rule, body: Any) -> Any:
    return None


#: Statements that neither decide nor change the packet (a match only narrows).
_INERT = frozenset(
    {"match", "counter", "log", "limit", "quota", "connlimit", "continue", "last", "iptables"}
)


def _inert(stmt: Any) -> bool:
    if not isinstance(stmt, dict) or len(stmt) != 1:
        return False
    key, body = next(iter(stmt.items()))
    if key == "xt" and isinstance(body, dict):
        name = body.get("name")
        return body.get("type") == "match" or (
            name in _HARMLESS_TARGETS and name not in _MARKING_TARGETS
        )
    return key in _INERT


#: Statement -> what it does to the packet's way. Missing: undecided (``queue``,
#: ``tproxy``, ``synproxy``, ``fwd``: the packet's fate is not the rules' to say).
_STATEMENTS: dict[str, Callable[[_Run, Rule, Any], Any]] = {
    "match": _match,
    "accept": _verb("accept"),
    "drop": _verb("drop"),
    "reject": _verb("reject"),
    "return": _verb("return"),
    "continue": _ignore,
    "jump": _jump("jump"),
    "goto": _jump("goto"),
    "vmap": _vmap,
    "dnat": _dnat,
    "redirect": _redirect,
    "snat": _snat,
    "masquerade": _snat,
    "mangle": _mangle,
    "xt": _xt,
    "notrack": _notrack,
    "limit": _maybe("limit"),
    "quota": _maybe("quota"),
    "meter": _maybe("meter"),
    "connlimit": _maybe("connlimit"),
    "set": _set_update,
    "map": _set_update,
    "counter": _ignore,
    "log": _ignore,
    "ct helper": _ignore,
    "ct timeout": _ignore,
    "ct expectation": _ignore,
    "secmark": _ignore,
    "dup": _ignore,
    "flow": _ignore,
    "last": _ignore,
    "iptables": _ignore,  # the rule's iptables-save words (ruleset_from_save)
}


# --- exploring the ways, and what they say together ------------------------------------------


def _explore(
    ctx: _Context,
    packet: Packet,
    body: Callable[[_Run], list[_Out]],
) -> list[tuple[list[_Out], _Run]] | None:
    """Every way through the unknowns and random choices: one run per way, each
    recorded with its outcomes; None when the budget is spent. Stops early once an
    unknown makes two ways disagree (the answer is undecided either way)."""
    results: list[tuple[list[_Out], _Run]] = []
    pending: list[list[int]] = [[]]
    first: list[tuple[Any, ...]] | None = None
    while pending:
        script = pending.pop()
        run = _Run(ctx, packet, script)
        try:
            outs = body(run)
        except (_TooComplex, RecursionError):
            return None
        results.append((outs, run))
        keys = [o.key() for o in outs]
        if first is None:
            first = keys
        elif keys != first and any(r.unknowns for _, r in results):
            break
        for i in range(len(script), len(run.taken)):
            pending.extend([*run.taken[:i], alt] for alt in range(1, run.sizes[i]))
        if len(results) + len(pending) > MAX_BRANCHES:
            return None
    return results


def _too_complex(hook: str) -> Decision:
    return Decision(hook, "undecided", reason="too complex")


def _deciding(pairs: list[tuple[_Out, _Run]]) -> dict[str, Rule | None]:
    """The unknowns that matter: those where two ways part and end differently (with
    the rule each sits in), in the order met."""
    found: dict[str, Rule | None] = {}
    if len(pairs) > MAX_FANOUT:
        return found
    for a_out, a in pairs:
        for b_out, b in pairs:
            if a_out.key() == b_out.key():
                continue
            i = next(
                (k for k, (x, y) in enumerate(zip(a.taken, b.taken, strict=False)) if x != y), None
            )
            if i is not None and not a.points[i][1]:
                found.setdefault(a.points[i][0], a.points[i][2])
    return found


def _merge(hook: str, pairs: list[tuple[_Out, _Run]]) -> Decision:
    """One decision from the ways' outcomes of one hook."""
    outs = [o for o, _ in pairs]
    first = outs[0]
    if all(o.key() == first.key() for o in outs):
        return first.decision()
    if any(r.unknowns for _, r in pairs):
        deciding = _deciding(pairs)
        if not deciding:
            deciding = dict.fromkeys(u for _, r in pairs for u in r.unknowns)
        # where: the rule of the first unknown that matters, else the first way that
        # could not go on; that way's own reason joins the list
        stuck = next((o for o in outs if o.verdict == "undecided"), first)
        rule = next((r for r in deciding.values() if r is not None), None)
        ref = _ref(rule) if rule is not None else stuck.rule
        reasons = dict.fromkeys([*deciding, *(o.reason for o in outs if o.reason)])
        return Decision(hook, "undecided", ref, stuck.path, ", ".join(reasons), stuck.dnat)
    distinct: dict[Any, _Out] = {}
    for o in outs:
        distinct.setdefault(o.key(), o)
    others = tuple(o.decision() for k, o in distinct.items() if k != first.key())
    if len({o.verdict for o in outs}) == 1:
        return first.decision(others)
    randoms = ", ".join(dict.fromkeys(x for _, r in pairs for x in r.randoms))
    reason = f"a random choice ({randoms}) leads to different verdicts"
    return Decision(hook, "undecided", first.rule, first.path, reason, first.dnat, others)


def evaluate(
    ruleset: Ruleset,
    packet: Packet,
    hook: str,
    *,
    local_addresses: Iterable[str] = (),
    route: Callable[[str], str | None] | None = None,
) -> Decision:
    """The verdict of one hook's base chains for one packet.

    Args:
        ruleset: from :func:`parse_ruleset` or :func:`ruleset_from_save`.
        packet: the packet, as it arrives at this hook.
        hook: ``prerouting``, ``input``, ``forward``, ``output`` or ``postrouting``.
        local_addresses: the host's addresses, for ``fib daddr type local`` (and
            iptables' ``-m addrtype``); none given: such a match is an unknown.
        route: the outgoing interface for an address (``ip route get``), for a
            reverse-path lookup (``fib saddr . iif oif missing``); none: an unknown.

    Returns:
        The :class:`Decision`; ``accept`` with ``rule`` None when no base chain of the
        hook sees the packet's family.

    Raises:
        ParseError: a hook or a local address that is not one.
    """
    _check_hook(hook)
    ctx = _Context(ruleset, local_addresses, route)
    found = _explore(ctx, packet, lambda run: [run.hook(hook)])
    if found is None:
        return _too_complex(hook)
    return _merge(hook, [(outs[0], run) for outs, run in found])


def _check_hook(hook: str) -> None:
    if hook not in HOOKS:
        raise ParseError(f"hook {hook!r}", text=str(hook), accepted=", ".join(HOOKS))


def _walk(
    run: _Run, local: bool, own: bool, route: Callable[[str], str | None] | None
) -> list[_Out]:
    """The hooks of one way: arriving (``prerouting``, ``input`` or ``forward`` and
    ``postrouting``), or the host's own (``output``, ``postrouting``, and back in by
    ``lo`` when the destination is local)."""
    st = run.state
    outs: list[_Out] = []

    def step(hook: str, nat: bool = True) -> bool:
        out = run.hook(hook, nat=nat)
        outs.append(out)
        return out.verdict == "accept"

    first = "output" if own else "prerouting"
    original = st.daddr
    if own:
        st.iif = ""
    if not step(first):
        return outs
    here = local
    if st.daddr != original:
        here = _local_after_nat(run, st.daddr)
        st.oif = None  # the packet's own oif was for its first destination
    if st.oif is None and route is not None and st.daddr is not None:
        st.oif = route(_address_text(st.daddr))
    if own:
        st.iif = None  # what postrouting reads as the incoming device of our own packet
        if here:
            st.oif = "lo"
        if not step("postrouting"):
            return outs
        if here:
            st.iif, st.oif = "lo", ""
            if step("prerouting", nat=False):
                step("input", nat=False)
        return outs
    if here:
        step("input")
    elif step("forward"):
        step("postrouting")
    return outs


def _local_after_nat(run: _Run, daddr: tuple[int, int] | None) -> bool:
    if daddr is None:
        return True  # redirect: to this host
    local = run.ctx.is_local(daddr)
    if local is None:
        text = _address_text(daddr)
        return run.choose(f"whether {text} is this host's (its addresses not given)", 2) == 1
    return local


def traverse(
    ruleset: Ruleset,
    packet: Packet,
    *,
    local: bool,
    local_addresses: Iterable[str] = (),
    own: bool = False,
    route: Callable[[str], str | None] | None = None,
) -> tuple[Decision, ...]:
    """The decisions of every hook a packet meets, up to the first that does not
    accept it.

    Arriving from elsewhere: ``prerouting`` (where a nat chain may DNAT it), then
    ``input`` when the destination is this host's, else ``forward`` and
    ``postrouting``. The host's own packet (``own``): ``output``, ``postrouting``, and
    for a local destination ``prerouting`` and ``input`` again by ``lo`` (without
    NAT, which the kernel set on the way out).

    Args:
        local: whether the packet's (original) destination is this host's.
        local_addresses: the host's addresses: ``fib daddr type local``, and whether a
            DNAT's new destination is local (loopback always is).
        own: the packet is this host's own.
        route: the outgoing interface for an address (``ip route get``), for the
            forward path after a DNAT (without it, ``packet.oif``, or unknown once a
            DNAT changed the destination) and for reverse-path lookups (``fib saddr .
            iif oif missing``).

    Raises:
        ParseError: a local address that is not one.
    """
    ctx = _Context(ruleset, local_addresses, route)
    found = _explore(ctx, packet, lambda run: _walk(run, local, own, route))
    if found is None:
        return (_too_complex("output" if own else "prerouting"),)
    ways = [outs for outs, _ in found]
    first = ways[0]
    if all([o.key() for o in w] == [o.key() for o in first] for w in ways):
        return tuple(o.decision() for o in first)
    n = 0
    while all(len(w) > n and w[n].key() == first[n].key() for w in ways):
        n += 1
    same = tuple(o.decision() for o in first[:n])
    at = [(w[n], run) for w, run in found if len(w) > n]
    merged = _merge(at[0][0].hook, at)
    if merged.verdict == "undecided":
        return (*same, merged)
    finals = {w[-1].verdict for w in ways}
    if len(finals) == 1:
        return (*same, merged, *(o.decision() for o in first[n + 1 :]))
    reason = "a random choice leads to destinations the rules treat differently"
    return (*same, merged, Decision(first[-1].hook, "undecided", reason=reason))

"""``iptables-save`` text read into the evaluator's ruleset model (pure).

Legacy x_tables, and iptables-nft's tables whose matches libnftables shows only as
opaque ``xt`` expressions, are written by their save tools in iptables' own words:
:func:`ruleset_from_save` turns them into the :class:`~portkit.netfilter.Ruleset` that
:func:`~portkit.netfilter.traverse` reads (one evaluator for both), option by option
through tables (:data:`_SAVE_OPTIONS`, :data:`_SAVE_MODULES`, :data:`_SAVE_TARGETS`);
an option nothing reads becomes an opaque ``xt`` match the evaluator calls unknown.
:func:`combine` joins rulesets as the kernel runs them: nftables, iptables-nft's tables
from their own dump, legacy tables beside them.
"""

from __future__ import annotations

import ipaddress

from portkit.errors import ParseError
from portkit.netfilter._eval import (
    _FAMILY_TABLES,
    _HARMLESS_TARGETS,
    SAVE_HANDLE,
    Decision,
    Packet,
    evaluate,
)
from portkit.netfilter._iptables import _destination, _ports, _word, parse_save
from portkit.netfilter._nft import Chain, Rule, Ruleset

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = ["combine", "evaluate_save", "ruleset_from_save"]


#: iptables' tables: their chains' type, and each built-in chain's hook and priority.
_SAVE_TABLES: dict[str, tuple[str, dict[str, tuple[str, int]]]] = {
    "raw": ("filter", {"PREROUTING": ("prerouting", -300), "OUTPUT": ("output", -300)}),
    "mangle": (
        "filter",
        {
            "PREROUTING": ("prerouting", -150),
            "INPUT": ("input", -150),
            "FORWARD": ("forward", -150),
            "OUTPUT": ("output", -150),
            "POSTROUTING": ("postrouting", -150),
        },
    ),
    "nat": (
        "nat",
        {
            "PREROUTING": ("prerouting", -100),
            "INPUT": ("input", 100),
            "OUTPUT": ("output", -100),
            "POSTROUTING": ("postrouting", 100),
        },
    ),
    "filter": (
        "filter",
        {"INPUT": ("input", 0), "FORWARD": ("forward", 0), "OUTPUT": ("output", 0)},
    ),
    "security": (
        "filter",
        {"INPUT": ("input", 50), "FORWARD": ("forward", 50), "OUTPUT": ("output", 50)},
    ),
}
#: The options that start something new (everything a module's unknown option is not).
_GENERAL = frozenset(
    {"-m", "--match", "-j", "--jump", "-g", "--goto", "-p", "--protocol", "-s", "--source"}
    | {"--src", "-d", "--destination", "--dst", "-i", "--in-interface", "-o"}
    | {"--out-interface", "!"}
)


def _policies(text: str) -> dict[tuple[str, str], str]:
    """``:INPUT DROP [0:0]`` lines -> ``{(table, chain): policy}``."""
    found: dict[tuple[str, str], str] = {}
    table = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith(":") and table:
            parts = line[1:].split()
            if len(parts) >= 2 and parts[1] in ("ACCEPT", "DROP"):
                found[table, parts[0]] = parts[1].lower()
    return found


def _m(left: Any, right: Any, negated: bool, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": "!=" if negated else op, "left": left, "right": right}}


def _xt_match(name: str) -> dict[str, Any]:
    return {"xt": {"type": "match", "name": name}}


def _save_addresses(value: str, family: int) -> Any:
    """``10.0.0.0/8``, ``10.0.0.1,10.0.0.2``, ``fd00::/64`` -> nft's right side."""
    out: list[Any] = []
    for part in value.split(","):
        try:
            net = ipaddress.ip_network(part, strict=False)
        except ValueError:
            return None
        if net.version != family:
            return None
        if net.prefixlen == net.max_prefixlen:
            out.append(str(net.network_address))
        else:
            out.append({"prefix": {"addr": str(net.network_address), "len": net.prefixlen}})
    return out[0] if len(out) == 1 else {"set": out}


def _save_ports(value: str) -> Any:
    ranges = _ports(value)  # ValueError: not ports
    out = [lo if lo == hi else {"range": [lo, hi]} for lo, hi in ranges]
    return out[0] if len(out) == 1 else {"set": out}


class _SaveRule:
    """One ``-A`` line read into nft statements."""

    def __init__(self, words: list[str], family: int) -> None:
        self.words = words
        self.family = family
        self.fam = "ip" if family == 4 else "ip6"
        self.stmts: list[dict[str, Any]] = []
        self.target: list[dict[str, Any]] = []
        self.comment: str | None = None
        self.proto: str | None = None
        self.module = ""

    def unknown(self, name: str) -> None:
        self.stmts.append(_xt_match(name))

    def read(self) -> None:
        words, i, negated = self.words, 2, False
        while i < len(words):
            word = words[i]
            if word == "!":
                negated = True
                i += 1
                continue
            if word in ("-j", "--jump", "-g", "--goto"):
                self.read_target(i, word in ("-g", "--goto"))
                return
            value = words[i + 1] if i + 1 < len(words) else ""
            handler = _SAVE_OPTIONS.get(word) or self.module_option(word)
            if handler is None:
                # an option portkit does not read: an unknown (its values skipped), said
                # once per module that portkit does not read at all
                if self.module in _SAVE_MODULES or not self.module:
                    self.unknown(f"{self.module or 'option'} {word}")
                i += 1
                while i < len(words) and not words[i].startswith("-") and words[i] != "!":
                    i += 1
                negated = False
                continue
            try:
                used = handler(self, value, negated)
            except ValueError:
                self.unknown(f"{self.module or 'option'} {word} {value}")
                used = True
            i += 2 if used else 1
            negated = False

    def module_option(self, word: str) -> Callable[[_SaveRule, str, bool], bool] | None:
        """An option of the module named last (``-m tcp``), or of the protocol's own
        (``-p tcp --dport 22`` loads ``tcp`` by itself)."""
        found = _SAVE_MODULES.get(self.module, {}).get(word)
        if found is None and self.proto in ("tcp", "udp"):
            found = _SAVE_MODULES[self.proto].get(word)
        return found

    def read_target(self, i: int, goto: bool) -> None:
        words = self.words
        name = words[i + 1] if i + 1 < len(words) else ""
        rest = words[i + 2 :]
        opts = {rest[k]: rest[k + 1] if k + 1 < len(rest) else "" for k in range(len(rest))}
        maker = _SAVE_TARGETS.get(name)
        if maker is not None:
            self.target = maker(self, opts)
        elif name:
            self.target = [{"goto" if goto else "jump": {"target": name}}]


def _opt_protocol(r: _SaveRule, value: str, negated: bool) -> bool:
    proto = value.lower()
    if proto in ("all", "0"):
        return True
    r.proto = proto if not negated else None
    right: Any = int(proto) if proto.isdigit() else proto
    r.stmts.append(_m({"meta": {"key": "l4proto"}}, right, negated))
    return True


def _opt_addr(which: str) -> Callable[[_SaveRule, str, bool], bool]:
    def read(r: _SaveRule, value: str, negated: bool) -> bool:
        right = _save_addresses(value, r.family)
        if right is None:
            raise ValueError(value)
        r.stmts.append(_m({"payload": {"protocol": r.fam, "field": which}}, right, negated))
        return True

    return read


def _opt_iface(which: str) -> Callable[[_SaveRule, str, bool], bool]:
    def read(r: _SaveRule, value: str, negated: bool) -> bool:
        name = value[:-1] + "*" if value.endswith("+") else value.replace("*", "\\*")
        r.stmts.append(_m({"meta": {"key": which}}, name, negated))
        return True

    return read


def _opt_port(which: str) -> Callable[[_SaveRule, str, bool], bool]:
    def read(r: _SaveRule, value: str, negated: bool) -> bool:
        proto = r.module if r.module in ("tcp", "udp") else r.proto
        if proto not in ("tcp", "udp", "sctp", "dccp", "udplite"):
            raise ValueError(value)
        left = {"payload": {"protocol": proto, "field": which}}
        r.stmts.append(_m(left, _save_ports(value), negated))
        return True

    return read


def _opt_module(r: _SaveRule, value: str, negated: bool) -> bool:
    r.module = value
    header = _HEADER_MODULES.get(value)
    if header is not None:
        # a header a plain packet does not carry: the rule never matches (the kernel's
        # rt_mt6 and its kin return false without the header, inverted or not)
        r.stmts.append(_m(header, 0, False))
    elif value not in _SAVE_MODULES:
        r.unknown(value)  # its options are skipped: the module is the unknown
    return True


#: Modules that match a header a plain TCP or UDP packet does not carry.
_HEADER_MODULES: dict[str, dict[str, Any]] = {
    **{
        name: {"exthdr": {"name": name, "field": "nexthdr"}}
        for name in ("rt", "frag", "hbh", "dst", "mh")
    },
    "ah": {"payload": {"protocol": "ah", "field": "spi"}},
    "esp": {"payload": {"protocol": "esp", "field": "spi"}},
}


def _opt_states(r: _SaveRule, value: str, negated: bool) -> bool:
    names = [s.lower() for s in value.split(",")]
    status = [n for n in names if n in ("dnat", "snat")]
    if status and len(status) != len(names):
        raise ValueError(value)
    if status:
        r.stmts.append(_m({"ct": {"key": "status"}}, status, negated, op="in"))
    else:
        r.stmts.append(_m({"ct": {"key": "state"}}, names, negated, op="in"))
    return True


def _opt_status(r: _SaveRule, value: str, negated: bool) -> bool:
    names = [s.lower() for s in value.split(",")]
    r.stmts.append(_m({"ct": {"key": "status"}}, names, negated, op="in"))
    return True


def _opt_addrtype(which: str) -> Callable[[_SaveRule, str, bool], bool]:
    def read(r: _SaveRule, value: str, negated: bool) -> bool:
        types = [t.lower() for t in value.split(",")]
        left = {"fib": {"result": "type", "flags": [which]}}
        r.stmts.append(_m(left, types[0] if len(types) == 1 else {"set": types}, negated))
        return True

    return read


def _opt_comment(r: _SaveRule, value: str, negated: bool) -> bool:
    r.comment = value
    return True


def _opt_mark(r: _SaveRule, value: str, negated: bool) -> bool:
    mark, _, mask = value.partition("/")
    left = {"&": [{"meta": {"key": "mark"}}, int(mask, 0) if mask else 0xFFFFFFFF]}
    r.stmts.append(_m(left, int(mark, 0), negated))
    return True


def _opt_statistic(r: _SaveRule, value: str, negated: bool) -> bool:
    # --mode random/nth: which packets it takes is a random choice, whatever the odds
    r.stmts.append(_m({"numgen": {"mode": "random", "mod": 2, "offset": 0}}, 0, negated))
    return True


def _opt_skip(r: _SaveRule, value: str, negated: bool) -> bool:
    return True


def _opt_flag(what: str) -> Callable[[_SaveRule, str, bool], bool]:
    def read(r: _SaveRule, value: str, negated: bool) -> bool:
        r.unknown(what)
        return False

    return read


#: iptables' own options -> the statements they become. Each reader says whether it
#: took the value after the option.
_SAVE_OPTIONS: dict[str, Callable[[_SaveRule, str, bool], bool]] = {
    "-p": _opt_protocol,
    "--protocol": _opt_protocol,
    "-s": _opt_addr("saddr"),
    "--source": _opt_addr("saddr"),
    "--src": _opt_addr("saddr"),
    "-d": _opt_addr("daddr"),
    "--destination": _opt_addr("daddr"),
    "--dst": _opt_addr("daddr"),
    "-i": _opt_iface("iifname"),
    "--in-interface": _opt_iface("iifname"),
    "-o": _opt_iface("oifname"),
    "--out-interface": _opt_iface("oifname"),
    "-m": _opt_module,
    "--match": _opt_module,
    "-f": _opt_flag("fragment"),
    "--fragment": _opt_flag("fragment"),
}
_TRANSPORT_OPTIONS = {
    "--dport": _opt_port("dport"),
    "--destination-port": _opt_port("dport"),
    "--sport": _opt_port("sport"),
    "--source-port": _opt_port("sport"),
}
#: The modules portkit reads, with their options (any other module is an unknown).
_SAVE_MODULES: dict[str, dict[str, Callable[[_SaveRule, str, bool], bool]]] = {
    "tcp": {**_TRANSPORT_OPTIONS, "--syn": _opt_flag("tcp --syn")},
    "udp": _TRANSPORT_OPTIONS,
    "multiport": {
        "--dports": _opt_port("dport"),
        "--destination-ports": _opt_port("dport"),
        "--sports": _opt_port("sport"),
        "--source-ports": _opt_port("sport"),
    },
    "conntrack": {"--ctstate": _opt_states, "--ctstatus": _opt_status},
    "state": {"--state": _opt_states},
    "addrtype": {"--dst-type": _opt_addrtype("daddr"), "--src-type": _opt_addrtype("saddr")},
    "comment": {"--comment": _opt_comment},
    "mark": {"--mark": _opt_mark},
    "statistic": {
        "--mode": _opt_statistic,
        "--probability": _opt_skip,
        "--every": _opt_skip,
        "--packet": _opt_skip,
    },
}


def _reject(r: _SaveRule, opts: dict[str, str]) -> list[dict[str, Any]]:
    how = opts.get("--reject-with", "")
    if how == "tcp-reset":
        return [{"reject": {"type": "tcp reset"}}]
    if how:
        return [{"reject": {"type": "icmpx" if r.family == 4 else "icmpv6", "expr": how}}]
    return [{"reject": None}]


def _save_dnat(r: _SaveRule, opts: dict[str, str]) -> list[dict[str, Any]]:
    host, port, end = _destination(opts.get("--to-destination", ""))
    if host is None:
        return [{"xt": {"type": "target", "name": "DNAT"}}]
    body: dict[str, Any] = {"addr": host}
    if port is not None:
        body["port"] = port if end is None or end == port else {"range": [port, end]}
    return [{"dnat": body}]


def _save_redirect(r: _SaveRule, opts: dict[str, str]) -> list[dict[str, Any]]:
    if "--to-ports" not in opts:
        return [{"redirect": None}]
    lo, hi = _ports(opts["--to-ports"])[0]
    return [{"redirect": {"port": lo if lo == hi else {"range": [lo, hi]}}}]


def _save_mark(r: _SaveRule, opts: dict[str, str]) -> list[dict[str, Any]]:
    mark: Any = {"meta": {"key": "mark"}}
    if "--set-xmark" in opts or "--set-mark" in opts:
        xor = "--set-xmark" in opts
        value, _, mask = opts.get("--set-xmark", opts.get("--set-mark", "")).partition("/")
        keep = ~(int(mask, 0) if mask else 0xFFFFFFFF) & 0xFFFFFFFF
        new = {("^" if xor else "|"): [{"&": [mark, keep]}, int(value, 0)]}
    else:
        op = {"--or-mark": "|", "--and-mark": "&", "--xor-mark": "^"}
        found = next((k for k in op if k in opts), None)
        if found is None:
            return [{"xt": {"type": "target", "name": "MARK"}}]
        new = {op[found]: [mark, int(opts[found], 0)]}
    return [{"mangle": {"key": mark, "value": new}}]


def _save_connmark(r: _SaveRule, opts: dict[str, str]) -> list[dict[str, Any]]:
    if "--restore-mark" in opts:
        mark = {"meta": {"key": "mark"}}
        return [{"mangle": {"key": mark, "value": {"ct": {"key": "mark"}}}}]
    return []  # --save-mark, --set-xmark: the connection's mark, which nothing here reads


def _save_ct(r: _SaveRule, opts: dict[str, str]) -> list[dict[str, Any]]:
    return [{"notrack": None}] if "--notrack" in opts else []


def _opaque_target(name: str) -> Callable[[_SaveRule, dict[str, str]], list[dict[str, Any]]]:
    return lambda r, o: [{"xt": {"type": "target", "name": name}}]


#: iptables targets -> nft statements (any other name is a chain, or opaque).
_SAVE_TARGETS: dict[str, Callable[[_SaveRule, dict[str, str]], list[dict[str, Any]]]] = {
    "ACCEPT": lambda r, o: [{"accept": None}],
    "DROP": lambda r, o: [{"drop": None}],
    "RETURN": lambda r, o: [{"return": None}],
    "REJECT": _reject,
    "DNAT": _save_dnat,
    "REDIRECT": _save_redirect,
    "SNAT": lambda r, o: [{"snat": {}}],
    "MASQUERADE": lambda r, o: [{"masquerade": None}],
    "MARK": _save_mark,
    "CT": _save_ct,
    "CONNMARK": _save_connmark,
    "NOTRACK": lambda r, o: [{"notrack": None}],
    "QUEUE": lambda r, o: [{"queue": None}],
    "NFQUEUE": lambda r, o: [{"queue": None}],
    **{name: _opaque_target(name) for name in _HARMLESS_TARGETS - {"CONNMARK"}},
}


def ruleset_from_save(text: str, family: int = 4, *, prefix: str = "") -> Ruleset:
    """``iptables-save`` (``ip6tables-save``: ``family=6``) text -> a :class:`Ruleset`
    that :func:`evaluate` reads like nftables' own: tables of family ``ip``/``ip6``
    named as iptables names them (``prefix`` before: ``legacy-`` keeps legacy x_tables
    apart from iptables-nft's tables of the same name in :func:`combine`), built-in
    chains on their hooks at iptables' priorities, each rule's matches as nft
    statements (``-p``, ``-s``/``-d``, ``-i``/``-o`` with ``+``, ``--dport``/``--sport``
    and multiport, conntrack/state, addrtype as ``fib ... type``, mark, comment), its
    target as a verdict, DNAT/REDIRECT/MASQUERADE, MARK. An option or module it does
    not read becomes an opaque ``xt`` match: an unknown to the evaluator, never
    ignored. Each rule keeps its iptables-save line (its ``text``).

    >>> rs = ruleset_from_save('''*filter
    ... :INPUT DROP [0:0]
    ... -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
    ... COMMIT
    ... ''')
    >>> p = Packet(4, "tcp", "192.0.2.9", "192.0.2.1", 40000, 22, iif="eth0")
    >>> d = evaluate(rs, p, "input")
    >>> d.verdict, d.rule.where, d.rule.text
    ('accept', 'iptables filter INPUT rule 1', '-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT')
    """
    if family not in _FAMILY_TABLES:
        raise ParseError(f"family {family!r}", text=str(family), accepted="4 or 6")
    fam = "ip" if family == 4 else "ip6"
    tool = "iptables" if family == 4 else "ip6tables"
    policies = _policies(text)
    tables: list[tuple[str, str]] = []
    chains: dict[tuple[str, str, str], Chain] = {}
    for table, table_chains in parse_save(text).items():
        kind, builtin = _SAVE_TABLES.get(table, ("filter", {}))
        name = prefix + table
        tables.append((fam, name))
        for chain, lines in table_chains.items():
            rules = []
            for n, words in enumerate(lines, 1):
                r = _SaveRule(words, family)
                r.read()
                marker = {"iptables": {"text": " ".join(_word(w) for w in words), "tool": tool}}
                expr = (marker, *r.stmts, *r.target)
                rules.append(Rule(fam, name, chain, n, expr, r.comment))
            hook, prio = builtin.get(chain, (None, None))
            chains[fam, name, chain] = Chain(
                fam,
                name,
                chain,
                handle=SAVE_HANDLE,
                type=kind if hook else None,
                hook=hook,
                prio=prio,
                policy=policies.get((table, chain), "accept") if hook else None,
                rules=tuple(rules),
            )
    return Ruleset(tuple(tables), chains, {})


def combine(*rulesets: Ruleset) -> Ruleset:
    """Rulesets as one: a later one's tables replace an earlier one's of the same
    family and name (``combine(nft, ruleset_from_save(iptables_nft_save))`` reads
    iptables-nft's tables from its own dump, whose matches the JSON shows as ``xt``),
    the others are kept side by side (legacy x_tables run beside nftables)."""
    tables: dict[tuple[str, str], None] = {}
    chains: dict[tuple[str, str, str], Chain] = {}
    sets: dict[tuple[str, str, str], Any] = {}
    for rs in rulesets:
        replaced = set(rs.tables)
        chains = {k: v for k, v in chains.items() if (k[0], k[1]) not in replaced}
        sets = {k: v for k, v in sets.items() if (k[0], k[1]) not in replaced}
        tables.update(dict.fromkeys(rs.tables))
        chains.update(rs.chains)
        sets.update(rs.sets)
    return Ruleset(tuple(tables), chains, sets)


def evaluate_save(
    text: str, family: int, packet: Packet, hook: str, *, local_addresses: Iterable[str] = ()
) -> Decision:
    """:func:`evaluate` on ``iptables-save`` text: ``evaluate(ruleset_from_save(text,
    family), packet, hook)``.

    Raises:
        ParseError: a family, hook or local address that is not one.
    """
    return evaluate(ruleset_from_save(text, family), packet, hook, local_addresses=local_addresses)

"""libnftables JSON (``nft -j list ruleset``) -> a ruleset model -> NAT mappings (pure).

:func:`parse_ruleset` reads the document into a :class:`Ruleset`: tables, chains (with
their hook, type, priority, policy and rules in order), sets and maps (with their
elements). It keeps each rule's expressions as libnftables wrote them, so that a later
reader (an evaluator of one packet through the hooks) works on the same model.

:func:`nat_of` walks every ``nat`` chain on the ``prerouting`` and ``output`` hooks,
follows ``jump``/``goto`` and verdict maps, and carries what each rule on the way
matched (protocol, destination ports and addresses, incoming interface; the keys of a
map's elements too) down to the rules that rewrite the destination (``dnat``,
``redirect``). That reads every shape that publishes ports in practice:

* Docker's iptables-nft ruleset: ``PREROUTING``/``OUTPUT`` jump to ``DOCKER`` on an
  ``addrtype`` match, whose rules DNAT, but through an ``xt`` target whose address the
  JSON does not carry: those are counted (:attr:`NftNat.opaque`) so the caller reads
  ``iptables-save`` for them;
* Docker 28's nftables backend (``ip docker-bridges``: ``nat-PREROUTING`` /
  ``nat-OUTPUT`` -> ``nat-prerouting-and-output``), Podman's netavark (``inet
  netavark``: ``NETAVARK-HOSTPORT-DNAT`` -> per-network ``nv_*_dnat`` chains), rules
  written by hand (``tcp dport 8080 dnat to 10.0.0.5:80``, ranges, sets, named sets,
  ``dnat to tcp dport map { ... }``, ``redirect to :8080``);
* kube-proxy's nftables mode: ``services`` matches ``ip daddr . meta l4proto . th
  dport vmap @service-ips`` (and ``@service-nodeports``), whose elements go to service
  chains, which spread over endpoint chains (``numgen random mod N vmap``) that DNAT:
  one mapping per endpoint.

    >>> doc = {"nftables": [
    ...   {"chain": {"family": "ip", "table": "t", "name": "pre", "handle": 1,
    ...              "type": "nat", "hook": "prerouting", "prio": -100}},
    ...   {"rule": {"family": "ip", "table": "t", "chain": "pre", "handle": 2, "expr": [
    ...     {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
    ...                "right": 8080}},
    ...     {"dnat": {"addr": "10.0.0.5", "port": 80}}]}}]}
    >>> m = parse_nft(doc).mappings[0]
    >>> m.published(), m.destination(), m.where
    ('tcp 0.0.0.0:8080', '10.0.0.5:80', 'nft ip t pre handle 2')
"""

from __future__ import annotations

from portkit.errors import ParseError
from portkit.model import _Record
from portkit.netfilter._nat import Match, NatMapping, dedupe, emit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Chain",
    "NftNat",
    "NftSet",
    "Rule",
    "Ruleset",
    "nat_of",
    "parse_nft",
    "parse_ruleset",
    "render_rule",
]

_FAMILIES = {"ip": 4, "ip6": 6}
#: How deep jumps are followed (nft itself refuses loops and more than 16 levels).
MAX_DEPTH = 16
#: Branches one walk may carry at once (a concatenated set match branches per element).
MAX_BRANCHES = 100_000
#: The hooks whose nat chains rewrite destinations.
DNAT_HOOKS = ("prerouting", "output")


class Rule(_Record):
    """One rule: where it is, its handle, its expressions as libnftables wrote them."""

    __slots__ = ("family", "table", "chain", "handle", "expr", "comment")
    family: str
    table: str
    chain: str
    handle: int | None
    expr: tuple[Any, ...]
    comment: str | None

    def __init__(
        self,
        family: str,
        table: str,
        chain: str,
        handle: int | None,
        expr: tuple[Any, ...],
        comment: str | None,
    ) -> None:
        self._init(
            family=family, table=table, chain=chain, handle=handle, expr=expr, comment=comment
        )


class Chain(_Record):
    """A chain and its rules in order; ``hook``/``type``/``prio``/``policy`` are None
    for a regular chain (reached only by jumps)."""

    __slots__ = ("family", "table", "name", "handle", "type", "hook", "prio", "policy", "rules")
    family: str
    table: str
    name: str
    handle: int | None
    type: str | None
    hook: str | None
    prio: int | None
    policy: str | None
    rules: tuple[Rule, ...]

    def __init__(
        self,
        family: str,
        table: str,
        name: str,
        handle: int | None = None,
        type: str | None = None,
        hook: str | None = None,
        prio: int | None = None,
        policy: str | None = None,
        rules: tuple[Rule, ...] = (),
    ) -> None:
        self._init(
            family=family,
            table=table,
            name=name,
            handle=handle,
            type=type,
            hook=hook,
            prio=prio,
            policy=policy,
            rules=rules,
        )


class NftSet(_Record):
    """A named set (``kind`` ``set``) or map (``map``: ``data`` is its value type),
    with its elements as libnftables wrote them (``[key, value]`` pairs for a map)."""

    __slots__ = ("family", "table", "name", "kind", "type", "data", "flags", "elements")
    family: str
    table: str
    name: str
    kind: str
    type: Any
    data: Any
    flags: tuple[str, ...]
    elements: tuple[Any, ...]

    def __init__(
        self,
        family: str,
        table: str,
        name: str,
        kind: str,
        type: Any,
        data: Any,
        flags: tuple[str, ...],
        elements: tuple[Any, ...],
    ) -> None:
        self._init(
            family=family,
            table=table,
            name=name,
            kind=kind,
            type=type,
            data=data,
            flags=flags,
            elements=elements,
        )


class Ruleset:
    """A whole ruleset: ``chains`` and ``sets`` by ``(family, table, name)``."""

    __slots__ = ("tables", "chains", "sets")

    def __init__(
        self,
        tables: tuple[tuple[str, str], ...],
        chains: dict[tuple[str, str, str], Chain],
        sets: dict[tuple[str, str, str], NftSet],
    ) -> None:
        self.tables = tables
        self.chains = chains
        self.sets = sets

    def __repr__(self) -> str:
        return f"Ruleset({len(self.tables)} tables, {len(self.chains)} chains)"

    def base_chains(self, hook: str | None = None, type: str | None = None) -> list[Chain]:
        """The chains on a hook (all hooks: None), of a type, by priority."""
        found = [
            c
            for c in self.chains.values()
            if c.hook is not None
            and (hook is None or c.hook == hook)
            and (type is None or c.type == type)
        ]
        return sorted(found, key=lambda c: (c.hook or "", c.prio if c.prio is not None else 0))

    def elements(self, family: str, table: str, ref: Any) -> tuple[Any, ...]:
        """The elements of ``@name`` (a named set in that table), of an anonymous
        ``{"set": [...]}``, or the one value given."""
        if isinstance(ref, str) and ref.startswith("@"):
            found = self.sets.get((family, table, ref[1:]))
            return found.elements if found is not None else ()
        if isinstance(ref, dict) and isinstance(ref.get("set"), list):
            return tuple(ref["set"])
        return (ref,)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def parse_ruleset(doc: Any) -> Ruleset:
    """A decoded ``nft -j list ruleset`` -> :class:`Ruleset`. Objects it does not know
    (counters, quotas, flowtables, metainfo) are passed over.

    Raises:
        ParseError: not a libnftables document.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise ParseError(
            "not an nft -j ruleset", text=str(doc)[:80], accepted='{"nftables": [...]}'
        )
    tables: list[tuple[str, str]] = []
    chains: dict[tuple[str, str, str], dict[str, Any]] = {}
    rules: dict[tuple[str, str, str], list[Rule]] = {}
    sets: dict[tuple[str, str, str], NftSet] = {}
    for item in doc["nftables"]:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        kind, body = next(iter(item.items()))
        if not isinstance(body, dict):
            continue
        family, table = _text(body.get("family")), _text(body.get("table"))
        name = _text(body.get("name"))
        if kind == "table" and family and name:
            tables.append((family, name))
        elif kind == "chain" and family and table and name:
            chains[family, table, name] = body
        elif kind in ("set", "map") and family and table and name:
            elem = body.get("elem")
            flags = body.get("flags")
            sets[family, table, name] = NftSet(
                family,
                table,
                name,
                kind,
                body.get("type"),
                body.get("map"),
                tuple(f for f in flags if isinstance(f, str)) if isinstance(flags, list) else (),
                tuple(elem) if isinstance(elem, list) else (),
            )
        elif kind == "rule" and family and table:
            chain = _text(body.get("chain"))
            expr = body.get("expr")
            if chain and isinstance(expr, list):
                rules.setdefault((family, table, chain), []).append(
                    Rule(
                        family,
                        table,
                        chain,
                        _int(body.get("handle")),
                        tuple(expr),
                        _text(body.get("comment")),
                    )
                )
    built: dict[tuple[str, str, str], Chain] = {}
    for key in list(chains) + [k for k in rules if k not in chains]:
        body = chains.get(key, {})
        built[key] = Chain(
            *key,
            handle=_int(body.get("handle")),
            type=_text(body.get("type")),
            hook=_text(body.get("hook")),
            prio=_int(body.get("prio")),
            policy=_text(body.get("policy")),
            rules=tuple(rules.get(key, ())),
        )
    return Ruleset(tuple(tables), built, sets)


# --- reading expressions ----------------------------------------------------------------


def _field(left: Any) -> str | None:
    """The packet field an expression reads: ``daddr``, ``dport``, ``l4proto``,
    ``iifname``, ``tcp``/``udp`` (a payload of that protocol's dport gives both)."""
    if not isinstance(left, dict):
        return None
    payload, meta = left.get("payload"), left.get("meta")
    if isinstance(payload, dict):
        proto, field = payload.get("protocol"), payload.get("field")
        if field == "dport" and proto in ("tcp", "udp", "sctp", "dccp"):
            return f"dport/{proto}"
        if field == "dport" and proto == "th":
            return "dport"
        if field == "daddr" and proto in ("ip", "ip6"):
            return "daddr"
        return None
    if isinstance(meta, dict):
        return _META_FIELDS.get(str(meta.get("key")))
    return None


# the incoming interface by index ("i" + "if", spelt so for the spell check) or by name
_META_FIELDS = {"l4proto": "l4proto", "iifname": "iifname", "i" + "if": "iifname"}


def _values(ruleset: Ruleset, rule: Rule, right: Any) -> list[Any]:
    """A match's right side as plain values: numbers, ``(lo, hi)`` ranges, addresses
    and prefixes (``10.0.0.0/8``), names; set elements unwrapped."""
    out: list[Any] = []
    for v in ruleset.elements(rule.family, rule.table, right):
        if isinstance(v, dict) and isinstance(v.get("elem"), dict):
            v = v["elem"].get("val")
        if isinstance(v, dict) and isinstance(v.get("range"), list) and len(v["range"]) == 2:
            lo, hi = v["range"]
            if _int(lo) is not None and _int(hi) is not None:
                out.append((lo, hi))
            elif isinstance(lo, str) and isinstance(hi, str):
                out.append(f"{lo}-{hi}")
        elif isinstance(v, dict) and isinstance(v.get("prefix"), dict):
            p = v["prefix"]
            out.append(f"{p.get('addr')}/{p.get('len')}")
        elif isinstance(v, (int, str)) and not isinstance(v, bool):
            out.append(v)
        elif isinstance(v, dict) and isinstance(v.get("concat"), list):
            out.append(tuple(v["concat"]))
    return out


def _refine(match: Match, field: str, values: list[Any]) -> Match:
    """``match`` narrowed by ``field`` being one of ``values``."""
    if field.startswith("dport"):
        if "/" in field:
            match = match.with_protocol(field.split("/", 1)[1])
        ranges = [
            v if isinstance(v, tuple) else (v, v)
            for v in values
            if isinstance(v, int) or (isinstance(v, tuple) and len(v) == 2)
        ]
        return match.with_ports([r for r in ranges if all(isinstance(x, int) for x in r)])
    if field == "daddr":
        return match.with_daddrs([v for v in values if isinstance(v, str) and "-" not in v])
    if field == "l4proto":
        names = [v for v in values if isinstance(v, str)]
        return match.with_protocol(names[0]) if len(names) == 1 else match
    if field == "iifname":
        names = [v for v in values if isinstance(v, str)]
        return match.with_iifname(names[0]) if len(names) == 1 else match
    return match


def _key_fields(key: Any) -> list[str | None]:
    """The fields of a map or concatenated match key, in order."""
    if isinstance(key, dict) and isinstance(key.get("concat"), list):
        return [_field(part) for part in key["concat"]]
    return [_field(key)]


def _refine_by_key(match: Match, fields: list[str | None], key: Any) -> Match:
    """``match`` narrowed by one element key of a map or concatenated set."""
    if isinstance(key, dict) and isinstance(key.get("elem"), dict):
        key = key["elem"].get("val")
    parts = key.get("concat") if isinstance(key, dict) and "concat" in key else [key]
    if not isinstance(parts, list) or len(parts) != len(fields):
        return match
    for field, part in zip(fields, parts, strict=True):
        if field is None:
            continue
        if isinstance(part, dict) and ("range" in part or "prefix" in part):
            part = {"set": [part]}
        values = _values(_EMPTY, _NO_RULE, part)
        match = _refine(match, field, values)
    return match


_EMPTY = Ruleset((), {}, {})
_NO_RULE = Rule("", "", "", None, (), None)


def _target(value: Any) -> tuple[str | None, int | None, int | None] | None:
    """A dnat map's value: ``10.0.0.5``, ``10.0.0.5 . 80``."""
    if isinstance(value, str):
        return value, None, None
    if isinstance(value, dict) and isinstance(value.get("concat"), list):
        parts = value["concat"]
        if len(parts) == 2 and isinstance(parts[0], str) and _int(parts[1]) is not None:
            return parts[0], parts[1], None
    return None


def _port(value: Any) -> tuple[int | None, int | None]:
    if (
        isinstance(value, dict)
        and isinstance(value.get("range"), list)
        and len(value["range"]) == 2
    ):
        lo, hi = value["range"]
        return _int(lo), _int(hi)
    return _int(value), None


def _rewrites(
    ruleset: Ruleset, rule: Rule, match: Match, stmt: dict[str, Any]
) -> list[tuple[Match, str, int | None, str | None, int | None, int | None]]:
    """What a ``dnat``/``redirect`` statement does, per branch: ``(match, kind, family,
    address, port, port_end)``."""
    if "redirect" in stmt:
        body = stmt["redirect"] if isinstance(stmt["redirect"], dict) else {}
        port, end = _port(body.get("port"))
        return [(match, "redirect", _FAMILIES.get(rule.family), None, port, end)]
    body = stmt["dnat"]
    if not isinstance(body, dict):
        return []
    family = _FAMILIES.get(rule.family) or _FAMILIES.get(str(body.get("family")))
    addr = body.get("addr")
    port, end = _port(body.get("port"))
    if isinstance(addr, str):
        return [(match, "dnat", family, addr, port, end)]
    mapped = addr.get("map") if isinstance(addr, dict) else None
    if not isinstance(mapped, dict):
        return []
    fields = _key_fields(mapped.get("key"))
    out: list[tuple[Match, str, int | None, str | None, int | None, int | None]] = []
    for elem in ruleset.elements(rule.family, rule.table, mapped.get("data")):
        if not (isinstance(elem, list) and len(elem) == 2):
            continue
        target = _target(elem[1])
        if target is None:
            continue
        branch = _refine_by_key(match, fields, elem[0])
        out.append((branch, "dnat", family, target[0], target[1] or port, end))
    return out


def _verdict(value: Any) -> tuple[str, str] | None:
    """``("jump"|"goto", chain)`` of a verdict object."""
    if isinstance(value, dict):
        for verb in ("jump", "goto"):
            target = value.get(verb)
            if isinstance(target, dict) and isinstance(target.get("target"), str):
                return verb, target["target"]
    return None


class _Walk:
    def __init__(self, ruleset: Ruleset) -> None:
        self.ruleset = ruleset
        self.found: list[NatMapping] = []
        self.opaque: dict[tuple[str, str, str, int | None], int] = {}
        self.branches = 0

    def chain(self, chain: Chain, match: Match, hook: str, path: tuple[str, ...]) -> None:
        if len(path) > MAX_DEPTH or chain.name in path[:-1]:
            return
        for rule in chain.rules:
            self.rule(rule, [match], hook, path)

    def follow(self, verdict: tuple[str, str], rule: Rule, m: Match, hook: str, path: Any) -> None:
        target = self.ruleset.chains.get((rule.family, rule.table, verdict[1]))
        if target is not None and not m.empty:
            self.chain(target, m, hook, (*path, target.name))

    def rule(self, rule: Rule, matches: list[Match], hook: str, path: tuple[str, ...]) -> None:
        for stmt in rule.expr:
            if not isinstance(stmt, dict) or not matches:
                return
            if "match" in stmt and isinstance(stmt["match"], dict):
                matches = self.narrow(rule, stmt["match"], matches)
            elif "dnat" in stmt or "redirect" in stmt:
                where = {
                    "hooks": (hook,),
                    "path": path,
                    "origin": "nft",
                    "table": f"{rule.family} {rule.table}",
                    "chain": rule.chain,
                    "handle": rule.handle,
                    "comment": rule.comment,
                    "text": render_rule(rule),
                }
                for m in matches:
                    for branch, kind, fam, addr, port, end in _rewrites(
                        self.ruleset, rule, m, stmt
                    ):
                        self.found.extend(emit(branch, fam, kind, addr, port, end, **where))
                return
            elif "xt" in stmt:
                xt = stmt["xt"] if isinstance(stmt["xt"], dict) else {}
                if xt.get("type") == "target" and xt.get("name") in ("DNAT", "REDIRECT"):
                    key = (rule.family, rule.table, rule.chain, rule.handle)
                    self.opaque[key] = _FAMILIES.get(rule.family, 4)
                    return
            elif (verdict := _verdict(stmt)) is not None:
                for m in matches:
                    self.follow(verdict, rule, m, hook, path)
                return
            elif "vmap" in stmt and isinstance(stmt["vmap"], dict):
                vmap = stmt["vmap"]
                fields = _key_fields(vmap.get("key"))
                for elem in self.ruleset.elements(rule.family, rule.table, vmap.get("data")):
                    if not (isinstance(elem, list) and len(elem) == 2):
                        continue
                    verdict = _verdict(elem[1])
                    if verdict is None:
                        continue
                    for m in matches:
                        self.follow(verdict, rule, _refine_by_key(m, fields, elem[0]), hook, path)
                return
            elif any(k in stmt for k in ("accept", "drop", "return", "reject", "queue")):
                return

    def narrow(self, rule: Rule, match: dict[str, Any], matches: list[Match]) -> list[Match]:
        left, right, op = match.get("left"), match.get("right"), match.get("op", "==")
        fields = _key_fields(left)
        if op == "!=":
            if fields == ["iifname"] and isinstance(right, str):
                return [m.with_iifname(right, negated=True) for m in matches]
            if fields == ["daddr"]:
                values = [v for v in _values(self.ruleset, rule, right) if isinstance(v, str)]
                return [n for m in matches if not (n := m.without_daddrs(values)).empty]
            return matches  # over-approximated: the evaluator decides such packets
        if op not in ("==", "in") or all(f is None for f in fields):
            return matches
        if len(fields) == 1:
            values = _values(self.ruleset, rule, right)
            field = fields[0]
            assert field is not None
            return [n for m in matches if not (n := _refine(m, field, values)).empty]
        out = []
        for m in matches:
            for key in self.ruleset.elements(rule.family, rule.table, right):
                n = _refine_by_key(m, fields, key)
                if not n.empty:
                    out.append(n)
                    self.branches += 1
                    if self.branches > MAX_BRANCHES:
                        return out
        return out


class NftNat(_Record):
    """The mappings of a ruleset, and the DNAT rules whose target the JSON does not
    carry (iptables-nft's ``xt`` targets), counted by family (4, 6)."""

    __slots__ = ("mappings", "opaque")
    mappings: tuple[NatMapping, ...]
    opaque: dict[int, int]

    def __init__(self, mappings: tuple[NatMapping, ...], opaque: dict[int, int]) -> None:
        self._init(mappings=mappings, opaque=opaque)


def nat_of(ruleset: Ruleset) -> NftNat:
    """Every destination NAT mapping reachable from a ``nat`` chain on the prerouting
    or output hook."""
    walk = _Walk(ruleset)
    for hook in DNAT_HOOKS:
        for chain in ruleset.base_chains(hook, "nat"):
            walk.chain(chain, Match(), hook, (chain.name,))
    opaque: dict[int, int] = {}
    for family in walk.opaque.values():
        opaque[family] = opaque.get(family, 0) + 1
    return NftNat(tuple(dedupe(walk.found)), opaque)


def parse_nft(doc: Any) -> NftNat:
    """Every DNAT mapping of a decoded ``nft -j list ruleset``.

    Raises:
        ParseError: a document that is not a ruleset.
    """
    return nat_of(parse_ruleset(doc))


# --- the rule in nft's words --------------------------------------------------------------


def _expr_text(e: Any) -> str:
    if isinstance(e, dict):
        if "payload" in e and isinstance(e["payload"], dict):
            p = e["payload"]
            return f"{p.get('protocol')} {p.get('field')}"
        if "meta" in e and isinstance(e["meta"], dict):
            return f"meta {e['meta'].get('key')}"
        if "fib" in e and isinstance(e["fib"], dict):
            flags = e["fib"].get("flags")
            result = e["fib"].get("result", "type")
            return f"fib {' . '.join(flags) if isinstance(flags, list) else flags} {result}"
        if "concat" in e and isinstance(e["concat"], list):
            return " . ".join(_expr_text(x) for x in e["concat"])
        if "set" in e and isinstance(e["set"], list):
            return "{ " + ", ".join(_expr_text(x) for x in e["set"]) + " }"
        if "range" in e and isinstance(e["range"], list) and len(e["range"]) == 2:
            return f"{_expr_text(e['range'][0])}-{_expr_text(e['range'][1])}"
        if "prefix" in e and isinstance(e["prefix"], dict):
            return f"{e['prefix'].get('addr')}/{e['prefix'].get('len')}"
        if "map" in e and isinstance(e["map"], dict):
            return f"{_expr_text(e['map'].get('key'))} map {_expr_text(e['map'].get('data'))}"
        if "numgen" in e and isinstance(e["numgen"], dict):
            return f"numgen {e['numgen'].get('mode')} mod {e['numgen'].get('mod')}"
        if "elem" in e and isinstance(e["elem"], dict):
            return _expr_text(e["elem"].get("val"))
        if "ct" in e and isinstance(e["ct"], dict):
            return f"ct {e['ct'].get('key')}"
        verdict = _verdict(e)
        if verdict is not None:
            return f"{verdict[0]} {verdict[1]}"
        op = next(iter(e), "?")
        if op in ("&", "|", "^", "<<", ">>") and isinstance(e[op], list) and len(e[op]) == 2:
            return f"{_expr_text(e[op][0])} {op} {_expr_text(e[op][1])}"
        return op
    if isinstance(e, list):
        if len(e) == 2:
            return f"{_expr_text(e[0])} : {_expr_text(e[1])}"
        return "{ " + ", ".join(_expr_text(x) for x in e) + " }"
    return str(e)


def _stmt_text(s: Any) -> str:
    if not isinstance(s, dict) or not s:
        return "?"
    key = next(iter(s))
    body = s[key]
    if key == "match" and isinstance(body, dict):
        op = body.get("op", "==")
        left = body.get("left")
        bits = isinstance(left, dict) and next(iter(left), "") in ("&", "|", "^", "<<", ">>")
        shown = "" if op in ("==", "in") and not bits else f"{op} "
        right = body.get("right")
        if isinstance(right, bool):  # nft's words for a presence test: oif missing
            right_text = {(True, "=="): "exists", (False, "=="): "missing"}.get(
                (right, op), f"{op} {str(right).lower()}"
            )
            return f"{_expr_text(left)} {right_text}"
        return f"{_expr_text(left)} {shown}{_expr_text(right)}"
    if key in ("dnat", "snat") and isinstance(body, dict):
        fam = f" {body['family']}" if isinstance(body.get("family"), str) else ""
        addr = body.get("addr")
        host = _expr_text(addr) if addr is not None else ""
        host = f"[{host}]" if isinstance(addr, str) and ":" in addr and "port" in body else host
        port = f":{_expr_text(body['port'])}" if "port" in body else ""
        return f"{key}{fam} to {host}{port}"
    if key == "redirect":
        port = (
            f" to :{_expr_text(body['port'])}" if isinstance(body, dict) and "port" in body else ""
        )
        return f"redirect{port}"
    if key == "vmap" and isinstance(body, dict):
        return f"{_expr_text(body.get('key'))} vmap {_expr_text(body.get('data'))}"
    if key == "mangle" and isinstance(body, dict):
        return f"{_expr_text(body.get('key'))} set {_expr_text(body.get('value'))}"
    if key == "reject" and isinstance(body, dict) and isinstance(body.get("type"), str):
        how = f" {body['expr']}" if isinstance(body.get("expr"), str) else ""
        return f"reject with {body['type']}{how}"
    if key == "xt" and isinstance(body, dict):
        return f"xt {body.get('type')} {body.get('name')}"
    if key in ("jump", "goto"):
        return _expr_text(s)
    return str(key)


def render_rule(rule: Rule) -> str:
    """The rule roughly as ``nft list ruleset`` prints it (counters without numbers).

    >>> render_rule(Rule("ip", "t", "c", 1, ({"match": {"op": "!=", "left":
    ...     {"meta": {"key": "iifname"}}, "right": "docker0"}},
    ...     {"dnat": {"addr": "172.17.0.2", "port": 80}}), None))
    'meta iifname != docker0 dnat to 172.17.0.2:80'
    """
    text = " ".join(_stmt_text(s) for s in rule.expr)
    return f'{text} comment "{rule.comment}"' if rule.comment else text

"""Ports that exist as NAT rules: every destination NAT mapping of a network namespace.

A published port need not have a socket: with ``--userland-proxy=false``, Docker 28's
nftables backend, Podman's netavark or kube-proxy's NodePorts it is only a DNAT rule.
:func:`nat_mappings` reads them (nftables through ``nft -j``, iptables-nft's targets and
legacy tables through ``iptables-save``); the parsers are pure (``_nft``: a
:class:`Ruleset` model kept whole for later readers, ``_iptables``), the reading is
``_read``. :func:`evaluate` and :func:`traverse` (``_eval``, pure) give the verdict of
a ruleset (nftables, or ``iptables-save`` read by :func:`ruleset_from_save`) for one
:class:`Packet`: the rule that decides, or what could not be known.

    >>> from portkit.netfilter import parse_iptables_save
    >>> [m.published() for m in parse_iptables_save(
    ...     "*nat\\n-A PREROUTING -p udp --dport 5353 -j DNAT --to-destination 10.0.0.2:53\\n")]
    ['udp 0.0.0.0:5353']
"""

from __future__ import annotations

from portkit.model import _Record
from portkit.netfilter._iptables import parse_iptables_save, parse_save
from portkit.netfilter._nat import NatMapping
from portkit.netfilter._nft import (
    Chain,
    NftNat,
    NftSet,
    Rule,
    Ruleset,
    nat_of,
    parse_nft,
    parse_ruleset,
)

# Not `from typing import TYPE_CHECKING`: importing typing costs ~9 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portkit.netfilter._eval import Decision as Decision
    from portkit.netfilter._eval import Packet as Packet
    from portkit.netfilter._eval import RuleRef as RuleRef
    from portkit.netfilter._eval import evaluate as evaluate
    from portkit.netfilter._eval import traverse as traverse
    from portkit.netfilter._save import combine as combine
    from portkit.netfilter._save import evaluate_save as evaluate_save
    from portkit.netfilter._save import ruleset_from_save as ruleset_from_save

#: The evaluator's names, imported on first use (``ls -lp`` reads NAT rules only).
_LAZY = {
    "Decision": "portkit.netfilter._eval",
    "Packet": "portkit.netfilter._eval",
    "RuleRef": "portkit.netfilter._eval",
    "evaluate": "portkit.netfilter._eval",
    "traverse": "portkit.netfilter._eval",
    "combine": "portkit.netfilter._save",
    "evaluate_save": "portkit.netfilter._save",
    "ruleset_from_save": "portkit.netfilter._save",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'portkit.netfilter' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "Chain",
    "Decision",
    "NatMapping",
    "NatReading",
    "NftNat",
    "NftSet",
    "Packet",
    "Rule",
    "RuleRef",
    "Ruleset",
    "combine",
    "evaluate",
    "evaluate_save",
    "nat_mappings",
    "nat_of",
    "parse_iptables_save",
    "parse_nft",
    "parse_ruleset",
    "parse_save",
    "read_nat",
    "read_rules",
    "read_ruleset",
    "ruleset_from_save",
    "traverse",
]


class NatReading(_Record):
    """The NAT mappings of one namespace, where they were read from (``sources``:
    ``nft``, ``iptables-nft``, ``iptables-legacy``, ...), and notes on what could not
    be read (a tool missing), one line each."""

    __slots__ = ("mappings", "sources", "notes")
    mappings: tuple[NatMapping, ...]
    sources: tuple[str, ...]
    notes: tuple[str, ...]

    def __init__(
        self, mappings: tuple[NatMapping, ...], sources: tuple[str, ...], notes: tuple[str, ...]
    ) -> None:
        self._init(mappings=mappings, sources=sources, notes=notes)


def read_ruleset(netns: str | None = None) -> Ruleset | None:
    """The nftables ruleset of a namespace (path or ``ip netns`` name; None: this
    one), or None when ``nft`` is not installed.

    Raises:
        PermissionDenied: reading it needs CAP_NET_ADMIN.
        PortkitError: nft failed, or wrote what is not JSON.
        Unsupported: not Linux.
    """
    import json

    from portkit.errors import PortkitError
    from portkit.netfilter._read import run_tool
    from portkit.system import require_linux

    require_linux("NAT rules (netfilter)")
    text = run_tool(["nft", "-j", "list", "ruleset"], netns)
    if text is None:
        return None
    if not text.strip():
        return parse_ruleset({"nftables": []})
    try:
        return parse_ruleset(json.loads(text))
    except (ValueError, RecursionError) as exc:
        raise PortkitError(f"nft -j list ruleset wrote what portkit cannot read: {exc}") from None


def _has_xt(ruleset: Ruleset) -> bool:
    """Whether any rule carries iptables-nft's opaque ``xt`` expressions."""
    return any(
        isinstance(e, dict) and "xt" in e
        for chain in ruleset.chains.values()
        for rule in chain.rules
        for e in rule.expr
    )


def read_rules(netns: str | None = None) -> Ruleset | None:
    """The whole netfilter ruleset of a namespace, for :func:`traverse`: nftables, with
    iptables-nft's tables read from ``iptables-nft-save`` where the JSON shows their
    matches only as opaque ``xt``, and legacy x_tables (``iptables-legacy-save``) beside
    them; None when no tool is installed.

    Raises:
        PermissionDenied: reading them needs CAP_NET_ADMIN.
        PortkitError: a tool failed or wrote nonsense; no such namespace.
        Unsupported: not Linux.
    """
    import shutil

    from portkit.netfilter._read import legacy_tables, run_tool
    from portkit.netfilter._save import combine, ruleset_from_save

    parts: list[Ruleset] = []
    ruleset = read_ruleset(netns)
    if ruleset is not None:
        parts.append(ruleset)
    for family, tools in (
        (4, ("iptables-nft-save", "iptables-save")),
        (6, ("ip6tables-nft-save", "ip6tables-save")),
    ):
        if ruleset is None or _has_xt(ruleset):
            tool = next((t for t in tools if shutil.which(t)), None)
            text = run_tool([tool], netns) if tool is not None else None
            if text:
                parts.append(ruleset_from_save(text, family))
    for family, tool in ((4, "iptables-legacy-save"), (6, "ip6tables-legacy-save")):
        if legacy_tables(netns, family):
            text = run_tool([tool], netns)
            if text:
                parts.append(ruleset_from_save(text, family, prefix="legacy-"))
    if not parts:
        return None
    return combine(*parts) if len(parts) > 1 else parts[0]


def _iptables(
    netns: str | None, family: int, tools: tuple[str, ...], extra: tuple[str, ...], origin: str
) -> tuple[list[NatMapping], str | None]:
    """The mappings one iptables-save variant reads, or a note naming the tools."""
    import shutil

    from portkit.netfilter._read import run_tool

    tool = next((t for t in tools if shutil.which(t)), None)
    if tool is None:
        return [], f"{' or '.join(tools)} is not installed"
    text = run_tool([tool, *extra], netns) or ""
    return parse_iptables_save(text, family, origin), None


def read_nat(netns: str | None = None) -> NatReading:
    """Every DNAT mapping of a namespace (path or ``ip netns`` name; None: this one).

    nftables first; where its DNAT targets are iptables-nft's, ``iptables-nft-save``;
    legacy tables with ``iptables-legacy-save``. The same rule read twice counts once.

    Raises:
        PermissionDenied: the rules (or the namespace) need privileges to read.
        PortkitError: a tool failed or wrote nonsense; no such namespace.
        Unsupported: not Linux.
    """
    from portkit.netfilter._nat import dedupe
    from portkit.netfilter._read import legacy_tables

    found: list[NatMapping] = []
    sources: list[str] = []
    notes: list[str] = []
    ruleset = read_ruleset(netns)
    opaque: dict[int, int] = {}
    if ruleset is None:
        notes.append("nft is not installed: nftables rules not read")
    else:
        nat = nat_of(ruleset)
        found.extend(nat.mappings)
        opaque = dict(nat.opaque)
        sources.append("nft")
    for family, names in (
        (4, ("iptables-nft-save", "iptables-save")),
        (6, ("ip6tables-nft-save", "ip6tables-save")),
    ):
        # iptables-nft's DNAT targets are only in its own dump (and without nft, all is)
        if ruleset is None or opaque.get(family):
            origin = "iptables-nft" if family == 4 else "ip6tables-nft"
            got, note = _iptables(netns, family, names, ("-t", "nat"), origin)
            found.extend(got)
            if note is None:
                sources.append(origin)
            elif ruleset is not None:
                n = opaque[family]
                notes.append(f"{n} DNAT rules are iptables-nft's and {note}: targets unknown")
    for family, tool in ((4, "iptables-legacy-save"), (6, "ip6tables-legacy-save")):
        tables = legacy_tables(netns, family)
        if tables is not None and "nat" not in tables:
            continue  # the usual case: no legacy nat table, no tool run
        origin = tool.removesuffix("-save")
        got, note = _iptables(netns, family, (tool,), (), origin)
        if note is None and got:
            sources.append(origin)
        elif note and tables:
            notes.append(f"a legacy {origin.split('-')[0]} nat table exists and {note}")
        found.extend(got)
    return NatReading(tuple(_unique(dedupe(found))), tuple(sources), tuple(notes))


def _unique(mappings: list[NatMapping]) -> list[NatMapping]:
    """One mapping per (packets taken, destination), whichever tool read it first:
    a rule of table ``ip nat`` that nft reads whole is iptables-nft-save's too."""
    seen: dict[tuple[object, ...], NatMapping] = {}
    for m in mappings:
        seen.setdefault((*m.effect(), m.chain), m)
    return list(seen.values())


def nat_mappings(netns: str | None = None) -> list[NatMapping]:
    """Every DNAT mapping of a namespace: ``read_nat(netns).mappings``.

    Raises:
        PermissionDenied: the rules (or the namespace) need privileges to read.
        PortkitError: a tool failed or wrote nonsense; no such namespace.
        Unsupported: not Linux.
    """
    return list(read_nat(netns).mappings)

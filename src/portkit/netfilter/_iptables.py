"""``iptables-save`` text -> tables of rules -> NAT mappings (pure).

For hosts whose rules live in iptables: legacy x_tables (which nftables cannot see),
and iptables-nft's DNAT targets, which libnftables' JSON shows only as an ``xt``
expression without the address. :func:`parse_save` reads a dump into
``{table: {chain: [rule words, ...]}}``; :func:`nat_of_save` walks the nat table's
``PREROUTING`` and ``OUTPUT`` chains as the nftables reader walks its hooks, carrying
what each jump's rule matched (``-p``, ``-d``, ``-i``, ``--dport``, ``--dports``) down to
the ``DNAT``/``REDIRECT`` rules: Docker's ``DOCKER`` chain, kube-proxy's
``KUBE-SERVICES`` -> ``KUBE-SVC-*`` -> ``KUBE-SEP-*`` (one mapping per endpoint) and
``KUBE-NODEPORTS``, and rules written by hand.

    >>> m = parse_iptables_save('''*nat
    ... :PREROUTING ACCEPT [0:0]
    ... :DOCKER - [0:0]
    ... -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
    ... -A DOCKER ! -i docker0 -p tcp -m tcp --dport 18081 -j DNAT --to-destination 172.17.0.2:80
    ... COMMIT
    ... ''')[0]
    >>> m.published(), m.destination(), m.iifname, m.where
    ('tcp 0.0.0.0:18081', '172.17.0.2:80', '!docker0', 'iptables nat DOCKER rule 1')
"""

from __future__ import annotations

import shlex

from portkit.errors import ParseError
from portkit.netfilter._nat import Match, NatMapping, dedupe, emit

__all__ = ["Tables", "nat_of_save", "parse_iptables_save", "parse_save"]

#: Lines longer than this are no rule iptables-save writes (a corrupt or hostile dump).
MAX_LINE = 16384
#: How deep jumps are followed.
MAX_DEPTH = 16
_TERMINAL = ("ACCEPT", "DROP", "RETURN", "REJECT", "MASQUERADE", "SNAT", "MARK", "LOG")
#: Options that take one value, by their long and short names.
_VALUED = {
    "-p": "protocol",
    "--protocol": "protocol",
    "-d": "daddr",
    "--destination": "daddr",
    "--dst": "daddr",
    "-i": "iifname",
    "--in-interface": "iifname",
    "--dport": "dport",
    "--destination-port": "dport",
    "--dports": "dports",
    "--destination-ports": "dports",
    "-j": "jump",
    "--jump": "jump",
    "-g": "goto",
    "--goto": "goto",
    "--to-destination": "to",
    "--to-ports": "to_ports",
    "--comment": "comment",
}

Tables = dict[str, dict[str, list[list[str]]]]


def parse_save(text: str) -> Tables:
    """An ``iptables-save`` dump -> ``{table: {chain: [rule words]}}``, chains in the
    order declared, rules in order; a line that does not split (unbalanced quotes) or
    is too long is passed over."""
    tables: Tables = {}
    chains: dict[str, list[list[str]]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("*"):
            chains = tables.setdefault(line[1:], {})
        elif chains is None or len(line) > MAX_LINE:
            continue
        elif line.startswith(":"):
            chains.setdefault(line[1:].split(" ", 1)[0], [])
        elif line.startswith("-A "):
            try:
                words = shlex.split(line)
            except ValueError:
                continue
            if len(words) >= 2:
                chains.setdefault(words[1], []).append(words)
    return tables


def _options(words: list[str]) -> tuple[dict[str, str], set[str]]:
    """A rule's options by name, and the names that were negated (``! -i docker0``)."""
    found: dict[str, str] = {}
    negated: set[str] = set()
    neg = False
    i = 2
    while i < len(words):
        word = words[i]
        if word == "!":
            neg = True
        else:
            name = _VALUED.get(word)
            if name is not None and i + 1 < len(words):
                found.setdefault(name, words[i + 1])
                if neg:
                    negated.add(name)
                i += 1
            neg = False
        i += 1
    return found, negated


def _ports(text: str) -> list[tuple[int, int]]:
    """``80``, ``8000:8010``, ``80,443,8000:8010`` (multiport).

    Raises:
        ValueError: not ports.
    """
    out = []
    for part in text.split(","):
        lo, sep, hi = part.replace("-", ":").partition(":")
        out.append((int(lo), int(hi) if sep else int(lo)))
    return out


def _word(word: str) -> str:
    """A word as iptables-save writes it (double quotes around spaces)."""
    if word and not any(c in word for c in " \t\"'\\"):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _destination(text: str) -> tuple[str | None, int | None, int | None]:
    """``172.17.0.2:80``, ``[fd00::2]:80``, ``172.17.0.2``, ``10.0.0.5:8000-8010``,
    ``10.0.0.5-10.0.0.9`` (a range of addresses: the first one).

    Raises:
        ValueError: a port that is not a number.
    """
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.lstrip(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    host = host.split("-", 1)[0] if host.count(".") >= 3 else host
    if not port:
        return host or None, None, None
    ranges = _ports(port)
    return host or None, ranges[0][0], ranges[0][1]


class _Walk:
    def __init__(self, chains: dict[str, list[list[str]]], family: int, origin: str) -> None:
        self.chains = chains
        self.family = family
        self.origin = origin
        self.found: list[NatMapping] = []

    def chain(self, name: str, match: Match, hook: str, path: tuple[str, ...]) -> None:
        if len(path) > MAX_DEPTH or name in path[:-1]:
            return
        for n, words in enumerate(self.chains.get(name, ()), 1):
            self.rule(name, n, words, match, hook, path)

    def rule(
        self, chain: str, n: int, words: list[str], match: Match, hook: str, path: tuple[str, ...]
    ) -> None:
        opts, negated = _options(words)
        if "protocol" in opts and "protocol" not in negated and opts["protocol"] != "all":
            match = match.with_protocol(opts["protocol"].lower())
        if "daddr" in opts:
            addrs = opts["daddr"].split(",")
            negate = "daddr" in negated
            match = match.without_daddrs(addrs) if negate else match.with_daddrs(addrs)
        if "iifname" in opts:
            match = match.with_iifname(opts["iifname"], "iifname" in negated)
        for key in ("dport", "dports"):
            if key in opts and key not in negated:
                match = match.with_ports(_ports(opts[key]))
        if match.empty:
            return
        target = opts.get("jump") or opts.get("goto")
        if target in ("DNAT", "REDIRECT"):
            addr: str | None = None
            port: int | None = None
            end: int | None = None
            if target == "DNAT":
                if "to" not in opts:
                    return
                addr, port, end = _destination(opts["to"])
            elif "to_ports" in opts:
                port, end = _ports(opts["to_ports"])[0]
            kind = "dnat" if target == "DNAT" else "redirect"
            self.found.extend(
                emit(
                    match,
                    self.family,
                    kind,
                    addr,
                    port,
                    end,
                    hooks=(hook,),
                    path=path,
                    origin=self.origin,
                    table="nat",
                    chain=chain,
                    handle=n,
                    comment=opts.get("comment"),
                    text=" ".join(_word(w) for w in words),
                )
            )
        elif target and target not in _TERMINAL and target in self.chains:
            self.chain(target, match, hook, (*path, target))


def nat_of_save(tables: Tables, family: int = 4, origin: str = "iptables") -> list[NatMapping]:
    """The DNAT and REDIRECT mappings reachable from the nat table's PREROUTING and
    OUTPUT chains.

    Raises:
        ParseError: a rule on the way whose ports or destination do not read.
    """
    chains = tables.get("nat", {})
    walk = _Walk(chains, family, origin)
    for hook in ("PREROUTING", "OUTPUT"):
        try:
            walk.chain(hook, Match(), hook.lower(), (hook,))
        except ValueError as exc:
            raise ParseError(f"unreadable NAT rule ({exc})", text=hook) from None
    return dedupe(walk.found)


def parse_iptables_save(text: str, family: int = 4, origin: str = "") -> list[NatMapping]:
    """The DNAT mappings of an ``iptables-save`` (``ip6tables-save``: ``family=6``)
    dump; ``origin`` names the tool (default ``iptables``/``ip6tables``).

    Raises:
        ParseError: a NAT rule whose ports or destination do not read.
    """
    default = "ip6tables" if family == 6 else "iptables"
    return nat_of_save(parse_save(text), family, origin or default)

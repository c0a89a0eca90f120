"""Scan targets as nmap takes them, expanded to addresses. Pure: text in, addresses out.

Accepted forms (one per argument, or one per line/word of an ``-iL`` file)::

    10.0.0.5                 one IPv4 address
    2001:db8::1, [::1]       one IPv6 address (brackets optional)
    10.0.0.0/24, fd00::/120  a CIDR block, every address in it (like nmap, .0 and .255 too)
    10.0.0.1-20              a range in the last octet
    10.0.0-3.1-254, 10.0.0.1,5,9, 10.0.0.*
                             nmap octet ranges: each octet a number, a range, a list or *
    10.0.0.1-10.0.0.20       a range between two addresses (IPv4 or IPv6)
    db.internal              a host name (resolved when the scan starts)

    >>> list(parse_target("10.0.0.1-3").addresses())
    ['10.0.0.1', '10.0.0.2', '10.0.0.3']
    >>> parse_target("fd00::/126").count
    4
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from portkit.errors import ParseError
from portkit.model import _check_hostname, _Record, shorten

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

__all__ = ["MAX_HOSTS", "TargetSpec", "parse_target", "parse_target_list", "parse_targets"]

#: Most addresses one target may expand to (a /12 of IPv4; an IPv6 /108).
MAX_HOSTS = 1 << 20

ACCEPTED = (
    "an IP, [IPv6], CIDR (10.0.0.0/24, fd00::/120), range (10.0.0.1-20, "
    "10.0.0-3.1-254, 10.0.0.1-10.0.0.9) or host name"
)


class TargetSpec(_Record):
    """One target as given: its kind, how many addresses it holds and how to list them.

    ``kind`` is ``ip``, ``cidr``, ``range``, ``octets`` or ``name``. A name has
    ``count`` 1 and no addresses until it is resolved.
    """

    __slots__ = ("text", "kind", "count", "_parts")
    text: str
    kind: str
    count: int
    _parts: tuple[object, ...]

    def __init__(self, text: str, kind: str, count: int, parts: tuple[object, ...]) -> None:
        self._init(text=text, kind=kind, count=count, _parts=parts)

    @property
    def hostname(self) -> str | None:
        return str(self._parts[0]) if self.kind == "name" else None

    def addresses(self) -> Iterator[str]:
        """Every address, in ascending order (nothing for a name)."""
        kind, parts = self.kind, self._parts
        if kind == "ip":
            yield str(parts[0])
        elif kind in ("cidr", "range"):
            first, last = int(parts[0]), int(parts[1])  # type: ignore[call-overload]
            make = ipaddress.IPv6Address if parts[2] == 6 else ipaddress.IPv4Address
            for n in range(first, last + 1):
                yield make(n).compressed
        elif kind == "octets":
            yield from _octet_product(parts)  # type: ignore[arg-type]


def _octet_product(octets: tuple[tuple[int, ...], ...]) -> Iterator[str]:
    for a in octets[0]:
        for b in octets[1]:
            for c in octets[2]:
                for d in octets[3]:
                    yield f"{a}.{b}.{c}.{d}"


def _too_many(text: str, count: int) -> ParseError:
    return ParseError(
        f"target {text!r} holds {count} addresses, more than {MAX_HOSTS}",
        text=text,
        accepted="a smaller block or range",
    )


def _octet(part: str, text: str) -> tuple[int, ...]:
    """One octet of an nmap range: ``5``, ``1-20``, ``1,5,9-12``, ``*``, ``-`` ends."""
    if part == "*":
        return tuple(range(256))
    values: set[int] = set()
    for item in part.split(","):
        lo, sep, hi = item.partition("-")
        try:
            start = int(lo) if lo else 0
            end = (int(hi) if hi else 255) if sep else start
        except ValueError:
            raise ParseError(
                f"bad octet {item!r} in {text!r}", text=text, accepted=ACCEPTED
            ) from None
        if not (0 <= start <= end <= 255) or (not lo and not sep):
            raise ParseError(f"bad octet {item!r} in {text!r}", text=text, accepted="0-255")
        values.update(range(start, end + 1))
    return tuple(sorted(values))


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def parse_target(text: str) -> TargetSpec:
    """Parse one target (see the module docstring for the forms).

    Raises:
        ParseError: naming the bad target and the accepted forms.
    """
    raw = text.strip()
    if not raw:
        raise ParseError("empty target", text=text, accepted=ACCEPTED)
    addr = _ip(raw)
    if addr is not None:
        return TargetSpec(raw, "ip", 1, (addr.compressed,))
    if "/" in raw:
        return _parse_cidr(raw)
    if ("-" in raw and ":" in raw) or (raw.count("-") == 1 and _ip(raw.partition("-")[0])):
        first, _, last = raw.partition("-")
        a, b = _ip(first), _ip(last)
        if a is not None and b is not None:
            return _full_range(raw, a, b)
    parts = raw.split(".")
    if len(parts) == 4 and all(p and set(p) <= set("0123456789-,*") for p in parts):
        octets = tuple(_octet(p, raw) for p in parts)
        count = len(octets[0]) * len(octets[1]) * len(octets[2]) * len(octets[3])
        if count > MAX_HOSTS:
            raise _too_many(raw, count)
        return TargetSpec(raw, "octets", count, octets)
    if ":" in raw or raw.replace(".", "").isdigit():
        raise ParseError(f"bad address {raw!r}", text=text, accepted=ACCEPTED)
    try:
        _check_hostname(raw, raw)
    except ParseError:
        raise ParseError(f"bad target {raw!r}", text=text, accepted=ACCEPTED) from None
    return TargetSpec(raw, "name", 1, (raw,))


def _parse_cidr(raw: str) -> TargetSpec:
    base, _, bits = raw.partition("/")
    if _ip(base) is None or not bits.isdigit():
        raise ParseError(f"bad CIDR block {raw!r}", text=raw, accepted=ACCEPTED)
    try:
        net = ipaddress.ip_network(f"{base.strip('[]')}/{bits}", strict=False)
    except ValueError as exc:
        raise ParseError(f"bad CIDR block {raw!r}: {exc}", text=raw, accepted=ACCEPTED) from None
    if net.num_addresses > MAX_HOSTS:
        raise _too_many(raw, net.num_addresses)
    first, last = int(net.network_address), int(net.broadcast_address)
    return TargetSpec(raw, "cidr", net.num_addresses, (first, last, net.version))


def _full_range(
    raw: str,
    a: ipaddress.IPv4Address | ipaddress.IPv6Address,
    b: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> TargetSpec:
    if a.version != b.version:
        raise ParseError(f"range {raw!r} mixes IPv4 and IPv6", text=raw, accepted=ACCEPTED)
    if int(b) < int(a):
        raise ParseError(
            f"range {raw!r} is reversed", text=raw, accepted="FIRST-LAST, FIRST <= LAST"
        )
    count = int(b) - int(a) + 1
    if count > MAX_HOSTS:
        raise _too_many(raw, count)
    return TargetSpec(raw, "range", count, (int(a), int(b), a.version))


def parse_targets(texts: Iterable[str]) -> tuple[TargetSpec, ...]:
    """Parse several targets; duplicates are kept (the scan removes repeated addresses).

    :data:`MAX_HOSTS` holds for the whole scan, counted before any address is built:
    sixteen /12 blocks are refused as one /8 would be.
    """
    specs: list[TargetSpec] = []
    total = 0
    for text in texts:
        spec = parse_target(text)
        total += spec.count
        if total > MAX_HOSTS:
            raise ParseError(
                f"the targets hold more than {MAX_HOSTS} addresses in all "
                f"(at {shorten(spec.text)!r}: {total})",
                text=shorten(spec.text),
                accepted="fewer or smaller targets",
            )
        specs.append(spec)
    if not specs:
        raise ParseError("no targets given", text="", accepted=ACCEPTED)
    return tuple(specs)


def parse_target_list(text: str) -> list[str]:
    """The targets of an ``-iL`` file: words separated by blanks or newlines.

    ``#`` starts a comment that runs to the end of the line.

    >>> parse_target_list("10.0.0.1 10.0.0.2  # lab\\n# nothing\\ndb.internal\\n")
    ['10.0.0.1', '10.0.0.2', 'db.internal']
    """
    words: list[str] = []
    for line in text.splitlines():
        words.extend(line.partition("#")[0].split())
    return words

"""Port knowledge: what a port is for, registered and in everyday use.

``lookup("5432")``, ``lookup("53/udp")``, ``lookup("30000-32767")``,
``lookup("10.0.0.5:9200")``, ``lookup("redis")``, ``lookup("node exporter")``.

Answers come from the packaged index (see ``_index``): the IANA registry, the guide's
table of common ports, curated DevOps defaults and the Prometheus exporter port
allocations. Where the registry and everyday practice disagree, both are returned
and :attr:`Answer.note` says which one people mean (9092 is registered to
XmlIpcRegSvc, but everyone means Kafka).
"""

from __future__ import annotations

from portkit.errors import ParseError
from portkit.model import (
    Endpoint,
    PortClass,
    PortRange,
    Protocol,
    RangeClass,
    _Record,
    classify_port,
    shorten,
)
from portkit.registry._store import (
    ALIASES,
    INDEX_PATH,
    Entry,
    all_entries,
    all_rows,
    rows_for,
)
from portkit.system import ephemeral_range

# Not `from typing import TYPE_CHECKING`: importing typing costs ~9 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from portkit.registry._index import Row
    from portkit.registry._knowledge import (
        Role,
        entries,
        image_role,
        parse_endpoint,
        port_of,
        port_role,
        ports_matching,
        service_name,
        service_names,
        top_ports,
    )

__all__ = [
    "INDEX_PATH",
    "Answer",
    "Entry",
    "Role",
    "all_entries",
    "classify",
    "entries",
    "image_role",
    "lookup",
    "parse_endpoint",
    "port_of",
    "port_role",
    "ports_matching",
    "service_name",
    "service_names",
    "top_ports",
]

#: Port knowledge beyond lookup, imported on first use (``lookup 22`` never needs it).
_LAZY = frozenset(
    {
        "Role",
        "entries",
        "image_role",
        "parse_endpoint",
        "port_of",
        "port_role",
        "ports_matching",
        "service_name",
        "service_names",
        "top_ports",
    }
)


def __getattr__(name: str) -> object:
    if name in _LAZY:
        from portkit.registry import _knowledge

        return getattr(_knowledge, name)
    raise AttributeError(f"module 'portkit.registry' has no attribute {name!r}")


#: The longest query answered (a service name or port list longer than this is noise).
MAX_QUERY = 256

#: How matches on a name rank: higher first.
_SCORE_EXACT, _SCORE_PREFIX, _SCORE_IN_NAME, _SCORE_WORDS, _SCORE_FUZZY = 100, 80, 60, 40, 20


class Answer(_Record):
    """What portkit knows in answer to one query.

    ``kind`` is ``port``, ``range`` or ``name``. For ports and ranges, ``ports`` is the
    range asked about and ``port_class`` classifies it (for a range: its first port,
    with ``range_class`` widened by :attr:`range_classes`).
    """

    __slots__ = ("query", "kind", "ports", "protocol", "entries", "port_class", "ephemeral")
    query: str
    kind: str
    ports: PortRange | None
    protocol: Protocol | None
    entries: tuple[Entry, ...]
    port_class: PortClass | None
    ephemeral: PortRange

    def __init__(
        self,
        query: str,
        kind: str,
        ports: PortRange | None,
        protocol: Protocol | None,
        entries: tuple[Entry, ...],
        ephemeral: PortRange,
    ) -> None:
        port_class = classify_port(ports.start, ephemeral) if ports is not None else None
        self._init(
            query=query,
            kind=kind,
            ports=ports,
            protocol=protocol,
            entries=entries,
            port_class=port_class,
            ephemeral=ephemeral,
        )

    @property
    def range_classes(self) -> tuple[RangeClass, ...]:
        """Every IANA range class the asked ports touch."""
        if self.ports is None:
            return ()
        return tuple(c for c in RangeClass if c.ports.overlaps(self.ports))

    @property
    def in_ephemeral(self) -> bool:
        return self.ports is not None and self.ports.overlaps(self.ephemeral)

    @property
    def in_nodeport(self) -> bool:
        from portkit.model import NODEPORT_RANGE

        return self.ports is not None and self.ports.overlaps(NODEPORT_RANGE)

    @property
    def found(self) -> bool:
        return bool(self.entries)

    @property
    def notes(self) -> tuple[str, ...]:
        """Plain-words remarks: registry vs everyday use, unassigned, ephemeral clashes."""
        if self.ports is None or self.ports.start != self.ports.end:
            return ()
        port = self.ports.start
        out: list[str] = []
        by_proto: dict[str, tuple[list[Entry], list[Entry]]] = {}
        for e in self.entries:
            if e.is_range:
                continue
            everyday, registered = by_proto.setdefault(e.protocol, ([], []))
            if e.everyday:
                everyday.append(e)
            elif e.status == "assigned" and e.service:
                registered.append(e)
        for proto, (everyday, registered) in by_proto.items():
            if not everyday or not registered:
                continue
            names = {_norm(e.service) for e in registered}
            # The guide's name, where it has one, is the everyday name to compare.
            guide = [e for e in everyday if e.source == "guide"] or everyday
            if any(_related(_norm(e.service), names) for e in guide):
                continue
            used = ", ".join(dict.fromkeys(e.service for e in everyday))
            regs = ", ".join(dict.fromkeys(e.service for e in registered))
            out.append(f"{port}/{proto} is registered to {regs}, but in everyday use it is {used}")
        if not self.entries and port in RangeClass.DYNAMIC.ports:
            out.append(
                f"{port} is in the dynamic/private range 49152-65535, where IANA "
                "assigns no services"
            )
        elif not any(e.status in ("assigned", "everyday") for e in self.entries):
            status = (
                "reserved" if any(e.status == "reserved" for e in self.entries) else "unassigned"
            )
            out.append(f"{port} is {status} in the IANA registry")
        if self.in_ephemeral:
            out.append(
                f"{port} is in this OS's ephemeral range {self.ephemeral}: outgoing "
                "connections may take it, so a server listening here can fail to bind"
            )
        return tuple(out)


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(" ", "-")


#: Everyday names that IANA registers under another name.
_SAME_SERVICE = {"dns": "domain", "http-alt": "http-alt", "ftp": "ftp-data"}


def _related(name: str, names: set[str]) -> bool:
    """True when ``name`` and one of ``names`` are the same service (postgresql ~ postgres)."""
    if _SAME_SERVICE.get(name) in names:
        return True
    flat = name.replace("-", "")
    for other in names:
        o = other.replace("-", "")
        if flat.startswith(o) or o.startswith(flat) or (len(o) >= 4 and o in flat):
            return True
    return False


_names: list[tuple[str, str, Row]] | None = None


def _name_index() -> list[tuple[str, str, Row]]:
    """``(normalised name, lower-case description, row)`` for every named row, built once."""
    global _names
    if _names is None:
        _names = [(_norm(row[3]), row[4].lower(), row) for row in all_rows() if row[3]]
    return _names


# --- queries ----------------------------------------------------------------------------


def _port_answer(
    query: str, ports: PortRange, protocol: Protocol | None, ephemeral: PortRange
) -> Answer:
    entries = [Entry(row) for row in rows_for(ports)]
    if protocol is not None:
        entries = [e for e in entries if e.protocol in (protocol.value, "")]
    entries.sort(key=Entry.sort_key)
    kind = "port" if ports.start == ports.end else "range"
    return Answer(query, kind, ports, protocol, tuple(entries), ephemeral)


def _looks_numeric(text: str) -> bool:
    return (
        bool(text)
        and all(c.isdigit() or c in "-, " for c in text)
        and any(c.isdigit() for c in text)
    )


def _name_score(name: str, description: str, terms: list[str], words: list[str]) -> int:
    best = 0
    for term in terms:
        if name == term:
            return _SCORE_EXACT
        if name.startswith(term):
            best = max(best, _SCORE_PREFIX)
        elif len(term) >= 3 and term in name:
            best = max(best, _SCORE_IN_NAME)
    if not best and words:
        hay = f"{name} {description}"
        if all(w in hay for w in words):
            best = _SCORE_WORDS
    return best


def _name_answer(
    query: str, text: str, protocol: Protocol | None, limit: int | None, ephemeral: PortRange
) -> Answer:
    term = _norm(text.strip())
    terms = [_norm(t) for t in (term, *ALIASES.get(term, ()))]
    words = [w for w in text.lower().replace("-", " ").replace("_", " ").split() if w]
    if not (len(words) > 1 or len(term) >= 3):
        words = []
    protos = ("", protocol.value) if protocol is not None else None
    # Score the raw rows; only matches become Entry records.
    scored: list[tuple[int, Entry]] = []
    for name, description, row in _name_index():
        if protos is not None and row[2] not in protos:
            continue
        score = _name_score(name, description, terms, words)
        if score:
            scored.append((score, Entry(row)))
    if not scored:
        import difflib  # only for typos ("postgress"): about 2 ms

        names = {name for name, _, _ in _name_index()}
        close = set(difflib.get_close_matches(term, names, n=5, cutoff=0.8))
        scored = [
            (_SCORE_FUZZY, Entry(row))
            for name, _, row in _name_index()
            if name in close and (protos is None or row[2] in protos)
        ]
    scored.sort(key=lambda se: (-se[0], not se[1].everyday, se[1].sort_key()))
    entries = tuple(e for _, e in scored)
    if limit:
        entries = entries[:limit]
    return Answer(query, "name", None, protocol, entries, ephemeral)


def lookup(query: str, *, limit: int | None = None) -> list[Answer]:
    """Answer a lookup query; a port list gives one answer per item.

    Args:
        query: a port (``5432``), port/protocol (``53/udp``), range (``30000-32767``),
            port list (``22,80``), endpoint (``10.0.0.5:9200``, ``[::1]:53/udp``) or a
            service name or keywords (``redis``, ``node exporter``), case-insensitive.
        limit: at most this many entries for a name query (None: all).

    Raises:
        ParseError: for a malformed port, range, protocol or endpoint.

    >>> [e.service for e in lookup("6379/tcp")[0].entries][:2]
    ['Redis', 'redis']
    """
    text = query.strip()
    if not text or len(text) > MAX_QUERY:
        raise ParseError(
            "empty query" if not text else f"query of {len(text)} characters is too long",
            text=shorten(query),
            accepted=f"a port, PORT/PROTO, START-END, HOST:PORT or a service name "
            f"(at most {MAX_QUERY} characters)",
        )
    eph = ephemeral_range()
    if text.startswith(("(", "[")) or ":" in text:
        ep = Endpoint.parse(text)
        explicit = "/" in text or (text.startswith("(") and text.count(",") == 2)
        return [_port_answer(query, PortRange(ep.port), ep.protocol if explicit else None, eph)]
    body, sep, proto_text = text.rpartition("/")
    if not sep:
        body, protocol = text, None
    elif _looks_numeric(body):
        protocol = Protocol.parse(proto_text)
    else:  # a name: "/udp" filters, anything else is part of the name ("tcp/ip")
        try:
            protocol = Protocol.parse(proto_text)
        except ParseError:
            body, protocol = text, None
    if _looks_numeric(body):
        from portkit.model import parse_ports

        return [
            _port_answer(query if "," not in body else str(r), r, protocol, eph)
            for r in parse_ports(body)
        ]
    if any(c.isdigit() for c in body) and body.replace("-", "").isdigit():
        raise ParseError(f"bad port range {body!r}", text=query, accepted="START-END")
    return [_name_answer(query, body, protocol, limit, eph)]


def classify(port: int) -> PortClass:
    """Classify a port against IANA's ranges, this OS's ephemeral range and NodePort.

    >>> classify(22).range_class.value
    'well-known'
    """
    return classify_port(port, ephemeral_range())

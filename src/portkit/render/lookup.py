"""Lookup answers as a table or as JSON objects."""

from __future__ import annotations

from portkit.model import NODEPORT_RANGE, PortRange, RangeClass
from portkit.render import Style, table

# Not `from typing import TYPE_CHECKING`: importing typing costs ~9 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from portkit.registry import Answer, Entry

__all__ = ["answers_json", "answers_table"]

HEADERS = ("PORT", "PROTO", "SERVICE", "SOURCE", "DESCRIPTION")
NAME_HEADERS = ("PORT", "PROTO", "SERVICE", "SOURCE", "CLASS", "DESCRIPTION")


def _range_class(ports: PortRange) -> str:
    classes = [c.value for c in RangeClass if c.ports.overlaps(ports)]
    return classes[0] if len(classes) == 1 else "mixed"


def _flags(ports: PortRange, ephemeral: PortRange) -> list[str]:
    flags = []
    if ports.overlaps(ephemeral):
        flags.append("ephemeral")
    if ports.overlaps(NODEPORT_RANGE):
        flags.append("nodeport")
    return flags


def _source(e: Entry) -> str:
    return f"{e.source} (everyday)" if e.everyday else f"{e.source} ({e.status})"


def _summary(a: Answer, style: Style) -> str:
    assert a.ports is not None
    ports = a.ports
    what = " + ".join(c.description for c in a.range_classes)
    eph = ("in" if a.in_ephemeral else "not in") + f" this OS's ephemeral range ({a.ephemeral})"
    node = (
        "in" if a.in_nodeport else "not in"
    ) + f" the Kubernetes NodePort range ({NODEPORT_RANGE})"
    line = f"{style.bold(str(ports))}: {what}; {eph}; {node}"
    notes = [style.yellow("note: ") + n for n in a.notes]
    return "\n".join([line, *notes])


def answers_table(answers: Sequence[Answer], style: Style, width: int | None = None) -> str:
    """One block per answer: the rows, then the classification and notes in words."""
    blocks = []
    for a in answers:
        if a.kind == "name":
            name_rows = [
                (
                    e.ports or "-",
                    e.protocol or "-",
                    e.service or "-",
                    _source(e),
                    " ".join(
                        [
                            _range_class(PortRange(e.port, e.port_end)),
                            *_flags(PortRange(e.port, e.port_end), a.ephemeral),
                        ]
                    )
                    if e.port is not None and e.port_end is not None
                    else "-",
                    e.description,
                )
                for e in a.entries
            ]
            body = (
                table(name_rows, NAME_HEADERS, style=style, width=width)
                if name_rows
                else f"{a.query!r}: no service of that name is known"
            )
            blocks.append(body)
            continue
        rows: list[tuple[str, ...]] = [
            (e.ports, e.protocol or "-", e.service or "-", _source(e), e.description)
            for e in a.entries
        ]
        parts = [table(rows, HEADERS, style=style, width=width)] if rows else []
        parts.append(_summary(a, style))
        blocks.append("\n".join(parts))
    return "\n\n".join(blocks)


def _entry_object(a: Answer, e: Entry | None) -> dict[str, Any]:
    obj: dict[str, Any] = {"query": a.query}
    start = e.port if e is not None else (a.ports.start if a.ports else None)
    end = e.port_end if e is not None else (a.ports.end if a.ports else None)
    if start is None or end is None:
        obj["port"] = None
    elif start == end:
        obj["port"] = start
    else:
        obj["port_start"], obj["port_end"] = start, end
    obj.update(
        protocol=(e.protocol or None)
        if e is not None
        else (a.protocol.value if a.protocol else None),
        service=(e.service or None) if e is not None else None,
        description=e.description if e is not None else None,
        source=e.source if e is not None else None,
        status=e.status if e is not None else "unassigned",
        everyday=e.everyday if e is not None else False,
    )
    if start is not None and end is not None:
        ports = PortRange(start, end)
        obj.update(
            range_class=_range_class(ports),
            ephemeral=ports.overlaps(a.ephemeral),
            nodeport=ports.overlaps(NODEPORT_RANGE),
        )
    else:
        obj.update(range_class=None, ephemeral=None, nodeport=None)
    obj["note"] = e.note if e is not None and e.note else None
    return obj


def answers_json(answers: Sequence[Answer]) -> list[dict[str, Any]]:
    """A flat list of objects, one per entry (a port with no entry still gets one)."""
    out: list[dict[str, Any]] = []
    for a in answers:
        if a.entries:
            out.extend(_entry_object(a, e) for e in a.entries)
        elif a.kind != "name":
            out.append(_entry_object(a, None))
    return out

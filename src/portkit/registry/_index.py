"""Build and read portkit's port index: pure functions of text and bytes.

The index merges four sources into one list of rows::

    (start, end, protocol, service, description, source, status, note, role)

``source`` is ``iana`` (the registry), ``guide`` (the ports-and-sockets guide's table),
``devops`` (curated everyday defaults) or ``prometheus`` (exporter port allocations).
``status`` is ``assigned``, ``unassigned``, ``reserved``, ``name-only`` (an IANA service
name with no port), ``everyday`` (a de-facto default) or ``marker`` (a range such as the
NodePort range, answered by the range flags rather than listed under every port).
``role`` is what the port is for in a deployment (``database``, ``cache``, ``search``,
``broker``, ``admin``, ``metrics``, ``web``, ...: the ``role`` column of the curated
tables, ``metrics`` for Prometheus allocations, empty for IANA rows); see
``registry/_knowledge.py`` for which roles deserve a warning on all interfaces.

The file written by :func:`dump` is laid out so that ``lookup 22`` reads two offsets and
unmarshals only the 16-port shard holding port 22 (a few KB) instead of all 15,000 rows::

    magic (8 bytes) | 4,099 little-endian uint32 offsets | shard 0 .. shard 4095 | all rows | images

Each shard is a marshalled ``{port: [row, ...]}`` (single ports, plus every range row
overlapping the shard under the key ``-1``); then the marshalled row list, then the
marshalled image table: ``(image, product, role, source)`` rows naming the container
images of data stores, so a port moved elsewhere is still known by its image.
"""

from __future__ import annotations

import marshal

# Not `from typing import TYPE_CHECKING`: importing typing costs ~9 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

Row = tuple[int | None, int | None, str, str, str, str, str, str, str]
ImageRow = tuple[str, str, str, str]

MAGIC = b"PKIDX\x00\x03\x00"
SHARD_BITS = 4
SHARDS = 65536 >> SHARD_BITS
RANGES_KEY = -1
SOURCES = ("guide", "devops", "prometheus", "iana")
#: Blob numbers after the shards.
ALL_ROWS = SHARDS
IMAGES = SHARDS + 1

# Rows of the curated list that describe whole ranges the lookup flags already answer.
_MARKER_SERVICES = frozenset(
    {
        "iana-system-ports",
        "iana-user-ports",
        "iana-dynamic-ports",
        "linux-ephemeral",
        "windows-ephemeral",
        "k8s-nodeport",
    }
)


def _span(text: str) -> tuple[int, int] | None:
    text = text.strip()
    if not text:
        return None
    first, _, last = text.partition("-")
    return int(first), int(last or first)


def _clean(text: str) -> str:
    return " ".join(text.split())


def iana_rows(text: str) -> list[Row]:
    """Rows from the IANA CSV export (fields may hold newlines: read with csv)."""
    import csv
    import io

    rows: list[Row] = []
    for rec in csv.DictReader(io.StringIO(text)):
        span = _span(rec["Port Number"])
        name = rec["Service Name"].strip()
        desc = _clean(rec["Description"])
        if span is None:
            status = "name-only"
        elif desc.lower() == "unassigned":
            status = "unassigned"
        elif desc.lower() == "reserved" and not name:
            status = "reserved"
        else:
            status = "assigned"
        notes = [
            _clean(rec["Reference"]),
            _clean(rec["Assignee"]),
            _clean(rec["Unauthorized Use Reported"])
            and "unauthorized use reported: " + _clean(rec["Unauthorized Use Reported"]),
            _clean(rec["Assignment Notes"]),
        ]
        start, end = span if span else (None, None)
        rows.append(
            (
                start,
                end,
                rec["Transport Protocol"].strip().lower(),
                name,
                desc,
                "iana",
                status,
                "; ".join(n for n in notes if n),
                "",
            )
        )
    return rows


def curated_rows(text: str, source: str) -> list[Row]:
    """Rows from ``port,protocol,service,description,source`` files (guide, devops)."""
    import csv
    import io

    rows: list[Row] = []
    for rec in csv.DictReader(io.StringIO(text)):
        span = _span(rec["port"])
        assert span is not None, rec
        status = "marker" if rec["service"] in _MARKER_SERVICES else "everyday"
        for proto in rec["protocol"].split("/"):
            rows.append(
                (
                    span[0],
                    span[1],
                    proto.strip(),
                    rec["service"].strip(),
                    _clean(rec["description"]),
                    source,
                    status,
                    _clean(rec["source"]),
                    (rec.get("role") or "").strip(),
                )
            )
    return rows


def prometheus_rows(text: str) -> list[Row]:
    """Rows from the Prometheus default port allocations (``port,http_protocol,component,section``).

    "FREE" and "UNALLOCATED" markers are dropped: they record that nobody is on the port.
    """
    import csv
    import io

    rows: list[Row] = []
    for rec in csv.DictReader(io.StringIO(text)):
        component = _clean(rec["component"])
        if component.strip('"').upper().startswith(("FREE", "UNALLOCATED")):
            continue
        span = _span(rec["port"])
        assert span is not None, rec
        note = "Prometheus default port allocations: " + _clean(rec["section"]).rstrip(":")
        rows.append(
            (
                span[0],
                span[1],
                "tcp",
                component,
                f"{component} (Prometheus exporter, {rec['http_protocol'] or 'http'})",
                "prometheus",
                "everyday",
                note,
                "metrics",
            )
        )
    return rows


def image_rows(text: str) -> list[ImageRow]:
    """Rows of ``image,product,role,source`` (the curated container image table)."""
    import csv
    import io

    return [
        (
            rec["image"].strip().lower(),
            _clean(rec["product"]),
            rec["role"].strip(),
            _clean(rec["source"]),
        )
        for rec in csv.DictReader(io.StringIO(text))
    ]


def build(iana_csv: str, guide_csv: str, devops_csv: str, prometheus_csv: str) -> list[Row]:
    """All rows, everyday sources first (guide, devops, prometheus), then IANA."""
    return [
        *curated_rows(guide_csv, "guide"),
        *curated_rows(devops_csv, "devops"),
        *prometheus_rows(prometheus_csv),
        *iana_rows(iana_csv),
    ]


def dump(rows: Iterable[Row], images: Iterable[ImageRow] = ()) -> bytes:
    """Serialise rows (and the image table) into the format described in the module docstring."""
    all_rows = list(rows)
    shards: list[dict[int, list[Row]]] = [{} for _ in range(SHARDS)]
    for row in all_rows:
        start, end = row[0], row[1]
        if start is None or end is None:
            continue
        if start == end:
            shards[start >> SHARD_BITS].setdefault(start, []).append(row)
        else:
            for k in range(start >> SHARD_BITS, (end >> SHARD_BITS) + 1):
                shards[k].setdefault(RANGES_KEY, []).append(row)
    blobs = [marshal.dumps(s) for s in shards]
    blobs += [marshal.dumps(all_rows), marshal.dumps(list(images))]
    offsets = [0]
    for blob in blobs:
        offsets.append(offsets[-1] + len(blob))
    header = MAGIC + b"".join(o.to_bytes(4, "little") for o in offsets)
    return header + b"".join(blobs)


HEADER_SIZE = len(MAGIC) + 4 * (SHARDS + 3)


def offset_position(k: int) -> int:
    """Where, in the file, the pair of offsets of blob ``k`` starts (8 bytes: start, end)."""
    return len(MAGIC) + 4 * k


def blob_span(pair: bytes) -> tuple[int, int]:
    """``(start, end)`` of a blob from its 8 offset bytes, relative to the header's end."""
    return int.from_bytes(pair[:4], "little"), int.from_bytes(pair[4:8], "little")


def shard_number(port: int) -> int:
    return port >> SHARD_BITS


def decode_shard(blob: bytes) -> dict[int, list[Row]]:
    """A shard: ``{port: rows, -1: range rows}``."""
    shard: dict[int, list[Row]] = marshal.loads(blob)
    return shard


def decode_all(blob: bytes) -> list[Row]:
    rows: list[Row] = marshal.loads(blob)
    return rows


def decode_images(blob: bytes) -> list[ImageRow]:
    images: list[ImageRow] = marshal.loads(blob)
    return images

"""The packaged port index on disk, and :class:`Entry`, one row of it as a record.

The I/O half of the registry: :mod:`portkit.registry._index` builds and decodes the
format (pure); this module opens the shipped file, reads one blob at a time and keeps
what it decoded for the life of the process. ``lookup 22`` reads a few KB; naming every
socket of a busy host reads the whole row list once.
"""

from __future__ import annotations

import os

from portkit.errors import RegistryError
from portkit.model import PortRange, _Record
from portkit.registry import _index

# Not `from typing import TYPE_CHECKING`: importing typing costs ~9 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from portkit.registry._index import ImageRow, Row

__all__ = ["ALIASES", "INDEX_PATH", "Entry", "all_entries", "all_rows", "image_rows", "rows_for"]

INDEX_PATH = os.path.join(os.path.dirname(__file__), "_data", "ports.idx")

#: Everyday short names people type, mapped to the names the data uses.
ALIASES: dict[str, tuple[str, ...]] = {
    "k8s": ("kubernetes", "kube"),
    "kube": ("kubernetes",),
    "apiserver": ("kube-apiserver",),
    "pg": ("postgresql",),
    "postgres": ("postgresql",),
    "psql": ("postgresql",),
    "es": ("elasticsearch",),
    "elastic": ("elasticsearch",),
    "mongo": ("mongodb",),
    "prom": ("prometheus",),
    "rabbit": ("rabbitmq",),
    "mssql": ("ms-sql-s", "sql server"),
    "dns": ("domain",),
    "https": ("https",),
    "smtp": ("smtp",),
    "mariadb": ("mysql",),
    "memcache": ("memcached",),
    "zk": ("zookeeper",),
}

SOURCE_RANK = {source: i for i, source in enumerate(_index.SOURCES)}


class Entry(_Record):
    """One row of port knowledge.

    ``port`` and ``port_end`` are None for an IANA service name without a port; they
    differ for a range (``30000-32767``). ``everyday`` is True for de-facto defaults
    (the guide, the curated DevOps list, Prometheus allocations), False for the IANA
    registry. ``role`` is what the port is for in a deployment (``database``,
    ``admin``, ``metrics``, ...; empty when the source does not say).
    """

    __slots__ = (
        "port",
        "port_end",
        "protocol",
        "service",
        "description",
        "source",
        "status",
        "note",
        "role",
    )
    port: int | None
    port_end: int | None
    protocol: str
    service: str
    description: str
    source: str
    status: str
    note: str
    role: str

    def __init__(self, row: Row) -> None:
        self._init(**dict(zip(self.__slots__, row, strict=True)))

    @property
    def everyday(self) -> bool:
        return self.source != "iana"

    @property
    def is_range(self) -> bool:
        return self.port is not None and self.port != self.port_end

    @property
    def ports(self) -> str:
        """``"22"``, ``"30000-32767"`` or ``""`` for a name with no port."""
        if self.port is None:
            return ""
        return str(self.port) if not self.is_range else f"{self.port}-{self.port_end}"

    def sort_key(self) -> tuple[int, int, str, int]:
        """Port, single before range, protocol, then the sources' rank (guide first)."""
        return (
            self.port if self.port is not None else -1,
            int(self.is_range),
            self.protocol,
            SOURCE_RANK[self.source],
        )


class _IndexFile:
    """The packaged index, read a blob at a time: ``lookup 22`` reads a few KB, not 2.7 MB."""

    def __init__(self, path: str) -> None:
        try:
            with open(path, "rb") as f:
                magic = f.read(len(_index.MAGIC))
        except OSError as exc:
            raise RegistryError(f"cannot read the port index {path}: {exc.strerror}") from exc
        if magic != _index.MAGIC:
            raise RegistryError(f"the port index {path} is damaged: reinstall portkit")
        self.path = path

    def blob(self, k: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(_index.offset_position(k))
            start, end = _index.blob_span(f.read(8))
            f.seek(_index.HEADER_SIZE + start)
            data = f.read(end - start)
        if len(data) != end - start or end < start:
            raise RegistryError(f"the port index {self.path} is truncated: reinstall portkit")
        return data


_file: _IndexFile | None = None
_rows: list[Row] | None = None
_all: list[Entry] | None = None
_images: list[ImageRow] | None = None
_shards: dict[int, dict[int, list[Row]]] = {}


def _load() -> _IndexFile:
    global _file
    if _file is None:
        _file = _IndexFile(INDEX_PATH)
    return _file


def shard(k: int) -> dict[int, list[Row]]:
    """Shard ``k`` (ports ``16k .. 16k+15``), decoded once per process."""
    found = _shards.get(k)
    if found is None:
        found = _shards[k] = _index.decode_shard(_load().blob(k))
    return found


def rows_for(ports: PortRange) -> list[Row]:
    """Every row about a port of ``ports``: single ports first by shard, then ranges."""
    rows: list[Row] = []
    seen_ranges: set[Row] = set()
    for shard_no in range(_index.shard_number(ports.start), _index.shard_number(ports.end) + 1):
        for key, shard_rows in shard(shard_no).items():
            if key == _index.RANGES_KEY:
                for row in shard_rows:
                    start, end = row[0], row[1]
                    assert start is not None
                    assert end is not None
                    overlaps = start <= ports.end and ports.start <= end
                    if overlaps and row[6] != "marker" and row not in seen_ranges:
                        seen_ranges.add(row)
                        rows.append(row)
            elif ports.start <= key <= ports.end:
                rows.extend(shard_rows)
    return rows


def all_rows() -> list[Row]:
    """Every row of the index, decoded once (~15,000 tuples, a few ms)."""
    global _rows
    if _rows is None:
        _rows = _index.decode_all(_load().blob(_index.ALL_ROWS))
    return _rows


def all_entries() -> list[Entry]:
    """Every row of the index as records (about 15,000, built once: ~50 ms)."""
    global _all
    if _all is None:
        _all = [Entry(row) for row in all_rows()]
    return _all


def image_rows() -> list[ImageRow]:
    """The curated ``(image, product, role, source)`` table."""
    global _images
    if _images is None:
        _images = _index.decode_images(_load().blob(_index.IMAGES))
    return _images

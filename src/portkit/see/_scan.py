"""What a backend's scan returns (:class:`Scan`), and :class:`GcPaused`.

Both backends (``_linux``, ``_psutil``) return a :class:`Scan`: the rows of one
question to the kernel (or to psutil) and what the reader should be told. It lives
apart from the package so that the backends and the package import it without
importing each other.
"""

from __future__ import annotations

import gc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portkit.see._netlink import RawRows
    from portkit.see._owners import Owners

__all__ = ["GcPaused", "Scan"]


class GcPaused:
    """Pause the cyclic GC while 100,000 rows or records are built: they hold no
    cycles, and the collector would walk them over and over (about 15% of the time)."""

    def __enter__(self) -> None:
        self.was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self.was_enabled:
            gc.enable()


class Scan:
    """Rows (``SocketRecord.row`` tuples) and what the reader should be told: the
    form the CLI renders from, without building a record per socket.

    When nothing had to be filtered or attached in Python, the kernel's raw rows are
    kept in :attr:`batches` (``(family, protocol, raw rows)``, with the raw listening
    ports in :attr:`listen_ports`) and :attr:`rows` decodes them on first use, so a
    renderer that can work from raw rows (``ls`` text) skips the decoding.
    """

    __slots__ = (
        "_rows",
        "batches",
        "listen_ports",
        "owners",
        "owner_names",
        "owners_hidden",
        "source",
        "_health",
    )

    def __init__(
        self,
        rows: list[tuple[Any, ...]] | None,
        owners_hidden: int,
        source: str,
        batches: list[tuple[int, int, RawRows]] | None = None,
        listen_ports: dict[int, set[int]] | None = None,
        owners: Owners | None = None,
        owner_names: dict[int, tuple[str | None, str | None]] | None = None,
        health: dict[Any, Any] | None = None,
    ) -> None:
        self._rows = rows
        self._health = health
        self.batches = batches
        self.listen_ports = listen_ports or {}
        #: With raw batches and owners asked for: ``{inode: (pid, ...)}`` (the holders
        #: of every socket the pass saw, shown or not) and ``{pid: (process name,
        #: user)}`` (of the holders of the shown ones), not yet attached to rows.
        self.owners = owners
        self.owner_names = owner_names
        self.owners_hidden = owners_hidden
        self.source = source

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            from portkit.see._rows import attach_owners, decode

            with GcPaused():
                rows = [
                    r
                    for family, proto, raw in self.batches or ()
                    for r in decode(raw, family, proto, self.listen_ports.get(proto, ()))
                ]
                if self.owners is not None:
                    rows = attach_owners(rows, self.owners, self.owner_names or {})
            self._rows = rows
        return self._rows

    @property
    def health(self) -> dict[Any, Any]:
        """With ``Query(info=/memory=/timers=)``: ``{key: entry}`` of each socket's
        timer, tcp_info and skmeminfo (``_tcpinfo``: look a row up with
        ``row_entry(health, row)``); empty otherwise."""
        if self._health is None:
            from portkit.see._tcpinfo import health_map

            self._health = health_map(self.batches or ())
        return self._health

    def __len__(self) -> int:
        if self._rows is None:
            return sum(len(raw) for _, _, raw in self.batches or ())
        return len(self._rows)

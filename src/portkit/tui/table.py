"""A keyed, sorted, virtual table for tens of thousands of sockets (Textual Line API).

Why not ``DataTable``: measured with textual 8.2.8 on the 2-core test VM,
``add_row`` costs about 0.2 ms a row (2 s for 10,000) and ``remove_row`` about
30 ms at 10,000 rows (it renumbers every row and re-sorts them to move the cursor),
so a host with 10,000 sockets and a few hundred opening and closing each second
could not be refreshed every second. This widget keeps the rows in a dict keyed by
socket, sorts a list of keys in C (``sorted`` with a key function) and renders
only the lines on screen (:meth:`render_line`), so a refresh costs a sort and the
widths of the changed rows, whatever the number of rows.

The key-based model keeps what ``DataTable``'s ``update_cell``/``remove_row``/
``add_row`` diffing keeps: the sort order holds across refreshes, the cursor
stays on the same socket (and on the same screen line while that socket lives),
and nothing is cleared and redrawn, so nothing flickers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from textual import events

    from portkit.tui.view import Row

__all__ = ["SocketTable"]

_GAP = 2


class SocketTable(ScrollView, can_focus=True):
    """Rows of ``(texts, sort keys)`` (:data:`~portkit.tui.view.Row`), keyed by
    socket, sorted by one column.

    Args:
        columns: ``(key, title, right-aligned)``, in display order.
        sort: the column to sort by first.
        hidden: columns not shown (yet): rows still carry their cells, so showing
            one (:meth:`show_columns`) needs no new rows.
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "First", show=False),
        Binding("end", "edge(1)", "Last", show=False),
        Binding("enter", "select", "Process"),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "socket-table--header",
        "socket-table--cursor",
        "socket-table--odd",
    }
    DEFAULT_CSS = """
    SocketTable { height: 1fr; }
    SocketTable > .socket-table--header { text-style: bold; color: $text; background: $panel; }
    SocketTable > .socket-table--cursor {
        background: $block-cursor-background; color: $block-cursor-foreground; text-style: bold;
    }
    SocketTable:blur > .socket-table--cursor {
        background: $block-cursor-blurred-background; text-style: none;
    }
    SocketTable > .socket-table--odd { background: $surface-lighten-1; }
    """

    class Selected(Message):
        """Enter on a row (or a click on the row under the cursor)."""

        def __init__(self, table: SocketTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> SocketTable:
            return self.table

    class HeaderClicked(Message):
        """A click on a column title."""

        def __init__(self, table: SocketTable, column: str) -> None:
            super().__init__()
            self.table = table
            self.column = column

        @property
        def control(self) -> SocketTable:
            return self.table

    def __init__(
        self,
        columns: Sequence[tuple[str, str, bool]],
        *,
        sort: str | None = None,
        id: str | None = None,
        hidden: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(id=id)
        self.columns = tuple(columns)
        self._col_index = {key: i for i, (key, _, _) in enumerate(self.columns)}
        self.hidden = frozenset(hidden)
        self._shown = [i for i, (key, _, _) in enumerate(self.columns) if key not in self.hidden]
        self.sort_column = sort or self.columns[0][0]
        self.sort_reverse = False
        self._rows: dict[str, Row] = {}
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._widths = [len(title) for _, title, _ in self.columns]
        self.cursor = 0
        self.cursor_key: str | None = None

    # --- data ------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def ordered_keys(self) -> list[str]:
        """Row keys in display order."""
        return list(self._order)

    def row(self, key: str) -> Row | None:
        return self._rows.get(key)

    def column_texts(self, column: str) -> list[str]:
        """The texts of one column in display order (for tests and exports)."""
        i = self._col_index[column]
        return [self._rows[k][0][i] for k in self._order]

    def set_rows(self, rows: Mapping[str, Row]) -> None:
        """Replace the rows (``{key: (texts, sort keys)}``); the sort order, the
        cursor's row and its screen line are kept."""
        old = self._rows
        widths = [len(title) for _, title, _ in self.columns]
        # Column widths from every row: one pass per column over the texts, in C.
        if rows:
            texts = zip(*[row[0] for row in rows.values()], strict=True)
            widths = [max(w, max(map(len, col))) for w, col in zip(widths, texts, strict=True)]
        changed = widths != self._widths or rows.keys() != old.keys()
        self._widths = widths
        self._rows = dict(rows)
        if not changed:
            changed = any(old.get(k) is not cells for k, cells in rows.items())
        self._resort()
        if changed:
            self.refresh()

    @property
    def shown_columns(self) -> list[str]:
        """The keys of the columns shown, in display order."""
        return [self.columns[i][0] for i in self._shown]

    def show_columns(self, hidden: frozenset[str]) -> None:
        """Show every column but ``hidden`` (sorting by a hidden column goes on)."""
        if frozenset(hidden) == self.hidden:
            return
        self.hidden = frozenset(hidden)
        self._shown = [i for i, (key, _, _) in enumerate(self.columns) if key not in self.hidden]
        self._resort()
        self.refresh()

    def sort_by(self, column: str, reverse: bool = False) -> None:
        if column not in self._col_index:
            raise KeyError(column)
        self.sort_column, self.sort_reverse = column, reverse
        self._resort()
        self.refresh()

    def _resort(self) -> None:
        """Sort the keys; keep the cursor on its row and that row on its screen line."""
        i = self._col_index[self.sort_column]
        rows = self._rows
        before = self.cursor - int(self.scroll_offset.y)
        self._order = sorted(rows, key=lambda k: (rows[k][1][i], k), reverse=self.sort_reverse)
        self._index = {k: n for n, k in enumerate(self._order)}
        total = sum(self._widths[i] for i in self._shown) + _GAP * (len(self._shown) - 1)
        self.virtual_size = Size(total, len(self._order) + 1)
        if self.cursor_key is not None and self.cursor_key in self._index:
            self.cursor = self._index[self.cursor_key]
            self.scroll_to(y=max(0, self.cursor - before), animate=False, immediate=True)
        else:
            self.cursor = min(self.cursor, max(len(self._order) - 1, 0))
            self.cursor_key = self._order[self.cursor] if self._order else None
        self._keep_cursor_visible()

    # --- cursor ----------------------------------------------------------------------

    @property
    def _page(self) -> int:
        return max(self.size.height - 1, 1)

    def move_to(self, index: int) -> None:
        if not self._order:
            return
        self.cursor = max(0, min(index, len(self._order) - 1))
        self.cursor_key = self._order[self.cursor]
        self._keep_cursor_visible()
        self.refresh()

    def _keep_cursor_visible(self) -> None:
        top = int(self.scroll_offset.y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.size.height > 1 and self.cursor > top + self._page - 1:
            self.scroll_to(y=self.cursor - self._page + 1, animate=False, immediate=True)

    def action_cursor(self, step: int) -> None:
        self.move_to(self.cursor + step)

    def action_page(self, step: int) -> None:
        self.move_to(self.cursor + step * self._page)

    def action_edge(self, end: int) -> None:
        self.move_to(len(self._order) - 1 if end else 0)

    def action_select(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.Selected(self, self.cursor_key))

    async def _on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        y = offset.y
        if y == 0:
            x = offset.x + int(self.scroll_offset.x)
            edge = 0
            for i in self._shown:
                key, width = self.columns[i][0], self._widths[i]
                edge += width + _GAP
                if x < edge:
                    self.post_message(self.HeaderClicked(self, key))
                    break
            return
        index = int(self.scroll_offset.y) + y - 1
        if 0 <= index < len(self._order):
            if index == self.cursor:
                self.action_select()
            else:
                self.move_to(index)

    # --- rendering -------------------------------------------------------------------

    def _header_text(self) -> str:
        parts = []
        for i in self._shown:
            key, title, _ = self.columns[i]
            mark = ""
            if key == self.sort_column:
                mark = "▼" if self.sort_reverse else "▲"
            parts.append(f"{title}{mark}")
        return _join_header(parts, [self._widths[i] for i in self._shown])

    def _line_text(self, texts: Sequence[str]) -> str:
        parts = []
        for i in self._shown:
            right, width, text = self.columns[i][2], self._widths[i], texts[i][: self._widths[i]]
            parts.append(text.rjust(width) if right else text.ljust(width))
        return (" " * _GAP).join(parts)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        scroll_x, scroll_y = (int(v) for v in self.scroll_offset)
        if y == 0:
            text = self._header_text()
            style = self.get_component_rich_style("socket-table--header")
        else:
            index = scroll_y + y - 1
            if index >= len(self._order):
                return Strip.blank(width, self.rich_style)
            key = self._order[index]
            text = self._line_text(self._rows[key][0])
            if index == self.cursor:
                style = self.rich_style + self.get_component_rich_style("socket-table--cursor")
            elif index % 2:
                style = self.rich_style + self.get_component_rich_style("socket-table--odd")
            else:
                style = self.rich_style
        line = text[scroll_x : scroll_x + width].ljust(width)
        return Strip([Segment(line, style if isinstance(style, Style) else Style())], width)


def _join_header(parts: list[str], widths: list[int]) -> str:
    """Titles padded to their columns; a sort mark may take one of the gap's spaces."""
    out = []
    for part, width in zip(parts, widths, strict=True):
        out.append(part + " " * (width + _GAP - len(part)))
    return "".join(out).rstrip()

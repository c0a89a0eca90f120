"""Records in, text out: tables, JSON and CSV. Rendering never gathers data.

Kept free of rich and click on purpose: ``portkit lookup 22`` and ``portkit ls -tln``
must start in about the time of a bare interpreter, and rich alone costs ~35 ms.
Each capability has its own module here (``render.lookup``, ...) that turns its
records into rows and JSON objects; this module holds the shared formats.
"""

from __future__ import annotations

import os

# Not `from typing import TYPE_CHECKING`: importing typing costs ~9 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any, TextIO

__all__ = ["Style", "safe", "table", "to_csv", "to_json", "use_color"]

_BOLD, _DIM, _RED, _YELLOW, _GREEN, _RESET = (
    "\x1b[1m",
    "\x1b[2m",
    "\x1b[31m",
    "\x1b[33m",
    "\x1b[32m",
    "\x1b[0m",
)


def safe(text: str) -> str:
    r"""Text from outside (a process name or command line, a certificate subject, a
    banner) made harmless for a terminal: control and format characters, which could
    move the cursor, rewrite lines or reverse the text, are shown as escapes.

    Anyone can name a process; what root sees in ``portkit who`` must be what is there.
    JSON output stays exact (json.dumps escapes control characters itself).

    >>> safe("nginx"), safe("evil\x1b[2J"), safe("a\u202eb")
    ('nginx', 'evil\\x1b[2J', 'a\\u202eb')
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def use_color(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Style:
    """ANSI styling that turns into plain text when colour is off."""

    def __init__(self, color: bool) -> None:
        self.color = color

    def _wrap(self, code: str, text: str) -> str:
        return f"{code}{text}{_RESET}" if self.color and text else text

    def bold(self, text: str) -> str:
        return self._wrap(_BOLD, text)

    def dim(self, text: str) -> str:
        return self._wrap(_DIM, text)

    def red(self, text: str) -> str:
        return self._wrap(_RED, text)

    def yellow(self, text: str) -> str:
        return self._wrap(_YELLOW, text)

    def green(self, text: str) -> str:
        return self._wrap(_GREEN, text)


def terminal_width(stream: TextIO) -> int | None:
    """The width of the terminal ``stream`` writes to, None when it is not one."""
    try:
        if not stream.isatty():
            return None
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):
        return None


def table(
    rows: Iterable[Sequence[object]],
    headers: Sequence[str],
    *,
    style: Style | None = None,
    width: int | None = None,
    right: Iterable[int] = (),
) -> str:
    """Align ``rows`` under ``headers``; ``None`` cells print as ``-``.

    Args:
        rows: one sequence of cells per row.
        headers: column titles (printed in bold when colour is on).
        style: colours; plain text when None.
        width: cut the last column so that lines fit (a terminal's width), or None.
        right: indexes of columns to right-align (numbers).

    >>> print(table([(22, "ssh")], ["PORT", "SERVICE"]))
    PORT  SERVICE
    22    ssh
    """
    text_rows = [["-" if c is None else str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in text_rows:
        for i, cell in enumerate(row):
            if len(cell) > widths[i]:
                widths[i] = len(cell)
    right_set = set(right)
    last = len(headers) - 1

    def fmt(cells: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(cells):
            if i == last:
                parts.append(cell)
            elif i in right_set:
                parts.append(cell.rjust(widths[i]))
            else:
                parts.append(cell.ljust(widths[i]))
        line = "  ".join(parts).rstrip()
        if width is not None and len(line) > width:
            line = line[: max(width - 1, 0)] + "…"
        return line

    st = style or Style(False)
    lines = [st.bold(fmt(list(headers)))]
    lines.extend(fmt(row) for row in text_rows)
    return "\n".join(lines)


def to_json(data: Any) -> str:
    """One JSON document, stable key order as given, UTF-8 text."""
    import json

    return json.dumps(data, indent=2, ensure_ascii=False)


def to_csv(rows: Iterable[Sequence[object]], headers: Sequence[str]) -> str:
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    writer.writerows(["" if c is None else c for c in row] for row in rows)
    return out.getvalue().rstrip("\n")

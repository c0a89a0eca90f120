"""Writing results: stdout for data, stderr for messages. No click here."""

from __future__ import annotations

import sys

from portkit.render import Style, terminal_width, use_color

__all__ = ["err", "out", "stdout_style", "stdout_width"]


def out(text: str) -> None:
    """Write ``text`` and a newline to stdout (data)."""
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    """Write one line to stderr (messages, warnings, progress)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def stdout_style() -> Style:
    return Style(use_color(sys.stdout))


def stdout_width() -> int | None:
    return terminal_width(sys.stdout)

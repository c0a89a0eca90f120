"""Writing results: stdout for data, stderr for messages. No click here."""

from __future__ import annotations

import sys

from portkit.render import Style, terminal_width, use_color

__all__ = ["discard_stdout", "err", "out", "stdout_style", "stdout_width"]


def out(text: str) -> None:
    """Write ``text`` and a newline to stdout (data).

    A reader that went away (``portkit scan ... | head -c1``) is not an error: the rest
    of the output goes to /dev/null and the command ends with its usual status.
    """
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        discard_stdout()


def discard_stdout() -> None:
    """Send what is left of stdout (and its buffer) to /dev/null."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def err(text: str) -> None:
    """Write one line to stderr (messages, warnings, progress)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def stdout_style() -> Style:
    return Style(use_color(sys.stdout))


def stdout_width() -> int | None:
    return terminal_width(sys.stdout)

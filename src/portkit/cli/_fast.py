"""Shortcuts for the hottest invocations, answered without importing click.

Each shortcut recognises only the plainest form of its command (no options but
``--json``) and returns None for anything else, so click parses it instead. A
shortcut also declines on bad input (a :class:`~portkit.errors.PortkitError`):
click's path prints the one-line error.
"""

from __future__ import annotations

# Not `from typing import TYPE_CHECKING`: importing typing costs ~9 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def _lookup(args: list[str]) -> int | None:
    as_json = False
    queries: list[str] = []
    for arg in args:
        if arg == "--json":
            as_json = True
        elif arg.startswith("-") and not arg[1:2].isdigit():
            return None
        else:
            queries.append(arg)
    if not queries:
        return None
    from portkit.cli.lookup import write_lookup

    return write_lookup(queries, as_json=as_json, limit=None if as_json else 50)


def _ls(args: list[str]) -> int | None:
    from portkit.cli.see import fast_ls

    return fast_ls(args)


SHORTCUTS: dict[str, Callable[[list[str]], int | None]] = {
    "lookup": _lookup,
    "ls": _ls,
}


def try_fast(args: list[str]) -> int | None:
    """Answer ``args`` through a shortcut, or return None to use the full CLI."""
    shortcut = SHORTCUTS.get(args[0])
    if shortcut is None:
        return None
    try:
        return shortcut(args[1:])
    except Exception as exc:
        # A portkit error goes back to click's path, which reports it in one line.
        # portkit.errors is imported only here: a listing that succeeds never needs it.
        from portkit.errors import PortkitError

        if isinstance(exc, PortkitError):
            return None
        raise

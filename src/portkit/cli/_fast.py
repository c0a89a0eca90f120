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

    code = fast_ls(args)
    if code is not None and _is_the_program(["ls", *args]):
        _exit_now(code)
    return code


def _is_the_program(args: list[str]) -> bool:
    """Whether this process is ``portkit ARGS`` itself: ``__main__`` is the console
    script (or ``python -m portkit``), which runs ``portkit.cli.main`` on ``sys.argv``
    and exits with its code; not a program that calls ``main()`` and goes on."""
    import sys

    cli = sys.modules.get("portkit.cli")  # loaded: it is what called us
    main = getattr(cli, "main", None)
    return getattr(sys.modules.get("__main__"), "main", None) is main and sys.argv[1:] == args


def _exit_now(code: int) -> None:
    """Flush and end the process without tearing the interpreter down.

    Finalization (clearing every module, freeing every object) is about a third of
    the time ``portkit ls -tln`` takes above a bare interpreter start, and the
    shortcut registers no atexit handlers and leaves nothing else to flush, so the
    kernel's cleanup of the process is all that is needed.
    """
    import os
    import sys

    try:
        sys.stdout.flush()
    except BrokenPipeError:  # the reader went away (``portkit ls | head``): not an error
        code = 0
    try:
        sys.stderr.flush()
    finally:
        os._exit(code)


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

"""portkit's command line: ``portkit [COMMAND] [ARGS]...``.

The CLI is thin: parse arguments, make one library call, render. The full grammar is
click's (``_app``). The quickest, most frequent invocations (``portkit lookup 22``)
first try a shortcut (``_fast``) that answers without importing click at all, because
click alone costs about three bare interpreter starts; the shortcut declines anything
it does not recognise, and click then handles it. Tests run both paths and compare.
"""

from __future__ import annotations

import os
import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        if args and not os.environ.get("PORTKIT_NO_FAST"):
            from portkit.cli._fast import try_fast

            code = try_fast(args)
            if code is not None:
                return code
        from portkit.cli._app import run

        return run(args)
    except BrokenPipeError:
        # The reader went away (``portkit ls | head``): not an error; keep Python
        # from complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130

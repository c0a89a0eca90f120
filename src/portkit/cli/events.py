"""``portkit ls --watch``: the runner (socket events as lines or JSON lines)."""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["write_watch"]


def write_watch(
    query: Any,
    *,
    as_json: bool,
    netns: str | None,
    pid_netns: int | None,
    interval: float,
    duration: float | None,
    count: int | None,
) -> int:
    """Stream events until ``count`` or ``duration``, or Ctrl-C (exit 0 either way)."""
    from portkit.cli._output import err
    from portkit.render.events import WATCH_HEADER, event_json, event_line
    from portkit.see import netns_path
    from portkit.see._watch import watch

    path = netns_path(netns, pid_netns)

    def ready() -> None:
        what = f" (readings every {interval:g} s for openings)" if interval else ""
        err(f"portkit ls: watching socket events{what}; Ctrl-C ends")
        if not as_json:
            sys.stdout.write(WATCH_HEADER + "\n")
            sys.stdout.flush()

    fmt = event_json if as_json else event_line
    lost = 0
    write = sys.stdout.write
    try:
        for ev in watch(
            query, netns_path=path, interval=interval, duration=duration, count=count, ready=ready
        ):
            if ev.kind == "lost":
                lost += ev.count
            write(fmt(ev) + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        from portkit.cli._output import discard_stdout

        discard_stdout()
        return 0
    if lost:
        err(f"portkit ls: {lost} event(s) were lost: the kernel's buffer overflowed")
    return 0

"""``portkit top``: a live terminal view of this machine's sockets.

:mod:`portkit.tui.view` computes everything shown from a snapshot (pure, no
textual); :mod:`portkit.tui.app` is the Textual application. This package imports
neither textual nor the app: ``run_top`` loads them when it runs.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from portkit.exporter.snapshot import Snapshot

__all__ = ["run_top"]


def run_top(
    provider: Callable[[], Snapshot], *, interval: float = 1.0, title: str = "portkit top"
) -> None:
    """Run the live view until the user quits; ``provider`` is called on each refresh."""
    from portkit.tui.app import TopApp

    TopApp(provider, interval=interval, title=title).run()

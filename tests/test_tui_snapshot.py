"""portkit top as SVG screenshots (pytest-textual-snapshot), from fixed snapshots.

The scenes, service names and bind scopes are fixed (tests/test_tui.py), so each
screen is the same on every machine. After an intended change of the layout:
``pytest tests/test_tui_snapshot.py --snapshot-update`` and review the SVGs under
tests/__snapshots__/test_tui_snapshot/.
"""

from __future__ import annotations

from typing import Any

from .test_tui import ContainerScenes, Scenes, make_app

SIZE = (140, 40)


def _with_history(app: Any, refreshes: int = 11) -> Any:
    async def run_before(pilot: Any) -> None:
        for _ in range(refreshes):  # a run of scenes draws the state history
            app.refresh_now()
        await pilot.pause()

    return run_before


def test_top_screen(snap_compare: Any) -> None:
    app = make_app(Scenes(1))
    assert snap_compare(app, terminal_size=SIZE, run_before=_with_history(app))


def test_top_filtered_and_sorted(snap_compare: Any) -> None:
    app = make_app(Scenes(1))
    keys = ["slash", *"estab", "enter", "s", "s", "r"]  # established, by remote, reversed
    assert snap_compare(app, terminal_size=SIZE, press=keys, run_before=_with_history(app))


def test_top_process_details(snap_compare: Any) -> None:
    app = make_app(Scenes(1))
    assert snap_compare(app, terminal_size=SIZE, press=["tab", "tab", "enter"])


def test_top_paused_small_terminal(snap_compare: Any) -> None:
    app = make_app(Scenes(1))
    assert snap_compare(app, terminal_size=(100, 24), press=["p"])


def test_top_containers(snap_compare: Any) -> None:
    app = make_app(ContainerScenes(1))
    assert snap_compare(app, terminal_size=(180, 40), run_before=_with_history(app, 3))

"""The public surface: declared once, imported cheaply."""

from __future__ import annotations

import subprocess
import sys

import pytest

import portkit


def test_import_portkit_stays_light() -> None:
    heavy = ("click", "rich", "yaml", "asyncio", "textual", "prometheus_client", "dataclasses")
    code = (
        "import sys, portkit; portkit.Endpoint; portkit.lookup; portkit.classify(22); "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert portkit.__all__ == sorted(portkit.__all__)
    assert set(portkit.__all__) == {*portkit._EXPORTS, "__version__"}
    for name in portkit.__all__:
        assert getattr(portkit, name) is not None, name
    assert dir(portkit) == portkit.__all__


def test_unknown_attribute_raises() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        portkit.no_such_thing  # noqa: B018

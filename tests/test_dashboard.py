"""The Grafana dashboard and the alerting rules portkit ships.

The dashboard is built by scripts/build-dashboard with Grafana's own typed builders
(grafana-foundation-sdk, generated for Grafana 10.1: dashboard ``schemaVersion`` 36);
here it is checked against the same version's schema types: read back through the
SDK's dashboard model, it must come out unchanged (a key its schema does not know is
dropped, a wrong type refused), plus the structure Grafana needs to lay it out. Every
query in it is run against a real Prometheus in tests/test_exporter_prometheus.py.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from portkit.exporter import packaged
from tests.conftest import run_portkit

ROOT = Path(__file__).resolve().parent.parent


def _board() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(packaged("grafana-dashboard.json"))
    return doc


def test_the_shipped_json_is_what_the_builder_makes() -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build-dashboard"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert (ROOT / "docs" / "grafana-dashboard.json").read_text() == packaged(
        "grafana-dashboard.json"
    )


def test_valid_against_the_schema_version_it_declares() -> None:
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models.dashboard import Dashboard

    board = _board()
    # the SDK's builders and models are generated for one Grafana line: its version
    assert board["schemaVersion"] == 36
    back = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
    assert back == board


def test_the_structure_grafana_lays_out() -> None:
    board = _board()
    assert board["uid"] == "portkit" and board["title"]
    names = [v["name"] for v in board["templating"]["list"]]
    assert names == ["datasource", "instance", "expected_ports"]
    cells: set[tuple[int, int]] = set()
    titles = []
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert 0 <= pos["x"] and pos["x"] + pos["w"] <= 24 and pos["h"] > 0, panel["title"]
        mine = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & mine, f"{panel['title']} overlaps another panel"
        cells |= mine
        titles.append(panel["title"])
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs) and all(refs), panel["title"]
        assert all(t["expr"] and t["datasource"] == panel["datasource"] for t in panel["targets"])
    assert len(set(titles)) == len(titles)
    for wanted in (
        "Connections by state per listening port",
        "Accept queue fill",
        "Bytes sent and received",
        "Retransmit ratio",
        "TIME-WAIT",
        "Ephemeral ports in use",
        "Ephemeral ports run out in",
        "Unexpected listeners",
    ):
        assert wanted in titles


def test_the_cli_prints_them() -> None:
    board = run_portkit("exporter", "--grafana-dashboard")
    assert board.returncode == 0, board.stderr
    assert json.loads(board.stdout) == _board()
    rules = run_portkit("exporter", "--alert-rules")
    assert rules.returncode == 0
    assert rules.stdout == packaged("portkit-rules.yml").rstrip() + "\n"


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool is not installed (scripts/system-packages.txt lists it)")
    path = tmp_path / "portkit-rules.yml"
    path.write_text(packaged("portkit-rules.yml"))
    res = subprocess.run(
        ["promtool", "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "5 rules found" in res.stdout

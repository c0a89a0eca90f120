"""``plan check`` against real listeners on loopback: this machine and probes."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

import portkit.plan as pp
from portkit.plan._check import Target, decide_local, decide_remote, targets
from portkit.plan._model import Exposure
from tests.conftest import Runner


def _tcp(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, 0))
    s.listen(8)
    return s


def _free_port() -> int:
    """A port nothing listens on (bound, read back, released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class Listeners:
    def __init__(self) -> None:
        self.loopback = _tcp("127.0.0.1")
        self.public = _tcp("0.0.0.0")
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.lo = self.loopback.getsockname()[1]
        self.pub = self.public.getsockname()[1]
        self.dgram = self.udp.getsockname()[1]
        self.none = _free_port()

    def close(self) -> None:
        for s in (self.loopback, self.public, self.udp):
            s.close()


@pytest.fixture
def live() -> Iterator[Listeners]:
    ls = Listeners()
    try:
        yield ls
    finally:
        ls.close()


def _plan_file(tmp_path: Path, live: Listeners) -> Path:
    f = tmp_path / "plan.yaml"
    f.write_text(
        f"""portkit: plan/v1
services:
  lo:      {{ports: [{{port: {live.lo}, exposure: loopback}}]}}
  pub:     {{ports: [{{port: {live.pub}, exposure: public}}]}}
  dns:     {{ports: [{{port: {live.dgram}, protocol: udp, exposure: loopback}}]}}
  down:    {{ports: [{{port: {live.none}, exposure: public}}]}}
  leaky:   {{ports: [{{port: {live.pub}, exposure: internal}}]}}
  shy:     {{ports: [{{port: {live.lo}, exposure: public}}]}}
"""
    )
    return f


def _by_service(results: list[pp.CheckResult]) -> dict[str, tuple[str, str]]:
    return {r.mapping.service: (r.status, r.detail) for r in results}


def test_check_this_machine(tmp_path: Path, live: Listeners) -> None:
    plan = pp.load_plan([str(_plan_file(tmp_path, live))])
    got = _by_service(pp.check(plan, timeout=2))
    assert got["lo"][0] == "ok" and "loopback only" in got["lo"][1]
    assert got["pub"][0] == "ok" and "0.0.0.0" in got["pub"][1]
    assert got["dns"][0] == "ok"
    assert got["down"] == ("miss", "nothing listens here")
    assert got["leaky"][0] == "miss" and "every interface" in got["leaky"][1]
    assert got["shy"][0] == "miss" and "loopback only" in got["shy"][1]
    results = {r.mapping.service: r for r in pp.check(plan, timeout=2)}
    assert results["pub"].reachable is True and results["pub"].listening == ("0.0.0.0",)
    assert results["dns"].reachable is None  # no connect for UDP on this machine


def test_check_a_host_by_probes(tmp_path: Path, live: Listeners) -> None:
    f = tmp_path / "remote.yaml"
    f.write_text(
        f"""portkit: plan/v1
services:
  web:     {{ports: [{{port: {live.lo}, exposure: public}}]}}
  db:      {{ports: [{{port: {live.none}, exposure: internal}}]}}
  gone:    {{ports: [{{port: {live.none}, exposure: public}}]}}
  exposed: {{ports: [{{port: {live.pub}, exposure: loopback}}]}}
  dns:     {{ports: [{{port: {live.dgram}, protocol: udp, exposure: public}}]}}
"""
    )
    plan = pp.load_plan([str(f)])
    got = _by_service(pp.check(plan, host="127.0.0.1", timeout=1))
    assert got["web"] == ("ok", "accepts connections")
    assert got["db"] == ("ok", "not reachable from here (refused), as planned")
    assert got["gone"] == ("miss", "connection refused: nothing listens there")
    assert got["exposed"] == ("miss", "reachable from here, but planned loopback")
    assert got["dns"][0] == "unknown"  # a silent UDP port: open or filtered


def test_plan_hosts_are_probed_where_the_plan_puts_them(tmp_path: Path, live: Listeners) -> None:
    f = tmp_path / "hosts.yaml"
    f.write_text(
        f"portkit: plan/v1\nhosts: {{box: 127.0.0.1}}\n"
        f"services:\n  web: {{host: box, ports: [{{port: {live.lo}, exposure: public}}]}}\n"
    )
    (r,) = pp.check(pp.load_plan([str(f)]), timeout=1)
    assert (r.where, r.status) == ("127.0.0.1", "ok")


def test_check_a_compose_file(tmp_path: Path, live: Listeners) -> None:
    f = tmp_path / "compose.yaml"
    f.write_text(
        f"""services:
  web:
    ports:
      - "127.0.0.1:{live.lo}:80"
      - "{live.pub}:80"
      - "{live.none}:80"
      - "3000"
      - "{live.pub}-{live.pub + 5}:9000"
    expose: ["5432"]
"""
    )
    results = pp.check(pp.load_plan([str(f)], environ={}), timeout=2)
    assert [r.status for r in results] == ["ok", "ok", "miss", "skip", "ok", "skip"]
    assert "engine" in results[3].detail and "pool" in results[4].detail


def test_targets_skip_what_lives_inside_a_cluster() -> None:
    plan = pp.load_plan([str(Path(__file__).parent / "data/plan/forms/k8s-forms.yaml")])
    skipped = [t.skip for t in targets(plan) if t.skip]
    assert "inside the cluster only" in skipped
    assert any("ingress controller" in s for s in skipped)
    assert any("not bound on the node" in s for s in skipped)


_T = Target(None, None, (80,), "tcp", Exposure.PUBLIC, None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("expected", "addrs", "reach", "status"),
    [
        (Exposure.PUBLIC, {"0.0.0.0"}, True, "ok"),
        (Exposure.PUBLIC, {"::"}, True, "ok"),
        (Exposure.PUBLIC, {"127.0.0.1", "::1"}, True, "miss"),
        (Exposure.PUBLIC, set(), True, "ok"),  # DNAT without a listener
        (Exposure.PUBLIC, set(), False, "miss"),
        (Exposure.LOOPBACK, {"127.0.0.1"}, True, "ok"),
        (Exposure.LOOPBACK, {"10.0.0.5"}, True, "miss"),
        (Exposure.INTERNAL, {"10.0.0.5"}, True, "ok"),
        (Exposure.INTERNAL, {"0.0.0.0"}, True, "miss"),
        (Exposure.INTERNAL, {"8.8.8.8"}, True, "miss"),
        (Exposure.ADDRESS, {"0.0.0.0"}, True, "miss"),
    ],
)
def test_local_decisions(expected: Exposure, addrs: set[str], reach: bool, status: str) -> None:
    t = Target(
        _T.mapping,
        None,
        (80,),
        "tcp",
        expected,
        "10.0.0.5" if expected is Exposure.ADDRESS else None,
    )
    assert decide_local(t, addrs, reach)[0] == status


@pytest.mark.parametrize(
    ("expected", "state", "status"),
    [
        (Exposure.PUBLIC, "open", "ok"),
        (Exposure.PUBLIC, "filtered", "miss"),
        (Exposure.INTERNAL, "filtered", "ok"),
        (Exposure.LOOPBACK, "open", "miss"),
        (Exposure.PUBLIC, "open|filtered", "unknown"),
    ],
)
def test_remote_decisions(expected: Exposure, state: str, status: str) -> None:
    t = Target(_T.mapping, "h", (80,), "tcp", expected, None)
    assert decide_remote(t, state)[0] == status


# --- through the command line ----------------------------------------------------------------


def test_cli_check_lines_summary_and_exit_codes(
    cli: Runner, tmp_path: Path, live: Listeners
) -> None:
    f = _plan_file(tmp_path, live)
    r = cli("plan", "check", str(f), "--timeout", "2")
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:4] == ["STATUS", "ADDRESS", "PLANNED", "OBJECT"]
    assert lines[-1] == "6 mappings: 3 ok, 3 miss, 0 unknown, 0 skip"
    r = cli("plan", "check", str(f), "--json")
    objs = json.loads(r.stdout)
    assert {o["status"] for o in objs} == {"ok", "miss"}
    assert set(objs[0]) >= {
        "file",
        "line",
        "object",
        "address",
        "protocol",
        "expected",
        "status",
        "detail",
    }
    ok = tmp_path / "ok.yaml"
    ok.write_text(
        f"portkit: plan/v1\nservices:\n  lo: {{ports: [{{port: {live.lo}, exposure: loopback}}]}}\n"
    )
    r = cli("plan", "check", str(ok), "--host", "127.0.0.1")
    assert r.returncode == 1  # probed from "outside", a loopback port must not answer
    r = cli("plan", "check", str(ok))
    assert r.returncode == 0, r.stdout

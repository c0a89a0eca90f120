"""check, scan and wait against the two-namespace lab's ground truth (IPv4 and IPv6).

Everything portkit runs here runs inside the client namespace (``ip netns exec``),
which has no default route: nothing can reach beyond the lab's target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests import _lab

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab() -> Iterator[_lab.Lab]:
    if os.geteuid() != 0:
        pytest.fail("the lab builds network namespaces: needs root")
    missing = _lab.tools_missing()
    if missing:
        pytest.fail(f"the lab needs {', '.join(missing)} (scripts/system-packages.txt)")
    with _lab.Lab() as built:
        yield built


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def _planned_tcp(plan: dict[str, Any]) -> list[int]:
    ports = sorted(p for ports in plan["tcp"].values() for p in ports)
    return [*ports, 1, 2, 1000, 65535]  # and a few closed ones


# --- scan ---------------------------------------------------------------------------------


def test_full_tcp_range_v4_matches_ground_truth(lab: _lab.Lab) -> None:
    data = _json(lab.portkit("scan", _lab.TARGET_V4, "-p-", "--all", "--json"))
    truth = _lab.tcp_truth(lab.plan)
    got = {d["port"]: d for d in data}
    assert len(got) == 65535
    mismatches = [p for p, state in truth.items() if got[p]["state"] != state]
    assert mismatches == []
    for port, d in got.items():
        kind = _lab.tcp_kind(lab.plan, port)
        expected = _lab.TCP_REASONS.get(kind, {"conn-refused"})
        assert d["reason"] in expected, (port, kind, d)
        assert d["host"] == _lab.TARGET_V4
        assert d["protocol"] == "tcp"
    assert got[22]["service"] == "ssh"
    assert got[443]["service"] == "https"
    assert got[22]["rtt_ms"] is not None


def test_tcp_v6_matches_ground_truth(lab: _lab.Lab) -> None:
    ports = _planned_tcp(lab.plan)
    spec = ",".join(map(str, ports))
    data = _json(lab.portkit("scan", _lab.TARGET_V6, "-p", spec, "--all", "--json"))
    truth = _lab.tcp_truth(lab.plan)
    assert {d["port"] for d in data} == set(ports)
    for d in data:
        kind = _lab.tcp_kind(lab.plan, d["port"])
        assert d["state"] == truth[d["port"]], (kind, d)
        assert d["reason"] in _lab.TCP_REASONS.get(kind, {"conn-refused"}), (kind, d)
        assert d["host"] == _lab.TARGET_V6


def test_default_table_shows_open_ports_and_counts_the_rest(lab: _lab.Lab) -> None:
    done = lab.portkit("scan", _lab.TARGET_V4, "-p", ",".join(map(str, _planned_tcp(lab.plan))))
    assert done.returncode == 0, done.stderr
    rows = [r for r in (line.split() for line in done.stdout.splitlines()[1:]) if "/tcp" in r[1]]
    assert sorted(int(r[1].split("/")[0]) for r in rows) == lab.plan["tcp"]["open"]
    t = lab.plan["tcp"]
    filtered = (
        len(t["drop"]) + len(t["reject_admin"]) + len(t["reject_host"]) + len(t["reject_net"])
    )
    assert f"{filtered} filtered tcp (" in done.stdout
    assert "admin-prohibited" in done.stdout


def test_udp_v4_and_v6_match_ground_truth(lab: _lab.Lab) -> None:
    truth = _lab.udp_truth(lab.plan)
    spec = ",".join(map(str, sorted(truth)))
    for host in (_lab.TARGET_V4, _lab.TARGET_V6):
        done = lab.portkit("scan", host, "--udp", "-p", spec, "--all", "--json", "--banner")
        data = _json(done)
        got = {d["port"]: d for d in data}
        assert {p: d["state"] for p, d in got.items()} == truth, host
        u = lab.plan["udp"]
        assert got[u["dns"]]["reason"] == "udp-response"
        assert got[u["dns"]]["banner"]  # the reply to the DNS payload
        assert got[u["ntp"]]["service"] == "ntp"
        for p in u["reject_admin"]:
            assert got[p]["reason"] == "admin-prohibited"
        for p in u["closed"]:
            assert got[p]["reason"] == "port-unreach"
        assert "rate limited" not in done.stderr


def test_udp_icmp_rate_limit_is_reported(lab: _lab.Lab) -> None:
    lab.set_icmp_ratelimit(1000)  # the Linux default: a burst of 6, then 1 a second
    try:
        done = lab.portkit("scan", _lab.TARGET_V4, "--udp", "-p", "40000-40059")
    finally:
        lab.set_icmp_ratelimit(0)
    assert done.returncode == 0
    assert "ICMP port-unreachable answers are rate limited" in done.stderr
    assert "open|filtered may be closed" in done.stderr


def test_scan_a_range_of_hosts(lab: _lab.Lab) -> None:
    # .1 is the client itself, .2 the target, .3 nobody (ARP fails: filtered).
    data = _json(
        lab.portkit("scan", "10.204.0.1-3", "-p", "22,1", "--all", "--json", "--timeout", "0.3")
    )
    states = {(d["host"], d["port"]): d["state"] for d in data}
    assert states[(_lab.TARGET_V4, 22)] == "open"
    assert states[(_lab.TARGET_V4, 1)] == "closed"
    assert states[(_lab.CLIENT_V4, 22)] == "closed"
    assert states[("10.204.0.3", 22)] == "filtered"


# --- check --------------------------------------------------------------------------------


def _one_of_each(plan: dict[str, Any]) -> dict[str, int]:
    return {kind: ports[0] for kind, ports in plan["tcp"].items() if kind != "open"} | {
        "open": 22,
        "closed": 1,
    }


@pytest.mark.parametrize("host", [_lab.TARGET_V4, _lab.TARGET_V6])
def test_check_every_class(lab: _lab.Lab, host: str) -> None:
    picks = _one_of_each(lab.plan)
    literal = f"[{host}]" if ":" in host else host
    targets = [f"{literal}:{port}" for port in picks.values()]
    done = lab.portkit("check", *targets, "--json", "--timeout", "0.5")
    assert done.returncode == 1  # not all open
    data = _json(done)
    expected = {
        "open": ("open", "syn-ack"),
        "closed": ("closed", "conn-refused"),
        "drop": ("filtered", "no-response"),
        "reject_port": ("closed", "port-unreach"),
        "reject_admin": ("filtered", "admin-prohibited"),
        "reject_reset": ("closed", "conn-refused"),
        "reject_host": ("filtered", "host-unreach"),
        "reject_net": ("filtered", "net-unreach"),
    }
    for kind, d in zip(picks, data, strict=True):
        assert (d["state"], d["reason"]) == expected[kind], (kind, d)
        assert d["address"] == host


def test_check_extras_in_the_lab(lab: _lab.Lab) -> None:
    t = _lab.TARGET_V4
    done = lab.portkit(
        "check", f"{t}:22", f"{t}:25", f"{t}:{_lab.REDIS_PORT}", "--banner", "--json"
    )
    assert done.returncode == 0, done.stderr
    banners = [d["banner"] for d in _json(done)]
    assert banners == ["SSH-2.0-OpenSSH_9.6 portkit-lab", "220 lab.portkit.test ESMTP", "+PONG"]
    done = lab.portkit("check", f"{t}:{_lab.TLS_PORT}", "--tls", "--http", "/health", "--json")
    (d,) = _json(done)
    assert d["tls"]["subject"] == "CN=lab.portkit.test, O=portkit lab"
    assert d["tls"]["verified"] is False
    assert d["http_status"] == 200
    assert done.returncode == 0
    done = lab.portkit("check", f"[{_lab.TARGET_V6}]:{_lab.HTTP_PORT}", "--http", "/nope")
    assert done.returncode == 1
    assert "404" in done.stdout
    u = lab.plan["udp"]
    done = lab.portkit(
        "check", f"{t}:{u['dns']}/udp", f"[{_lab.TARGET_V6}]:{u['snmp']}/udp", "--json"
    )
    assert done.returncode == 0
    assert [d["state"] for d in _json(done)] == ["open", "open"]


def test_library_inside_the_namespace(lab: _lab.Lab) -> None:
    code = textwrap.dedent(
        f"""
        import json, portkit
        r = portkit.check(["{_lab.TARGET_V4}:22", "[{_lab.TARGET_V6}]:1"])
        s = portkit.scan("{_lab.TARGET_V4}", "20-30", keep=["open"])
        w = portkit.wait_for_sync("{_lab.TARGET_V4}:80", timeout=5)
        print(json.dumps([[x.state.value for x in r], s.open_ports(), w.ready]))
        """
    )
    done = lab.python(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [["open", "closed"], [22, 25], True]


# --- wait ---------------------------------------------------------------------------------


def test_wait_for_a_port_that_opens_later(lab: _lab.Lab) -> None:
    port = 47123
    listener = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            lab.target,
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import socket, time
                time.sleep(0.8)
                s = socket.create_server(("::", {port}), family=socket.AF_INET6,
                                         dualstack_ipv6=True)
                time.sleep(20)
                """
            ),
        ]
    )
    try:
        done = lab.portkit(
            "wait",
            f"{_lab.TARGET_V4}:{port}",
            f"[{_lab.TARGET_V6}]:{port}",
            "--timeout",
            "20",
            "--interval",
            "0.1",
            "--",
            sys.executable,
            "-c",
            "import sys; sys.exit(5)",
        )
    finally:
        listener.kill()
        listener.wait()
    assert done.returncode == 5, done.stderr
    assert done.stderr.count("is open after") == 2


def test_wait_resolves_the_name_again_on_every_try(lab: _lab.Lab) -> None:
    name = "db.pk4.test"
    timer = threading.Timer(0.6, lab.add_host, (name, _lab.TARGET_V4))
    timer.start()
    try:
        done = lab.portkit("wait", f"{name}:22", "--timeout", "20", "--interval", "0.1", "--json")
    finally:
        timer.cancel()
        timer.join()
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["attempts"] >= 2  # it failed to resolve first, then found the new record
    assert data["targets"][0]["address"] == _lab.TARGET_V4


def test_wait_timeout_on_filtered_port(lab: _lab.Lab) -> None:
    dropped = lab.plan["tcp"]["drop"][0]
    done = lab.portkit(
        "wait",
        f"{_lab.TARGET_V4}:{dropped}",
        "--timeout",
        "1",
        "--attempt-timeout",
        "0.3",
        "--json",
    )
    assert done.returncode == 124
    data = json.loads(done.stdout)
    assert data["ready"] is False
    assert data["targets"][0]["state"] == "filtered"


def test_wait_closed_in_the_lab(lab: _lab.Lab) -> None:
    rejected = lab.plan["tcp"]["reject_reset"][0]
    done = lab.portkit("wait", f"{_lab.TARGET_V4}:{rejected}", "--closed", "--timeout", "5")
    assert done.returncode == 0
    done = lab.portkit("wait", f"{_lab.TARGET_V4}:22", "--closed", "--timeout", "0.5")
    assert done.returncode == 124

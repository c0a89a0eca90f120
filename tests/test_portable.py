"""The code macOS, the BSDs and Windows get, run here on purpose.

* The reach engines over ``selectors`` (``PORTKIT_POLLER=poll`` and ``select``: no epoll,
  no ICMP error queue) against the lab's ground truth, TCP and UDP, IPv4 and IPv6: the
  states must be the truth's; the reasons may be coarser where only the errno is known
  (docs/reach.md, "On other systems").
* Every command in an interpreter without ``select.epoll``, and with ``sys.platform`` set
  to ``darwin`` or ``win32`` before portkit is imported: it works, or it says in one line
  that it needs Linux (exit 3), never a traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests import _lab

#: What a platform without the error queue may say for each lab treatment (TCP).
PORTABLE_TCP_REASONS = {
    "open": {"syn-ack"},
    "drop": {"no-response"},
    "reject_port": {"conn-refused", "port-unreach"},
    "reject_admin": {"host-unreach", "admin-prohibited", "host-prohibited", "no-response"},
    "reject_reset": {"conn-refused"},
    "reject_host": {"host-unreach", "no-response"},
    "reject_net": {"net-unreach", "no-response"},
}
POLLERS = ["poll", "select"]


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
    return [*ports, 1, 2, 1000, 65535]


@pytest.mark.netns
@pytest.mark.parametrize("poller", POLLERS)
@pytest.mark.parametrize("host", [_lab.TARGET_V4, _lab.TARGET_V6])
def test_tcp_engine_over_selectors_matches_ground_truth(
    lab: _lab.Lab, poller: str, host: str
) -> None:
    ports = _planned_tcp(lab.plan)
    spec = ",".join(map(str, ports))
    done = lab.portkit("scan", host, "-p", spec, "--all", "--json", env={"PORTKIT_POLLER": poller})
    data = _json(done)
    truth = _lab.tcp_truth(lab.plan)
    assert {d["port"] for d in data} == set(ports)
    for d in data:
        kind = _lab.tcp_kind(lab.plan, d["port"])
        assert d["state"] == truth[d["port"]], (poller, kind, d)
        assert d["reason"] in PORTABLE_TCP_REASONS.get(kind, {"conn-refused"}), (kind, d)


@pytest.mark.netns
@pytest.mark.parametrize("poller", POLLERS)
def test_full_tcp_range_over_poll(lab: _lab.Lab, poller: str) -> None:
    """Every port: the selector loop keeps up with a whole range (and select() stays
    under its descriptor limit)."""
    data = _json(
        lab.portkit("scan", _lab.TARGET_V4, "-p-", "--json", env={"PORTKIT_POLLER": poller})
    )
    assert sorted(d["port"] for d in data) == lab.plan["tcp"]["open"]


@pytest.mark.netns
@pytest.mark.parametrize("poller", POLLERS)
@pytest.mark.parametrize("host", [_lab.TARGET_V4, _lab.TARGET_V6])
def test_udp_engine_with_connected_sockets_matches_ground_truth(
    lab: _lab.Lab, poller: str, host: str
) -> None:
    truth = _lab.udp_truth(lab.plan)
    spec = ",".join(map(str, sorted(truth)))
    done = lab.portkit(
        "scan", host, "--udp", "-p", spec, "--all", "--json", env={"PORTKIT_POLLER": poller}
    )
    got = {d["port"]: d for d in _json(done)}
    assert {p: d["state"] for p, d in got.items()} == truth, (poller, host)
    for p in lab.plan["udp"]["closed"]:
        assert got[p]["reason"] == "port-unreach"


@pytest.mark.netns
@pytest.mark.parametrize("poller", POLLERS)
def test_check_and_wait_over_selectors(lab: _lab.Lab, poller: str) -> None:
    t = lab.plan["tcp"]
    targets = [f"{_lab.TARGET_V4}:{t['open'][0]}", f"{_lab.TARGET_V4}:1"]
    data = _json(
        lab.portkit("check", *targets, "--json", "--timeout", "0.5", env={"PORTKIT_POLLER": poller})
    )
    assert [(d["state"], d["reason"]) for d in data] == [
        ("open", "syn-ack"),
        ("closed", "conn-refused"),
    ]
    done = lab.portkit(
        "wait", f"{_lab.TARGET_V4}:{t['open'][0]}", "--timeout", "5", env={"PORTKIT_POLLER": poller}
    )
    assert done.returncode == 0, done.stderr


# --- other systems, as far as they can be faked here --------------------------------------

_FAKE = """
import runpy, select, sys
if hasattr(select, "epoll"):
    del select.epoll
# What decides on the platform at its own import (the standard library, click, psutil)
# is imported as this system's; portkit is imported under the faked platform.
import asyncio, selectors, subprocess, click, psutil
platform = {platform!r}
if platform:
    sys.platform = platform
sys.argv = ["portkit", *{args!r}]
runpy.run_module("portkit", run_name="__main__")
"""

#: Every command, in a form that is quick and touches nothing beyond loopback.
COMMANDS: list[list[str]] = [
    ["lookup", "22"],
    ["free", "-n", "2"],
    ["ls", "-tln"],
    ["ls", "-tanp", "--json"],
    ["ls", "--all-netns"],
    ["ls", "--netns", "nope"],
    ["who", "1"],
    ["stats"],
    [],
    ["--json"],
    ["check", "127.0.0.1:1"],
    ["wait", "127.0.0.1:1", "--timeout", "0.3"],
    ["scan", "127.0.0.1", "-p", "1-50"],
    ["scan", "127.0.0.1", "--udp", "-p", "1-5"],
    ["connect", "127.0.0.1:1", "--timeout", "0.3"],
    ["plan", "lint", "/dev/null"],
    ["exporter", "--once"],
    ["completion", "bash"],
    ["why", "127.0.0.1:1"],
    ["ls", "--container", "web"],
    ["kill", "--dport", "1", "--dry-run"],
]


#: What must refuse (exit 3, naming the platform) where it is not Linux.
LINUX_ONLY = [
    ["ls", "--all-netns"],
    ["ls", "--netns"],
    ["ls", "--container"],
    ["why", "127.0.0.1:1"],
    ["kill", "--dport"],
]


@pytest.mark.parametrize("platform", ["", "darwin", "win32"])
@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a) or "(overview)")
def test_every_command_without_epoll_works_or_says_linux(platform: str, args: list[str]) -> None:
    code = _FAKE.format(platform=platform, args=args)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in done.stderr, (platform, args, done.stderr[-2000:])
    if platform and args[:2] in LINUX_ONLY:
        assert done.returncode == 3, (args, done.stderr)
        assert f"need Linux; this system is {platform}" in done.stderr
    if done.returncode == 3:
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
    else:
        assert done.returncode in (0, 1, 2, 124), (platform, args, done.returncode, done.stderr)


def _fake(platform: str, *args: str) -> subprocess.Popen[str]:
    code = _FAKE.format(platform=platform, args=list(args))
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_serve_forward_connect_without_epoll(platform: str) -> None:
    """The asyncio data path (what other systems get) relays end to end: serve echo,
    forward to it, connect through it; both stop cleanly on SIGTERM."""
    import re
    import signal
    import socket

    from portkit.free import free_port

    echo_port = free_port(host="127.0.0.1")
    server = _fake(platform, "serve", "echo", "--tcp", str(echo_port))
    forward = _fake(platform, "forward", f"0:{echo_port}")
    try:
        assert forward.stderr is not None
        line = forward.stderr.readline()
        found = re.search(r"listening 127\.0\.0\.1:(\d+)/tcp", line)
        assert found, line
        listen = int(found.group(1))
        got = b""
        deadline = 50
        while deadline:
            try:
                with socket.create_connection(("127.0.0.1", listen), timeout=5) as c:
                    c.sendall(b"ping\n")
                    c.shutdown(socket.SHUT_WR)
                    got = b""
                    while chunk := c.recv(100):
                        got += chunk
                if got == b"ping\n":
                    break
            except OSError:
                pass
            time.sleep(0.1)
            deadline -= 1
        assert got == b"ping\n"
    finally:
        for proc in (forward, server):
            proc.send_signal(signal.SIGTERM)
        for proc in (forward, server):
            _, err = proc.communicate(timeout=30)
            assert "Traceback" not in err, err

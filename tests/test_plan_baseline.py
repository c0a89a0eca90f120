"""A listening baseline (issue 17): ``plan snapshot`` writes what listens, ``plan check``
of it reports new, wider and missing listeners. Real sockets in a network namespace of
the test's own (so nothing else listens there), read with ``--netns``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import portkit.plan as pp
from portkit.plan._baseline import Listener, allowed
from portkit.plan._model import Exposure
from tests.conftest import run_portkit

pytestmark = pytest.mark.netns

NS = f"pkbase-{os.getpid()}"

# Listens on each ADDR:PORT/PROTO given, prints "ready", waits for stdin to close.
LISTEN = r"""
import socket, sys
keep = []
for spec in sys.argv[1:]:
    addr, rest = spec.rsplit(":", 1)
    addr = addr.strip("[]")
    port, proto = rest.split("/")
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
    s = socket.socket(fam, kind)
    s.bind((addr, int(port)))
    if proto == "tcp":
        s.listen(8)
    keep.append(s)
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    subprocess.run(["ip", "netns", "add", NS], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", NS, "link", "set", "lo", "up"], check=True)
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True)


@contextlib.contextmanager
def _listening(ns: str, *specs: str) -> Iterator[None]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", LISTEN, *specs],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def _snapshot(ns: str, tmp_path: Path) -> Path:
    done = run_portkit("plan", "snapshot", "--netns", ns, "--name", "lab")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "lab.plan.yaml"
    path.write_text(done.stdout)
    return path


def _check(ns: str, path: Path) -> tuple[int, list[dict[str, object]]]:
    done = run_portkit("plan", "check", str(path), "--netns", ns, "--json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def test_snapshot_then_check(netns: str, tmp_path: Path) -> None:
    with _listening(netns, "127.0.0.1:15432/tcp", "0.0.0.0:18080/tcp", "0.0.0.0:15353/udp"):
        path = _snapshot(netns, tmp_path)
        text = path.read_text()
        assert "baseline: true" in text
        assert '{port: 15432, protocol: tcp, address: "127.0.0.1", exposure: loopback}' in text
        assert '{port: 18080, protocol: tcp, address: "0.0.0.0", exposure: public}' in text
        assert '{port: 15353, protocol: udp, address: "0.0.0.0", exposure: public}' in text
        assert '"python' in text  # the owner's name
        plan = pp.load_plan([str(path)], environ={})
        assert pp.is_baseline(plan) and not pp.lint(plan)
        code, results = _check(netns, path)
        assert code == 0, results
        assert {r["status"] for r in results} == {"ok"}


def test_new_wider_and_missing_listeners(netns: str, tmp_path: Path) -> None:
    with _listening(netns, "127.0.0.1:15432/tcp", "0.0.0.0:18080/tcp"):
        path = _snapshot(netns, tmp_path)
    # 15432 now on every interface (wider), 18080 gone (missing), 2222 new (unexpected)
    with _listening(netns, "0.0.0.0:15432/tcp", "0.0.0.0:2222/tcp", "[::1]:2223/tcp"):
        code, results = _check(netns, path)
        human = run_portkit("plan", "check", str(path), "--netns", netns)
    assert code == 1
    by_address = {str(r["address"]): r for r in results}
    assert by_address["127.0.0.1:15432/tcp"]["status"] == "miss"
    assert "planned loopback, but listening on every interface" in str(
        by_address["127.0.0.1:15432/tcp"]["detail"]
    )
    assert by_address["0.0.0.0:18080/tcp"]["status"] == "miss"
    assert by_address["0.0.0.0:18080/tcp"]["detail"] == "nothing listens here"
    unexpected = {r["address"]: r for r in results if r["status"] == "unexpected"}
    assert set(unexpected) == {"0.0.0.0:2222/tcp", "[::1]:2223/tcp"}
    assert "python" in str(unexpected["0.0.0.0:2222/tcp"]["detail"])
    assert human.returncode == 1
    assert "2 mappings: 0 ok, 2 miss, 0 unknown, 0 skip; 2 unexpected listeners" in human.stdout


def test_a_plan_without_baseline_reports_no_unexpected(netns: str, tmp_path: Path) -> None:
    path = tmp_path / "stack.yaml"
    path.write_text(
        "portkit: plan/v1\nservices:\n  db: {ports: [{port: 15432, exposure: loopback}]}\n"
    )
    with _listening(netns, "127.0.0.1:15432/tcp", "0.0.0.0:2222/tcp"):
        code, results = _check(netns, path)
    assert code == 0 and [r["status"] for r in results] == ["ok"]


@pytest.mark.parametrize(
    ("planned", "exposure", "address", "ok"),
    [
        ("0.0.0.0", Exposure.PUBLIC, "10.0.0.5", True),
        ("0.0.0.0", Exposure.PUBLIC, "::", False),  # another family
        ("::", Exposure.PUBLIC, "::1", True),
        ("127.0.0.1", Exposure.LOOPBACK, "127.0.0.1", True),
        ("127.0.0.1", Exposure.LOOPBACK, "0.0.0.0", False),  # wider
        ("10.0.0.5", Exposure.INTERNAL, "127.0.0.1", True),  # narrower
        ("10.0.0.5", Exposure.INTERNAL, "10.0.0.6", False),
        (None, Exposure.INTERNAL, "0.0.0.0", False),
        (None, Exposure.INTERNAL, "10.0.0.6", True),
        (None, Exposure.PUBLIC, "::", True),
    ],
)
def test_allowed_binds(planned: str | None, exposure: Exposure, address: str, ok: bool) -> None:
    assert allowed(planned, exposure, address) is ok


def test_snapshot_text_reads_back_as_a_plan() -> None:
    from portkit.plan._native import read_native
    from portkit.plan._yaml import load_documents

    listeners = [
        Listener("tcp", "0.0.0.0", 22, "sshd", None),
        Listener("tcp", "::", 22, "sshd", None),
        Listener("tcp", "0.0.0.0", 18082, "docker-proxy", "shop_web_1 (compose shop/web)"),
        Listener("udp", "10.0.0.5", 53, "dnsmasq", None),
        Listener("tcp", "127.0.0.1", 5432, None, None),
    ]
    text = pp.snapshot_text(listeners, 'odd "host"')
    plan = read_native(load_documents(text)[0], "x.yaml")
    assert not plan.issues
    assert {s.name for s in plan.native.services} == {  # type: ignore[union-attr]
        "sshd",
        "container shop_web_1 (compose shop/web)",
        "dnsmasq",
        "unknown",
    }
    exposures = {(m.host_ip, m.exposure.value) for m in plan.mappings}
    assert ("10.0.0.5", "internal") in exposures and ("::", "public") in exposures

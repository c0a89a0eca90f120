"""``portkit ls --watch``: socket events from the sock_diag destroy groups, and openings
from readings, in a namespace of this module's own (nothing else opens sockets there).
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from portkit.render.events import event_json
from portkit.see._watch import WatchEvent
from tests.conftest import run_portkit

pytestmark = [pytest.mark.netns]

NS = f"pk16w-{os.getpid()}"
PORT = 7016

BURST = r"""
import socket, sys, threading
port, n = int(sys.argv[1]), int(sys.argv[2])
srv = socket.socket(); srv.bind(("127.0.0.1", port)); srv.listen(4096)
def serve():
    for _ in range(n):
        a, _ = srv.accept(); a.recv(16); a.close()
t = threading.Thread(target=serve); t.start()
for i in range(n):
    c = socket.create_connection(("127.0.0.1", port)); c.sendall(b"hello"); c.close()
t.join()
print("done", flush=True)
"""

HOLD = r"""
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(16)
print("listening", flush=True)
sys.stdin.readline()
c = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); a, _ = srv.accept()
print("connected", flush=True)
sys.stdin.readline()
a.close(); c.close()
print("closed", flush=True)
sys.stdin.read()
"""


@pytest.fixture(scope="module")
def ns() -> Iterator[str]:
    subprocess.run(["ip", "netns", "add", NS], check=True, capture_output=True, timeout=30)
    try:
        subprocess.run(
            ["ip", "-n", NS, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=30
        )
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=30)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _watcher(ns: str, *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "portkit", "ls", "--watch", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert "watching socket events" in line, line
    return proc


def _lines(proc: subprocess.Popen[str], want: int, deadline: float = 60) -> list[dict[str, Any]]:
    assert proc.stdout is not None
    out: list[dict[str, Any]] = []
    end = time.monotonic() + deadline
    while len(out) < want and time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], 0.5)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(json.loads(line))
    return out


def test_a_burst_of_short_connections_loses_none(ns: str) -> None:
    n = 1000
    watcher = _watcher(
        ns, "--json", "-t", "--dport", str(PORT), "--interval", "0", "--count", str(n)
    )
    try:
        burst = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-c", BURST, str(PORT), str(n)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert burst.stdout.strip() == "done", burst.stderr
        events = _lines(watcher, n)
        assert watcher.wait(timeout=30) == 0  # --count ends it
        assert [e for e in events if e["event"] == "lost"] == []
        assert len(events) == n
        assert {e["event"] for e in events} == {"close"}
        assert len({e["cookie"] for e in events}) == n
        assert {e["remote"]["port"] for e in events} == {PORT}
        assert {e["role"] for e in events} == {"client"}
        # each one's last tcp_info: the 5 bytes sent, its SYN and FIN acknowledged
        assert {e["tcp_info"]["bytes_acked"] for e in events} == {7}
    finally:
        _stop(watcher)


def test_openings_and_closings_with_owners(ns: str) -> None:
    holder = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", HOLD, str(PORT + 1)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    watcher = None
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert holder.stdout.readline().strip() == "listening"
        watcher = _watcher(
            ns, "--json", "-tp", "--sport", str(PORT + 1), "--interval", "0.2", "--count", "2"
        )
        holder.stdin.write("connect\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "connected"
        (opened,) = _lines(watcher, 1)
        assert opened["event"] == "open" and opened["role"] == "server"
        assert opened["pid"] == holder.pid and opened["state"] == "ESTABLISHED"
        holder.stdin.write("close\n")
        holder.stdin.flush()
        (closed,) = _lines(watcher, 1)
        assert closed["event"] == "close" and closed["cookie"] == opened["cookie"]
        assert closed["pid"] == holder.pid  # known from the reading that saw it open
        assert watcher.wait(timeout=30) == 0
    finally:
        for proc in (watcher, holder):
            if proc is not None:
                _stop(proc)


def test_the_table_and_its_duration(ns: str) -> None:
    res = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            sys.executable,
            "-m",
            "portkit",
            "ls",
            "--watch",
            "--duration",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[0].split()[:3] == ["TIME", "EVENT", "PROTO"]


@pytest.mark.parametrize(
    "args",
    [
        ("--watch", "--csv"),
        ("--watch", "-i"),
        ("--watch", "--all-netns"),
        ("--count", "3"),
        ("--watch", "--count", "0"),
        ("--watch", "--duration", "nan"),
    ],
)
def test_bad_combinations(args: tuple[str, ...]) -> None:
    res = run_portkit("ls", *args)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1


def test_lost_events_are_said() -> None:
    line = event_json(WatchEvent(0.0, "lost", None, count=12))
    assert json.loads(line) == {"time": "1970-01-01T00:00:00.000Z", "event": "lost", "count": 12}

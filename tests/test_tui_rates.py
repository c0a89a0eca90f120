"""``portkit top``'s rates: the pure tracker, then known traffic in a namespace of this
module's own, read through the real snapshot provider (tcp_info and destroy events)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from portkit.tui.rates import RateTracker, human_rate, snapshot_rates
from portkit.tui.view import LISTEN_COLUMNS, listener_rows, process_rows

NS = f"pk16r-{os.getpid()}"
PORT = 7116
N = 3_000_000

HELPER = r"""
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(8)
c = socket.create_connection(("127.0.0.1", int(sys.argv[1]))); a, _ = srv.accept()
print("connected", flush=True)
for line in sys.stdin:
    what, n = line.split()
    n = int(n)
    c.sendall(b"u" * n)
    got = 0
    while got < n:
        got += len(a.recv(1 << 16))
    if what == "close":
        c.close(); a.close()
    print("done", flush=True)
"""


def test_tracker_by_hand() -> None:
    t = RateTracker()
    a = (1, (100, 0, 0), 10, "cli", None, "k1", 0.001)
    b = (2, (0, 100, 0), 20, "srv", 80, "k2", 0.002)
    assert t.update([a, b], 100.0).seconds == 0  # the first refresh: no rates yet
    a2 = (1, (1100, 0, 2), 10, "cli", None, "k1", 0.001)
    b2 = (2, (0, 2100, 0), 20, "srv", 80, "k2", 0.002)
    r = t.update([a2, b2], 102.0)
    assert r.sockets["k1"] == (500.0, 0.0, 1.0, 0.001)
    assert r.ports == {80: [0.0, 1000.0, 0.0]}
    assert r.processes[20] == ["srv", 1, 0.0, 1000.0, 0.0]
    # k1 closes with 1000 more bytes (its event), k2 vanishes without one, and a
    # connection to port 80 opens and closes between refreshes (its event only)
    r = t.update([], 104.0, [(1, 40000, (2100, 0, 2)), (9, 80, (0, 400, 0))], {80: (20, "srv")})
    assert (r.closed, r.unaccounted) == (2, 1)
    assert r.processes[10] == ["cli", 0, 500.0, 0.0, 0.0]
    assert r.ports == {80: [0.0, 200.0, 0.0]}
    assert r.sockets == {}


def test_rows_show_rates() -> None:
    rows = process_rows({42: ["nginx", 3, 1.5e6, 2000.0, 0.5]})
    assert rows["42"][0] == ("42", "nginx", "3", "1.5M", "2.0K", "0.5")
    assert human_rate(0.4) == "0B" and human_rate(-1) == "-"


@pytest.fixture
def ns() -> Iterator[str]:
    subprocess.run(["ip", "netns", "add", NS], check=True, capture_output=True, timeout=30)
    try:
        subprocess.run(
            ["ip", "-n", NS, "link", "set", "lo", "up"], check=True, capture_output=True, timeout=30
        )
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=30)


def _send(proc: subprocess.Popen[str], what: str, n: int) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{what} {n}\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"


@pytest.mark.netns
def test_known_traffic_on_the_right_socket_port_and_process(ns: str) -> None:
    from portkit.exporter.snapshot import provider
    from portkit.tui.view import row_key

    helper = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", HELPER, str(PORT)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert helper.stdout is not None and helper.stdout.readline().strip() == "connected"
        take = provider(owners=True, traffic=True, netns=ns)
        tracker = RateTracker()
        snapshot_rates(tracker, take(), row_key)
        _send(helper, "send", N)
        time.sleep(0.3)
        snap = take()
        rates = snapshot_rates(tracker, snap, row_key)
        assert rates is not None and rates.seconds > 0
        dt = rates.seconds

        def moved(x: float) -> float:
            return x * dt

        (server,) = [r for r in snap.rows if r[4] == PORT and r[5] is not None]
        (client,) = [r for r in snap.rows if r[6] == PORT]
        sent = rates.sockets[row_key(client)]
        got = rates.sockets[row_key(server)]
        assert abs(moved(sent[0]) - N) <= N * 0.01  # the client's bytes acked
        assert abs(moved(got[1]) - N) <= N * 0.01  # the server's bytes received
        assert sent[3] is not None  # an RTT
        port = rates.ports[PORT]
        assert abs(moved(port[1]) - N) <= N * 0.01
        proc = rates.processes[helper.pid]
        assert proc[0].startswith("python") and proc[1] == 2
        assert abs(moved(proc[2]) - N) <= N * 0.01 and abs(moved(proc[3]) - N) <= N * 0.01
        row = listener_rows(snap.stats, {}, lambda ips: "x", rates.ports)[f"tcp {PORT}"]
        keys = [key for key, _, _ in LISTEN_COLUMNS]
        assert row[0][keys.index("received")] != "-"  # RECV/s of the listening port

        # it closes after moving N more bytes: the destroy events carry the last ones
        _send(helper, "close", N)
        time.sleep(0.3)
        rates = snapshot_rates(tracker, take(), row_key)
        assert rates is not None
        dt = rates.seconds
        assert rates.closed == 2 and rates.unaccounted == 0
        assert abs(moved(rates.ports[PORT][1]) - N) <= N * 0.01
        proc = rates.processes[helper.pid]
        assert abs(moved(proc[2]) - N) <= N * 0.01
    finally:
        if helper.poll() is None:
            os.kill(helper.pid, signal.SIGTERM)
            helper.wait(timeout=10)
        for pipe in (helper.stdin, helper.stdout):
            if pipe is not None:
                pipe.close()

"""TCP health with known traffic, in network namespaces of this module's own.

- ``pk16a-<pid>`` (10.216.0.1) and ``pk16b-<pid>`` (10.216.0.2) on a veth pair; B
  drops every 20th TCP segment to the port on input, from the 11th on (nftables
  ``numgen inc``: this kernel has no ``tc netem``; counted rather than random, so the
  dropped ones are data segments, never only the SYN), so the sender retransmits data.
  A client in A pushes a known number of bytes to a server in B and gets a known
  answer back: ``ls -tin``
  and the exporter's per-port counters must say those bytes (within 1 %), on the
  right port and process, with retransmits, and keep them after the connection closed.
- ``pk16c-<pid>``: an ephemeral range of 300 ports and no TIME-WAIT reuse; short
  connections at a steady rate: the forecast ``stats`` makes early on must be within
  20 % of when ``connect()`` really fails with EADDRNOTAVAIL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

pytestmark = [pytest.mark.netns]

A, B, C = (f"pk16{x}-{os.getpid()}" for x in "abc")
A_IP, B_IP = "10.216.0.1", "10.216.0.2"
PORT = 5016
UP, DOWN = 4_000_000, 400_000

SERVER = r"""
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(8)
print("listening", flush=True)
conn, _ = srv.accept()
want, answer = int(sys.argv[3]), int(sys.argv[4])
got = 0
while got < want:
    got += len(conn.recv(1 << 16))
conn.sendall(b"d" * answer)
print("done", flush=True)
sys.stdin.readline()  # the test says when to close
conn.close()
print("closed", flush=True)
sys.stdin.read()
"""

CLIENT = r"""
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])))
c.sendall(b"u" * int(sys.argv[3]))
got, want = 0, int(sys.argv[4])
while got < want:
    got += len(c.recv(1 << 16))
print("done", flush=True)
c.recv(1)  # until the server closes
c.close()
sys.stdin.read()
"""


def _run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=30)


def _popen(ns: str, code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


def _portkit(ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "portkit", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def veth() -> Iterator[None]:
    for ns in (A, B):
        _run("ip", "netns", "add", ns)
    try:
        _run("ip", "link", "add", "pk16a", "netns", A, "type", "veth", "peer", "pk16b", "netns", B)
        for ns, dev, ip in ((A, "pk16a", A_IP), (B, "pk16b", B_IP)):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        rules = (
            "table inet pk16 {\n chain input {\n  type filter hook input priority 0;\n"
            f"  tcp dport {PORT} numgen inc mod 20 == 10 drop\n }}\n}}\n"
        )
        subprocess.run(
            ["ip", "netns", "exec", B, "nft", "-f", "-"],
            input=rules,
            text=True,
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield
    finally:
        for ns in (A, B):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


def test_known_traffic_with_loss(veth: None) -> None:
    from portkit.exporter.snapshot import provider

    server = _popen(B, SERVER, B_IP, str(PORT), str(UP), str(DOWN))
    client = None
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "listening"
        take = provider(traffic=True, netns=B)
        take()  # the ledger and its event listener start before the connection
        client = _popen(A, CLIENT, B_IP, str(PORT), str(UP), str(DOWN))
        assert client.stdout is not None
        assert server.stdout.readline().strip() == "done"
        assert client.stdout.readline().strip() == "done"
        time.sleep(0.5)  # the last ACKs arrive

        theirs = _portkit(B, "ls", "-tinp", "--sport", str(PORT), "--json")
        assert theirs.returncode == 0, theirs.stderr
        (srv,) = json.loads(theirs.stdout)
        assert srv["pid"] == server.pid and srv["local"]["port"] == PORT
        assert srv["tcp_info"]["bytes_received"] == UP
        assert srv["tcp_info"]["bytes_acked"] == DOWN
        mine = _portkit(A, "ls", "-tinp", "--dport", str(PORT), "--json")
        (cli,) = json.loads(mine.stdout)
        assert cli["pid"] == client.pid and cli["role"] == "client"
        assert cli["tcp_info"]["bytes_acked"] == UP + 1  # its SYN
        assert cli["tcp_info"]["bytes_received"] == DOWN
        # Every 20th segment dropped on the way in: the client had to retransmit data.
        assert cli["tcp_info"]["total_retrans"] > 0
        assert cli["tcp_info"]["bytes_retrans"] > 0

        snap = take()
        assert snap.traffic is not None
        open_totals = snap.traffic[PORT].totals
        assert abs(open_totals[1] - UP) <= UP * 0.01
        assert abs(open_totals[0] - DOWN) <= DOWN * 0.01
        assert snap.traffic[PORT].rtts, "an RTT for the open connection"
        once = _portkit(B, "exporter", "--once", "--ports", str(PORT))
        assert once.returncode == 0, once.stderr
        metrics = {
            line.split()[0]: float(line.split()[1])
            for line in once.stdout.splitlines()
            if line and not line.startswith("#")
        }
        got = metrics[f'portkit_port_received_bytes_total{{port="{PORT}",protocol="tcp"}}']
        assert abs(got - UP) <= UP * 0.01
        assert metrics[f'portkit_port_rtt_seconds_count{{port="{PORT}",protocol="tcp"}}'] == 1

        # The connection closes: its bytes stay counted (from its destroy event).
        assert server.stdin is not None
        server.stdin.write("close\n")
        server.stdin.flush()
        assert server.stdout.readline().strip() == "closed"
        deadline = time.monotonic() + 10
        while True:
            snap = take()
            assert snap.traffic is not None
            totals = snap.traffic[PORT].totals
            gone = not any(
                r[4] == PORT and r[5] is not None and r[2].value == "ESTABLISHED" for r in snap.rows
            )
            if gone or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert gone
        assert totals[1] >= open_totals[1] and totals[0] >= open_totals[0]
        assert abs(totals[1] - UP) <= UP * 0.01
        assert snap.traffic[PORT].rtts == []
    finally:
        for proc in (client, server):
            if proc is not None:
                _stop(proc)


# --- the forecast ------------------------------------------------------------------------

RANGE = (40000, 40299)
RATE = 25.0  # connections a second: 300 ports last 12 s
STORM = r"""
import errno, socket, sys, time, threading
port, rate = int(sys.argv[1]), float(sys.argv[2])
srv = socket.socket(); srv.bind(("127.0.0.1", port)); srv.listen(1024)
def serve():
    while True:
        a, _ = srv.accept()
        a.recv(1); a.close()  # after the client's FIN: the client keeps the TIME-WAIT
threading.Thread(target=serve, daemon=True).start()
print(time.time(), "start", flush=True)
start = time.monotonic()
n = 0
while True:
    due = start + n / rate
    time.sleep(max(0.0, due - time.monotonic()))
    try:
        c = socket.create_connection(("127.0.0.1", port))
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            print(time.time(), "failed", n, flush=True)
            break
        raise
    c.close()
    n += 1
sys.stdin.read()
"""


@pytest.fixture
def narrow() -> Iterator[str]:
    _run("ip", "netns", "add", C)
    try:
        _run("ip", "-n", C, "link", "set", "lo", "up")
        for setting in (
            f"net.ipv4.ip_local_port_range={RANGE[0]} {RANGE[1]}",
            "net.ipv4.tcp_tw_reuse=0",
        ):
            _run("ip", "netns", "exec", C, "sysctl", "-q", "-w", setting)
        yield C
    finally:
        subprocess.run(["ip", "netns", "del", C], capture_output=True, timeout=30)


def test_forecast_matches_the_real_exhaustion(narrow: str) -> None:
    storm = _popen(narrow, STORM, "7070", str(RATE))
    try:
        assert storm.stdout is not None
        started = float(storm.stdout.readline().split()[0])
        time.sleep(max(0.0, started + 4.0 - time.time()))
        asked = time.time()
        res = _portkit(narrow, "stats", "-t", "--json")
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        (f,) = [x for x in doc["forecasts"] if x["port"] == 7070]
        assert f["capacity"] == RANGE[1] - RANGE[0] + 1
        assert f["time_wait"] > 0 and f["seconds"] is not None
        line = storm.stdout.readline().split()
        assert line[1] == "failed", line
        measured = float(line[0]) - asked
        assert abs(f["seconds"] - measured) <= 0.2 * measured, (f, measured)
        assert abs(f["rate"] - RATE) <= 0.2 * RATE
        # under 10 minutes: stats warns, and the table says it too
        assert any("run out" in w and "7070" in w for w in doc["warnings"])
    finally:
        _stop(storm)


def test_forecast_in_the_stats_table(narrow: str) -> None:
    """A destination with TIME-WAIT sockets shows its rate and time left."""
    storm = _popen(narrow, STORM, "7071", "50")
    try:
        assert storm.stdout is not None
        storm.stdout.readline()
        time.sleep(1.5)
        res = _portkit(narrow, "stats", "-t")
        assert res.returncode == 0, res.stderr
        assert "EXHAUSTED IN" in res.stdout and "127.0.0.1:7071" in res.stdout
        assert "warning: ephemeral ports for 127.0.0.1 -> 127.0.0.1:7071 run out" in res.stdout
    finally:
        _stop(storm)

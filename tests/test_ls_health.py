"""``ls -i/-m/-o`` on real loopback connections, cross-checked against ``ss -tinmo``.

A helper process holds a listener and three connections that each moved a known
number of bytes both ways and then went quiet, so every counter ss prints must be
what portkit prints (the time-based ones, ``lastsnd`` and the timer, within the time
between the two reads).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import run_portkit

pytestmark = [pytest.mark.peer]

HELPER = r"""
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(16)
keep = [srv]
for i in range(3):
    c = socket.create_connection(srv.getsockname())
    if i == 0:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    a, _ = srv.accept()
    up, down = (i + 1) * 100_000, (i + 1) * 10_000
    c.sendall(b"u" * up)
    got = 0
    while got < up:
        got += len(a.recv(1 << 16))
    a.sendall(b"d" * down)
    got = 0
    while got < down:
        got += len(c.recv(1 << 16))
    keep += [c, a]
print(srv.getsockname()[1], flush=True)
sys.stdin.read()
"""
UP = {i: (i + 1) * 100_000 for i in range(3)}


@pytest.fixture(scope="module")
def held() -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        time.sleep(0.3)  # delayed ACKs settle: nothing moves from here on
        yield {"port": port, "pid": proc.pid}
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def ss_sockets(port: int) -> dict[tuple[str, str], dict[str, str]]:
    """``ss -tinmoH`` for the sockets on ``port``: {(local, remote): {key: value}}."""
    out = subprocess.run(
        ["ss", "-tinmoaH", f"( sport = :{port} or dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    found: dict[tuple[str, str], dict[str, str]] = {}
    key: tuple[str, str] | None = None
    for line in out.splitlines():
        if not line.startswith("\t"):
            parts = line.split()
            key = (parts[3], parts[4])
            found[key] = {"state": parts[0]}
            timer = re.search(r"timer:\((\w+),([^,]*),(\d+)\)", line)
            if timer:
                found[key]["timer"] = timer.group(1)
                found[key]["timer_retrans"] = timer.group(3)
            continue
        assert key is not None
        fields = found[key]
        tokens = line.split()
        for i, token in enumerate(tokens):
            if token.startswith("skmem:("):
                fields["skmem"] = token[len("skmem:(") : -1]
            elif ":" in token and not token.startswith(("bbr:", "cubic:")):
                k, _, v = token.partition(":")
                fields[k] = v
            elif token in ("pacing_rate", "delivery_rate", "send") and i + 1 < len(tokens):
                fields[token] = tokens[i + 1]
            else:
                fields[token] = ""
    return found


def _addr(side: dict[str, Any] | None) -> str:
    return "0.0.0.0:*" if side is None else f"{side['ip']}:{side['port']}"


def portkit_sockets(port: int) -> dict[tuple[str, str], dict[str, Any]]:
    res = run_portkit("ls", "-tinmoa", "-p", "--port", str(port), "--json")
    assert res.returncode == 0, res.stderr
    return {(_addr(o["local"]), _addr(o["remote"])): o for o in json.loads(res.stdout)}


# Counters ss prints only when they are not 0.
_COUNTERS = (
    "bytes_sent",
    "bytes_acked",
    "bytes_received",
    "segs_out",
    "segs_in",
    "data_segs_out",
    "data_segs_in",
    "delivered",
)


def test_same_numbers_as_ss(held: dict[str, Any]) -> None:
    port = held["port"]
    before = time.monotonic()
    theirs = ss_sockets(port)
    ours = portkit_sockets(port)
    elapsed_ms = (time.monotonic() - before) * 1000 + 5
    assert set(ours) == set(theirs)
    assert len(ours) == 7  # the listener and both ends of three connections
    for key, ss_row in theirs.items():
        mine = ours[key]
        assert mine["pid"] == held["pid"]
        assert ",".join(f"{k}{v}" for k, v in mine["skmem"].items()) == ss_row["skmem"]
        info = mine["tcp_info"]
        assert info["cong"] in ss_row, (info["cong"], ss_row)
        if ss_row["state"] == "LISTEN":
            assert str(info["cwnd"]) == ss_row["cwnd"]
            continue
        rtt, _, rttvar = ss_row["rtt"].partition("/")
        assert (info["rtt"], info["rttvar"]) == (float(rtt), float(rttvar))
        assert info["rto"] == float(ss_row["rto"])
        for name in ("cwnd", "mss", "pmtu", "rcvmss", "advmss", "rcv_space", "rcv_ssthresh"):
            assert str(info[name]) == ss_row[name], name
        assert info["minrtt"] == float(ss_row["minrtt"])
        assert str(info["snd_wnd"]) == ss_row["snd_wnd"]
        for name in _COUNTERS:
            assert info[name] == int(ss_row.get(name, "0")), name
        for name in ("lastsnd", "lastrcv", "lastack"):
            assert 0 <= info[name] - int(ss_row[name]) <= elapsed_ms, name
        assert ("ts" in ss_row, "sack" in ss_row) == (info["ts"], info["sack"])
        assert ss_row["wscale"] == ",".join(map(str, info["wscale"]))
        assert ("app_limited" in ss_row) == info["app_limited"]
        if "timer" in ss_row:
            assert mine["timer"]["name"] == ss_row["timer"]
            assert str(mine["timer"]["retrans"]) == ss_row["timer_retrans"]
        else:
            assert mine["timer"] is None


def test_bytes_on_the_right_ends(held: dict[str, Any]) -> None:
    """Each client sent its known bytes and the server side received them; the
    server's answer went the other way."""
    port = held["port"]
    ours = portkit_sockets(port)
    clients = sorted(
        (o for o in ours.values() if o["role"] == "client"),
        key=lambda o: o["tcp_info"]["bytes_sent"],
    )
    servers = {_addr(o["remote"]): o for o in ours.values() if o["role"] == "server"}
    assert len(clients) == 3
    for i, client in enumerate(clients):
        info = client["tcp_info"]
        assert info["bytes_sent"] == UP[i]
        assert info["bytes_acked"] == UP[i] + 1
        assert info["bytes_received"] == UP[i] // 10
        server = servers[_addr(client["local"])]["tcp_info"]
        assert server["bytes_received"] == UP[i]
        assert server["bytes_sent"] == UP[i] // 10
        # the SYN counts as an acked byte on the side that opened the connection only
        assert server["bytes_acked"] == UP[i] // 10
    assert {c["timer"]["name"] if c["timer"] else None for c in clients} == {"keepalive", None}


def test_table_and_csv(held: dict[str, Any]) -> None:
    port = str(held["port"])
    res = run_portkit("ls", "-tinmo", "--port", port)
    assert res.returncode == 0, res.stderr
    head, *lines = res.stdout.splitlines()
    for title in ("TIMER", "CC", "RTT", "RTO", "CWND", "RETRANS", "BYTES-ACKED", "SKMEM"):
        assert title in head.split()
    assert len(lines) == 6
    assert all(line.split()[-1].startswith("r0,rb") for line in lines)
    csv = run_portkit("ls", "-ti", "--port", port, "--csv")
    assert csv.returncode == 0, csv.stderr
    header = csv.stdout.splitlines()[0].split(",")
    from portkit.render.sockets import CSV_HEADERS

    n = len(CSV_HEADERS)  # ls --csv's own columns come first
    assert header[:n] == list(CSV_HEADERS) and header[n : n + 3] == ["cong", "ts", "sack"]
    assert "bytes_acked" in header and "rtt" in header
    # A sorted listing goes through decoded rows rather than the kernel's: the same
    # health per socket (but for the times since the last send, receive and ack).
    plain = run_portkit("ls", "-ti", "--port", port)
    by_sort = run_portkit("ls", "-ti", "--port", port, "--sort", "sport")

    def cells(out: str) -> list[tuple[str, ...]]:
        return sorted(tuple(line.split()[:-3]) for line in out.splitlines()[1:])

    assert cells(plain.stdout) == cells(by_sort.stdout)
    assert len(cells(plain.stdout)) == 6


def test_udp_and_without_flags() -> None:
    """UDP sockets have no tcp_info: dashes and nulls; without -i/-m/-o no key at all."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        port = str(u.getsockname()[1])
        doc = json.loads(run_portkit("ls", "-uaim", "--sport", port, "--json").stdout)
        assert len(doc) == 1
        assert doc[0]["tcp_info"] is None
        assert doc[0]["skmem"]["rb"] > 0
        plain = json.loads(run_portkit("ls", "-ua", "--sport", port, "--json").stdout)
        assert "tcp_info" not in plain[0]


def test_all_netns_refuses_health_flags() -> None:
    res = run_portkit("ls", "--all-netns", "-ti")
    assert res.returncode == 2
    assert res.stderr.count("\n") == 1 and "--all-netns" in res.stderr

"""``portkit kill``: SOCK_DESTROY closes exactly the sockets the filter matches.

A helper process holds two listeners with connections to each (both ends). After
``kill`` the helper reports, per connection, what its ends see: the matched client
ends are aborted (ECONNABORTED) and their peers got a reset (ECONNRESET); every other
connection still carries a byte both ways.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.errors import ParseError
from portkit.see._destroy import destroy_request, parse_acks
from tests.conftest import run_portkit

HELPER = r"""
import errno, json, socket, sys
keep, pairs = [], {}
ports = []
for n in (3, 2):
    srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(16); keep.append(srv)
    port = srv.getsockname()[1]; ports.append(port)
    for i in range(n):
        c = socket.create_connection(("127.0.0.1", port)); a, _ = srv.accept()
        pairs[f"{port}/{i}"] = (c, a)
print(json.dumps(ports), flush=True)
sys.stdin.readline()

def state(s, peer):
    try:
        s.sendall(b"x")
        peer.settimeout(2)
        got = peer.recv(1)
        return "alive" if got == b"x" else "eof"
    except OSError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))

out = {}
for name, (c, a) in pairs.items():
    out[name] = {"client": state(c, a), "server": state(a, c)}
print(json.dumps(out), flush=True)
sys.stdin.read()
"""


@pytest.fixture
def held() -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HELPER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        first, second = json.loads(proc.stdout.readline())

        def report() -> dict[str, dict[str, str]]:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            got: dict[str, dict[str, str]] = json.loads(proc.stdout.readline())
            return got

        yield {"first": first, "second": second, "pid": proc.pid, "report": report}
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def test_kill_closes_exactly_the_matching_sockets(held: dict[str, Any]) -> None:
    first = held["first"]
    res = run_portkit("kill", "--dport", str(first), "--state", "established", "--yes", "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["closed"] == 3 and doc["gone"] == doc["failed"] == 0
    assert {o["remote"]["port"] for o in doc["sockets"]} == {first}
    assert {o["role"] for o in doc["sockets"]} == {"client"}
    assert {o["pid"] for o in doc["sockets"]} == {held["pid"]}
    assert {o["result"] for o in doc["sockets"]} == {"closed"}
    seen = held["report"]()
    for name, ends in seen.items():
        if name.startswith(f"{first}/"):
            # the client end was aborted under its process; its peer got a reset
            assert ends == {"client": "ECONNABORTED", "server": "ECONNRESET"}, (name, ends)
        else:
            assert ends == {"client": "alive", "server": "alive"}, (name, ends)
    # the listener on the first port still listens
    listening = run_portkit("ls", "-tln", "--sport", str(first), "--json")
    assert len(json.loads(listening.stdout)) == 1


def test_dry_run_and_both_ends(held: dict[str, Any]) -> None:
    second = held["second"]
    dry = run_portkit("kill", "--port", str(second), "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    doc = json.loads(dry.stdout)
    assert len(doc["sockets"]) == 4 and doc["closed"] == 0  # both ends of two connections
    assert {o["result"] for o in doc["sockets"]} == {None}
    table = run_portkit("kill", "--port", str(second), "--yes")
    assert table.returncode == 0, table.stderr
    assert len(table.stdout.splitlines()) == 5  # the header and the four sockets
    # Both ends live here: the reset of the first end closed of a connection closes
    # the other before its turn comes, which is told apart from a failure.
    assert table.stderr.strip() in (
        "portkit kill: closed 4 sockets",
        "portkit kill: closed 3 sockets; 1 had closed already",
        "portkit kill: closed 2 sockets; 2 had closed already",
    )
    seen = held["report"]()
    for name, ends in seen.items():
        if name.startswith(f"{second}/"):
            assert set(ends.values()) <= {"ECONNABORTED", "ECONNRESET"}, (name, ends)
        else:
            assert ends == {"client": "alive", "server": "alive"}


def test_pid_filter_and_nothing_matching(held: dict[str, Any]) -> None:
    res = run_portkit("kill", "--pid", str(held["pid"]), "--dport", "1", "--yes")
    assert res.returncode == 1
    assert res.stderr.strip() == "portkit kill: no socket matches"
    other = run_portkit("kill", "--pid", "1", "--sport", str(held["first"]), "--dry-run")
    assert other.returncode == 1


def test_without_privilege_says_what_is_missing(held: dict[str, Any]) -> None:
    """A user without CAP_NET_ADMIN: the kernel refuses, and portkit says why (exit 3)."""
    res = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            sys.executable,
            "-m",
            "portkit",
            "kill",
            "--dport",
            str(held["first"]),
            "--yes",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert res.returncode == 3, res.stderr
    assert "CAP_NET_ADMIN" in res.stderr and res.stderr.count("\n") == 1
    seen = held["report"]()
    assert {e for ends in seen.values() for e in ends.values()} == {"alive"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "kill needs a filter"),
        (("-t",), "kill needs a filter"),
        (("--dport", "5432"), "needs a terminal: add --yes"),
        (("--dport", "x", "--yes"), "--dport"),
        (("--state", "nonsense", "--yes"), "nonsense"),
    ],
)
def test_bad_input(args: tuple[str, ...], message: str) -> None:
    res = run_portkit("kill", *args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and res.stderr.count("\n") == 1


def test_destroy_request_layout() -> None:
    req = destroy_request(6, 17, "::1", 53, None, None, 0x0102030405060708, seq=9, interface=3)
    length, mtype, flags, seq, _ = struct.unpack_from("=IHHII", req)
    assert (length, mtype, flags, seq) == (len(req), 21, 0x5, 9)
    family, proto, ext, states = struct.unpack_from("=BBBxI", req, 16)
    assert (family, proto, ext, states) == (10, 17, 0, 0xFFFFFFFF)
    sport, dport = struct.unpack_from(">HH", req, 24)
    assert (sport, dport) == (53, 0)
    assert req[28:44] == bytes(15) + b"\x01" and req[44:60] == bytes(16)
    assert struct.unpack_from("=IQ", req, 60) == (3, 0x0102030405060708)


@given(st.binary(max_size=200))
def test_acks_any_bytes(data: bytes) -> None:
    try:
        got = parse_acks(data)
    except ParseError:
        return
    assert all(isinstance(k, int) and isinstance(v, int) for k, v in got.items())

"""``portkit check``, ``wait`` and ``scan`` through the real entry point, on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


def portkit(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portkit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture(scope="module")
def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


# --- check --------------------------------------------------------------------------------


def test_check_open_exits_0(server: int) -> None:
    done = portkit("check", f"127.0.0.1:{server}")
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.split() == ["TARGET", "ADDRESS", "STATE", "REASON", "MS"]
    assert row.split()[:4] == [f"127.0.0.1:{server}/tcp", "127.0.0.1", "open", "syn-ack"]


def test_check_any_not_open_exits_1(server: int, closed_port: int) -> None:
    done = portkit("check", f"127.0.0.1:{server}", f"127.0.0.1:{closed_port}", "--json")
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert [d["state"] for d in data] == ["open", "closed"]
    assert [d["reason"] for d in data] == ["syn-ack", "conn-refused"]
    assert set(data[0]) == {
        "target",
        "host",
        "port",
        "protocol",
        "address",
        "state",
        "reason",
        "rtt_ms",
        "ok",
        "tls",
        "http_status",
        "banner",
        "error",
        "handshake",
    }
    assert data[0]["ok"] is True
    assert data[1]["ok"] is False
    assert data[0]["port"] == server
    assert isinstance(data[0]["rtt_ms"], float)


def test_check_udp_closed(closed_port: int) -> None:
    done = portkit("check", f"127.0.0.1:{closed_port}/udp", "--json")
    assert done.returncode == 1
    (d,) = json.loads(done.stdout)
    assert (d["protocol"], d["state"], d["reason"]) == ("udp", "closed", "port-unreach")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["127.0.0.1"], "missing port"),
        (["127.0.0.1:99999"], "out of range"),
        (["127.0.0.1:80/xyz"], "unknown protocol"),
        (["127.0.0.1:80", "--timeout", "0"], "--timeout"),
        (["127.0.0.1:80", "--retries", "-1"], "--retries"),
        ([], "TARGET"),
    ],
)
def test_check_bad_input(args: list[str], fragment: str) -> None:
    done = portkit("check", *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert fragment in lines[0]
    assert "Traceback" not in done.stderr


def test_help_has_examples() -> None:
    for cmd in ("check", "wait", "scan"):
        done = portkit(cmd, "--help")
        assert done.returncode == 0
        assert "Examples:" in done.stdout
    assert all(name in portkit("--help").stdout for name in ("check", "wait", "scan"))


# --- wait ---------------------------------------------------------------------------------


def test_wait_runs_the_command_and_exits_with_its_code(server: int, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"import pathlib, sys; pathlib.Path({str(marker)!r}).write_text('x'); sys.exit(7)"
    done = portkit("wait", f"127.0.0.1:{server}", "--", sys.executable, "-c", code)
    assert done.returncode == 7
    assert marker.exists()
    assert f"127.0.0.1:{server}/tcp is open" in done.stderr
    assert done.stdout == ""


def test_wait_command_gets_its_args_verbatim(server: int) -> None:
    # argv, not a shell: "$HOME; echo" stays one literal argument.
    done = portkit(
        "wait",
        f"127.0.0.1:{server}",
        "-q",
        "--",
        sys.executable,
        "-c",
        "import sys; print(sys.argv[1:])",
        "$HOME; echo",
        "--json",
    )
    assert done.returncode == 0
    assert done.stdout.strip() == "['$HOME; echo', '--json']"
    assert done.stderr == ""


def test_wait_timeout_exits_124_without_running(closed_port: int, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('x')"
    done = portkit(
        "wait",
        f"127.0.0.1:{closed_port}",
        "--timeout",
        "0.5",
        "--interval",
        "0.1",
        "--",
        sys.executable,
        "-c",
        code,
    )
    assert done.returncode == 124
    assert not marker.exists()
    assert "is not open (closed, conn-refused)" in done.stderr


def test_wait_json_and_modes(server: int, closed_port: int) -> None:
    done = portkit("wait", f"127.0.0.1:{closed_port}", f"127.0.0.1:{server}", "--any", "--json")
    assert done.returncode == 0
    data = json.loads(done.stdout)
    assert data["ready"] is True
    assert data["mode"] == "any"
    assert [t["state"] for t in data["targets"]] == ["closed", "open"]
    done = portkit("wait", f"127.0.0.1:{closed_port}", "--closed", "--json", "--timeout", "5")
    assert done.returncode == 0
    assert json.loads(done.stdout)["closed"] is True
    done = portkit("wait", f"127.0.0.1:{server}", "--closed", "--timeout", "0.3")
    assert done.returncode == 124


def test_wait_command_not_found(server: int) -> None:
    done = portkit("wait", f"127.0.0.1:{server}", "-q", "--", "/nonexistent/portkit-cmd")
    assert done.returncode == 127
    assert done.stderr.strip().endswith("command not found")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["127.0.0.1"], "missing port"),
        (["127.0.0.1:53/udp"], "TCP ports only"),
        (["127.0.0.1:80", "--timeout", "-1"], "--timeout"),
        (["127.0.0.1:80", "--closed", "--http", "/"], "--closed"),
        (["--", "true"], "TARGET"),
    ],
)
def test_wait_bad_input(args: list[str], fragment: str) -> None:
    done = portkit("wait", *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert fragment in lines[0]


# --- scan ---------------------------------------------------------------------------------


def test_scan_table(server: int, closed_port: int) -> None:
    done = portkit("scan", "127.0.0.1", "-p", f"{server},{closed_port}")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["HOST", "PORT", "STATE", "SERVICE", "REASON", "RTT_MS"]
    assert lines[1].split()[:3] == ["127.0.0.1", f"{server}/tcp", "open"]
    assert "1 closed tcp (conn-refused)" in done.stdout
    assert "1 open tcp" in done.stdout


def test_scan_json_keys_and_all(server: int, closed_port: int) -> None:
    done = portkit("scan", "127.0.0.1", "-p", f"{server},{closed_port}", "--json", "--all")
    assert done.returncode == 0
    data = json.loads(done.stdout)
    assert [d["port"] for d in data] == sorted([server, closed_port])
    for d in data:
        assert list(d) == [
            "host",
            "port",
            "protocol",
            "state",
            "reason",
            "service",
            "banner",
            "rtt_ms",
        ]
    states = {d["port"]: d["state"] for d in data}
    assert states == {server: "open", closed_port: "closed"}
    only_open = json.loads(
        portkit("scan", "127.0.0.1", "-p", f"{server},{closed_port}", "--json").stdout
    )
    assert [d["port"] for d in only_open] == [server]


def test_scan_grepable_and_input_list(server: int, closed_port: int, tmp_path: Path) -> None:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("# lab\n127.0.0.1\n")
    out = tmp_path / "scan.gnmap"
    done = portkit("scan", "-iL", str(hosts), "-p", f"{server},{closed_port}", "-oG", str(out))
    assert done.returncode == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# portkit scan")
    host_line = lines[1]
    assert host_line.startswith("Host: 127.0.0.1 ()\tPorts: ")
    assert f"{server}/open/tcp//" in host_line
    assert host_line.endswith("Ignored State: closed (1)")
    assert "HOST" in done.stdout  # the table still goes to stdout
    grep = portkit("scan", "127.0.0.1", "-p", str(server), "--grepable")
    assert grep.stdout.splitlines()[1].startswith("Host: 127.0.0.1")


def test_scan_udp_cli(closed_port: int) -> None:
    done = portkit("scan", "127.0.0.1", "-p", f"U:{closed_port}", "--all", "--json")
    assert done.returncode == 0
    (d,) = json.loads(done.stdout)
    assert (d["protocol"], d["state"], d["reason"]) == ("udp", "closed", "port-unreach")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["10.0.0.0/8", "-p", "22"], "more than"),
        (["127.0.0.1", "-p", "70000"], "out of range"),
        (["127.0.0.1", "-p", "22", "--top", "5"], "--top"),
        (["127.0.0.1", "--concurrency", "0"], "--concurrency"),
        (["999.1.1.1", "-p", "22"], "bad"),
        ([], "no targets"),
    ],
)
def test_scan_bad_input(args: list[str], fragment: str) -> None:
    done = portkit("scan", *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert fragment in lines[0]


def test_scan_unresolvable_is_environment_error() -> None:
    done = portkit("scan", "no-such-host.invalid", "-p", "22")
    assert done.returncode == 3
    assert "cannot resolve no-such-host.invalid" in done.stderr


def _with_tty_stderr(*args: str) -> tuple[int, str, str]:
    """Run portkit with stderr on a pseudo-terminal; return (code, stdout, terminal text)."""
    import os
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "portkit", *args],
            stdout=subprocess.PIPE,
            stderr=slave,
            text=True,
        )
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        out, _ = proc.communicate(timeout=60)
    finally:
        os.close(master)
    return proc.returncode, out, b"".join(chunks).decode(errors="replace")


def test_progress_only_on_a_terminal(closed_port: int) -> None:
    code, out, tty = _with_tty_stderr("scan", "127.0.0.1", "-p", "1-30000", "--rate", "60000")
    assert code == 0
    assert "scanned " in tty
    assert "ports/s" in tty
    assert "scanned" not in out.splitlines()[0]  # progress never reaches stdout
    piped = portkit("scan", "127.0.0.1", "-p", "1-30000", "--rate", "60000")
    assert "ports/s" not in piped.stderr
    code, _, tty = _with_tty_stderr(
        "wait", f"127.0.0.1:{closed_port}", "--timeout", "0.6", "--interval", "0.1"
    )
    assert code == 124
    assert "waiting " in tty
    assert f"127.0.0.1:{closed_port}/tcp closed (conn-refused)" in tty


def test_scan_targets_from_stdin(server: int) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "portkit", "scan", "-iL", "-", "-p", str(server), "--json"],
        input="127.0.0.1\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert [d["port"] for d in json.loads(done.stdout)] == [server]

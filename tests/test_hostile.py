"""The project's own hostile-input corpus: what a careless or hostile user (or peer) can
hand portkit, and the contract it must keep: one clear line on stderr and exit 2 for bad
input, never a traceback, never unbounded memory or time, and nothing from outside that
can rewrite the reader's terminal. The plan readers have their own file
(test_hostile_plan.py).
"""

from __future__ import annotations

import contextlib
import io
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portkit.cli import main
from tests.conftest import Runner

HUGE = "1" + "0" * 5000  # past Python's 4,300-digit int conversion limit


def _one_line_error(r: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert r.returncode == code, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-2000:]
    assert len(lines[0]) <= 400
    return lines[0]


# --- numbers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["lookup", HUGE],
        ["lookup", f"{HUGE}/tcp"],
        ["lookup", f"10.0.0.5:{HUGE}"],
        ["free", "-n", HUGE],
        ["free", "--range", f"1-{HUGE}"],
        ["ls", "--sport", HUGE],
        ["ls", "--dport", f"1-{HUGE}"],
        ["ls", "--pid", HUGE],
        ["who", HUGE],
        ["check", f"127.0.0.1:{HUGE}"],
        ["wait", f"127.0.0.1:{HUGE}"],
        ["scan", "127.0.0.1", "-p", HUGE],
        ["scan", "127.0.0.1", "--top", HUGE],
        ["connect", f"127.0.0.1:{HUGE}"],
        ["forward", f"{HUGE}:80"],
        ["serve", "echo", "--tcp", HUGE],
        ["exporter", "--listen", f"127.0.0.1:{HUGE}", "--once"],
        ["top", "--pid-netns", HUGE],
        ["stats", "--pid-netns", HUGE],
    ],
    ids=lambda a: " ".join(a)[:40],
)
def test_huge_numbers_are_out_of_range(cli: Runner, args: list[str]) -> None:
    line = _one_line_error(cli(*args, timeout=30))
    assert any(w in line for w in ("out of range", "not a", "bad", "too long")), line


@pytest.mark.parametrize(
    "args",
    [
        ["wait", "127.0.0.1:1", "--timeout", "nan"],
        ["wait", "127.0.0.1:1", "--interval", "nan"],
        ["wait", "127.0.0.1:1", "--interval", "inf"],
        ["check", "127.0.0.1:1", "--timeout", "nan"],
        ["check", "127.0.0.1:1", "--timeout", "-inf"],
        ["scan", "127.0.0.1", "--rate", "nan"],
        ["connect", "127.0.0.1:1", "--timeout", "nan"],
        ["connect", "127.0.0.1:1", "--wait", "inf"],
        ["top", "--interval", "nan"],
        ["top", "--interval", "1e-300"],
        ["forward", "0:1", "--stats-interval", "1e-300"],
        ["forward", "0:1", "--idle-timeout", "nan"],
        ["forward", "0:1", "--grace", "inf"],
        ["plan", "check", "x.yaml", "--timeout", "nan"],
    ],
    ids=lambda a: " ".join(a)[:40],
)
def test_floats_must_be_finite_and_bounded(cli: Runner, args: list[str]) -> None:
    line = _one_line_error(cli(*args, timeout=30))
    assert "finite" in line or "out of range" in line, line


# --- text from outside never reaches the terminal raw -----------------------------------

EVIL = "ev\x1b[2Jil\u202e"  # clear the screen, then reverse what follows


@contextlib.contextmanager
def _renamed_listener() -> Iterator[tuple[int, int]]:
    """A child process named with terminal escapes (``prctl(PR_SET_NAME)``, as any local
    user can) that listens on a loopback port: (pid, port)."""
    code = (
        "import ctypes, socket, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        f"ctypes.CDLL(None).prctl(15, {EVIL.encode()!r}, 0, 0, 0)\n"
        "print(s.getsockname()[1], flush=True); time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield proc.pid, port
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm", "rb") as f:
        return f.read().rstrip(b"\n").decode("utf-8", "surrogateescape")


def test_process_names_are_escaped_in_tables_and_exact_in_json(cli: Runner) -> None:
    with _renamed_listener() as (pid, port):
        name = _comm(pid)
        assert "\x1b" in name  # the kernel kept the escape (it keeps 15 bytes)
        for args in (
            ["who", str(port)],
            ["ls", "-tlnp", "--sport", str(port)],
            ["ls", "-tlnp", "--sport", str(port), "--sort", "process"],
            ["stats", "-p"],
            [],
        ):
            r = cli(*args)
            assert r.returncode == 0, (args, r.stderr)
            assert "\x1b" not in r.stdout and "\u202e" not in r.stdout, args
            if args and args[0] in ("who", "ls"):
                assert "\\x1b[2J" in r.stdout, (args, r.stdout)
        doc = json.loads(cli("who", str(port), "--json").stdout)
        assert doc["owners"][0]["process"] == name
        rows = json.loads(cli("ls", "-tlnp", "--sport", str(port), "--json").stdout)
        assert rows[0]["process"] == name


def test_a_servers_words_are_escaped_in_tables_and_exact_in_json(
    cli: Runner, tmp_path: Any
) -> None:
    """A TLS server picks its certificate's subject: an escape in it reaches the table
    escaped, and the JSON as it is."""
    import ssl
    import threading

    from tests._lab import self_signed_cert

    evil = "evil\x1b[2J"  # openssl's -subj takes the byte as it is
    crt, key = self_signed_cert(str(tmp_path), cn=evil, org="x", san="DNS:x.test", days=5)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError), ctx.wrap_socket(conn, server_side=True) as tls:
                tls.recv(1)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        table = cli("check", f"127.0.0.1:{port}", "--tls")
        assert "\x1b" not in table.stdout and "evil\\x1b[2J" in table.stdout, table.stdout
        doc = json.loads(cli("check", f"127.0.0.1:{port}", "--tls", "--json").stdout)
        assert evil in doc[0]["tls"]["subject"]
    finally:
        stop.set()
        thread.join(5)
        srv.close()


# --- the command line as a whole: random arguments never crash it ------------------------

#: Commands that only parse or look (no long-running server, no terminal UI, and no
#: name resolution: these machines may reach nothing but loopback).
_QUICK = ["lookup", "free", "ls", "who", "stats", "plan", "completion"]
_WORDS = st.sampled_from(
    [
        "22",
        "0",
        "-1",
        "65536",
        HUGE[:60],
        "nan",
        "inf",
        "1e-300",
        "tcp",
        "udp",
        "sctp",
        "-t",
        "-u",
        "-l",
        "-n",
        "-p",
        "--json",
        "--csv",
        "--sort",
        "--sport",
        "--dport",
        "--state",
        "bogus",
        "--netns",
        "../etc",
        "--pid-netns",
        "--range",
        "::ffff:127.0.0.1",
        "[::1]",
        "127.0.0.1:0",
        "127.0.0.1:1/sctp",
        "",
        " ",
        "\x00",
        "\x1b[2J",
        "☃",
        "-",
        "--",
        "lint",
        "explain",
        "/dev/null",
        "--timeout",
        "0.01",
        "--limit",
        "--zzz",
    ]
)


@settings(max_examples=150)
@given(command=st.sampled_from(_QUICK), args=st.lists(_WORDS, max_size=5))
def test_random_arguments_never_crash(command: str, args: list[str]) -> None:
    """Any argument list gives an exit code of the contract, never an exception."""
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    try:
        sys.stdin = io.StringIO("")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([command, *args])
    finally:
        sys.stdin = stdin
    assert code in (0, 1, 2, 3, 124), (command, args, code, err.getvalue()[-500:])
    if code == 2:
        assert err.getvalue().count("\n") >= 1


#: Commands that touch the network, each with a loopback target first and a short
#: timeout: every random word that could be a target is refused before any lookup
#: (no port, port 0, /sctp), so nothing but 127.0.0.1 is ever contacted.
_REACH = {
    "check": ["127.0.0.1:1", "--timeout", "0.2"],
    "wait": ["127.0.0.1:1", "--timeout", "0.2"],
    "scan": ["127.0.0.1", "--timeout", "0.2"],
    "connect": ["127.0.0.1:1", "--timeout", "0.2"],
    "why": ["127.0.0.1:1", "--timeout", "0.2"],
    "kill": ["--dport", "1", "--dry-run"],
}


@settings(max_examples=60)
@given(command=st.sampled_from(sorted(_REACH)), args=st.lists(_WORDS, max_size=4))
def test_random_arguments_to_reach_commands_never_crash(command: str, args: list[str]) -> None:
    """The same for the commands that reach out, on loopback only."""
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    try:
        sys.stdin = io.StringIO("")
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([command, *_REACH[command], *args])
    finally:
        sys.stdin = stdin
    assert code in (0, 1, 2, 3, 124, 127), (command, args, code, err.getvalue()[-500:])
    assert "Traceback" not in err.getvalue()


def test_a_quick_command_stays_quick_with_garbage(cli: Runner) -> None:
    """A 1 MB argument is refused without reading it through slowly (bounded work)."""
    start = time.monotonic()
    r = cli("lookup", "x" * 100_000)
    assert r.returncode in (1, 2)
    assert "Traceback" not in r.stderr
    assert time.monotonic() - start < 60  # a hang, not a benchmark


def test_who_of_an_unused_port_answers_plainly() -> None:
    """who of a port nobody uses: exit 1 and a plain answer, in-process too."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["who", str(port)]) == 1
    assert "nothing uses this port" in out.getvalue()


# --- servers keep serving ---------------------------------------------------------------


@pytest.fixture
def exporter_server() -> Iterator[Any]:
    import threading

    from portkit.exporter import SocketCollector, make_server
    from portkit.exporter.snapshot import take_snapshot

    srv = make_server(SocketCollector(take_snapshot), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def _scrape(url: str) -> int:
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=20) as r:
        assert b"portkit_up 1.0" in r.read()
        return int(r.status)


def test_exporter_scrapes_through_500_slow_clients(
    exporter_server: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    host, port = exporter_server.address
    held: list[socket.socket] = []
    try:
        for i in range(500):
            s = socket.create_connection((host, port), timeout=5)
            if i % 3 == 1:
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # never ends
            elif i % 3 == 2:
                s.sendall(b"G")  # one byte, then silence
            held.append(s)
        assert _scrape(exporter_server.url) == 200
        # clients that reset before the reply: no traceback, not even a line
        for _ in range(20):
            s = socket.create_connection((host, port), timeout=5)
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        # garbage and an oversized head get closed; the server goes on
        for junk in (b"\x16\x03\x01\x00\xa5\x01" * 10, b"GET / HTTP/1.1\r\nX: " + b"a" * 40_000):
            with (
                socket.create_connection((host, port), timeout=5) as s,
                contextlib.suppress(OSError),
            ):
                s.sendall(junk)
                s.recv(100)
        assert _scrape(exporter_server.url) == 200
    finally:
        for s in held:
            s.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err[-2000:]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["exporter", "--listen", "127.0.0.1:9999/udp", "--once"], "over TCP only"),
        (["free", "--range", "0-0"], "port 0"),
        (["free", "--host", "fe80::1"], "needs a zone"),
        (["free", "--host", "10.254.254.254"], "not on this host"),
        (["scan", *[f"127.{i * 16}.0.0/12" for i in range(16)]], "in all"),  # loopback only
        (["--json", "ls"], "portkit ls --json"),
        (["connect", "127.0.0.1:0"], "port 0"),
        (["wait", "127.0.0.1:0"], "port 0"),
        (["check", "127.0.0.1:0"], "port 0"),
        (["check", "127.0.0.1:1/sctp"], "not SCTP"),
        (["check", "127.0.0.1:1", "--http", "/\r\nHost: x"], "cannot go into a request"),
        (["check", "127.0.0.1:1", "--http", "/a b"], "cannot go into a request"),
        (["wait", "127.0.0.1:1", "--http", "/\nX: y"], "cannot go into a request"),
        (["check", "127.0.0.1:1", "--tls", "--sni", "a\x1bb"], "cannot go into a request"),
        (["wait", "127.0.0.1:1", "--", ""], "command after -- is empty"),
        (["wait", "127.0.0.1:1", "--json", "--", "true"], "choose one"),
        (["scan", "127.0.0.1", "-p", "1", "--json", "--grepable"], "choose one"),
        (["scan", "127.0.0.1", "-p", "1", "--json", "-oG", "-"], "choose one"),
        (["scan", "127.0.0.1", "-p", "1", "--grepable", "-oG", "f"], "choose one"),
    ],
    ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None,
)
def test_small_wrong_answers_are_usage_errors(cli: Runner, args: list[str], says: str) -> None:
    assert says in _one_line_error(cli(*args))


def test_free_never_offers_port_0_and_takes_mapped_addresses(cli: Runner) -> None:
    r = cli("free", "--range", "0-1", "-n", "1")
    assert r.returncode in (0, 3) and "0" not in r.stdout.split()
    mapped = cli("free", "--host", "::ffff:127.0.0.1")
    assert mapped.returncode == 0 and mapped.stdout.strip().isdigit(), mapped.stderr


def test_who_kill_without_a_terminal_needs_yes(cli: Runner) -> None:
    with _renamed_listener() as (_pid, port):
        r = cli("who", str(port), "--kill", input="")
        assert "--yes" in _one_line_error(r)


@pytest.mark.parametrize(
    "args",
    [
        ["scan", "127.0.0.1", "-p", "1-3000", "--all"],
        ["scan", "127.0.0.1", "-p", "1-3000", "--all", "--json"],
        ["lookup", "http"],
        ["ls", "-tan"],
        ["ls", "-tan", "--sort", "local"],
    ],
    ids=" ".join,
)
def test_a_reader_that_goes_away_ends_quietly(args: list[str]) -> None:
    """``portkit ... | head -c1``: no error, the usual exit status."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "portkit", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1)
    proc.stdout.close()
    code = proc.wait(timeout=60)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert code == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err, err

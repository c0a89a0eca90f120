"""``portkit serve``, ``connect`` and ``forward`` as a user runs them (real processes, uvloop).

The --allow test builds two network namespaces joined by a veth pair: the forwarder
and its target run in one, the clients in the other (no default route: nothing leaks).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import run_portkit

PY = [sys.executable, "-m", "portkit"]


class Proc:
    """A running portkit process whose stderr lines are collected as they come."""

    def __init__(self, args: list[str], prefix: list[str] | None = None) -> None:
        env = {**os.environ, "NO_COLOR": "1"}
        self.popen = subprocess.Popen(
            [*(prefix or []), *PY, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[str] = []
        self.out: queue.Queue[str] = queue.Queue()
        assert self.popen.stderr is not None and self.popen.stdout is not None
        self.threads = [
            threading.Thread(target=self._pump, args=(self.popen.stderr, None), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stdout, self.out), daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _pump(self, stream: object, sink: queue.Queue[str] | None) -> None:
        for line in stream:  # type: ignore[attr-defined]
            if sink is None:
                self.lines.append(line.rstrip("\n"))
            else:
                sink.put(line.rstrip("\n"))

    def wait_line(self, pattern: str, deadline: float = 15.0) -> re.Match[str]:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            if self.popen.poll() is not None and not any(re.search(pattern, x) for x in self.lines):
                time.sleep(0.2)
                for line in list(self.lines):
                    if m := re.search(pattern, line):
                        return m
                raise AssertionError(f"process exited; stderr: {self.lines}")
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} in {self.lines}")

    def stop(self) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        code = self.popen.wait(10)
        for t in self.threads:
            t.join(5)
        for stream in (self.popen.stdout, self.popen.stderr):
            if stream is not None:
                stream.close()
        return code


@contextlib.contextmanager
def running(args: list[str], prefix: list[str] | None = None) -> Iterator[Proc]:
    proc = Proc(args, prefix)
    try:
        yield proc
    finally:
        proc.stop()


def listen_port(proc: Proc, proto: str = "tcp") -> int:
    return int(proc.wait_line(rf"listening [\d.]+:(\d+)/{proto}").group(1))


def serve_ports(proc: Proc, count: int = 1) -> dict[str, int]:
    found = {}
    while len(found) < count:
        try:
            line = proc.out.get(timeout=15)
        except queue.Empty:
            break
        host_port, _, proto = line.partition("/")
        found[proto] = int(host_port.rsplit(":", 1)[1])
    return found


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["forward", "8080"],
        ["forward", "8000-8010:9000-9005"],
        ["forward", "localhost:8080:80"],
        ["forward", "8080:80/sctp"],
        ["forward", "8080:80", "--allow", "10.0.0.0/33"],
        ["forward", "8080:80", "8080:81"],
        ["connect", "no-port-here"],
        ["serve", "http", "--udp", "0"],
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str]) -> None:
    r = run_portkit(*args)
    assert r.returncode == 2, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("portkit ") and "Traceback" not in r.stderr


def test_help_has_examples() -> None:
    for command in ("forward", "serve", "connect"):
        r = run_portkit(command, "--help")
        assert r.returncode == 0 and "Examples:" in r.stdout


def test_connect_refused_exits_1() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_portkit("connect", f"127.0.0.1:{port}", input="x")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1


# --- serve, connect, forward end to end ----------------------------------------------------


def test_serve_connect_forward_tcp_and_udp() -> None:
    with running(["serve", "echo", "--tcp", "0", "--udp", "0"]) as server:
        ports = serve_ports(server, 2)
        specs = [f"0:{ports['tcp']}", f"127.0.0.1:0:127.0.0.1:{ports['udp']}/udp"]
        with running(["forward", *specs, "--log-format", "json"]) as fwd:
            listens = {}
            for _ in range(2):
                fwd.wait_line(r'"event":"listen"')
            for line in fwd.lines:
                if '"event":"listen"' in line:
                    rec = json.loads(line)
                    listens[rec["protocol"]] = rec["listen"]
            assert "127.0.0.1 only" in "\n".join(fwd.lines)  # no bind address: said so
            tcp = run_portkit("connect", listens["tcp"], input="hello through portkit\n")
            assert tcp.returncode == 0 and tcp.stdout == "hello through portkit\n"
            local = re.search(r"connected (\S+) ->", tcp.stderr)
            assert local, tcp.stderr
            udp = run_portkit("connect", listens["udp"] + "/udp", "--wait", "0.5", input="a\nbb\n")
            assert udp.returncode == 0 and udp.stdout == "a\nbb\n"
            fwd.wait_line(r'"event":"close".*"protocol":"tcp"')
            close = next(json.loads(x) for x in fwd.lines if '"event":"close"' in x)
            assert close["client"] == local.group(1)
            assert close["bytes_up"] == close["bytes_down"] == len("hello through portkit\n")
            assert close["closed_by"] == "client"
            assert server.wait_line(r"tcp client 127\.0\.0\.1:\d+ connected")
            assert server.wait_line(r"udp client 127\.0\.0\.1:\d+ first datagram")


def test_serve_http_answers_with_the_client_endpoint() -> None:
    with running(["serve", "http"]) as server:
        port = serve_ports(server)["tcp"]
        r = run_portkit("connect", f"127.0.0.1:{port}", input="GET /x HTTP/1.0\r\n\r\n")
        assert r.stdout.startswith("HTTP/1.1 200 OK")
        local = re.search(r"connected (\S+) ->", r.stderr)
        assert local and f"client {local.group(1)}" in r.stdout


def test_wildcard_bind_warns_loudly() -> None:
    with running(["forward", "0.0.0.0:0:9", "--stats-interval", "0.2"]) as fwd:
        fwd.wait_line(r"warning: 0\.0\.0\.0:\d+/tcp listens on EVERY interface")
        fwd.wait_line(r"^stats tcp_active=0")


# --- SIGTERM drain -------------------------------------------------------------------------


@contextlib.contextmanager
def slow_target(delay: float) -> Iterator[int]:
    """A TCP target that answers each request ``delay`` seconds after reading it."""
    lsock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with conn:
            data = conn.recv(1024)
            if stop.wait(delay):
                return
            with contextlib.suppress(OSError):
                conn.sendall(b"late answer to " + data)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield lsock.getsockname()[1]
    finally:
        stop.set()
        lsock.close()


def test_sigterm_stops_accepting_and_drains() -> None:
    with slow_target(1.5) as tport, running(["forward", f"0:{tport}", "--grace", "20"]) as fwd:
        port = listen_port(fwd)
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"q1")
        fwd.wait_line(r"up to \d+ TCP connections")
        time.sleep(0.2)
        fwd.popen.send_signal(signal.SIGTERM)
        fwd.wait_line(r"stopping: no new connections; draining 1")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        client.settimeout(10)
        assert client.recv(100) == b"late answer to q1"
        client.close()
        assert fwd.popen.wait(15) == 0  # exited once drained, long before --grace
        assert any("closed-by=target" in x for x in fwd.lines)


def test_sigterm_grace_expires_and_cuts() -> None:
    with slow_target(60) as tport, running(["forward", f"0:{tport}", "--grace", "0.5"]) as fwd:
        port = listen_port(fwd)
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"q")
        time.sleep(0.3)
        fwd.popen.send_signal(signal.SIGTERM)
        assert fwd.popen.wait(15) == 0
        fwd.wait_line(r"closed-by=shutdown")
        client.close()


# --- hostile environments: few descriptors, a signal during start-up (issue 14) ------------

#: A prefix that runs the rest of the command line under RLIMIT_NOFILE = {nofile} (soft
#: and hard alike: there is nothing left to raise).
_LIMITED = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, ({nofile}, {nofile}))
os.execv(sys.argv[1], sys.argv[1:])
"""


def _limited(nofile: int) -> list[str]:
    return [sys.executable, "-c", _LIMITED.format(nofile=nofile)]


@pytest.mark.parametrize(
    ("nofile", "args"),
    [
        (10, ["forward", "0:3000"]),
        (10, ["forward", "0:53/udp"]),
        (12, ["forward", "0:3000", "0:53/udp", "--log-format", "json"]),
        (64, ["forward", *["0:3000"] * 100]),
        (10, ["serve", "echo"]),
    ],
    ids=["tcp", "udp", "both", "100-listeners", "serve"],
)
def test_too_few_descriptors_is_one_line_and_exit_3(nofile: int, args: list[str]) -> None:
    done = subprocess.run(
        [*_limited(nofile), *PY, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "too few file descriptors" in lines[0] and f"RLIMIT_NOFILE {nofile}" in lines[0]


def test_just_enough_descriptors_forward_a_connection() -> None:
    # 3 standard streams, the loop's 9, the listener, the epoll set, one connection: the
    # limit the check asks for is one that works, not a guess on the safe side.
    with running(["serve", "echo"]) as server:
        tport = serve_ports(server)["tcp"]
        with running(["forward", f"0:{tport}"], prefix=_limited(16)) as fwd:
            port = listen_port(fwd)
            fwd.wait_line(r"up to 1 TCP connections \(RLIMIT_NOFILE 16\)")
            with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
                c.sendall(b"sixteen is enough\n")
                c.shutdown(socket.SHUT_WR)
                got = b""
                while chunk := c.recv(100):
                    got += chunk
            assert got == b"sixteen is enough\n"
            assert fwd.stop() == 0


def _read_until_eof(fd: int, deadline: float) -> bytes:
    """Everything a pipe gives until its writer is gone (fails after ``deadline`` s)."""
    data = bytearray()
    end = time.monotonic() + deadline
    while True:
        left = end - time.monotonic()
        assert left > 0, f"the writer never finished: {bytes(data[-500:])!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                return bytes(data)
            data += chunk


def test_sigterm_during_start_up_drains_the_accepted_connection() -> None:
    """1,000 listeners whose lines go to a pipe nobody reads: the forwarder is stuck in its
    start-up (the first listener bound and listening, nothing accepted yet) when a client
    connects, starts an upload and SIGTERM arrives. The client's bytes must all come back
    through the forwarder, which then exits 0."""
    payload = os.urandom(2 * 1024 * 1024)
    with running(["serve", "echo"]) as server:
        tport = serve_ports(server)["tcp"]
        r, w = os.pipe()
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, 4096)  # ~80 of the 1,000 "listening" lines
        proc = subprocess.Popen(
            [*PY, "forward", *[f"0:{tport}"] * 1000, "--grace", "60"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=w,
            env={**os.environ, "NO_COLOR": "1"},
        )
        os.close(w)
        client: socket.socket | None = None
        try:
            first = b""
            while b"\n" not in first:  # one line, no more: the pipe stays full
                ready, _, _ = select.select([r], [], [], 30)
                assert ready, "the forwarder printed nothing"
                chunk = os.read(r, 100)
                assert chunk, "the forwarder ended"
                first += chunk
            found = re.match(rb"listening 127\.0\.0\.1:(\d+)/tcp", first)
            assert found, first
            # The kernel completes the handshake; the forwarder, still writing its other
            # 999 lines into the full pipe, has accepted nothing.
            client = socket.create_connection(("127.0.0.1", int(found.group(1))), timeout=60)
            echoed: list[bytes] = []

            def talk(sock: socket.socket) -> None:
                got = bytearray()
                try:
                    sock.sendall(payload)
                    sock.shutdown(socket.SHUT_WR)
                    while chunk := sock.recv(1 << 16):
                        got += chunk
                except OSError as exc:  # a reset: the forwarder died with it
                    got[:] = repr(exc).encode()
                echoed.append(bytes(got))

            talker = threading.Thread(target=talk, args=(client,), daemon=True)
            talker.start()
            proc.send_signal(signal.SIGTERM)
            log = (first + _read_until_eof(r, 90)).decode()
            talker.join(30)
            assert echoed == [payload], "the accepted connection was not relayed whole"
            assert proc.wait(30) == 0, log[-2000:]
            assert "stopping: no new connections; draining 1 " in log
            assert re.search(rf"up={len(payload)} down={len(payload)} .* closed-by=client", log)
        finally:
            os.close(r)
            if client is not None:
                client.close()
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


# --- bounded memory with a stalled reader ----------------------------------------------------


def test_stalled_reader_forwarder_rss_stays_bounded() -> None:
    sent = [0]
    lsock = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def firehose() -> None:
        conn, _ = lsock.accept()
        conn.settimeout(0.5)
        chunk = os.urandom(1 << 20)
        with conn:
            while not stop.is_set():
                try:
                    sent[0] += conn.send(chunk)
                except TimeoutError:
                    continue
                except OSError:
                    return

    threading.Thread(target=firehose, daemon=True).start()
    try:
        with running(["forward", f"0:{lsock.getsockname()[1]}"]) as fwd:
            port = listen_port(fwd)
            fwd.wait_line(r"TCP connections")
            before = rss_kib(fwd.popen.pid)
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
            client.connect(("127.0.0.1", port))  # and never read
            last = -1
            while sent[0] != last:  # until the target is blocked: everything is full
                last = sent[0]
                time.sleep(1.0)
            grown = rss_kib(fwd.popen.pid) - before
            assert sent[0] > 4 * 1024 * 1024, sent[0]
            # The target pushed megabytes; the forwarder holds its high-water mark.
            assert grown < 16 * 1024, f"RSS grew {grown} KiB while {sent[0]} bytes were pushed"
            client.close()
    finally:
        stop.set()
        lsock.close()


# --- --allow from another network namespace ---------------------------------------------------


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def two_namespaces() -> Iterator[tuple[str, str]]:
    """pk5a<pid> (server side, 10.205.5.1) <-veth-> pk5b<pid> (clients, .2 and .3)."""
    pid = os.getpid()
    a, b = f"pk5a{pid}", f"pk5b{pid}"
    va, vb = f"pk5x{pid}", f"pk5y{pid}"
    try:
        _ip("netns", "add", a)
        _ip("netns", "add", b)
        _ip("link", "add", va, "type", "veth", "peer", "name", vb)
        _ip("link", "set", va, "netns", a)
        _ip("link", "set", vb, "netns", b)
        _ip("-n", a, "addr", "add", "10.205.5.1/24", "dev", va)
        _ip("-n", b, "addr", "add", "10.205.5.2/24", "dev", vb)
        _ip("-n", b, "addr", "add", "10.205.5.3/24", "dev", vb)
        for ns, dev in ((a, va), (b, vb)):
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


_CLIENT = """
import errno, json, socket, sys
port = int(sys.argv[1])
out = {}
for src in ("10.205.5.3", "10.205.5.2"):
    s = socket.socket()
    s.settimeout(5)
    s.bind((src, 0))
    try:
        s.connect(("10.205.5.1", port))
        s.sendall(b"from " + src.encode())
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(100):
            data += chunk
        out[src] = data.decode() or "eof"
    except OSError as exc:
        # The forwarder resets a refused client right after accept: the reset may beat
        # the shutdown (ENOTCONN), the send (EPIPE) or the read (ECONNRESET).
        reset = exc.errno in (errno.ECONNRESET, errno.ENOTCONN, errno.EPIPE)
        out[src] = "reset" if reset else type(exc).__name__
    finally:
        s.close()
print(json.dumps(out))
"""


@pytest.mark.netns
def test_allow_refuses_clients_outside_the_networks() -> None:
    assert shutil.which("ip"), "iproute2 is in scripts/system-packages.txt"
    with two_namespaces() as (server_ns, client_ns):
        inside: Callable[[str], list[str]] = lambda ns: ["ip", "netns", "exec", ns]  # noqa: E731
        with running(["serve", "echo"], prefix=inside(server_ns)) as echo_server:
            tport = serve_ports(echo_server)["tcp"]
            spec = f"10.205.5.1:0:127.0.0.1:{tport}"
            args = ["forward", spec, "--allow", "10.205.5.3/32"]
            with running(args, prefix=inside(server_ns)) as fwd:
                port = listen_port(fwd)
                r = subprocess.run(
                    [*inside(client_ns), sys.executable, "-c", _CLIENT, str(port)],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                assert r.returncode == 0, r.stderr
                result = json.loads(r.stdout)
                assert result["10.205.5.3"] == "from 10.205.5.3"
                assert result["10.205.5.2"] in ("reset", "eof")
                fwd.wait_line(r"tcp 10\.205\.5\.2:\d+ -> .* closed-by=refused-allow")

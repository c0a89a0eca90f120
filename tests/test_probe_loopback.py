"""check, scan and wait against real sockets on loopback (port 0, no namespaces needed)."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import portkit
from portkit.errors import ParseError, UsageError
from portkit.probe import PortState, Reason, check, scan, wait_for, wait_for_sync
from portkit.probe._engine import connect_scan, is_self_connect
from portkit.probe._udp_engine import udp_scan
from portkit.probe._wait import WaitTimeout
from tests import _lab


def _has_v6() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


HAS_V6 = _has_v6()


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, int]]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s, s.getsockname()[1]
    s.close()


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


class _Server:
    """A tiny threaded TCP server: ``handler(conn)`` per connection."""

    def __init__(self, handler: object, *, family: int = socket.AF_INET) -> None:
        self.sock = socket.socket(family)
        self.sock.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            conn.settimeout(5)
            self.handler(conn)  # type: ignore[operator]

    def close(self) -> None:
        self.sock.close()


# --- check --------------------------------------------------------------------------------


def test_check_open_and_closed(listener: tuple[socket.socket, int]) -> None:
    _, port = listener
    closed = _free_port()
    results = check([f"127.0.0.1:{port}", f"127.0.0.1:{closed}", f"localhost:{port}"])
    opened, shut, named = results
    assert (opened.state, opened.reason) == (PortState.OPEN, Reason.SYN_ACK)
    assert opened.address == "127.0.0.1"
    assert opened.rtt_ms is not None
    assert opened.rtt_ms >= 0
    assert opened.ok
    assert (shut.state, shut.reason) == (PortState.CLOSED, Reason.CONN_REFUSED)
    assert not shut.ok
    assert named.state is PortState.OPEN
    assert named.address in ("127.0.0.1", "::1")


def test_check_is_exported_and_takes_one_target(listener: tuple[socket.socket, int]) -> None:
    _, port = listener
    (res,) = portkit.check(f"127.0.0.1:{port}")
    assert res.state is PortState.OPEN
    assert str(res.target) == f"127.0.0.1:{port}/tcp"


@pytest.mark.skipif(not HAS_V6, reason="no IPv6 loopback")
def test_check_ipv6() -> None:
    s = socket.socket(socket.AF_INET6)
    s.bind(("::1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        res = check([f"[::1]:{port}", "[::1]:1"])
    finally:
        s.close()
    assert [r.state for r in res] == [PortState.OPEN, PortState.CLOSED]
    assert res[0].address == "::1"


def test_check_unresolved_name() -> None:
    (res,) = check(["no-such-host.invalid:80"])
    assert res.state is PortState.ERROR
    assert res.reason is Reason.UNRESOLVED
    assert res.address is None
    assert "no-such-host.invalid" in res.error
    assert not res.ok


def test_check_bad_target() -> None:
    with pytest.raises(ParseError):
        check(["127.0.0.1"])
    with pytest.raises(ParseError):
        check(["127.0.0.1:70000"])


def test_check_banner_speaks_first() -> None:
    server = _Server(lambda c: (c.sendall(b"SSH-2.0-portkit-test\r\n"), c.recv(10)))
    try:
        (res,) = check([f"127.0.0.1:{server.port}"], banner=True)
    finally:
        server.close()
    assert res.banner == "SSH-2.0-portkit-test"
    assert res.ok


def test_check_banner_answers_probe() -> None:
    # Says nothing first; answers the probe (an HTTP HEAD for an unknown port).
    def handler(conn: socket.socket) -> None:
        if conn.recv(100).startswith(b"HEAD / HTTP/1.0"):
            conn.sendall(b"HTTP/1.0 204 No Content\r\nServer: quiet\r\n\r\n")

    server = _Server(handler)
    try:
        (res,) = check([f"127.0.0.1:{server.port}"], banner=True, timeout=1.0)
    finally:
        server.close()
    assert res.banner == "HTTP/1.0 204 No Content (Server: quiet)"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = 200 if self.path == "/health" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[int]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


def test_check_http_status(http_server: int) -> None:
    good, bad = check([f"127.0.0.1:{http_server}", f"localhost:{http_server}"], http="/health")
    assert good.http_status == 200
    assert good.ok
    assert bad.http_status == 200
    (missing,) = check([f"127.0.0.1:{http_server}"], http="/missing")
    assert missing.http_status == 404
    assert missing.state is PortState.OPEN
    assert not missing.ok


def test_check_http_on_a_non_http_port() -> None:
    server = _Server(lambda c: c.sendall(b"220 not http\r\n"))
    try:
        (res,) = check([f"127.0.0.1:{server.port}"], http="/", timeout=1.0)
    finally:
        server.close()
    assert res.state is PortState.OPEN
    assert "not an HTTP status line" in res.error
    assert not res.ok


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.fail("needs the openssl CLI (scripts/system-packages.txt installs it)")
    return _lab.self_signed_cert(
        str(tmp_path_factory.mktemp("tls")),
        cn="check.portkit.test",
        org="portkit",
        san="DNS:check.portkit.test",
        days=30,
    )


def test_check_tls_self_signed(cert: tuple[str, str]) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)

    def handler(conn: socket.socket) -> None:
        with ctx.wrap_socket(conn, server_side=True) as tls:
            req = tls.recv(4096)
            if req.startswith(b"GET /health"):
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")

    server = _Server(handler)
    try:
        (res,) = check([f"127.0.0.1:{server.port}"], tls=True, http="/health")
        (named,) = check([f"localhost:{server.port}"], tls=True, server_name="check.portkit.test")
    finally:
        server.close()
    assert res.tls is not None
    assert res.tls.subject == "CN=check.portkit.test, O=portkit"
    assert res.tls.san == ("check.portkit.test",)
    assert res.tls.version.startswith("TLS")
    assert res.tls.days_left is not None
    assert 28 <= res.tls.days_left <= 30
    assert not res.tls.verified
    assert "self-signed" in res.tls.verify_error
    assert res.http_status == 200
    assert res.ok  # open, handshake done, HTTP 200: verification is reported, not required
    assert named.tls is not None
    assert named.tls.subject.startswith("CN=check.portkit.test")


def test_check_tls_on_plain_port(listener: tuple[socket.socket, int]) -> None:
    server = _Server(lambda c: c.sendall(b"plain text, no TLS here\r\n"))
    try:
        (res,) = check([f"127.0.0.1:{server.port}"], tls=True, timeout=1.0)
    finally:
        server.close()
    assert res.state is PortState.OPEN
    assert res.tls is None
    assert res.error.startswith("TLS handshake failed")
    assert not res.ok


@pytest.fixture
def udp_echo() -> Iterator[int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                data, peer = s.recvfrom(2048)
            except OSError:
                continue
            s.sendto(b"echo:" + data, peer)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    yield s.getsockname()[1]
    stop.set()
    t.join()
    s.close()


def test_check_udp(udp_echo: int) -> None:
    closed = _free_port(socket.SOCK_DGRAM)
    opened, shut = check([f"127.0.0.1:{udp_echo}/udp", f"127.0.0.1:{closed}/udp"], banner=True)
    assert (opened.state, opened.reason) == (PortState.OPEN, Reason.UDP_RESPONSE)
    assert opened.banner == "echo:"
    assert (shut.state, shut.reason) == (PortState.CLOSED, Reason.PORT_UNREACH)


def test_check_udp_silent_is_open_filtered() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    try:
        (res,) = check([f"127.0.0.1:{s.getsockname()[1]}/udp"], timeout=0.2)
    finally:
        s.close()
    assert (res.state, res.reason) == (PortState.OPEN_FILTERED, Reason.NO_RESPONSE)
    assert not res.ok


# --- the engine ---------------------------------------------------------------------------


def test_self_connect_is_detected() -> None:
    port = _free_port()
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.connect(("127.0.0.1", port))  # TCP simultaneous open with itself
    try:
        assert is_self_connect(s, "127.0.0.1", port)
    finally:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    with socket.create_server(("127.0.0.1", 0)) as srv:
        c = socket.create_connection(srv.getsockname())
        assert not is_self_connect(c, "127.0.0.1", srv.getsockname()[1])
        c.close()


def test_engine_never_reports_a_self_connect_as_open() -> None:
    # Binding the target's own address forces every try to connect to itself.
    port = _free_port()
    out: list[tuple[object, ...]] = []
    connect_scan([(None, "127.0.0.1", port)], lambda *r: out.append(r), _bind=("127.0.0.1", port))
    assert len(out) == 1
    assert out[0][3] is PortState.CLOSED


def test_engine_survives_emfile() -> None:
    # Leave only a few free fds under a small limit: the engine must shrink, not crash.
    code = textwrap.dedent(
        """
        import os, resource, socket
        resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))
        from portkit.probe._engine import connect_scan
        hog = [os.pipe() for _ in range(65)]
        srv = socket.create_server(("127.0.0.1", 0), backlog=1000)
        port = srv.getsockname()[1]
        res = {}
        connect_scan(((None, "127.0.0.1", p) for p in [port] + list(range(20000, 21500))),
                     lambda k, ip, p, s, r, rtt, sock: res.__setitem__(p, s.value),
                     concurrency=130)
        print(len(res), res[port], sorted(set(res.values())))
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    count, state, _ = done.stdout.split(" ", 2)
    assert count == "1501"
    assert state == "open"


def test_engine_rate_and_fixed_timeout_still_correct(listener: tuple[socket.socket, int]) -> None:
    _, port = listener
    got: dict[int, PortState] = {}
    connect_scan(
        [(None, "127.0.0.1", p) for p in (port, 1, 2, 3)],
        lambda k, ip, p, s, r, rtt, sock: got.__setitem__(p, s),
        rate=50,
        timeout=0.5,
        retries=0,
    )
    assert got == {
        port: PortState.OPEN,
        1: PortState.CLOSED,
        2: PortState.CLOSED,
        3: PortState.CLOSED,
    }


def test_udp_engine_reports_every_job_once(udp_echo: int) -> None:
    got: list[tuple[int, PortState]] = []
    jobs = [(None, "127.0.0.1", udp_echo, b"x"), (None, "127.0.0.1", udp_echo, b"y")]
    # 50 closed ports, never the echo server's (the OS may have given it one of these)
    closed = [p for p in range(41000, 41051) if p != udp_echo][:50]
    jobs += [(None, "127.0.0.1", p, b"") for p in closed]
    udp_scan(jobs, lambda k, ip, p, s, r, rtt, data: got.append((p, s)))
    ports = [p for p, _ in got]
    assert sorted(ports) == sorted([udp_echo, udp_echo, *closed])
    assert [s for p, s in got if p == udp_echo] == [PortState.OPEN, PortState.OPEN]
    # The same target twice in one check: each gets its own answer.
    twice = check([f"127.0.0.1:{udp_echo}/udp"] * 2, banner=True)
    assert [r.banner for r in twice] == ["echo:", "echo:"]


# --- scan ---------------------------------------------------------------------------------


def test_scan_loopback(listener: tuple[socket.socket, int]) -> None:
    _, port = listener
    closed = [_free_port() for _ in range(3)]
    report = scan("127.0.0.1", [port, *closed])
    assert report.open_ports() == [port]
    assert report.state_counts() == {PortState.OPEN: 1, PortState.CLOSED: 3}
    assert report.hosts == ("127.0.0.1",)
    first = report.results[0]
    assert (first.host, first.protocol) == ("127.0.0.1", "tcp")
    assert [r.port for r in report.results] == sorted([port, *closed])


def test_scan_keep_open_only_still_counts_all(listener: tuple[socket.socket, int]) -> None:
    _, port = listener
    report = scan(["127.0.0.1", "127.0.0.1"], f"{port},1-100", keep=("open",))
    assert [r.port for r in report.results] == [port]
    assert sum(report.counts.values()) == 101
    assert report.probes == 101


def test_scan_names_and_banners() -> None:
    server = _Server(lambda c: (c.sendall(b"220 smtp.portkit.test ESMTP\r\n"), c.recv(10)))
    try:
        report = scan("localhost", [server.port], banner=True)
    finally:
        server.close()
    (res,) = report.results
    assert res.state is PortState.OPEN
    assert res.banner == "220 smtp.portkit.test ESMTP"
    assert report.hostnames == {res.host: "localhost"}


def test_scan_udp_loopback(udp_echo: int) -> None:
    closed = _free_port(socket.SOCK_DGRAM)
    report = scan("127.0.0.1", [udp_echo, closed], udp=True, banner=True)
    by_port = {r.port: r for r in report.results}
    assert by_port[udp_echo].state is PortState.OPEN
    assert by_port[udp_echo].banner == "echo:"
    assert by_port[closed].state is PortState.CLOSED
    assert by_port[closed].reason is Reason.PORT_UNREACH
    assert report.notes == ()


def test_scan_bad_input() -> None:
    with pytest.raises(ParseError):
        scan("10.0.0.0/8", "22")
    with pytest.raises(ParseError):
        scan("127.0.0.1", "99999")
    with pytest.raises(UsageError):
        scan("127.0.0.1", "22", top=10)
    with pytest.raises(portkit.ProbeError, match="nothing to scan"):
        scan("no-such-host.invalid", "22")


# --- wait ---------------------------------------------------------------------------------


def _listen_later(port: int, delay: float) -> tuple[threading.Thread, list[socket.socket]]:
    holder: list[socket.socket] = []

    def run() -> None:
        threading.Event().wait(delay)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen()
        holder.append(s)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, holder


def test_wait_until_a_port_opens() -> None:
    port = _free_port()
    t, holder = _listen_later(port, 0.4)
    try:
        result = wait_for_sync(f"127.0.0.1:{port}", timeout=20, interval=0.1)
    finally:
        t.join()
        for s in holder:
            s.close()
    assert result.ready
    assert result.attempts >= 2
    assert result.results[0].state is PortState.OPEN


def test_wait_times_out_with_the_last_answers() -> None:
    port = _free_port()
    with pytest.raises(WaitTimeout) as info:
        wait_for_sync([f"127.0.0.1:{port}"], timeout=0.5, interval=0.1)
    assert not info.value.result.ready
    assert info.value.result.results[0].state is PortState.CLOSED
    assert isinstance(info.value, portkit.ProbeTimeout)
    result = wait_for_sync([f"127.0.0.1:{port}"], timeout=0.3, raise_on_timeout=False)
    assert not result.ready
    assert result.attempts >= 1


def test_wait_any_and_closed(listener: tuple[socket.socket, int]) -> None:
    _, port = listener
    free = _free_port()
    any_of = wait_for_sync([f"127.0.0.1:{free}", f"127.0.0.1:{port}"], mode="any", timeout=5)
    assert any_of.ready
    gone = wait_for_sync([f"127.0.0.1:{free}"], closed=True, timeout=5)
    assert gone.ready
    with pytest.raises(WaitTimeout):
        wait_for_sync([f"127.0.0.1:{port}"], closed=True, timeout=0.3)
    with pytest.raises(UsageError):
        wait_for_sync(["127.0.0.1:53/udp"])
    with pytest.raises(UsageError):
        wait_for_sync([f"127.0.0.1:{port}"], mode="some")


def test_wait_never_fooled_by_self_connect() -> None:
    # An even port inside the ephemeral range with nobody listening: a naive
    # connect loop can get a self-connect "success" here.
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        low, high = (int(x) for x in f.read().split())
    port = _free_port()
    if not low <= port <= high:
        port = low + 1000 if (low + 1000) % 2 == 0 else low + 1001
    result = wait_for_sync(
        [f"127.0.0.1:{port}"], timeout=0.6, interval=0.001, raise_on_timeout=False
    )
    assert not result.ready


async def test_wait_for_async() -> None:
    port = _free_port()
    t, holder = _listen_later(port, 0.3)
    try:
        result = await wait_for(f"127.0.0.1:{port}", timeout=20, interval=0.1)
    finally:
        t.join()
        for s in holder:
            s.close()
    assert result.ready
    with pytest.raises(WaitTimeout):
        await portkit.wait_for(f"127.0.0.1:{port}", timeout=0.3, interval=0.1)


async def test_wait_for_is_cancellable() -> None:
    port = _free_port()
    task = asyncio.ensure_future(wait_for(f"127.0.0.1:{port}", timeout=60, interval=0.2))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_public_names_resolve() -> None:
    for name in (
        "check",
        "scan",
        "wait_for",
        "wait_for_sync",
        "PortState",
        "Reason",
        "CheckResult",
        "ScanReport",
        "PortResult",
        "WaitResult",
        "TlsInfo",
    ):
        assert getattr(portkit, name) is getattr(portkit.probe, name)
    assert Path(portkit.probe.__file__).parent.name == "probe"


def test_wait_for_http_status(http_server: int) -> None:
    assert wait_for_sync(f"127.0.0.1:{http_server}", http="/health", timeout=5).ready
    result = wait_for_sync(
        f"127.0.0.1:{http_server}", http="/missing", timeout=0.5, raise_on_timeout=False
    )
    assert not result.ready  # open, but a 404 is not ready
    assert result.results[0].http_status == 404


def test_open_probes_leave_nothing_behind(listener: tuple[socket.socket, int]) -> None:
    if shutil.which("ss") is None:
        pytest.fail("needs ss (iproute2; scripts/system-packages.txt installs it)")
    _, port = listener
    report = scan("127.0.0.1", [port])
    assert report.open_ports() == [port]
    for _ in range(20):
        check([f"127.0.0.1:{port}"])
    # The probes close with SO_LINGER {1, 0}: a RST, so no FIN-WAIT or TIME-WAIT stays
    # on our side and the never-accepted connections leave the listener's queue.
    done = subprocess.run(
        ["ss", "-Htan", "state", "connected", f"( sport = :{port} or dport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == ""


def test_check_extras_fail_when_the_server_resets() -> None:
    def reset(conn: socket.socket) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    server = _Server(reset)
    try:
        (res,) = check([f"127.0.0.1:{server.port}"], tls=True, timeout=1.0)
    finally:
        server.close()
    assert res.state is PortState.OPEN  # the handshake completed: something listens
    assert res.error
    assert not res.ok


def test_scan_a_large_block_of_hosts() -> None:
    # 8,192 loopback addresses: more hosts than the engine keeps timing for at once.
    report = scan("127.1.0.0/19", "1", keep=["open"])
    assert report.probes == 8192
    assert report.state_counts() == {PortState.CLOSED: 8192}
    assert len(report.hosts) == 8192
    assert report.results == ()

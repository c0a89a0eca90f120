"""Readiness handshakes against the real servers from Debian's packages (tests/_servers.py),
in their ready and not-ready states, and against the wrong protocol.

The servers start once per session, all at once; RabbitMQ (10-20 s of Erlang boot) is
asked for last. Kafka and MongoDB are not packaged: tests/test_ready_codecs.py checks
them against answers written from their protocol specs.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from portkit.probe import check
from portkit.probe._ready import ReadyState, Verdict
from tests._lab import self_signed_cert
from tests._servers import PG_BIN, Fleet, Proc, as_user, missing_tools, pg_argv, pg_copy

READY, NOT_READY, OTHER = ReadyState.READY, ReadyState.NOT_READY, ReadyState.NOT_THIS_PROTOCOL


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    gone = missing_tools()
    assert not gone, f"missing (scripts/test installs them): {', '.join(gone)}"
    # Not under pytest's tmp (mode 0700 up the tree): the servers' own users (postgres,
    # mysql, exim) must reach their data directories.
    root = Path(tempfile.mkdtemp(prefix="portkit-servers-"))
    root.chmod(0o755)
    fleet = Fleet(root)
    try:
        yield fleet
    finally:
        fleet.stop()
        shutil.rmtree(root, ignore_errors=True)


def verdict(port: int, proto: str, timeout: float = 3.0, **kw: Any) -> Verdict:
    res = check(f"127.0.0.1:{port}", proto=proto, timeout=timeout, **kw)[0]
    assert res.handshake is not None, res
    return res.handshake


def portkit(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portkit", *args], capture_output=True, text=True, timeout=timeout
    )


# --- PostgreSQL ------------------------------------------------------------------------


def test_postgres_ready(fleet: Fleet) -> None:
    v = verdict(fleet.port("postgres"), "postgres")
    assert v.state is READY and "trust" in v.detail and v.rtt_ms is not None


def test_postgres_standby_is_not_ready(fleet: Fleet) -> None:
    port = fleet.port("pg-standby")
    v = verdict(port, "postgres")
    assert v.state is NOT_READY and v.code == "57P03", v
    # "starting up" until recovery reaches a consistent state, then "not accepting
    # connections" (hot standby off): both are SQLSTATE 57P03.
    assert v.reason.startswith("the database system is"), v
    peer = subprocess.run(["pg_isready", "-h", "127.0.0.1", "-p", str(port)], capture_output=True)
    assert peer.returncode == 1  # pg_isready agrees: "rejecting connections"
    done = portkit("wait", f"127.0.0.1:{port}", "--proto", "postgres", "--timeout", "0.6")
    assert done.returncode == 124
    assert "open but not-ready (postgres: the database system is " in done.stderr


def _pg_session(port: int) -> socket.socket:
    """A session (trust auth) held open: a smart shutdown waits for it to end."""
    from portkit.probe._ready._sql import _pg_startup

    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(_pg_startup())
    got = b""
    while b"Z\x00\x00\x00\x05I" not in got:  # ReadyForQuery, idle
        chunk = sock.recv(4096)
        assert chunk, got
        got += chunk
    return sock


def test_postgres_shutting_down(fleet: Fleet) -> None:
    fleet.port("postgres")  # the template exists once the main cluster started from it
    tmp_path = fleet.root / "pg-stop"
    tmp_path.mkdir()
    data = pg_copy(fleet.pg_template, tmp_path / "data")  # type: ignore[attr-defined]
    from tests._servers import free_port, pg_ready

    port = free_port()
    proc = Proc("pg-stop", pg_argv(data, port), tmp_path / "pg.log")
    try:
        deadline = time.monotonic() + 30
        while not pg_ready(port):
            assert proc.alive() and time.monotonic() < deadline, proc.tail()
            time.sleep(0.05)
        session = _pg_session(port)
        stop = [*as_user("postgres"), str(PG_BIN / "pg_ctl"), "stop", "-D", str(data)]
        subprocess.run([*stop, "-m", "smart", "-W"], check=True, capture_output=True)
        deadline = time.monotonic() + 10
        v = verdict(port, "postgres")
        while v.state is READY and time.monotonic() < deadline:  # the signal is on its way
            time.sleep(0.02)
            v = verdict(port, "postgres")
        assert v.state is NOT_READY and v.code == "57P03", v
        assert "shutting down" in v.reason
        session.close()
        proc.popen.wait(10)
    finally:
        proc.stop()


# --- MariaDB ---------------------------------------------------------------------------


def test_mariadb_ready_and_too_many_connections(fleet: Fleet) -> None:
    port = fleet.port("mariadb")
    v = verdict(port, "mariadb")
    assert v.state is READY and "MariaDB" in v.detail
    held: list[socket.socket] = []
    try:
        # max_connections 10, plus one kept for SUPER: connect until one is refused. A
        # connection that was closing while we counted may free a slot meanwhile: then
        # fill the server again (a few rounds at most).
        for _round in range(3):
            for _ in range(30):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                held.append(s)
                if s.recv(256)[4:5] == b"\xff":
                    break
            v = verdict(port, "mysql")
            if v.state is NOT_READY:
                break
        assert v.state is NOT_READY and v.code == 1040 and "Too many connections" in v.reason
    finally:
        for s in held:
            s.close()


# --- Redis -----------------------------------------------------------------------------


def test_redis_ready(fleet: Fleet) -> None:
    v = verdict(fleet.port("redis"), "redis")
    assert v.state is READY and v.reason == "PONG"


def test_redis_loading_then_ready_then_needs_auth(fleet: Fleet, tmp_path: Path) -> None:
    from tests._servers import free_port

    port = fleet.port("redis")
    # A dataset that takes a while to load: 20,000 keys, 100 us each (key-load-delay),
    # answering clients every KiB loaded (they hear -LOADING meanwhile).
    cli = ["redis-cli", "-p", str(port)]
    for command in (["debug", "populate", "20000"], ["save"], ["flushall"]):
        done = subprocess.run([*cli, *command], capture_output=True, text=True, check=True)
        assert done.stdout.strip() == "OK", done.stdout  # redis-cli exits 0 on -ERR too
    shutil.copy(fleet.root / "redis" / "dump.rdb", tmp_path / "dump.rdb")
    loading_port = free_port()
    argv = ["redis-server", "--port", str(loading_port), "--bind", "127.0.0.1"]
    argv += ["--dir", str(tmp_path), "--save", "", "--key-load-delay", "100"]
    argv += ["--loading-process-events-interval-bytes", "1024"]
    proc = Proc("redis-loading", argv, tmp_path / "redis.log")
    try:
        deadline = time.monotonic() + 10
        while not _tcp(loading_port):
            assert proc.alive() and time.monotonic() < deadline, proc.tail()
            time.sleep(0.01)
        v = verdict(loading_port, "redis")
        assert v.state is NOT_READY and v.code == "LOADING", v
        assert "loading the dataset" in v.reason
        done = portkit("wait", f"127.0.0.1:{loading_port}", "--proto", "redis", "--json")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["targets"][0]["handshake"]["verdict"] == "ready"
        subprocess.run(
            ["redis-cli", "-p", str(loading_port), "config", "set", "requirepass", "pk"],
            check=True,
            capture_output=True,
        )
        v = verdict(loading_port, "redis")
        assert v.state is READY and v.reason == "serving, needs auth" and v.code == "NOAUTH"
    finally:
        proc.stop()


@contextlib.contextmanager
def holding(port: int, count: int, greeting: int = 4096) -> Iterator[list[socket.socket]]:
    """``count`` connections held open, each past the server's greeting. A server may
    still count a connection that just closed (sshd learns a child ended through a pipe,
    later): one it turns away (no greeting, or its refusal: SMTP's 421, NATS' -ERR,
    which NATS sends after its INFO, so each connection is watched a moment longer) is
    tried again, for up to 10 s."""
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 10
        while len(held) < count:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            try:
                got = s.recv(greeting)
                if got:
                    s.settimeout(0.3)
                    try:
                        more = s.recv(greeting)
                        got = got + more if more else b""  # closed: turned away
                    except TimeoutError:
                        pass  # still open, nothing more to say: held
                    s.settimeout(5)
            except OSError:
                got = b""
            if got and not got.startswith(b"421") and b"-ERR" not in got:
                held.append(s)
                continue
            s.close()
            assert time.monotonic() < deadline, f"port {port} keeps turning connections away"
            time.sleep(0.1)
        yield held
    finally:
        for s in held:
            s.close()


def _tcp(port: int) -> bool:
    with contextlib.suppress(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    return False


# --- the servers that speak first, and the rest ------------------------------------------


def test_sshd_ready_and_full(fleet: Fleet) -> None:
    port = fleet.port("sshd")
    v = verdict(port, "ssh")
    assert v.state is READY and v.detail.startswith("OpenSSH")
    with holding(port, 2):  # MaxStartups 2: the third unauthenticated connection is dropped
        v = verdict(port, "ssh")
        assert v.state is NOT_READY and "MaxStartups" in v.reason, v


def test_dns_over_udp_and_tcp(fleet: Fleet) -> None:
    port = fleet.port("dnsmasq")
    udp = check(f"127.0.0.1:{port}/udp", proto="dns")[0]
    assert udp.ok and udp.handshake is not None and udp.handshake.reason == "REFUSED"
    tcp = verdict(port, "dns")
    assert tcp.state is READY and tcp.code == 5  # REFUSED: no upstream, but serving


def test_memcached_slapd_nats(fleet: Fleet) -> None:
    v = verdict(fleet.port("memcached"), "memcached")
    assert v.state is READY and v.detail[:1].isdigit()
    v = verdict(fleet.port("slapd"), "ldap")
    assert v.state is READY and v.reason == "anonymous bind accepted"
    port = fleet.port("nats")
    assert verdict(port, "nats").state is READY
    with holding(port, 3):  # max_connections: 3
        v = verdict(port, "nats")
        assert v.state is NOT_READY and "maximum connections exceeded" in v.reason, v


def test_exim_ready_and_too_many(fleet: Fleet) -> None:
    port = fleet.port("exim")
    v = verdict(port, "smtp")
    assert v.state is READY and v.code == 220 and "Exim" in v.detail
    with holding(port, 2):  # smtp_accept_max 2
        v = verdict(port, "smtp")
        assert v.state is NOT_READY and v.code == 421 and "Too many" in v.reason, v


def test_wrong_protocols(fleet: Fleet) -> None:
    ssh, redis, pg = fleet.port("sshd"), fleet.port("redis"), fleet.port("postgres")
    assert verdict(ssh, "redis").state is OTHER  # SSH-2.0-... is not RESP
    assert verdict(ssh, "http").state is OTHER
    assert verdict(fleet.port("mariadb"), "postgres").state is OTHER  # a MySQL greeting
    assert verdict(fleet.port("exim"), "ssh", timeout=0.5).state is OTHER  # "220 ...", no SSH-
    assert verdict(pg, "redis").state in (OTHER, NOT_READY)
    assert verdict(ssh, "tls").state is OTHER  # the SSH banner is no TLS record
    silent = verdict(redis, "ssh", timeout=0.3)  # Redis waits for a command: no greeting
    assert silent.state is NOT_READY and "no answer" in silent.reason
    done = portkit("check", f"127.0.0.1:{ssh}", "--proto", "redis", "--json")
    assert done.returncode == 1
    assert json.loads(done.stdout)[0]["handshake"]["verdict"] == "not-this-protocol"


# --- HTTP, TLS, gRPC (servers in this process) ---------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "UP"}' if self.path == "/healthz" else b"nope"
        self.send_response(200 if self.path == "/healthz" else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """(http port, https port with a 10-day self-signed certificate)."""
    plain = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    secure = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    d = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_cert(str(d), cn="portkit.test", org="pk", san="DNS:localhost", days=10)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    secure.socket = ctx.wrap_socket(secure.socket, server_side=True)
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in (plain, secure)]
    for t in threads:
        t.start()
    yield plain.server_address[1], secure.server_address[1]
    for s in (plain, secure):
        s.shutdown()
        s.server_close()


def test_http_statuses_and_body(web: tuple[int, int]) -> None:
    port, _ = web
    v = verdict(port, "http", http="/healthz", expect_body='"UP"')
    assert v.state is READY and v.code == 200
    v = verdict(port, "http", http="/")
    assert v.state is NOT_READY and v.code == 503
    assert verdict(port, "http", http="/", statuses="200-599").state is READY
    done = portkit("check", f"127.0.0.1:{port}", "--proto", "http", "--http", "/healthz")
    assert done.returncode == 0, done.stderr  # Docker's HEALTHCHECK: 0 healthy
    done = portkit("check", f"127.0.0.1:{port}", "--proto", "http", "--expect-body", "UP")
    assert done.returncode == 1  # ... 1 unhealthy


def test_https_and_min_days(web: tuple[int, int]) -> None:
    _, port = web
    res = check(f"127.0.0.1:{port}", proto="https", http="/healthz")[0]
    assert res.ok and res.tls is not None and res.http_status == 200
    assert res.handshake is not None and res.handshake.proto == "https"
    v = verdict(port, "tls", min_days=30)
    assert v.state is NOT_READY and "--min-days 30" in v.reason
    assert verdict(port, "tls", min_days=5).state is READY
    assert verdict(port, "http", tls=True, http="/healthz").proto == "https"
    plain = check(f"127.0.0.1:{port}", tls=True, min_days=30)[0]  # --tls without --proto
    assert not plain.ok and "--min-days 30" in plain.error


def test_grpc_health(tmp_path: Path) -> None:
    from concurrent import futures

    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        v = verdict(port, "grpc")
        assert v.state is READY and v.code == "SERVING", v
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        v = verdict(port, "grpc")
        assert v.state is NOT_READY and v.code == "NOT_SERVING"
        assert verdict(port, "http").state is OTHER  # an HTTP/2-only server
    finally:
        server.stop(None)


# --- RabbitMQ: last, it boots slowest ----------------------------------------------------


def test_rabbitmq_ready(fleet: Fleet) -> None:
    port = fleet.port("rabbitmq", timeout=120)
    v = verdict(port, "amqp")
    assert v.state is READY and v.reason == "Connection.Start" and v.detail == "AMQP 0-9"
    assert verdict(port, "kafka").state in (OTHER, NOT_READY)  # AMQP is not Kafka

"""The relay, through the library (``portkit.Forwarder``) on real loopback sockets.

Each test runs on both TCP data paths (epoll, the Linux default, and the loop's
transports, the portable one), each on the standard asyncio loop and on uvloop. Targets
are small asyncio servers in this module; clients are asyncio streams or raw sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import resource
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvloop

import portkit
from portkit.forward import ConnLog, Forwarder, _engine, serve

BLOB = os.urandom(24 * 1024 * 1024)
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()

Runner = Callable[[Awaitable[None]], None]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


_LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop] | None] = {
    "asyncio": None,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=[(p, loop) for p in _engine.DATA_PATHS for loop in _LOOPS], ids=str)
def run(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Callable[[Awaitable[None]], None]:
    """Run a scenario on each data path, on the standard loop and on uvloop."""
    data_path, loop = request.param
    # The Forwarder's default data path is the first of DATA_PATHS.
    monkeypatch.setattr(_engine, "DATA_PATHS", (data_path,))

    def runner(scenario: Awaitable[None]) -> None:
        async def main() -> None:
            await scenario

        with asyncio.Runner(loop_factory=_LOOPS[loop]) as r:
            r.run(main())

    return runner


@contextlib.asynccontextmanager
async def target(handler: Handler, host: str = "127.0.0.1") -> AsyncIterator[int]:
    """A TCP server on ``host`` running ``handler`` per connection; yields its port."""

    async def guarded(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await handler(r, w)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()

    server = await asyncio.start_server(guarded, host, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


@contextlib.asynccontextmanager
async def forwarding(
    target_port: int, *, logs: list[ConnLog] | None = None, **options: Any
) -> AsyncIterator[tuple[Forwarder, int]]:
    sink = logs if logs is not None else []
    async with Forwarder([f"0:127.0.0.1:{target_port}"], on_close=sink.append, **options) as fwd:
        yield fwd, fwd.bound[0].listen_port


async def until(check: Callable[[], bool], deadline: float = 10.0) -> None:
    """Wait for ``check()`` to become true (a deadline that only fails, never a timing)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while not check():
        assert loop.time() < end, "condition not reached"
        await asyncio.sleep(0.01)


async def turned_away(port: int, payload: bytes = b"") -> str:
    """Connect and read: "reset" or "eof" when the forwarder would not serve us, else the data."""
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionResetError:
        return "reset"
    try:
        if payload:
            w.write(payload)
        data = await r.read()
        if data:
            data += await r.read()
        return data.decode() if data else "eof"
    except ConnectionResetError:
        return "reset"
    finally:
        w.close()


async def sha_of_upload(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    digest = hashlib.sha256()
    while chunk := await r.read(1 << 16):
        digest.update(chunk)
    w.write(digest.hexdigest().encode())
    await w.drain()


async def blob_after_request(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    await r.readline()
    w.write(BLOB)
    await w.drain()


async def echo(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    while chunk := await r.read(1 << 16):
        w.write(chunk)
        await w.drain()


# --- integrity and half-close ----------------------------------------------------------


async def _upload_then_fin_reply_still_arrives() -> None:
    logs: list[ConnLog] = []
    async with target(sha_of_upload) as tport, forwarding(tport, logs=logs) as (_fwd, port):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(BLOB)
        await w.drain()
        w.write_eof()
        assert (await r.read()).decode() == BLOB_SHA
        w.close()
        await until(lambda: len(logs) == 1)
    (log,) = logs
    assert log.bytes_up == len(BLOB) and log.bytes_down == 64
    assert log.closed_by == "client" and log.target == f"127.0.0.1:{tport}"


async def _fin_right_after_request_download_still_arrives() -> None:
    async with target(blob_after_request) as tport, forwarding(tport) as (_fwd, port):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"GET\n")
        w.write_eof()
        digest = hashlib.sha256()
        while chunk := await r.read(1 << 16):
            digest.update(chunk)
        assert digest.hexdigest() == BLOB_SHA
        w.close()


async def _reply_two_seconds_after_client_fin() -> None:
    async def late(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        request = await r.read()  # to EOF: the client's FIN arrived
        await asyncio.sleep(2.0)
        w.write(b"late:" + request)
        await w.drain()

    async with target(late) as tport, forwarding(tport) as (_fwd, port):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"ping")
        w.write_eof()
        assert await r.read() == b"late:ping"
        w.close()


async def _target_fin_first_upload_still_arrives() -> None:
    # The target says goodbye and half-closes at once; the client's upload, sent after
    # that FIN has reached it, must still reach the target whole.
    got: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def bye_then_listen(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"bye\n")
        w.write_eof()
        digest = hashlib.sha256()
        while chunk := await r.read(1 << 16):
            digest.update(chunk)
        got.set_result(digest.hexdigest())

    async with target(bye_then_listen) as tport, forwarding(tport) as (_fwd, port):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert await r.read() == b"bye\n"  # the target's FIN came through
        w.write(BLOB)
        await w.drain()
        w.write_eof()
        assert await asyncio.wait_for(got, 30) == BLOB_SHA
        w.close()


async def _many_parallel_connections_keep_their_bytes() -> None:
    async def one(port: int, i: int) -> bool:
        payload = BLOB[i * 65536 : i * 65536 + 512 * 1024]
        r, w = await asyncio.open_connection("127.0.0.1", port)

        async def send() -> None:
            w.write(payload)
            await w.drain()
            w.write_eof()

        sender = asyncio.ensure_future(send())
        back = await r.read()
        await sender
        w.close()
        return hashlib.sha256(back).digest() == hashlib.sha256(payload).digest()

    logs: list[ConnLog] = []
    async with target(echo) as tport, forwarding(tport, logs=logs) as (fwd, port):
        results = await asyncio.gather(*(one(port, i) for i in range(60)))
        assert all(results)
        await until(lambda: len(logs) == 60)
        assert fwd.stats.tcp_total == 60 and fwd.stats.tcp_active == 0
        assert fwd.stats.bytes_up == fwd.stats.bytes_down == 60 * 512 * 1024


async def _server_speaks_first() -> None:
    async def banner(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        w.write(b"SSH-2.0-test\r\n")
        await w.drain()
        await r.read()

    async with target(banner) as tport, forwarding(tport) as (_fwd, port):
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert await r.readline() == b"SSH-2.0-test\r\n"
        w.close()


# --- resets, target down, limits ------------------------------------------------------


def _rst(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _client_reset_reaches_the_target() -> None:
    seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def watch(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await r.read()
            seen.set_result("eof")
        except ConnectionResetError:
            seen.set_result("reset")

    logs: list[ConnLog] = []
    async with target(watch) as tport, forwarding(tport, logs=logs) as (fwd, port):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"x" * 1000)
        await until(
            lambda: fwd.stats.tcp_active == 1 and fwd._conns and all(c.relaying for c in fwd._conns)
        )
        _rst(sock)
        assert await asyncio.wait_for(seen, 10) == "reset"
        await until(lambda: len(logs) == 1)
    assert logs[0].closed_by == "client-reset"


async def _target_reset_reaches_the_client() -> None:
    async def reset_after_hello(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.readexactly(5)
        _rst(w.get_extra_info("socket").dup())
        w.transport.abort()

    logs: list[ConnLog] = []
    async with target(reset_after_hello) as tport, forwarding(tport, logs=logs) as (_fwd, port):
        assert await turned_away(port, b"hello") == "reset"
        await until(lambda: len(logs) == 1)
    assert logs[0].closed_by in ("target-reset", "target")


async def _target_down_resets_client_and_keeps_serving() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]  # nothing listens here once closed
    logs: list[ConnLog] = []
    async with target(echo) as live:
        specs = [f"0:127.0.0.1:{dead}", f"0:127.0.0.1:{live}"]
        async with Forwarder(specs, on_close=logs.append, connect_timeout=5) as fwd:
            down, up = (m.listen_port for m in fwd.bound)
            for _ in range(3):
                assert await turned_away(down) == "reset"
            r, w = await asyncio.open_connection("127.0.0.1", up)
            w.write(b"still here")
            w.write_eof()
            assert await r.read() == b"still here"
            w.close()
            await until(lambda: len(logs) == 4)
            assert fwd.stats.tcp_failed == 3
    assert [log.closed_by for log in logs[:3]] == ["connect-failed"] * 3
    assert logs[0].error


async def _connect_timeout_resets_the_client() -> None:
    # A listener whose accept queue is full drops SYNs: connecting to it hangs.
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(0)
    fillers = []
    for _ in range(8):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(blackhole.getsockname())
        fillers.append(c)
    logs: list[ConnLog] = []
    try:
        port_ = blackhole.getsockname()[1]
        async with forwarding(port_, logs=logs, connect_timeout=0.5) as (fwd, port):
            assert await turned_away(port) == "reset"
            await until(lambda: len(logs) == 1)
            assert fwd.stats.tcp_failed == 1
    finally:
        for c in fillers:
            c.close()
        blackhole.close()
    assert logs[0].closed_by == "connect-timeout" and "0.5" in (logs[0].error or "")


async def _max_conns_refuses_the_extra_client() -> None:
    logs: list[ConnLog] = []
    async with target(echo) as tport, forwarding(tport, logs=logs, max_conns=2) as (fwd, port):
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        await until(lambda: fwd.stats.tcp_active == 2)
        assert await turned_away(port, b"let me in") == "reset"
        assert fwd.stats.tcp_refused == 1
        held[0][1].close()
        await until(lambda: fwd.stats.tcp_active == 1)
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"room again")
        w.write_eof()
        assert await r.read() == b"room again"
        w.close()
        held[1][1].close()
    assert any(log.closed_by == "refused-max-conns" for log in logs)


async def _idle_timeout_closes_quiet_connections_only() -> None:
    logs: list[ConnLog] = []
    async with (
        target(echo) as tport,
        forwarding(tport, logs=logs, idle_timeout=0.4) as (fwd, port),
    ):
        quiet_r, quiet_w = await asyncio.open_connection("127.0.0.1", port)
        busy_r, busy_w = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(12):  # keep one connection busy for well past the timeout
            busy_w.write(b"x")
            await busy_r.readexactly(1)
            await asyncio.sleep(0.1)
        assert await asyncio.wait_for(quiet_r.read(), 10) == b""  # closed by the forwarder
        busy_w.write(b"y")
        assert await busy_r.readexactly(1) == b"y"
        busy_w.close()
        quiet_w.close()
        await until(lambda: len(logs) == 2)
    assert logs[0].closed_by == "idle-timeout" and fwd.stats.tcp_timeouts >= 1


async def _stalled_reader_keeps_buffers_bounded() -> None:
    from portkit.forward._tcp import HIGH_WATER

    sent = 0

    async def firehose(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal sent
        chunk = BLOB[: 1 << 20]
        while True:  # until the forwarder stops reading and our buffers fill
            w.write(chunk)
            sent += len(chunk)
            await w.drain()

    async with target(firehose) as tport, forwarding(tport) as (fwd, port):
        sock = socket.create_connection(("127.0.0.1", port))  # never reads
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        peak = 0
        for _ in range(100):
            await asyncio.sleep(0.02)
            for conn in fwd._conns:
                peak = max(peak, conn.buffered())
        assert sent > 8 * 1024 * 1024  # the target pushed far more than any buffer holds
        # The forwarder holds at most its high-water mark plus one read chunk.
        assert peak <= HIGH_WATER + 512 * 1024
        sock.close()


async def _emfile_pauses_accepting_and_never_stops_it() -> None:
    logs: list[ConnLog] = []
    notices: list[str] = []
    async with (
        target(echo) as tport,
        Forwarder(
            [f"0:127.0.0.1:{tport}"],
            on_close=logs.append,
            on_notice=lambda level, msg: notices.append(msg),
        ) as fwd,
    ):
        port = fwd.bound[0].listen_port
        clients = [socket.socket() for _ in range(12)]
        for c in clients:
            c.setblocking(False)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 8, hard))
        fillers: list[int] = []
        try:
            with contextlib.suppress(OSError):  # take every free descriptor...
                while True:
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
            for fd in fillers[:3]:  # ...and give back three
                os.close(fd)
            for c in clients:
                with contextlib.suppress(BlockingIOError):
                    c.connect(("127.0.0.1", port))
            await until(lambda: fwd.stats.accept_errors > 0 or fwd.stats.tcp_failed > 0)
        finally:
            for fd in fillers[3:]:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for c in clients:
            c.close()
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"after EMFILE")
        w.write_eof()
        assert await asyncio.wait_for(r.read(), 10) == b"after EMFILE"
        w.close()


async def _stop_accepting_takes_the_queued_clients() -> None:
    def recv_all(sock: socket.socket) -> bytes:
        data = b""
        while chunk := sock.recv(1 << 16):
            data += chunk
        return data

    logs: list[ConnLog] = []
    async with target(echo) as tport:
        fwd = Forwarder([f"0:127.0.0.1:{tport}"], on_close=logs.append)
        await fwd.start()
        port = fwd.bound[0].listen_port
        # No await between the connects and stop_accepting(): the loop never saw these
        # clients, only the kernel did (it completed their handshakes). A graceful stop
        # takes them and relays them rather than resetting them with the listener.
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        for i, c in enumerate(clients):
            c.sendall(b"queued %d" % i)
            c.shutdown(socket.SHUT_WR)
        fwd.stop_accepting()
        assert fwd.stats.tcp_total == 3
        closing = asyncio.ensure_future(fwd.close(grace=30))
        loop = asyncio.get_running_loop()
        for i, c in enumerate(clients):
            assert await loop.run_in_executor(None, recv_all, c) == b"queued %d" % i
            c.close()
        assert await closing == 0  # every one drained within the grace period
    assert len(logs) == 3 and all(log.bytes_up == log.bytes_down == 8 for log in logs)


# --- PROXY protocol -------------------------------------------------------------------


async def _proxy_protocol_header_comes_first(version: str) -> None:
    got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def record(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        got.set_result(await r.read())

    async with target(record) as tport, forwarding(tport, proxy_protocol=version) as (_fwd, port):
        _r, w = await asyncio.open_connection("127.0.0.1", port)
        local = w.get_extra_info("sockname")
        w.write(b"payload")
        w.write_eof()
        data = await asyncio.wait_for(got, 10)
        w.close()
    from portkit.forward.proxy import build_header

    header = build_header(version, local[:2], ("127.0.0.1", port))
    assert data == header + b"payload"


# --- UDP ------------------------------------------------------------------------------


async def _udp_sessions_route_replies_and_expire() -> None:
    logs: list[ConnLog] = []
    async with serve("echo", tcp=None, udp=0) as echo_server:
        tport = echo_server.endpoints[0].port
        spec = f"0:127.0.0.1:{tport}/udp"
        async with Forwarder([spec], on_close=logs.append, udp_timeout=0.5) as fwd:
            port = fwd.bound[0].listen_port
            clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(25)]
            for round_ in range(3):
                for i, c in enumerate(clients):
                    c.sendto(f"client {i} round {round_}".encode(), ("127.0.0.1", port))
                for i, c in enumerate(clients):
                    c.settimeout(5)
                    reply = await asyncio.get_running_loop().run_in_executor(None, c.recv, 65535)
                    assert reply == f"client {i} round {round_}".encode()
            assert fwd.stats.udp_sessions == 25 and fwd.stats.udp_sessions_total == 25
            await until(lambda: fwd.stats.udp_sessions == 0)  # idle expiry
            for c in clients:
                c.close()
    assert len(logs) == 25 and {log.closed_by for log in logs} == {"udp-timeout"}
    assert all(log.bytes_up == log.bytes_down > 0 for log in logs)


async def _udp_session_limit_evicts() -> None:
    logs: list[ConnLog] = []
    async with serve("echo", tcp=None, udp=0) as echo_server:
        spec = f"0:127.0.0.1:{echo_server.endpoints[0].port}/udp"
        async with Forwarder([spec], on_close=logs.append, max_udp_sessions=3) as fwd:
            port = fwd.bound[0].listen_port
            clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(5)]
            for c in clients:
                c.settimeout(5)
                c.sendto(b"hi", ("127.0.0.1", port))
                assert await asyncio.get_running_loop().run_in_executor(None, c.recv, 100) == b"hi"
            assert fwd.stats.udp_sessions == 3
            for c in clients:
                c.close()
    assert sum(log.closed_by == "evicted" for log in logs) == 2


# --- address families and names --------------------------------------------------------


async def _round_trip(host: str, port: int, payload: bytes) -> bytes:
    r, w = await asyncio.open_connection(host, port)
    w.write(payload)
    w.write_eof()
    try:
        return await asyncio.wait_for(r.read(), 10)
    finally:
        w.close()


async def _ipv6_both_sides_and_across_families() -> None:
    logs: list[ConnLog] = []
    async with target(echo, "::1") as six, target(echo) as four:
        specs = [f"[::1]:0:[::1]:{six}", f"0:[::1]:{six}", f"[::1]:0:127.0.0.1:{four}"]
        async with Forwarder(specs, on_close=logs.append) as fwd:
            v6v6, v4v6, v6v4 = (m.listen_port for m in fwd.bound)
            assert await _round_trip("::1", v6v6, b"six to six") == b"six to six"
            assert await _round_trip("127.0.0.1", v4v6, b"four to six") == b"four to six"
            assert await _round_trip("::1", v6v4, b"six to four") == b"six to four"
            await until(lambda: len(logs) == 3)
    assert {log.target for log in logs} == {f"[::1]:{six}", f"127.0.0.1:{four}"}
    assert all(log.client.startswith("[::1]:") for log in logs if log.listen.startswith("["))


async def _localhost_falls_back_to_the_next_address() -> None:
    # The target listens on ::1 only; 127.0.0.1 on its port is held but not listening,
    # so the first address of "localhost" refuses and the second one is dialled.
    logs: list[ConnLog] = []
    async with target(echo, "::1") as six:
        with socket.socket() as held:
            held.bind(("127.0.0.1", six))
            async with Forwarder([f"0:localhost:{six}"], on_close=logs.append) as fwd:
                port = fwd.bound[0].listen_port
                assert await _round_trip("127.0.0.1", port, b"second try") == b"second try"
                await until(lambda: len(logs) == 1)
    assert logs[0].target == f"[::1]:{six}" and logs[0].closed_by == "client"


async def _a_named_target_is_resolved_then_dialled() -> None:
    # The relay under test, the resolver not: the loop answers for one made-up name.
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo
    asked: list[str] = []

    async def getaddrinfo(host: Any, port: Any, **kw: Any) -> Any:
        asked.append(host)
        return await real("127.0.0.1" if host == "db.portkit.test" else host, port, **kw)

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    logs: list[ConnLog] = []
    try:
        async with target(echo) as tport:
            spec = f"0:db.portkit.test:{tport}"
            async with Forwarder([spec], on_close=logs.append) as fwd:
                port = fwd.bound[0].listen_port
                for n in range(3):
                    payload = f"named {n}".encode()
                    assert await _round_trip("127.0.0.1", port, payload) == payload
                await until(lambda: len(logs) == 3)
    finally:
        del loop.getaddrinfo
    assert asked == ["db.portkit.test"]  # once, then from the cache
    assert {log.target for log in logs} == {f"127.0.0.1:{tport}"}


# --- library surface -------------------------------------------------------------------


async def _public_names_and_bound_ports() -> None:
    assert portkit.Forwarder is Forwarder
    async with serve("echo") as s, Forwarder([f"0:{s.endpoints[0].port}"]) as fwd:
        (m,) = fwd.bound
        assert m.listen_host == "127.0.0.1" and m.listen_port > 0
        r, w = await asyncio.open_connection("127.0.0.1", m.listen_port)
        w.write(b"via localhost")
        w.write_eof()
        assert await r.read() == b"via localhost"
        w.close()


# --- the tests: every scenario on both loops ----------------------------------------


def test_upload_then_fin_reply_still_arrives(run: Runner) -> None:
    run(_upload_then_fin_reply_still_arrives())


def test_fin_right_after_request_download_still_arrives(run: Runner) -> None:
    run(_fin_right_after_request_download_still_arrives())


def test_reply_two_seconds_after_client_fin(run: Runner) -> None:
    run(_reply_two_seconds_after_client_fin())


def test_target_fin_first_upload_still_arrives(run: Runner) -> None:
    run(_target_fin_first_upload_still_arrives())


def test_many_parallel_connections_keep_their_bytes(run: Runner) -> None:
    run(_many_parallel_connections_keep_their_bytes())


def test_ipv6_both_sides_and_across_families(run: Runner) -> None:
    run(_ipv6_both_sides_and_across_families())


def test_localhost_falls_back_to_the_next_address(run: Runner) -> None:
    run(_localhost_falls_back_to_the_next_address())


def test_a_named_target_is_resolved_then_dialled(run: Runner) -> None:
    run(_a_named_target_is_resolved_then_dialled())


def test_server_speaks_first(run: Runner) -> None:
    run(_server_speaks_first())


def test_client_reset_reaches_the_target(run: Runner) -> None:
    run(_client_reset_reaches_the_target())


def test_target_reset_reaches_the_client(run: Runner) -> None:
    run(_target_reset_reaches_the_client())


def test_target_down_resets_client_and_keeps_serving(run: Runner) -> None:
    run(_target_down_resets_client_and_keeps_serving())


def test_connect_timeout_resets_the_client(run: Runner) -> None:
    run(_connect_timeout_resets_the_client())


def test_max_conns_refuses_the_extra_client(run: Runner) -> None:
    run(_max_conns_refuses_the_extra_client())


def test_idle_timeout_closes_quiet_connections_only(run: Runner) -> None:
    run(_idle_timeout_closes_quiet_connections_only())


def test_stalled_reader_keeps_buffers_bounded(run: Runner) -> None:
    run(_stalled_reader_keeps_buffers_bounded())


def test_emfile_pauses_accepting_and_never_stops_it(run: Runner) -> None:
    run(_emfile_pauses_accepting_and_never_stops_it())


def test_stop_accepting_takes_the_queued_clients(run: Runner) -> None:
    run(_stop_accepting_takes_the_queued_clients())


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_protocol_header_comes_first(run: Runner, version: str) -> None:
    run(_proxy_protocol_header_comes_first(version))


def test_udp_sessions_route_replies_and_expire(run: Runner) -> None:
    run(_udp_sessions_route_replies_and_expire())


def test_udp_session_limit_evicts(run: Runner) -> None:
    run(_udp_session_limit_evicts())


def test_public_names_and_bound_ports(run: Runner) -> None:
    run(_public_names_and_bound_ports())

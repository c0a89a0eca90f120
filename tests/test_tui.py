"""portkit top: the pure view (filter, keys, sparkline), then the app driven by Pilot.

The app is fed fixed snapshots (``scene``) through its provider seam, with fixed
service names and bind scopes, so what it shows is known; one test feeds it the
real socket table of a namespace of our own, and one runs ``portkit top`` in a pty.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.errors import ParseError
from portkit.exporter.snapshot import Snapshot
from portkit.model import PortRange, Protocol, SocketRecord, TcpState
from portkit.tui import view

from .conftest import run_portkit

S = TcpState
TCP, UDP = Protocol.TCP, Protocol.UDP
EPH = PortRange(32768, 60999)
NAMES = {"tcp": {22: "ssh", 80: "http", 5432: "postgresql", 6379: "redis"}, "udp": {53: "domain"}}


def rec(*args: Any, **kw: Any) -> tuple[Any, ...]:
    return SocketRecord(*args, **kw).row


def owner(pid: int, name: str, user: str) -> dict[str, Any]:
    return {"pid": pid, "process": name, "user": user, "pids": (pid,)}


SSHD, PG, NGINX, DNS, APP = (
    owner(812, "sshd", "root"),
    owner(901, "postgres", "postgres"),
    owner(1200, "nginx", "www-data"),
    owner(700, "dnsmasq", "nobody"),
    owner(1500, "python3", "app"),
)


def scene(step: int = 0) -> Snapshot:
    """A small web host; ``step`` changes how many web connections there are, so that
    a run of scenes draws a history."""
    rows = [
        rec(TCP, 4, S.LISTEN, "0.0.0.0", 22, send_q=128, role="server", inode=11, **SSHD),
        rec(TCP, 6, S.LISTEN, "::", 22, send_q=128, role="server", inode=12, **SSHD),
        rec(TCP, 4, S.LISTEN, "127.0.0.1", 5432, send_q=244, role="server", inode=13, **PG),
        rec(
            TCP, 4, S.LISTEN, "0.0.0.0", 80, recv_q=3, send_q=511, role="server", inode=14, **NGINX
        ),
        rec(UDP, 4, S.CLOSE, "0.0.0.0", 53, role="server", inode=15, **DNS),
        rec(
            TCP,
            4,
            S.ESTABLISHED,
            "192.0.2.10",
            22,
            "198.51.100.7",
            53122,
            role="server",
            inode=20,
            **SSHD,
        ),
    ]
    for i in range(4 + step % 4):
        rows.append(
            rec(
                TCP,
                4,
                S.ESTABLISHED,
                "192.0.2.10",
                80,
                f"203.0.113.{10 + i}",
                51000 + i,
                role="server",
                inode=100 + i,
                **NGINX,
            )
        )
    for i in range(step % 5):
        rows.append(
            rec(
                TCP,
                4,
                S.TIME_WAIT,
                "192.0.2.10",
                80,
                f"203.0.113.{40 + i}",
                52000 + i,
                role="server",
            )
        )
    for i in range(3):
        rows.append(
            rec(
                TCP,
                4,
                S.ESTABLISHED,
                "127.0.0.1",
                40100 + i,
                "127.0.0.1",
                5432,
                inode=200 + i,
                **APP,
            )
        )
        rows.append(
            rec(
                TCP,
                4,
                S.ESTABLISHED,
                "127.0.0.1",
                5432,
                "127.0.0.1",
                40100 + i,
                role="server",
                inode=300 + i,
                **PG,
            )
        )
    rows.append(rec(TCP, 4, S.ESTABLISHED, "192.0.2.10", 40500, "10.0.0.5", 5432, inode=400, **APP))
    rows.append(
        rec(
            TCP, 4, S.CLOSE_WAIT, "192.0.2.10", 40501, "10.0.0.6", 6379, inode=401, send_q=12, **APP
        )
    )
    return Snapshot.from_rows(rows, EPH)


def scope(ips: Iterable[str]) -> str:
    ips = set(ips)
    if ips & {"0.0.0.0", "::"}:
        return "all interfaces"
    return "loopback only" if all(ip.startswith("127.") for ip in ips) else ", ".join(sorted(ips))


def details(pid: int) -> list[str]:
    return [f"pid      {pid}", "command  /usr/sbin/test-daemon --flag"]


class Scenes:
    """A provider: the next scene on each call."""

    def __init__(self, start: int = 1) -> None:
        self.step = start
        self.calls = 0

    def __call__(self) -> Snapshot:
        self.calls += 1
        snap = scene(self.step)
        self.step += 1
        return snap


def make_app(provider: Callable[[], Snapshot] | None = None, **kw: Any) -> Any:
    from portkit.tui.app import TopApp

    kw.setdefault("threaded", False)
    kw.setdefault("interval", 3600)
    return TopApp(
        provider or Scenes(), names=lambda ports: NAMES, scope=scope, details=details, **kw
    )


# --- the pure view ---------------------------------------------------------------------


def test_filter_words() -> None:
    f = view.RowFilter.parse("estab time-wait 80 nginx")
    assert f.states == {S.ESTABLISHED, S.TIME_WAIT}
    assert [str(r) for r in f.ports] == ["80"]
    assert f.words == ("nginx",)
    f = view.RowFilter.parse("state:connected port:8000-8100 proc:NGINX pid:12")
    assert S.LISTEN not in (f.states or ()) and S.CLOSE_WAIT in (f.states or ())
    assert (f.process, f.pid) == ("nginx", 12)
    assert not view.RowFilter.parse("   ").active


@pytest.mark.parametrize("text", ["state:nope", "port:70000", "port:9-1", "pid:x"])
def test_filter_bad_prefixed_words(text: str) -> None:
    with pytest.raises(ParseError):
        view.RowFilter.parse(text)


@given(st.text(max_size=30))
def test_filter_parse_answers_or_raises_parse_error(text: str) -> None:
    try:
        f = view.RowFilter.parse(text)
    except ParseError:
        return
    row = scene().rows[5]
    assert f.matches(row, "ssh") in (True, False)


def test_filter_matches_rows() -> None:
    rows = scene(1).rows
    conns = [r for r in rows if r[5] is not None]

    def count(text: str) -> int:
        return len(view.connection_rows(rows, view.RowFilter.parse(text), NAMES))

    assert count("") == len(conns) == 15
    assert count("estab") == 13
    assert count("80") == 6  # either side
    assert count("5432") == 7  # both ends of the local pairs, and the remote database
    assert count("proc:postgres") == 3
    assert count("pid:1500") == 5
    assert count("redis") == 1  # a service name
    assert count("203.0.113.11") == 1  # an address
    assert count("close-wait 6379") == 1
    assert count("estab nothing-like-this") == 0


def test_row_keys_are_unique_per_socket() -> None:
    rows = scene(3).rows
    keys = {view.row_key(r) for r in rows}
    assert len(keys) == len(rows)


def test_spark_and_history() -> None:
    assert view.spark([0, 5, 10]) == "▁▅█"
    assert view.spark([1, 2, 3, 4], width=2) == "▁█"
    hist = view.History(3)
    for step in range(5):
        hist.add(scene(step).stats)
    lines = {name: (n, line) for name, n, line in hist.lines()}
    assert len(hist) == 3
    assert lines["ESTAB"][0] == (4 + 4 % 4) + 1 + 6 + 1  # web, ssh, 3 local pairs, db
    assert lines["TIME-WAIT"] == (4, "▁▅█")  # 2, 3, 4 over the last 3 steps
    assert "udp UNCONN" in lines


def test_listener_rows_group_by_port() -> None:
    rows = view.listener_rows(scene().stats, NAMES, scope)
    assert list(rows) == ["tcp 22", "udp 53", "tcp 80", "tcp 5432"]
    text = {k: list(v[0])[:8] for k, v in rows.items()}  # the rate columns: tests/test_tui_rates
    assert text["tcp 22"] == ["22", "tcp", "ssh", "all interfaces", "sshd/812", "-", "1", "0/256"]
    assert text["tcp 80"][-1] == "3/511"
    assert text["tcp 5432"][3:7] == ["loopback only", "postgres/901", "-", "3"]
    assert text["udp 53"][-2:] == ["-", "-"]


def test_ephemeral_lines() -> None:
    lines = view.ephemeral_lines(scene().stats)
    assert lines[0] == "range 32768-60999 (28232 ports)"
    assert lines[1].startswith("in use 5 (0.0%) ░")
    assert lines[2] == "     3 → 127.0.0.1:5432 (0.0%)"
    narrow = Snapshot.from_rows(scene().rows, PortRange(40100, 40109)).stats
    assert view.ephemeral_lines(narrow)[1] == "in use 3 (30.0%) ██████░░░░░░░░░░░░░░"
    assert view.ephemeral_lines(Snapshot.from_rows([], EPH).stats)[2] == "no outgoing connections"


# --- containers ------------------------------------------------------------------------

PROXY, API = owner(3000, "docker-proxy", "root"), owner(3100, "httpd", "root")


def container_scene(step: int = 0) -> Snapshot:
    """The web host, plus ``web`` published on 8080 by docker-proxy (with a client
    on it) and ``shop_api_1`` of compose project shop on the host network (9000)."""
    from portkit.containers import Container
    from portkit.exporter._containers import by_port
    from portkit.see import OwnerContainer

    rows = [
        *scene(step).rows,
        rec(TCP, 4, S.LISTEN, "0.0.0.0", 8080, send_q=4096, role="server", inode=500, **PROXY),
        rec(
            TCP,
            4,
            S.ESTABLISHED,
            "192.0.2.10",
            8080,
            "203.0.113.90",
            53000,
            role="server",
            inode=501,
            **PROXY,
        ),
        rec(TCP, 4, S.LISTEN, "0.0.0.0", 9000, send_q=511, role="server", inode=502, **API),
    ]
    snap = Snapshot.from_rows(rows, EPH)
    web = Container("ab" * 32, "web", "docker", image="nginx:1.27")
    api = Container(
        "cd" * 32, "shop_api_1", "docker", compose_project="shop", compose_service="api"
    )
    snap.containers = {
        3000: OwnerContainer(web, "proxy", "172.17.0.2:80"),
        3100: OwnerContainer(api, None, None),
    }
    listeners = [(ls.protocol.value, ls.port, ls.pid) for ls in snap.stats.listeners if ls.pid]
    snap.port_containers = by_port(listeners, snap.containers)
    return snap


class ContainerScenes(Scenes):
    def __call__(self) -> Snapshot:
        self.calls += 1
        snap = container_scene(self.step)
        self.step += 1
        return snap


def test_container_cells() -> None:
    snap = container_scene()
    rows = view.listener_rows(snap.stats, NAMES, scope, None, snap.port_containers)
    col = [key for key, _, _ in view.LISTEN_COLUMNS].index("container")
    assert rows["tcp 8080"][0][col] == "published: web"
    assert rows["tcp 9000"][0][col] == "shop_api_1 (compose shop/api)"
    assert rows["tcp 22"][0][col] == "-"
    client = next(r for r in snap.rows if r[6] == 53000)
    assert view.owner_container(snap.containers, client) == "published: web"
    assert view.owner_container(snap.containers, scene().rows[5]) == "-"
    # the filter's words look in the container too
    wanted = view.connection_rows(snap.rows, view.RowFilter.parse("web"), NAMES, snap.containers)
    assert [r[6] for r in wanted.values()] == [53000]


async def test_container_columns_appear_with_the_first_container() -> None:
    app = make_app()
    async with app.run_test(size=(180, 40)) as pilot:
        assert "container" not in conns(app).shown_columns  # no container: as ls -p
        app.provider = ContainerScenes()
        app.refresh_now()
        await pilot.pause()
        listeners = app.query_one("#listeners")
        assert "container" in listeners.shown_columns and "container" in conns(app).shown_columns
        assert listeners.column_texts("container")[listeners.ordered_keys.index("tcp 8080")] == (
            "published: web"
        )
        assert "published: web" in conns(app).column_texts("container")
        app.provider = Scenes()  # the container goes: the columns stay (no jumping table)
        app.refresh_now()
        await pilot.pause()
        assert "container" in conns(app).shown_columns
        assert set(conns(app).column_texts("container")) == {"-"}


async def test_details_say_the_container_and_where_it_publishes() -> None:
    app = make_app(ContainerScenes())
    async with app.run_test(size=(180, 40)) as pilot:
        app.show_details(app.query_one("#listeners"), "tcp 8080")
        await pilot.pause()
        body = str(app.screen.query_one("#details-body").render())
        assert "container published: web -> 172.17.0.2:80" in body
        assert "image     nginx:1.27" in body


# --- the app, driven by Pilot ----------------------------------------------------------


def conns(app: Any) -> Any:
    return app.query_one("#connections")


async def test_first_screen_shows_the_snapshot() -> None:
    app = make_app()
    async with app.run_test(size=(140, 40)):
        assert conns(app).row_count == 15
        assert app.query_one("#listeners").row_count == 4
        head = str(app.query_one("#head").render())
        assert "20 sockets" in head and "15 shown" in head


async def test_filter_key_filters_and_escape_clears() -> None:
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("slash")
        assert app.focused is app.query_one("#filter")
        await pilot.press(*"estab", "space", *"80")
        await pilot.pause()
        assert conns(app).row_count == 5
        assert set(conns(app).column_texts("state")) == {"ESTAB"}
        await pilot.press("enter")  # back to the table, the filter stays
        assert app.focused is conns(app)
        assert conns(app).row_count == 5
        await pilot.press("escape")
        assert conns(app).row_count == 15
        assert not app.filter.active


async def test_typing_in_the_filter_does_not_trigger_keys() -> None:
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("slash", *"spq", "space")
        await pilot.pause()
        assert app.query_one("#filter").value == "spq "
        assert not app.paused and app.is_running
        assert conns(app).sort_column == "state"


async def test_bad_filter_keeps_the_last_good_one() -> None:
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("slash", *"5432")
        await pilot.pause()
        assert conns(app).row_count == 7
        box = app.query_one("#filter")
        box.value = "5432 port:x"  # pasted at once: no good filter on the way
        await pilot.pause()
        assert conns(app).row_count == 7
        assert "not a number" in str(box.border_title)
        box.value = "5432 port:22"  # several ports (or states): any of them
        await pilot.pause()
        assert conns(app).row_count == 8
        assert box.border_title is None


async def test_sort_keys_and_header_click() -> None:
    app = make_app()
    async with app.run_test(size=(220, 40)) as pilot:
        table = conns(app)
        assert table.sort_column == "state"
        await pilot.press("s")  # the next column: local address
        assert table.sort_column == "local"
        await pilot.press("s", "s", "s", "s", "s")  # remote, service, role, recv-q, send-q
        assert table.sort_column == "send_q"
        await pilot.press("r")
        assert table.sort_reverse
        assert table.column_texts("send_q")[0] == "12"
        app.sort_by("remote")
        remotes = table.column_texts("remote")
        assert remotes == sorted(remotes, key=_addr_key)
        # a click on the PROCESS title sorts by it, a second click reverses
        x = _column_x(table, "process")
        await pilot.click("#connections", offset=(x + 2, 1))  # inside the round border
        assert (table.sort_column, table.sort_reverse) == ("process", False)
        await pilot.click("#connections", offset=(x + 2, 1))
        assert (table.sort_column, table.sort_reverse) == ("process", True)
        procs = table.column_texts("process")
        assert procs == sorted(procs, reverse=True)


def _addr_key(text: str) -> tuple[int, ...]:
    host, _, port = text.rpartition(":")
    return (*map(int, host.split(".")), int(port))


def _column_x(table: Any, column: str) -> int:
    x = 0
    for (key, _, _), width in zip(table.columns, table._widths, strict=True):
        if key in table.hidden:
            continue
        if key == column:
            return x
        x += width + 2
    raise KeyError(column)


async def test_sort_and_selection_survive_refreshes() -> None:
    provider = Scenes()
    app = make_app(provider)
    async with app.run_test(size=(140, 26)) as pilot:  # fewer lines than rows: it scrolls
        table = conns(app)
        app.sort_by("remote", reverse=True)  # the changing web rows come first
        target = next(k for k in table.ordered_keys if "10.0.0.6 6379" in k)
        table.move_to(table.ordered_keys.index(target))
        line = table.cursor - table.scroll_offset.y
        for _ in range(6):  # web connections come and go before and after it
            app.refresh_now()
            await pilot.pause()
            assert (table.sort_column, table.sort_reverse) == ("remote", True)
            remotes = table.column_texts("remote")
            assert remotes == sorted(remotes, key=_addr_key, reverse=True)
            assert table.cursor_key == target
            assert table.cursor - table.scroll_offset.y == line
        assert provider.calls == 7


async def test_selection_moves_on_when_its_socket_goes() -> None:
    app = make_app(Scenes(3))  # 7 web connections
    async with app.run_test(size=(140, 40)) as pilot:
        table = conns(app)
        app.sort_by("remote")
        gone = next(k for k in table.ordered_keys if "203.0.113.16" in k)
        table.move_to(table.ordered_keys.index(gone))
        app.refresh_now()  # step 4: 4 web connections, .16 is closed
        await pilot.pause()
        assert gone not in table.ordered_keys
        assert table.cursor_key in table.ordered_keys


async def test_pause_stops_refreshing() -> None:
    provider = Scenes()
    app = make_app(provider, interval=0.05)
    async with app.run_test(size=(140, 40)) as pilot:
        await _until(pilot, lambda: provider.calls >= 3)
        await pilot.press("p")
        assert app.paused and "PAUSED" in str(app.query_one("#head").render())
        calls = provider.calls
        await pilot.pause(0.3)
        assert provider.calls == calls
        await pilot.press("space")
        assert not app.paused
        await _until(pilot, lambda: provider.calls > calls)


async def _until(pilot: Any, done: Callable[[], bool], deadline: float = 20) -> None:
    end = time.monotonic() + deadline
    while not done():
        assert time.monotonic() < end, "condition not reached"
        await pilot.pause(0.05)


async def test_interval_keys_step_through_the_table() -> None:
    from portkit.tui.app import INTERVALS

    app = make_app(interval=1.0)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("plus")
        assert app.interval == 2.0
        await pilot.press("minus", "minus", "minus", "minus", "minus")
        assert app.interval == INTERVALS[0]
        assert "every 0.25s" in str(app.query_one("#head").render())
        await pilot.press(*["plus"] * 10)
        assert app.interval == INTERVALS[-1]


async def test_enter_shows_process_details() -> None:
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        table = conns(app)
        app.sort_by("process")
        table.move_to(table.column_texts("process").index("python3"))
        await pilot.press("enter")
        await pilot.pause()
        from portkit.tui.app import DetailsScreen

        assert isinstance(app.screen, DetailsScreen)
        body = str(app.screen.query_one("#details-body").render())
        assert "pid      1500" in body and "test-daemon" in body
        assert "sockets  5: 1 tcp CLOSE-WAIT, 4 tcp ESTAB" in body
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailsScreen)
        # the listeners pane too: tab to it (past the processes), enter on sshd's port 22
        await pilot.press("tab")
        assert app.focused is app.query_one("#processes")
        await pilot.press("tab")
        assert app.focused is app.query_one("#listeners")
        await pilot.press("enter")
        await pilot.pause()
        assert "pid      812" in str(app.screen.query_one("#details-body").render())


async def test_threaded_refresh_applies_snapshots() -> None:
    provider = Scenes()
    app = make_app(provider, threaded=True, interval=0.05)
    async with app.run_test(size=(140, 40)) as pilot:
        await _until(pilot, lambda: app.refreshes >= 4)
        assert app.history.lines()[0][0] == "ESTAB"


async def test_provider_errors_are_shown_not_raised() -> None:
    from portkit.errors import PermissionDenied

    calls = []

    def flaky() -> Snapshot:
        calls.append(1)
        if len(calls) > 1:
            raise PermissionDenied("cannot enter the network namespace", needed="root")
        return scene(1)

    app = make_app(flaky)
    async with app.run_test(size=(140, 40)) as pilot:
        app.refresh_now()
        await pilot.pause()
        assert app.last_error == "cannot enter the network namespace: needs root"
        assert conns(app).row_count == 15  # the last good picture stays


async def test_quit_key() -> None:
    app = make_app()
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running


# --- real sockets ----------------------------------------------------------------------


@contextlib.contextmanager
def namespace_with_sockets() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """``pk7-<pid>``: a listener on 127.0.0.1:8080 with two clients, one accepted."""
    ns = f"pk7-{os.getpid()}-top"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    proc: subprocess.Popen[str] | None = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        code = (
            "import socket,sys\n"
            "l=socket.socket();l.bind(('127.0.0.1',8080));l.listen(9)\n"
            "a=socket.create_connection(('127.0.0.1',8080));b=l.accept()[0]\n"
            "c=socket.create_connection(('127.0.0.1',8080))\n"
            "print('ready',flush=True);sys.stdin.read()\n"
        )
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield ns, proc
    finally:
        if proc is not None:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()
            proc.wait(timeout=20)
            proc.stdout.close()
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@pytest.mark.netns
async def test_real_namespace_through_the_snapshot_provider() -> None:
    from portkit.exporter.snapshot import provider
    from portkit.tui.app import TopApp

    with namespace_with_sockets() as (ns, proc):
        app = TopApp(provider(owners=True, netns=ns), threaded=False, interval=3600)
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.pause()
            listeners = app.query_one("#listeners")
            assert listeners.ordered_keys == ["tcp 8080"]
            row = list(listeners.row("tcp 8080")[0])
            assert row[3] == "loopback only"
            assert row[4] == f"python3/{proc.pid}" or row[4].endswith(f"/{proc.pid}")
            assert row[5] == "-"  # no container
            # one accepted and one waiting in the queue (of 9): both established
            assert row[6:8] == ["2", "1/9"]
            table = conns(app)
            assert table.row_count == 4
            # the queued connection has no owner yet: no process holds it before accept()
            assert sorted(table.column_texts("pid")) == ["-"] + [str(proc.pid)] * 3


@pytest.mark.netns
async def test_real_containers_through_the_snapshot_provider(
    docker_lab: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """top in the Docker daemon's namespace: docker-proxy's ports name the container
    they publish (the runtime's API through DOCKER_HOST), as ls -p does."""
    from portkit.exporter.snapshot import provider
    from portkit.tui.app import DetailsScreen, TopApp

    monkeypatch.setenv("DOCKER_HOST", f"unix://{docker_lab.sock}")
    app = TopApp(provider(owners=True, netns=docker_lab.ns), threaded=False, interval=3600)
    async with app.run_test(size=(200, 40)) as pilot:
        await pilot.pause()
        listeners = app.query_one("#listeners")
        assert "container" in listeners.shown_columns
        boxes = dict(zip(listeners.ordered_keys, listeners.column_texts("container"), strict=True))
        assert boxes["tcp 18080"] == "published: web"
        assert boxes["tcp 18082"] == "published: shop_web_1 (compose shop/web)"
        assert boxes["udp 5353"] == "published: dns"
        app.show_details(listeners, "tcp 18080")
        await pilot.pause()
        assert isinstance(app.screen, DetailsScreen)
        body = str(app.screen.query_one("#details-body").render())
        ip = next(iter(docker_lab.inspect("web")["NetworkSettings"]["Networks"].values()))
        assert f"container published: web -> {ip['IPAddress']}:80" in body


def test_cli_top_runs_in_a_terminal_and_quits() -> None:
    """The real command in a pty: it draws, takes `q`, and exits 0."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: portkit top on the pty
        import fcntl
        import struct
        import termios

        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 35, 120, 0, 0))
        os.environ.update(TERM="xterm-256color")
        os.execv(sys.executable, [sys.executable, "-m", "portkit", "top"])
    seen = b""
    try:
        end = time.monotonic() + 60
        while b"Connections" not in seen and time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.5)
            if ready:
                with contextlib.suppress(OSError):
                    seen += os.read(fd, 65536)
        assert b"Connections" in seen, seen[-500:]
        os.write(fd, b"q")
        end = time.monotonic() + 30
        status = None
        while time.monotonic() < end:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            with contextlib.suppress(OSError):
                if select.select([fd], [], [], 0.2)[0]:
                    os.read(fd, 65536)
        assert status is not None and os.waitstatus_to_exitcode(status) == 0
        pid = 0
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ([], 2),  # not a terminal
        (["--netns", "pk7-no-such-namespace"], 2),
        (["--interval", "0"], 2),
        (["--netns", "a", "--pid-netns", "1"], 2),
    ],
)
def test_cli_top_without_a_terminal_or_with_bad_flags(args: list[str], code: int) -> None:
    r = run_portkit("top", *args, input="")
    assert r.returncode == code, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("portkit top: error:")


async def test_threaded_worker_does_not_block_the_loop() -> None:
    """A slow read leaves the keys working: it runs in a worker thread."""
    release = asyncio.Event()
    started: list[int] = []
    provider = Scenes()

    def slow() -> Snapshot:
        if provider.calls:  # the first read (at start-up) is quick
            started.append(1)
            time.sleep(0.5)
        return provider()

    app = make_app(slow, threaded=True, interval=0.05)
    async with app.run_test(size=(140, 40)) as pilot:
        await _until(pilot, lambda: bool(started))
        await pilot.press("plus")  # handled while the worker sleeps
        assert app.interval == 0.25
        assert app.refreshes == 1
        release.set()
        await _until(pilot, lambda: app.refreshes >= 2)


def test_docstring_examples() -> None:
    import doctest

    from portkit.tui import view as module

    assert doctest.testmod(module).failed == 0

"""portkit exporter: flag parsers, the metric families, the collector, HTTP and the CLI.

The end-to-end test with a real Prometheus is in test_exporter_prometheus.py.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.errors import ParseError, PermissionDenied, PortkitError
from portkit.exporter import SocketCollector, make_registry, make_server
from portkit.exporter._config import (
    DEFAULT_PORT,
    is_loopback,
    parse_destinations,
    parse_listen,
)
from portkit.exporter.metrics import CONNECTION_STATES, families
from portkit.exporter.snapshot import Snapshot, take_snapshot
from portkit.model import Endpoint, PortRange, Protocol, SocketRecord, TcpState, parse_ports

from .conftest import run_portkit

EPH = PortRange(32768, 60999)
S = TcpState
TCP, UDP = Protocol.TCP, Protocol.UDP


def rec(*args: Any, **kw: Any) -> tuple[Any, ...]:
    return SocketRecord(*args, **kw).row


def fixed() -> Snapshot:
    """A web server with 3 connections and a full-ish queue, a database on loopback,
    DNS on UDP, and an app with 3 connections to 10.0.0.5:5432 from two sources."""
    rows = [
        rec(TCP, 4, S.LISTEN, "0.0.0.0", 80, recv_q=3, send_q=511, role="server"),
        rec(TCP, 6, S.LISTEN, "::", 80, recv_q=1, send_q=511, role="server"),
        rec(TCP, 4, S.LISTEN, "127.0.0.1", 5432, send_q=244, role="server"),
        rec(UDP, 4, S.CLOSE, "0.0.0.0", 53, role="server"),
        rec(TCP, 4, S.ESTABLISHED, "10.0.0.2", 80, "10.9.9.1", 50000, role="server"),
        rec(TCP, 4, S.ESTABLISHED, "10.0.0.2", 80, "10.9.9.2", 50001, role="server"),
        rec(TCP, 4, S.TIME_WAIT, "10.0.0.2", 80, "10.9.9.3", 50002, role="server"),
        rec(TCP, 6, S.CLOSE_WAIT, "::ffff:10.0.0.2", 80, "::ffff:10.9.9.4", 50003, role="server"),
        rec(TCP, 4, S.ESTABLISHED, "10.0.0.2", 40001, "10.0.0.5", 5432),
        rec(TCP, 4, S.ESTABLISHED, "10.0.0.2", 40002, "10.0.0.5", 5432),
        rec(TCP, 6, S.TIME_WAIT, "::ffff:10.0.0.3", 40001, "::ffff:10.0.0.5", 5432),
        rec(TCP, 4, S.ESTABLISHED, "10.0.0.2", 1000, "10.0.0.5", 5432),  # below the range
    ]
    return Snapshot.from_rows(rows, EPH)


def by_name(fams: list[Any]) -> dict[str, dict[tuple[str, ...], float]]:
    return {f.name: dict(f.samples) for f in fams}


# --- parsers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("9700", ("127.0.0.1", 9700)),
        ("127.0.0.1:9636", ("127.0.0.1", 9636)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        (":9636", ("0.0.0.0", 9636)),
        ("[::1]:9636", ("::1", 9636)),
        ("[::]:0", ("::", 0)),
    ],
)
def test_parse_listen(text: str, want: tuple[str, int]) -> None:
    assert parse_listen(text) == want


@pytest.mark.parametrize("text", ["", "localhost:9636", "1.2.3:80", "127.0.0.1", "::1:80", "x:y"])
def test_parse_listen_rejects(text: str) -> None:
    with pytest.raises(ParseError):
        parse_listen(text)


def test_parse_destinations() -> None:
    got = parse_destinations("10.0.0.5:5432, [fd00::7]:443,10.0.0.5:5432")
    assert got == (Endpoint("10.0.0.5", 5432), Endpoint("fd00::7", 443))
    for bad in ("db:5432", "10.0.0.5", "10.0.0.5:53/udp", "10.0.0.5:1,", ""):
        with pytest.raises(ParseError):
            parse_destinations(bad)


@given(st.text(max_size=40))
def test_flag_parsers_answer_or_raise_parse_error(text: str) -> None:
    for parse in (parse_listen, parse_destinations):
        try:
            result = parse(text)
        except ParseError:
            continue
        assert isinstance(result, tuple) and result


def test_default_port_is_free_in_the_prometheus_allocations() -> None:
    from pathlib import Path

    csv = Path(__file__).resolve().parent.parent / "data" / "prometheus-exporter-ports.csv"
    rows = [line.split(",") for line in csv.read_text().splitlines()]
    claims = [r for r in rows if r[0] == str(DEFAULT_PORT)]
    assert claims and all("FREE" in r[2] for r in claims)


def test_is_loopback() -> None:
    assert is_loopback("127.0.0.2") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::")


# --- metric families -------------------------------------------------------------------


def test_families_per_port_queues_and_states() -> None:
    m = by_name(families(fixed()))
    assert m["portkit_listeners"] == {("tcp", "80"): 2, ("tcp", "5432"): 1, ("udp", "53"): 1}
    # v4 and v6 listeners of port 80 add up; UDP has no accept queue
    assert m["portkit_accept_queue_length"] == {("tcp", "80"): 4, ("tcp", "5432"): 0}
    assert m["portkit_accept_queue_limit"] == {("tcp", "80"): 1022, ("tcp", "5432"): 244}
    conns = m["portkit_port_connections"]
    assert conns[("tcp", "80", "established")] == 2
    assert conns[("tcp", "80", "time_wait")] == 1
    assert conns[("tcp", "80", "close_wait")] == 1
    assert conns[("tcp", "5432", "established")] == 0  # the app's connections are remote
    # every connection state of every TCP port, zeros included: a fixed, bounded set
    assert len(conns) == 2 * len(CONNECTION_STATES)
    assert not {k for k in conns if k[2] in ("listen", "close")}


def test_families_totals_and_ephemeral() -> None:
    m = by_name(families(fixed()))
    totals = m["portkit_sockets"]
    assert totals[("tcp", "established")] == 5
    assert totals[("tcp", "listen")] == 3
    assert totals[("tcp", "syn_sent")] == 0  # present at zero
    assert totals[("udp", "close")] == 1
    assert sum(totals.values()) == 12
    assert m["portkit_ephemeral_port_range_size"] == {(): len(EPH)}
    assert m["portkit_ephemeral_ports_in_use"] == {(): 2}  # 40001 and 40002
    assert "portkit_destination_ephemeral_ports_in_use" not in m


def test_destination_use_is_per_source_and_unmaps_v4_in_v6() -> None:
    dests = parse_destinations("10.0.0.5:5432,10.0.0.6:5432")
    m = by_name(families(fixed(), destinations=dests))
    # 10.0.0.2 holds 2 ephemeral ports towards it (port 1000 is not ephemeral),
    # 10.0.0.3 one (written ::ffff:10.0.0.3 by a dual-stack socket): the busiest wins
    assert m["portkit_destination_ephemeral_ports_in_use"] == {
        ("10.0.0.5:5432",): 2,
        ("10.0.0.6:5432",): 0,
    }


def test_ports_list_selects_labels() -> None:
    m = by_name(families(fixed(), ports=parse_ports("80,7000,5000-6000,50-60")))
    # single ports always (7000 listens nowhere: 0); ranges only where something listens
    assert m["portkit_listeners"] == {
        ("tcp", "80"): 2,
        ("tcp", "5432"): 1,
        ("tcp", "7000"): 0,
        ("udp", "53"): 1,
    }
    assert {k[1] for k in m["portkit_port_connections"]} == {"80", "5432", "7000"}


def test_no_remote_or_ephemeral_port_ever_becomes_a_label() -> None:
    fams = families(fixed(), destinations=parse_destinations("10.0.0.5:5432"))
    values = {v for f in fams for labels, _ in f.samples for v in labels}
    for banned in ("10.9.9.1", "50000", "40001", "10.0.0.2"):
        assert not any(banned in v for v in values)


# --- the container label -----------------------------------------------------------------


def boxed(name: str, published: bool = False, **kw: Any) -> Any:
    from portkit.containers import Container
    from portkit.see import OwnerContainer

    c = Container(name.encode().hex().ljust(64, "0")[:64], name, "docker", **kw)
    return OwnerContainer(c, "proxy" if published else None, "172.17.0.2:80" if published else None)


def test_container_label_on_listeners_and_port_info() -> None:
    snap = fixed()
    snap.port_containers = {
        ("tcp", 80): (boxed("web", published=True),),
        ("udp", 53): (boxed("coredns", pod="coredns-5d78", namespace="kube-system"),),
        ("tcp", 5432): (boxed("db"), boxed("db-replica")),  # two addresses, two containers
    }
    m = by_name(families(snap, ports=parse_ports("80,53,5432,7000")))
    assert m["portkit_listeners"] == {
        ("tcp", "80", "web"): 2,
        ("tcp", "5432", "db,db-replica"): 1,
        ("tcp", "7000", ""): 0,  # nothing listens: no container
        ("tcp", "53", ""): 0,
        ("udp", "53", "kube-system/coredns-5d78"): 1,
    }
    info = {k[0:2]: k[4] for k in m["portkit_port_info"]}
    assert info[("tcp", "80")] == "web" and info[("tcp", "7000")] == ""
    # only the listener series and the info carry it; the rest keep their labels
    assert ("tcp", "80") in m["portkit_accept_queue_limit"]
    # none asked (a fixed snapshot, or --no-container-label): no label at all
    assert by_name(families(fixed()))["portkit_listeners"][("tcp", "80")] == 2


def test_container_label_is_bounded() -> None:
    from portkit.exporter.metrics import MAX_CONTAINER_VALUES, container_values

    many = {("tcp", 10000 + i): (boxed(f"c{i:03d}", published=True),) for i in range(250)}
    values = container_values(many)
    assert len(set(values.values())) == MAX_CONTAINER_VALUES + 1
    assert values[("tcp", 10000)] == "c000" and values[("tcp", 10199)] == "c199"
    assert {values[("tcp", 10000 + i)] for i in range(200, 250)} == {"other"}
    snap = Snapshot.from_rows(
        [rec(TCP, 4, S.LISTEN, "0.0.0.0", port, role="server") for _, port in many], EPH
    )
    snap.port_containers = many
    got = {k[2] for k in by_name(families(snap))["portkit_listeners"]}
    assert len(got) == MAX_CONTAINER_VALUES + 1 and "other" in got


def fake_proc(root: Any, procs: dict[int, tuple[str, str]]) -> str:
    """A /proc of ``{pid: (comm, cgroup path)}`` (cgroup v2 lines, as the kernel writes)."""
    for pid, (comm, cgroup) in procs.items():
        d = root / str(pid)
        d.mkdir(exist_ok=True)
        (d / "comm").write_text(comm + "\n")
        (d / "cgroup").write_text(f"0::{cgroup}\n")
        (d / "cmdline").write_bytes(comm.encode() + b"\0")
    return str(root)


def test_container_watch_renews_every_few_seconds_not_every_reading(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portkit.exporter._containers import ContainerWatch

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")  # no API: short ids
    cid = "ab" * 32
    procfs = fake_proc(
        tmp_path,
        {
            4242: ("nginx", f"/system.slice/docker-{cid}.scope"),
            812: ("sshd", "/system.slice/ssh.service"),
        },
    )
    rows = [
        rec(TCP, 4, S.LISTEN, "0.0.0.0", 80, role="server", pid=4242, process="nginx"),
        rec(TCP, 4, S.LISTEN, "0.0.0.0", 22, role="server", pid=812, process="sshd"),
    ]
    now = [100.0]
    watch = ContainerWatch(owners=True, procfs=procfs, renew=5.0, clock=lambda: now[0])
    snap = Snapshot.from_rows(rows, EPH)
    watch.annotate(snap)
    assert snap.containers is not None and set(snap.containers) == {4242}
    assert snap.containers[4242].container.name == cid[:12]
    assert snap.port_containers == {("tcp", 80): (snap.containers[4242],)}
    # the process moves to no container: a reading within the window still says nginx's
    fake_proc(tmp_path, {4242: ("nginx", "/system.slice/nginx.service")})
    now[0] += 4.9
    again = Snapshot.from_rows(rows, EPH)
    watch.annotate(again)
    assert set(again.containers or {}) == {4242} and watch.renewals == 1
    now[0] += 0.2  # past the window: asked again
    last = Snapshot.from_rows(rows, EPH)
    watch.annotate(last)
    assert last.containers == {} and last.port_containers == {} and watch.renewals == 2


def test_container_watch_without_owners_reads_nothing_more_without_containers(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exporter's gate: no container on the host, no listeners-only dump."""
    from portkit.exporter import _containers

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such.sock")
    procfs = fake_proc(tmp_path, {812: ("sshd", "/system.slice/ssh.service")})
    scans: list[Any] = []
    import portkit.see

    monkeypatch.setattr(portkit.see, "scan", lambda *a, **kw: scans.append(a) or None)
    watch = _containers.ContainerWatch(procfs=procfs)
    snap = fixed()
    watch.annotate(snap)
    assert snap.port_containers == {} and scans == []


@pytest.mark.netns
def test_container_label_with_a_real_daemon(docker_lab: Any) -> None:
    """The exporter in the daemon's namespace names the container behind each
    published port (docker-proxy's sockets), as ``docker ps`` does."""
    env = {"DOCKER_HOST": f"unix://{docker_lab.sock}"}
    r = run_portkit("exporter", "--once", "--netns", docker_lab.ns, env=env)
    assert r.returncode == 0, r.stderr
    got = {
        (m["protocol"], m["port"]): m["container"]
        for m in (
            dict(re.findall(r'(\w+)="([^"]*)"', line))
            for line in r.stdout.splitlines()
            if line.startswith("portkit_listeners{")
        )
    }
    assert got[("tcp", "18080")] == "web"  # -p 127.0.0.1:18080:80
    assert got[("tcp", "18081")] == "web"  # -p 18081:80, v4 and v6 proxies
    assert got[("tcp", "18082")] == "shop_web_1"  # compose
    assert got[("tcp", "18083")] == "dangling"
    assert got[("udp", "5353")] == "dns"
    assert re.search(r'portkit_port_info\{container="web",port="18080"', r.stdout)
    off = run_portkit(
        "exporter", "--once", "--netns", docker_lab.ns, "--no-container-label", env=env
    )
    assert off.returncode == 0, off.stderr
    assert 'portkit_listeners{port="18080",protocol="tcp"} 1.0' in off.stdout
    assert "container=" not in off.stdout


# --- the collector ---------------------------------------------------------------------


def test_collector_yields_gauges_with_up_and_duration() -> None:
    from prometheus_client import generate_latest

    text = generate_latest(make_registry(SocketCollector(fixed), process_metrics=False)).decode()
    assert "# TYPE portkit_sockets gauge" in text
    assert re.search(r"^portkit_up 1\.0$", text, re.M)
    assert re.search(r"^portkit_scrape_duration_seconds \d", text, re.M)
    assert 'portkit_exporter_build_info{version="' in text
    assert "_total" not in text


def test_failed_reading_is_portkit_up_0_told_once() -> None:
    told: list[str] = []

    def broken() -> Snapshot:
        raise PermissionDenied("cannot enter the network namespace", needed="root")

    collector = SocketCollector(broken, on_error=told.append)
    for _ in range(3):
        names = {f.name: f.samples for f in collector.gather()}
    assert names["portkit_up"] == [((), 0.0)]
    assert set(names) == {"portkit_up", "portkit_scrape_duration_seconds"}
    assert told == ["cannot enter the network namespace: needs root"]


def test_registering_does_not_read_sockets() -> None:
    calls = []

    def counting() -> Snapshot:
        calls.append(1)
        return fixed()

    make_registry(SocketCollector(counting))
    assert calls == []


def test_promtool_accepts_the_exposition() -> None:
    if shutil.which("promtool") is None:
        pytest.fail("promtool (Debian prometheus) is not installed")
    from prometheus_client import generate_latest

    collector = SocketCollector(fixed, destinations=parse_destinations("10.0.0.5:5432"))
    text = generate_latest(make_registry(collector))
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_live_snapshot_sees_a_loopback_listener() -> None:
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(7)
        port = lst.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            m = by_name(families(take_snapshot(), ports=(PortRange(port),)))
    assert m["portkit_listeners"] == {("tcp", str(port)): 1}
    assert m["portkit_accept_queue_limit"] == {("tcp", str(port)): 7}
    assert m["portkit_accept_queue_length"] == {("tcp", str(port)): 1}  # not accepted yet
    assert m["portkit_port_connections"][("tcp", str(port), "established")] == 1


# --- HTTP ------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[Any]:
    srv = make_server(SocketCollector(fixed), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(10)


def get(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_landing_page_links_to_metrics(server: Any) -> None:
    status, headers, body = get(server.url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b'<a href="/metrics">' in body


def test_metrics_text_openmetrics_and_gzip(server: Any) -> None:
    status, headers, body = get(server.url + "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b'portkit_listeners{port="80",protocol="tcp"} 2.0' in body
    status, headers, body = get(
        server.url + "/metrics", Accept="application/openmetrics-text; version=1.0.0"
    )
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    status, headers, body = get(server.url + "/metrics", **{"Accept-Encoding": "gzip"})
    assert headers.get("Content-Encoding") == "gzip"
    assert b"portkit_up 1.0" in gzip.decompress(body)


def test_other_paths_are_404(server: Any) -> None:
    assert get(server.url + "/favicon.ico")[0] == 404
    assert get(server.url + "/metrics/x")[0] == 404


def test_port_in_use_is_an_environment_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortkitError, match="address already in use") as info:
            make_server(SocketCollector(fixed), "127.0.0.1", port)
        assert info.value.exit_code == 3


# --- the command line ------------------------------------------------------------------


def test_cli_once_prints_one_scrape() -> None:
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(5)
        port = lst.getsockname()[1]
        r = run_portkit("exporter", "--once", "--ports", str(port), "--dest", f"127.0.0.1:{port}")
        bare = run_portkit("exporter", "--once", "--ports", str(port), "--no-container-label")
    assert r.returncode == 0, r.stderr
    # this test's own listener: no container (an empty label value, as if absent)
    assert f'portkit_listeners{{container="",port="{port}",protocol="tcp"}} 1.0' in r.stdout
    assert f'portkit_accept_queue_limit{{port="{port}",protocol="tcp"}} 5.0' in r.stdout
    assert f'destination="127.0.0.1:{port}"' in r.stdout
    assert r.stderr == ""
    assert bare.returncode == 0, bare.stderr
    assert f'portkit_listeners{{port="{port}",protocol="tcp"}} 1.0' in bare.stdout
    assert "container=" not in bare.stdout


@pytest.mark.parametrize(
    "args",
    [
        ["--listen", "localhost:9636"],
        ["--listen", "127.0.0.1:70000"],
        ["--ports", "22,x"],
        ["--ports", "90-80"],
        ["--dest", "db:5432"],
        ["--dest", "10.0.0.5"],
        ["--netns", "a", "--pid-netns", "1", "--once"],
        ["--netns", "../etc", "--once"],
        ["--bogus"],
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args: list[str]) -> None:
    r = run_portkit("exporter", *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("portkit exporter: error: ")


def test_cli_unknown_netns_exits_2() -> None:
    r = run_portkit("exporter", "--once", "--netns", f"pk7-missing-{os.getpid()}")
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "namespace" in r.stderr


def test_cli_port_in_use_exits_3() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_portkit("exporter", "--listen", f"127.0.0.1:{port}")
    assert r.returncode == 3
    assert r.stderr.strip().splitlines() == [
        f"portkit exporter: error: cannot listen on 127.0.0.1:{port}: address already in use"
    ]


def test_cli_serves_until_sigterm_and_warns_about_public_binds() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "portkit", "exporter", "--listen", "0.0.0.0:0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        warning = proc.stderr.readline()
        assert "not loopback" in warning
        found = re.search(r"serving http://0\.0\.0\.0:(\d+)/metrics", proc.stderr.readline())
        assert found
        status, _, body = get(f"http://127.0.0.1:{found.group(1)}/metrics")
        assert status == 200 and b"portkit_up 1.0" in body
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None
        proc.stderr.close()


def test_docstring_examples() -> None:
    import doctest

    import portkit.exporter
    import portkit.exporter._config
    import portkit.exporter._containers
    import portkit.exporter.metrics
    import portkit.exporter.snapshot

    for module in (
        portkit.exporter,
        portkit.exporter._config,
        portkit.exporter._containers,
        portkit.exporter.metrics,
        portkit.exporter.snapshot,
    ):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0, module.__name__


def test_a_bug_in_collection_answers_500_and_keeps_serving(
    capsys: pytest.CaptureFixture[str],
) -> None:
    calls: list[int] = []

    def buggy() -> Snapshot:
        calls.append(1)
        if len(calls) == 1:
            raise ZeroDivisionError("division by zero")
        return fixed()

    srv = make_server(SocketCollector(buggy), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        status, _, body = get(srv.url + "/metrics")
        assert (status, body) == (500, b"scrape failed: ZeroDivisionError\n")
        assert get(srv.url + "/metrics")[0] == 200
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)
    assert "scrape failed: ZeroDivisionError: division by zero" in capsys.readouterr().err

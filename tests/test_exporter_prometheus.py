"""A real Prometheus scrapes ``portkit exporter`` and answers queries about a known workload.

The workload lives in a network namespace of its own (``pk7-<pid>``), so that every
figure is exact (no other process's sockets in it) and its ephemeral range can be made
small enough (20 ports) for the "ephemeral ports running out" alert to fire with 15
connections. Beside those, a server streams to a client through an nftables rule that
drops one of its packets in ten (retransmits), and a client opens and closes two
connections a second to another port (TIME-WAIT, the exhaustion forecast), so that
every panel of the Grafana dashboard and every alerting rule has something to show:
each of their queries is sent to this Prometheus and must return data. The exporter
runs in the test's namespace with ``--netns`` and listens on 127.0.0.1; Prometheus
(Debian's ``prometheus``) scrapes it on 127.0.0.1 with a temporary config and storage,
loads the alerting rules published in docs/watch.md, and every assertion goes through
Prometheus' HTTP API. New targets are scraped only after about 5 s (prometheus#14073),
so the test polls, up to a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.peer, pytest.mark.netns]

ROOT = Path(__file__).resolve().parent.parent
NS = f"pk7-{os.getpid()}"
SERVED, BACKLOG, ABSENT = 8080, 9000, 7000  # ports inside the namespace
TRAFFIC, CHURN = 8443, 8081
N_SERVED, N_QUEUED, BACKLOG_SIZE = 15, 4, 4
EPHEMERAL = (40000, 40019)  # 20 ports: 15 of them towards SERVED is 75 %
DEADLINE = 40.0

# Runs inside the namespace: a listener with N accepted connections, a listener
# that never accepts (a full accept queue), a server streaming to one client, and a
# client connecting and closing twice a second; then waits until its stdin closes.
WORKLOAD = r"""
import socket, sys, threading, time
served, backlog, n_served, n_queued, backlog_size, traffic, churn = map(int, sys.argv[1:8])
keep = []
a = socket.socket(); a.bind(("127.0.0.1", served)); a.listen(64); keep.append(a)
b = socket.socket(); b.bind(("127.0.0.1", backlog)); b.listen(backlog_size); keep.append(b)
for _ in range(n_served):
    c = socket.create_connection(("127.0.0.1", served)); keep.append(c)
    keep.append(a.accept()[0])
for _ in range(n_queued):
    keep.append(socket.create_connection(("127.0.0.1", backlog)))
t = socket.socket(); t.bind(("127.0.0.1", traffic)); t.listen(8); keep.append(t)
reader = socket.create_connection(("127.0.0.1", traffic)); keep.append(reader)
writer = t.accept()[0]; keep.append(writer)
def stream():  # about 2 MB/s: enough segments for a retransmit ratio
    chunk = b"x" * 16384
    while True:
        writer.sendall(chunk); time.sleep(0.008)
def drain():
    while reader.recv(1 << 16):
        pass
ch = socket.socket(); ch.bind(("127.0.0.1", churn)); ch.listen(64); keep.append(ch)
def serve_churn():
    while True:
        conn = ch.accept()[0]; conn.recv(1); conn.close()
def make_churn():  # the client closes first: its side keeps the TIME-WAIT
    while True:
        try:
            socket.create_connection(("127.0.0.1", churn)).close()
        except OSError:
            pass
        time.sleep(0.5)
for work in (stream, drain, serve_churn, make_churn):
    threading.Thread(target=work, daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""
# One packet in ten from the streaming server is lost on its way to its client (on
# input: a packet dropped on output is never sent, and TCP sends it again as new).
LOSS = (
    "table inet pk7 {{\n chain in {{\n  type filter hook input priority 0;\n"
    "  tcp sport {port} numgen random mod 10 == 0 drop\n }}\n}}\n"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def _namespace() -> Iterator[str]:
    _ip("netns", "add", NS)
    try:
        _ip("-n", NS, "link", "set", "lo", "up")
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                NS,
                "sysctl",
                "-q",
                "-w",
                f"net.ipv4.ip_local_port_range={EPHEMERAL[0]} {EPHEMERAL[1]}",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        subprocess.run(
            ["ip", "netns", "exec", NS, "nft", "-f", "-"],
            input=LOSS.format(port=TRAFFIC),
            text=True,
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield NS
    finally:
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=30)


def _stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a process this test started, by its pid."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _rules_from_docs() -> str:
    """The alerting rules exactly as docs/watch.md publishes them."""
    text = (ROOT / "docs" / "watch.md").read_text()
    match = re.search(r"<!-- alert-rules -->\s*```yaml\n(.*?)```", text, re.S)
    assert match, "docs/watch.md has no ```yaml block after <!-- alert-rules -->"
    return match.group(1)


class Prom:
    """A running Prometheus on 127.0.0.1, queried through its HTTP API."""

    def __init__(self, url: str, proc: subprocess.Popen[bytes]) -> None:
        self.url = url
        self.proc = proc

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=10) as r:
            doc = json.loads(r.read())
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=expr)["result"])

    def value(self, expr: str) -> float | None:
        """The value of a one-series instant query, None while it has no result."""
        result = self.query(expr)
        if not result:
            return None
        assert len(result) == 1, result
        return float(result[0]["value"][1])

    def wait_value(self, expr: str, want: float, deadline: float = DEADLINE) -> float | None:
        """Poll until ``expr`` equals ``want`` or the deadline passes; the last value."""
        end = time.monotonic() + deadline
        got = None
        while time.monotonic() < end:
            got = self.value(expr)
            if got == want:
                return got
            time.sleep(0.25)
        return got


def _start_prometheus(tmp: Path, target: str) -> Prom:
    rules = tmp / "portkit-rules.yml"
    rules.write_text(_rules_from_docs())
    config = tmp / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{rules}']\n"
        "scrape_configs:\n"
        "  - job_name: portkit\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )
    check = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
    for _attempt in range(3):  # the port from bind(0) may be taken before Prometheus binds it
        port = _free_port()
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        end = time.monotonic() + 20
        while time.monotonic() < end and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return Prom(url, proc)
            except OSError:
                time.sleep(0.1)
        _stop(proc)
    raise AssertionError("prometheus did not become ready")


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        pytest.fail("prometheus is not installed (scripts/system-packages.txt lists it)")
    tmp = tmp_path_factory.mktemp("prometheus")
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(_namespace())
        work = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                sys.executable,
                "-c",
                WORKLOAD,
                *map(str, (SERVED, BACKLOG, N_SERVED, N_QUEUED, BACKLOG_SIZE, TRAFFIC, CHURN)),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        stack.callback(_stop, work)
        assert work.stdout is not None and work.stdout.readline().strip() == "ready"
        # A listening baseline without CHURN: its listener is unexpected (issue 17).
        baseline = tmp / "baseline.plan.yaml"
        baseline.write_text(
            "portkit: plan/v1\nbaseline: true\nservices:\n  lab:\n    ports:\n"
            + "".join(
                f"      - {{port: {p}, address: 127.0.0.1, exposure: loopback}}\n"
                for p in (SERVED, BACKLOG, TRAFFIC)
            )
        )
        exporter = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "portkit",
                "exporter",
                "--netns",
                ns,
                "--listen",
                "127.0.0.1:0",
                "--ports",
                f"{SERVED},{BACKLOG},{ABSENT},{TRAFFIC},{CHURN}",
                "--dest",
                f"127.0.0.1:{SERVED},127.0.0.1:{CHURN}",
                "--baseline",
                str(baseline),
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        stack.callback(_stop, exporter)
        assert exporter.stderr is not None
        line = exporter.stderr.readline()
        found = re.search(r"serving (http://127\.0\.0\.1:(\d+))/metrics", line)
        assert found, line
        prom = _start_prometheus(tmp, f"127.0.0.1:{found.group(2)}")
        stack.callback(_stop, prom.proc)
        yield {"prom": prom, "exporter_url": found.group(1)}


def test_prometheus_scrapes_the_exporter(lab: dict[str, Any]) -> None:
    prom: Prom = lab["prom"]
    assert prom.wait_value('up{job="portkit"}', 1) == 1
    targets = prom.api("targets")["activeTargets"]
    assert [t["health"] for t in targets] == ["up"]
    assert targets[0]["scrapeUrl"] == f"{lab['exporter_url']}/metrics"
    assert prom.wait_value("portkit_up", 1) == 1
    assert prom.value("portkit_scrape_duration_seconds > 0") is not None


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        (f'portkit_port_connections{{port="{SERVED}",state="established"}}', N_SERVED),
        (f'portkit_port_connections{{port="{SERVED}",state="time_wait"}}', 0),
        (f'portkit_listeners{{protocol="tcp",port="{SERVED}"}}', 1),
        (f'portkit_accept_queue_length{{port="{SERVED}"}}', 0),
        (f'portkit_accept_queue_limit{{port="{SERVED}"}}', 64),
        (f'portkit_accept_queue_length{{port="{BACKLOG}"}}', N_QUEUED),
        (f'portkit_accept_queue_limit{{port="{BACKLOG}"}}', BACKLOG_SIZE),
        # The queued connections are established (the handshake is done) but unaccepted.
        (f'portkit_port_connections{{port="{BACKLOG}",state="established"}}', N_QUEUED),
        (f'portkit_listeners{{port="{ABSENT}"}}', 0),
        ('portkit_sockets{protocol="tcp",state="listen"}', 4),
        ('portkit_sockets{protocol="tcp",state="established"}', 2 * N_SERVED + 2 * N_QUEUED + 2),
        ("portkit_ephemeral_port_range_size", EPHEMERAL[1] - EPHEMERAL[0] + 1),
        (
            f'portkit_destination_ephemeral_ports_in_use{{destination="127.0.0.1:{SERVED}"}}',
            N_SERVED,
        ),
    ],
)
def test_queries_return_the_workload(lab: dict[str, Any], expr: str, want: int) -> None:
    assert lab["prom"].wait_value(expr, want) == want


def test_no_remote_addresses_or_ephemeral_ports_as_labels(lab: dict[str, Any]) -> None:
    prom: Prom = lab["prom"]
    assert prom.wait_value("portkit_up", 1) == 1
    ports = {r["metric"]["port"] for r in prom.query('{__name__=~"portkit_.*", port!=""}')}
    assert ports == {str(p) for p in (SERVED, BACKLOG, ABSENT, TRAFFIC, CHURN)}
    names = {r["metric"]["__name__"] for r in prom.query('{__name__=~"portkit_.*"}')}
    # counters (what only grows) end in _total; everything else is a gauge or summary
    assert {n for n in names if n.endswith("_total")} == {
        "portkit_port_sent_bytes_total",
        "portkit_port_received_bytes_total",
        "portkit_port_retransmitted_segments_total",
        "portkit_port_sent_segments_total",
    }
    labels = {k for r in prom.query('{__name__=~"portkit_.*"}') for k in r["metric"]}
    assert labels <= {
        "__name__",
        "instance",
        "job",
        "protocol",
        "port",
        "state",
        "destination",
        "version",
        "service",
        "role",
        "quantile",
        "bind",  # portkit_unexpected_listener: a local listening address, never a remote one
        "container",  # a listening port's container: at most 200 names (empty: dropped)
    }
    # service and role are the registry's answers for a reported port: one series each.
    info = prom.query("portkit_port_info")
    assert {r["metric"]["port"] for r in info} == {
        str(p) for p in (SERVED, BACKLOG, ABSENT, TRAFFIC, CHURN)
    }


def test_alert_rules_from_the_docs_fire(lab: dict[str, Any]) -> None:
    """Every published alert evaluates and goes pending (their `for:` keeps them from
    firing within a test): the full accept queue, the 75 % used range, the destination
    whose ports run out within 10 minutes, the port losing one reply in ten."""
    prom: Prom = lab["prom"]
    groups = prom.api("rules")["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == {
        "PortkitAcceptQueueFull",
        "PortkitEphemeralPortsRunningOut",
        "PortkitEphemeralPortsExhaustedSoon",
        "PortkitRetransmitRatioHigh",
        "PortkitUnexpectedListener",
    }
    want = {
        ("PortkitAcceptQueueFull", str(BACKLOG)),
        # towards the one destination, and (15+ of 20 ports) on the whole host
        ("PortkitEphemeralPortsRunningOut", f"127.0.0.1:{SERVED}"),
        ("PortkitEphemeralPortsRunningOut", ""),
        ("PortkitEphemeralPortsExhaustedSoon", f"127.0.0.1:{CHURN}"),
        ("PortkitRetransmitRatioHigh", str(TRAFFIC)),
        ("PortkitUnexpectedListener", str(CHURN)),  # not in the --baseline
    }
    end = time.monotonic() + DEADLINE
    pending: set[tuple[str, str]] = set()
    while time.monotonic() < end:
        alerts = [a["metric"] for a in prom.query("ALERTS")]
        pending = {(m["alertname"], m.get("port") or m.get("destination", "")) for m in alerts}
        if pending >= want:
            break
        time.sleep(0.25)
    # the churn destination may fill its 20 ports too (TIME-WAIT on loopback is reused)
    assert pending - {("PortkitEphemeralPortsRunningOut", f"127.0.0.1:{CHURN}")} == want
    for rule in rules.values():
        assert rule["health"] == "ok", rule


def test_the_packaged_rules_are_the_documented_ones() -> None:
    from portkit.exporter import packaged

    assert packaged("portkit-rules.yml") == _rules_from_docs()


# --- the Grafana dashboard: every panel's and every rule's query returns data ---------

#: What Grafana would put in for the dashboard's variables: every instance, a baseline
#: that expects only SERVED (so the other listeners are "unexpected"), and a rate
#: window a few scrapes long (Prometheus scrapes every second here).
VARIABLES = {
    "$instance": ".*",
    "$expected_ports": str(SERVED),
    "$__rate_interval": "15s",
}


def _dashboard_queries() -> list[tuple[str, str]]:
    from portkit.exporter import packaged

    board = json.loads(packaged("grafana-dashboard.json"))
    out = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            out.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    return out


def _rule_queries() -> list[tuple[str, str]]:
    import yaml

    doc = yaml.safe_load(_rules_from_docs())
    return [(f"rule {r['alert']}", r["expr"]) for g in doc["groups"] for r in g["rules"]]


def _fill(expr: str) -> str:
    for name, value in VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def test_every_panel_and_rule_query_returns_data(lab: dict[str, Any]) -> None:
    """Each query of the shipped dashboard and of the rules, sent to the real
    Prometheus: no error, and at least one series with a number (not NaN)."""
    import math

    prom: Prom = lab["prom"]
    queries = _dashboard_queries() + _rule_queries()
    assert len(_dashboard_queries()) >= 14
    pending = dict(queries)
    end = time.monotonic() + DEADLINE
    while pending and time.monotonic() < end:
        for what, expr in list(pending.items()):
            result = prom.query(_fill(expr))  # a query error fails Prom.api's status check
            if any(not math.isnan(float(r["value"][1])) for r in result):
                del pending[what]
        time.sleep(0.5)
    assert not pending, f"no data for: {sorted(pending)}"

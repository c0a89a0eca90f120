"""One owner of port knowledge: every command names and judges a port the same way.

The registry (``portkit.registry``) answers what a port is called and whether it should
listen on every interface. These tests walk every port 1-65535 through each command's
own naming path (ls, scan, top, the exporter, plan explain) and through both judges of
exposure (the overview's warnings, ``plan lint``'s findings), and hold them to one
answer, itself checked against an independent reading of the CSV sources.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import pytest

from portkit import registry
from portkit.errors import ParseError
from portkit.exporter.metrics import families
from portkit.exporter.snapshot import Snapshot
from portkit.model import PortRange, Protocol, SocketRecord, TcpState
from portkit.plan import lint, load_plan
from portkit.probe._records import PortResult, PortState, Reason
from portkit.probe._scan import _named
from portkit.render.plan import host_port_rows
from portkit.see import compute_stats, overview
from tests.conftest import Runner

DATA = Path(__file__).resolve().parent.parent / "data"
PORTS = range(1, 65536)
PROTOCOLS = ("tcp", "udp")
#: Range rows of the curated table that stand for whole ranges, not services.
_MARKERS = {
    "iana-system-ports",
    "iana-user-ports",
    "iana-dynamic-ports",
    "linux-ephemeral",
    "windows-ephemeral",
    "k8s-nodeport",
}


def _records(name: str) -> list[dict[str, str]]:
    with (DATA / name).open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _names_from_the_csvs(protocol: str) -> dict[int, str]:
    """The documented ranking, read straight from data/: guide, DevOps defaults,
    Prometheus allocations, then IANA's assigned names; lower case, dashed, uncut."""
    best: dict[int, tuple[int, str]] = {}

    def offer(rank: int, ports: str, protos: str, name: str) -> None:
        first, _, last = ports.strip().partition("-")
        if not first or (last and last != first) or not name.strip():
            return
        if protocol not in [p.strip() for p in protos.split("/")] and protos.strip():
            return
        port = int(first)
        if port not in best or rank < best[port][0]:
            best[port] = (rank, "-".join(name.lower().split()))

    for rank, name in ((0, "guide-ports.csv"), (1, "devops-ports.csv")):
        for rec in _records(name):
            if rec["service"] in _MARKERS:
                continue
            offer(rank, rec["port"], rec["protocol"], rec["service"])
    if protocol == "tcp":
        for rec in _records("prometheus-exporter-ports.csv"):
            component = " ".join(rec["component"].split())
            if not component.strip('"').upper().startswith(("FREE", "UNALLOCATED")):
                offer(2, rec["port"], "tcp", component)
    for rec in _records("iana-service-names-port-numbers.csv"):
        desc = " ".join(rec["Description"].split()).lower()
        # An assignment without a protocol (6400 boe-cms) holds for both.
        if rec["Transport Protocol"].strip().lower() not in (protocol, "") or desc == "unassigned":
            continue
        if desc == "reserved" and not rec["Service Name"].strip():
            continue
        offer(3, rec["Port Number"], protocol, rec["Service Name"])
    return {port: name for port, (_, name) in best.items()}


@pytest.fixture(scope="module")
def expected() -> dict[str, dict[int, str]]:
    return {proto: _names_from_the_csvs(proto) for proto in PROTOCOLS}


def test_the_registry_names_every_port_as_the_sources_rank_them(
    expected: dict[str, dict[int, str]],
) -> None:
    for proto in PROTOCOLS:
        assert registry.service_names(PORTS, proto) == expected[proto]
    # The cases that disagreed before one owner existed: same answer, never truncated.
    assert registry.service_name(9119) == "bind-exporter"
    assert registry.service_name(9500) == "cassandra-exporter"
    assert registry.service_name(9137) == "silicondust-hdhomerun-exporter"
    # One port at a time (the shard path) gives what the bulk path gives.
    for port in (22, 53, 8080, 9092, 9119, 30000, 65535):
        for proto in PROTOCOLS:
            assert registry.service_name(port, proto) == expected[proto].get(port)


def test_every_command_shows_the_registry_name(
    expected: dict[str, dict[int, str]], tmp_path: Path
) -> None:
    from portkit.cli.see import names_for
    from portkit.tui.app import _default_names

    for proto in PROTOCOLS:
        want = expected[proto]
        p = Protocol(proto)
        rows = [
            SocketRecord(p, 4, TcpState.LISTEN, "0.0.0.0", port, role="server").row
            for port in PORTS
        ]
        # ls (the model path; the plain listing passes registry.service_name itself)
        assert names_for(rows)[proto] == want
        # top
        assert _default_names({proto: set(PORTS)})[proto] == want
        # scan
        results = [
            PortResult("127.0.0.1", port, proto, PortState.OPEN, Reason.SYN_ACK) for port in PORTS
        ]
        named = _named(results)
        assert {r.port: r.service for r in named if r.service} == want
        # the exporter's portkit_port_info
        stats = compute_stats(rows, PortRange(32768, 60999))
        info = next(
            f for f in families(Snapshot(time.time(), rows, stats)) if f.name.endswith("port_info")
        )
        shown = {int(labels[1]): labels[2] for labels, _ in info.samples if labels[2]}
        assert shown == want
    # plan explain: the registry's column of the host-port table
    ports = " ".join(f'"{p}:{p}/udp"' if p % 2 else f'"{p}:{p}"' for p in range(1, 4000))
    plan = load_plan([_compose(tmp_path, ports)])
    for address, port, proto, said, *_ in host_port_rows(plan):
        assert said == (expected[proto].get(int(port)) or "-"), (address, port, proto)


def _compose(folder: Path, ports: str) -> str:
    path = folder / "compose.yaml"
    path.write_text("services:\n  app:\n    ports: [" + ", ".join(ports.split()) + "]\n")
    return str(path)


@pytest.mark.parametrize("host_ip", ["", "[::]:", "127.0.0.1:", "10.0.0.5:"])
def test_overview_and_plan_lint_flag_the_same_ports(host_ip: str, tmp_path: Path) -> None:
    """Every TCP port published on one bind scope: the overview's warnings and plan
    lint's exposure findings name the same ports."""
    # Every port the curated tables know (the ones with roles), and a sample of the rest.
    ports = [p for p in PORTS if p % 97 == 0 or any(e.everyday for e in registry.entries(p))]
    ip = host_ip.rstrip(":").strip("[]") or "0.0.0.0"
    family = 6 if ":" in ip else 4
    rows = [
        SocketRecord(Protocol.TCP, family, TcpState.LISTEN, ip, p, role="server").row for p in ports
    ]
    view = overview(compute_stats(rows, PortRange(32768, 60999)))
    warned = {lp.port for lp in view.listening if lp.exposed}
    assert len(view.warnings) == len(warned)

    plan = load_plan([_compose(tmp_path, " ".join(f'"{host_ip}{p}:{p}"' for p in ports))])
    exposure_rules = {"datastore-public", "admin-public"}
    flagged = set()
    for f in lint(plan):
        if f.rule in exposure_rules:
            flagged.add(int(f.message.split(", ", 1)[1].split("/", 1)[0]))
    assert flagged == warned
    if host_ip in ("", "[::]:"):
        assert {5432, 6379, 9042, 9090, 10250, 15672, 1883, 2375} <= warned
        assert not warned & {22, 80, 443, 8080, 9000, 9100}
    else:
        assert not warned


# --- names where a port goes (check db:postgresql, scan -p ssh,http*) ---------------------


@pytest.mark.parametrize(
    ("name", "protocol", "port"),
    [
        ("postgresql", "tcp", 5432),
        ("postgres", "tcp", 5432),  # lookup's alias
        ("PostgreSQL", "tcp", 5432),
        ("http", "tcp", 80),
        ("https", "tcp", 443),
        ("ssh", "tcp", 22),
        ("kafka", "tcp", 9092),  # everyday name, unknown to IANA
        ("domain", "udp", 53),
        ("dns", "udp", 53),
        ("node-exporter", "tcp", 9100),
        ("ntp", "udp", 123),
    ],
)
def test_service_names_stand_for_ports(name: str, protocol: str, port: int) -> None:
    assert registry.port_of(name, protocol) == port


def test_unknown_names_suggest_and_patterns_expand() -> None:
    with pytest.raises(ParseError, match="did you mean postgresql"):
        registry.port_of("postgress")
    with pytest.raises(ParseError, match="unknown service name"):
        registry.port_of("no-such-service-anywhere")
    found = registry.ports_matching("http*")
    assert {80, 443, 8080} <= set(found)
    with pytest.raises(ParseError, match="no service name matches"):
        registry.ports_matching("zzzz*")
    assert str(registry.parse_endpoint("db:postgresql")) == "db:5432/tcp"
    assert str(registry.parse_endpoint("[::1]:domain/udp")) == "[::1]:53/udp"
    assert str(registry.parse_endpoint("10.0.0.5:9200")) == "10.0.0.5:9200/tcp"


def test_commands_take_names_where_ports_go(cli: Runner) -> None:
    import socket as _socket

    from portkit.probe import parse_port_spec

    plan = parse_port_spec("ssh,http*,8000-8002,U:domain")
    assert 22 in plan.tcp and 8080 in plan.tcp and 8001 in plan.tcp and plan.udp == (53,)
    with _socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = cli("check", "127.0.0.1:ssh", "--json")
        assert json.loads(r.stdout)[0]["target"].endswith(":22/tcp"), r.stdout
    bad = cli("check", "127.0.0.1:postgress")
    assert bad.returncode == 2 and "did you mean postgresql" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1

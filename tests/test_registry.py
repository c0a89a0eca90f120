"""Port knowledge: the guide's table, the DevOps defaults, registry vs everyday use."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import portkit
from portkit.errors import ParseError
from portkit.registry import INDEX_PATH, Entry, lookup

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"


def _rows(name: str) -> list[dict[str, str]]:
    with open(DATA / name, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_shipped_index_is_built_from_data() -> None:
    """The packaged index is exactly what scripts/build-index makes from data/*.csv."""
    spec = importlib.util.spec_from_loader("build_index", loader=None)
    assert spec is not None
    source = (ROOT / "scripts/build-index").read_text()
    namespace: dict[str, object] = {"__name__": "build_index", "__file__": str(ROOT / "scripts/x")}
    exec(compile(source, "build-index", "exec"), namespace)
    assert namespace["build_bytes"]() == Path(INDEX_PATH).read_bytes()  # type: ignore[operator]


GUIDE_TABLE = [
    # port, protocol, service, purpose: the guide's "Common Well-Known Ports"
    (20, "tcp", "FTP", "File transfer"),
    (21, "tcp", "FTP", "File transfer"),
    (22, "tcp", "SSH", "Secure shell"),
    (23, "tcp", "Telnet", "Insecure remote shell"),
    (25, "tcp", "SMTP", "Email transmission"),
    (53, "tcp", "DNS", "Domain name resolution"),
    (53, "udp", "DNS", "Domain name resolution"),
    (80, "tcp", "HTTP", "Web traffic (unencrypted)"),
    (443, "tcp", "HTTPS", "Web traffic (encrypted)"),
    (3306, "tcp", "MySQL", "Database"),
    (5432, "tcp", "PostgreSQL", "Database"),
    (6379, "tcp", "Redis", "In-memory data store"),
    (8080, "tcp", "HTTP Alt", "Web traffic (alternative)"),
    (8443, "tcp", "HTTPS Alt", "HTTPS alternative"),
    (27017, "tcp", "MongoDB", "Database"),
    (9200, "tcp", "Elasticsearch", "Search engine"),
]


@pytest.mark.parametrize(("port", "proto", "service", "purpose"), GUIDE_TABLE)
def test_guide_well_known_ports_answered_exactly(
    port: int, proto: str, service: str, purpose: str
) -> None:
    (answer,) = lookup(f"{port}/{proto}")
    first = answer.entries[0]
    assert (first.port, first.protocol, first.service, first.source) == (
        port,
        proto,
        service,
        "guide",
    )
    assert first.description.startswith(purpose)


def test_every_devops_row_found_by_port_and_by_name() -> None:
    for row in _rows("devops-ports.csv"):
        protos = row["protocol"].split("/")
        by_port = lookup(row["port"])
        services = {e.service for a in by_port for e in a.entries}
        marker = row["service"].startswith(("iana-", "linux-", "windows-", "k8s-nodeport"))
        assert marker or row["service"] in services, row
        by_name = lookup(row["service"])[0]
        found = {(e.service, e.protocol, e.ports) for e in by_name.entries}
        assert all((row["service"], p, row["port"]) in found for p in protos), row


def test_prometheus_allocations_found() -> None:
    (answer,) = lookup("9100")
    assert "Node exporter" in {e.service for e in answer.entries}
    assert lookup("node exporter")[0].entries[0].port == 9100


@pytest.mark.parametrize(
    ("port", "registered", "everyday"),
    [
        ("9092", "XmlIpcRegSvc", "kafka"),
        ("9200", "wap-wsp", "Elasticsearch"),
        ("6443", "sun-sr-https", "kube-apiserver"),
    ],
)
def test_registry_and_everyday_use_both_shown(port: str, registered: str, everyday: str) -> None:
    (answer,) = lookup(port)
    names = [e.service for e in answer.entries]
    assert registered in names and everyday in names
    assert any(f"registered to {registered}" in n and everyday in n for n in answer.notes)
    assert answer.entries[0].everyday  # everyday use first


def test_agreeing_sources_get_no_disagreement_note() -> None:
    for port in ("22", "5432", "6379", "53/udp", "8080"):
        assert not any("registered to" in n for n in lookup(port)[0].notes), port


def test_unassigned_reserved_and_dynamic_ports_say_so() -> None:
    assert "reserved" in lookup("1024")[0].notes[0]
    unassigned = [
        r["Port Number"]
        for r in _rows("iana-service-names-port-numbers.csv")
        if r["Description"] == "Unassigned" and "-" not in r["Port Number"]
    ]
    assert any("unassigned" in n for n in lookup(unassigned[0])[0].notes)
    assert any("dynamic/private range" in n for n in lookup("64999")[0].notes)


def test_range_and_endpoint_and_protocol_queries() -> None:
    (rng,) = lookup("30000-32767")
    assert rng.kind == "range" and rng.in_nodeport and rng.entries
    assert all(30000 <= (e.port_end or 0) and (e.port or 0) <= 32767 for e in rng.entries)
    (ep,) = lookup("10.0.0.5:9200")
    assert ep.ports is not None and ep.ports.start == 9200
    assert {e.protocol for e in ep.entries} >= {"tcp", "udp"}  # no protocol given: all
    (udp,) = lookup("[::1]:53/udp")
    assert {e.protocol for e in udp.entries} == {"udp"}
    assert [a.ports.start for a in lookup("22,80") if a.ports] == [22, 80]


@pytest.mark.parametrize(
    ("query", "expect"),
    [
        ("redis", 6379),
        ("REDIS", 6379),
        ("postgres", 5432),
        ("postgress", 5432),
        ("kafka", 9092),
        ("k8s", 6443),
        ("elastic", 9200),
        ("mongo", 27017),
    ],
)
def test_name_search_fuzzy_and_aliases(query: str, expect: int) -> None:
    (answer,) = lookup(query)
    assert answer.entries[0].port == expect


def test_name_without_match_is_empty() -> None:
    (answer,) = lookup("zzqqxxy")
    assert not answer.found


@pytest.mark.parametrize(
    "query", ["70000", "8080/tcpx", "65536-1", "", "abc:80:1/tcp", "12-", "1,,2"]
)
def test_bad_queries_raise_parse_error(query: str) -> None:
    with pytest.raises(ParseError):
        lookup(query)


def test_classify_and_ephemeral_range_from_the_system() -> None:
    text = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    eph = portkit.ephemeral_range()
    assert (eph.start, eph.end) == (int(text[0]), int(text[1]))
    assert portkit.classify(eph.start).ephemeral is True
    assert portkit.classify(22).range_class.value == "well-known"
    assert portkit.classify(31000).nodeport is True


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=25))
def test_any_query_gives_answers_or_parse_error(query: str) -> None:
    try:
        answers = lookup(query)
    except ParseError:
        return
    assert answers
    for a in answers:
        assert a.kind in ("port", "range", "name")
        assert all(isinstance(e, Entry) for e in a.entries)


@given(st.integers(0, 65535), st.sampled_from(["", "/tcp", "/udp", "/SCTP", "/dccp"]))
def test_any_port_query_answers_with_classification(port: int, proto: str) -> None:
    (answer,) = lookup(f"{port}{proto}")
    assert answer.port_class is not None and answer.port_class.port == port
    if proto:
        assert all(e.protocol in (proto[1:].lower(), "") for e in answer.entries)

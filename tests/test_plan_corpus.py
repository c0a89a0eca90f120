"""Real public compose files and manifests: the mappings and findings, written down.

The corpus (tests/data/plan/corpus, sources in its README) is read with an empty
environment and no env file; ``golden/<group>.json`` holds the expected mapping
objects (the JSON keys the issue specifies) and the (rule, line) of every finding.
To rewrite the goldens after a deliberate change: ``PORTKIT_REGEN_GOLDEN=1 pytest
tests/test_plan_corpus.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

import portkit.plan as pp
from portkit.render.plan import mapping_json

DATA = Path(__file__).parent / "data" / "plan"
CORPUS = DATA / "corpus"
GOLDEN = DATA / "golden"

COMPOSE_KEYS = ("line", "service", "host_ip", "host_port", "container_port", "protocol", "source")
KUBE_KEYS = (
    "line",
    "kind",
    "name",
    "port",
    "target_port",
    "node_port",
    "container_port",
    "host_port",
    "host_ip",
    "protocol",
    "type",
)

#: group -> files read together (a Service and the Deployment it selects may live apart)
GROUPS: dict[str, tuple[str, ...]] = {
    **{p.stem: (f"compose/{p.name}",) for p in sorted((CORPUS / "compose").glob("*.yaml"))},
    "guestbook": ("kubernetes/examples-guestbook-all-in-one.yaml",),
    "cassandra": ("kubernetes/examples-cassandra-statefulset.yaml",),
    "mysql-wordpress": (
        "kubernetes/examples-mysql-wordpress-mysql-deployment.yaml",
        "kubernetes/examples-mysql-wordpress-wordpress-deployment.yaml",
    ),
    "coredns": ("kubernetes/coredns-deployment-coredns.yaml.sed.yaml",),
    "node-exporter": (
        "kubernetes/kube-prometheus-nodeExporter-daemonset.yaml",
        "kubernetes/kube-prometheus-nodeExporter-service.yaml",
    ),
    "dashboard": ("kubernetes/kubernetes-dashboard-recommended-excerpt.yaml",),
    "simple-fanout": ("kubernetes/website-simple-fanout-example.yaml",),
    "website-access": (
        "kubernetes/website-access-backend-service.yaml",
        "kubernetes/website-access-backend-deployment.yaml",
        "kubernetes/website-access-frontend-service.yaml",
        "kubernetes/website-access-frontend-deployment.yaml",
    ),
}


def _mapping(m: pp.PortMapping) -> dict[str, Any]:
    full = mapping_json(m)
    keys = COMPOSE_KEYS if m.source == "compose" else KUBE_KEYS
    out = {"file": Path(m.file).name}
    out.update({k: full[k] for k in keys})
    return out


def _observed(files: tuple[str, ...]) -> dict[str, Any]:
    plan = pp.load_plan([str(CORPUS / f) for f in files], env_files=[], environ={})
    findings = pp.lint(plan)
    return {
        "files": list(files),
        "mappings": [_mapping(m) for m in plan.mappings],
        "findings": [[Path(f.file).name, f.line, f.rule] for f in findings],
    }


def test_corpus_is_big_enough() -> None:
    assert len(list((CORPUS / "compose").glob("*.yaml"))) >= 8
    assert len(list((CORPUS / "kubernetes").glob("*.yaml"))) >= 8
    listed = (CORPUS / "README.md").read_text()
    for path in CORPUS.glob("*/*.yaml"):
        assert f"{path.parent.name}/{path.name}" in listed, f"{path} has no source in README.md"


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_corpus_golden(group: str) -> None:
    observed = _observed(GROUPS[group])
    golden = GOLDEN / f"{group}.json"
    if os.environ.get("PORTKIT_REGEN_GOLDEN"):
        golden.write_text(json.dumps(observed, indent=1) + "\n")
    assert observed == json.loads(golden.read_text())


def test_mailcow_defaults_hold_addresses() -> None:
    """``${SQL_PORT:-127.0.0.1:13306}:3306`` publishes 3306 on loopback port 13306."""
    ms = _observed(("compose/mailcow-dockerized-excerpt.yaml",))["mappings"]
    mysql = next(m for m in ms if m["service"] == "mysql-mailcow")
    assert (mysql["host_ip"], mysql["host_port"], mysql["container_port"]) == (
        "127.0.0.1",
        13306,
        3306,
    )
    nginx = [m for m in ms if m["service"] == "nginx-mailcow"]
    assert {(m["host_ip"], m["host_port"]) for m in nginx} == {(None, 443), (None, 80)}


def test_named_target_port_resolves_across_files() -> None:
    ms = _observed(GROUPS["website-access"])["mappings"]
    hello = next(m for m in ms if m["kind"] == "Service" and m["name"] == "hello")
    assert (hello["target_port"], hello["container_port"]) == ("http", 80)
    ms = _observed(GROUPS["node-exporter"])["mappings"]
    svc = next(m for m in ms if m["kind"] == "Service")
    assert (svc["target_port"], svc["container_port"], svc["type"]) == ("https", 9100, "ClusterIP")


def test_coredns_same_port_two_protocols() -> None:
    ms = _observed(GROUPS["coredns"])["mappings"]
    services = [(m["port"], m["protocol"]) for m in ms if m["kind"] == "Service"]
    assert services == [(53, "UDP"), (53, "TCP"), (9153, "TCP")]
    # CoreDNS probes 8080 (health) and 8181 (ready), ports its container does not
    # declare: kube-linter's liveness-port/readiness-port say so too.
    assert not _observed(GROUPS["coredns"])["findings"] or all(
        rule in ("privileged-port", "probe-port")
        for _, _, rule in _observed(GROUPS["coredns"])["findings"]
    )

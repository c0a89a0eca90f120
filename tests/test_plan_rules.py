"""Lint rules on hand-made files: every rule, every finding on the line it names.

Each file under tests/data/plan/rules marks the findings it must produce with a
``# expect: rule[, rule]`` comment on the line the finding points at; the test
compares the exact set of (file, rule, line) found with the set marked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import portkit.plan as pp
from portkit.errors import UsageError
from portkit.model import PortRange
from portkit.plan._rules import RULES, RULES_BY_ID, Severity

RULES_DIR = Path(__file__).parent / "data" / "plan" / "rules"

#: groups of files linted together (the conflict files are two projects on one host)
GROUPS: list[tuple[str, ...]] = [
    ("compose-invalid-port.yaml",),
    ("compose-invalid-protocol.yaml",),
    ("compose-unequal-ranges.yaml",),
    ("compose-conflict-a.yaml", "compose-conflict-b.yaml"),
    ("compose-datastore.yaml",),
    ("compose-privileged.yaml",),
    ("compose-ssh.yaml",),
    ("compose-base60.yaml",),
    ("compose-host-network.yaml",),
    ("compose-interpolation.yaml",),
    ("compose-ephemeral.yaml",),
    ("k8s-invalid-port.yaml",),
    ("k8s-nodeport.yaml",),
    ("k8s-target-port.yaml",),
    ("k8s-port-names.yaml",),
    ("k8s-host.yaml",),
    ("k8s-ingress.yaml",),
    ("k8s-invalid-type.yaml",),
    ("k8s-probes.yaml",),
    ("k8s-netpol.yaml",),
    ("compose-depends.yaml",),
    ("compose-external.yaml",),
    ("k8s-external.yaml",),
    ("compose-dockerfile/compose.yaml",),
    ("plan-invalid.yaml",),
    ("plan-connections.yaml",),
]
_EXPECT = re.compile(r"#\s*expect:\s*(.+)$")


def _expected(path: Path) -> set[tuple[str, str, int]]:
    out = set()
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        m = _EXPECT.search(line)
        if m:
            out |= {(str(path), rule.strip(), lineno) for rule in m.group(1).split(",")}
    return out


def _lint(names: tuple[str, ...], **options: object) -> tuple[list[pp.Finding], list[Path]]:
    paths = [RULES_DIR / n for n in names]
    env_files = (
        [str(RULES_DIR / "compose-interpolation.env")] if "interpolation" in names[0] else []
    )
    plan = pp.load_plan([str(p) for p in paths], env_files=env_files, environ={})
    if "external" in names[0]:  # a rule that is off by default
        options.setdefault("enable", ["external-service"])
    return pp.lint(plan, **options), paths  # type: ignore[arg-type]


@pytest.mark.parametrize("names", GROUPS, ids=lambda g: g[0])
def test_every_marked_finding_and_nothing_else(names: tuple[str, ...]) -> None:
    findings, paths = _lint(names)
    # (the Dockerfile's own finding has its test: a Dockerfile cannot carry the mark)
    got = {(f.file, f.rule, f.line) for f in findings if f.rule != "dockerfile-invalid-port"}
    expected = set().union(*(_expected(p) for p in paths))
    assert got == expected, (sorted(got - expected), sorted(expected - got))


def test_every_rule_has_a_hand_made_case() -> None:
    marked = {rule for name in RULES_DIR.rglob("*.yaml") for _, rule, _ in _expected(name)}
    # A Dockerfile cannot carry an "# expect:" after EXPOSE (Docker has no inline
    # comments): test_dockerfile_expose_is_read_through_compose_build checks that rule.
    marked.add("dockerfile-invalid-port")
    assert marked == set(RULES_BY_ID), set(RULES_BY_ID) ^ marked


def test_dockerfile_expose_is_read_through_compose_build() -> None:
    """hadolint DL3011 on the Dockerfile a compose build: points at; the build target's
    stage counts (``other`` builds stage ``base``, which exposes 3000)."""
    findings, _ = _lint(("compose-dockerfile/compose.yaml",))
    (invalid,) = [f for f in findings if f.rule == "dockerfile-invalid-port"]
    assert invalid.file.endswith("app/Dockerfile") and invalid.line == 6
    assert invalid.message == (
        "EXPOSE 70000: Valid UNIX ports range from 0 to 65535 (hadolint DL3011)"
    )
    (unexposed,) = [f for f in findings if f.rule == "target-not-exposed"]
    assert "it exposes 8080/tcp" in unexposed.message


def test_every_rule_survives_a_sarif_round_trip() -> None:
    """Each finding of every hand-made file comes back from its SARIF log whole: rule,
    level, file, line and object; every rule is described in the driver."""
    import json

    from portkit.plan._sarif import to_sarif

    seen: set[str] = set()
    for names in GROUPS:
        findings, _ = _lint(names)
        log = json.loads(json.dumps(to_sarif(findings, version="test")))
        run = log["runs"][0]
        rules = run["tool"]["driver"]["rules"]
        assert [r["id"] for r in rules] == [r.id for r in RULES]
        levels = {"error": 3, "warning": 2, "note": 1}
        for f, result in zip(findings, run["results"], strict=True):
            assert result["ruleId"] == f.rule
            assert rules[result["ruleIndex"]]["id"] == f.rule
            assert levels[result["level"]] == int(f.severity)
            where = result["locations"][0]
            assert where["physicalLocation"]["artifactLocation"]["uri"].endswith(Path(f.file).name)
            assert where["physicalLocation"].get("region", {}).get("startLine") == f.line
            assert where["logicalLocations"][0]["name"] == f.object
            seen.add(f.rule)
    assert seen == set(RULES_BY_ID), set(RULES_BY_ID) - seen


def test_rule_table_is_complete_and_documented() -> None:
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for rule in RULES:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", rule.id)
        assert rule.title and rule.hint.endswith((".", ")"))
        assert isinstance(rule.severity, Severity)
    # errors first, then warnings, then info: the table reads from worst to mildest
    assert [r.severity for r in RULES] == sorted((r.severity for r in RULES), reverse=True)


def test_messages_use_dockers_and_kubernetes_words() -> None:
    findings, _ = _lint(("compose-invalid-port.yaml",))
    messages = {f.message for f in findings}
    assert {
        "invalid containerPort: 70000",
        "invalid hostPort: 99999",
        "invalid hostPort: 8080-80",
        "invalid IP address: 1.2.3",
        "no port specified: 80:<empty>",
        "service ports services.web.ports.6 is missing a target port",
        "services.web.ports: invalid type float64 for port",
        "services.web.ports.13 Additional property colour is not allowed",
    } <= messages
    findings, _ = _lint(("k8s-nodeport.yaml",))
    assert (
        "spec.ports[0].nodePort: Invalid value: 80: provided port is not in the valid range. "
        "The range of valid ports is 30000-32767"
    ) in {f.message for f in findings}
    assert "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'" in {
        f.message for f in findings
    }
    findings, _ = _lint(("k8s-invalid-port.yaml",))
    messages = {f.message for f in findings}
    assert (
        "spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"
        in messages
    )
    assert (
        'spec.ports[3].protocol: Unsupported value: "tcp": supported values: "SCTP", "TCP", "UDP"'
        in messages
    )
    assert (
        "json: cannot unmarshal string into Go struct field "
        "ServicePort.spec.ports.port of type int32" in messages
    )
    assert "spec.template.spec.containers[0].ports[1].containerPort: Required value" in messages
    assert (
        "spec.template.spec.containers[0].ports[0].hostPort: Invalid value: 9101: must match "
        "`containerPort` when `hostNetwork` is true"
    ) in messages
    findings, _ = _lint(("k8s-port-names.yaml",))
    messages = {f.message for f in findings}
    assert (
        'spec.containers[0].ports[0].name: Invalid value: "HTTP": must contain only '
        "alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    ) in messages
    assert 'spec.containers[0].ports[6].name: Duplicate value: "metrics"' in messages
    assert "spec.ports[1].name: Required value" in messages


def test_a_file_reports_every_problem_not_just_the_first() -> None:
    findings, _ = _lint(("compose-invalid-port.yaml",))
    assert sum(f.rule == "invalid-port" for f in findings) == 15


def test_node_port_range_option() -> None:
    findings, _ = _lint(("k8s-nodeport.yaml",), node_port_range=PortRange(80, 32768))
    assert not [f for f in findings if f.rule == "nodeport-range"]


def test_ignore_skips_rules_and_rejects_unknown_ids() -> None:
    findings, _ = _lint(("compose-ssh.yaml",), ignore=["ssh-exposed"])
    assert {f.rule for f in findings} == {"unquoted-base60"}
    with pytest.raises(UsageError, match="no-such-rule"):
        _lint(("compose-ssh.yaml",), ignore=["no-such-rule"])


def test_tcp_and_udp_never_conflict_and_wildcards_overlap() -> None:
    findings, _ = _lint(("compose-conflict-a.yaml", "compose-conflict-b.yaml"))
    conflicts = [f for f in findings if f.rule == "host-port-conflict"]
    assert not any(":53" in f.message for f in conflicts)
    messages = " ".join(f.message for f in conflicts)
    # One finding for port 8080 (issue 14): at the first binding that fails, naming the rest.
    assert "Bind for 127.0.0.1:8080 failed: port is already allocated" in messages
    assert "3 bindings of this port collide: service api at" in messages
    assert "compose-conflict-b.yaml:6" in messages
    assert sum("8080" in f.message for f in conflicts) == 1
    assert "Bind for [::]:9000 failed" in messages
    # 127.0.0.1:9000 and [::1]:9000 are different addresses of different families
    assert not any("127.0.0.1:9000" in f.message for f in conflicts)


def test_finding_json_keys() -> None:
    findings, _ = _lint(("compose-ssh.yaml",))
    obj = findings[0].to_json()
    assert list(obj) == ["rule", "severity", "file", "line", "object", "message", "hint"]
    assert obj["severity"] in ("error", "warning", "info")


def test_datastore_knowledge_comes_from_the_registry() -> None:
    """The datastore-public and admin-public rules ask portkit.registry.port_role."""
    from portkit.registry import port_role

    def what(port: int, image: str | None = None) -> tuple[str, str] | None:
        role = port_role(port, "tcp", image)
        return (role.product, role.kind) if role is not None and role.warn else None

    assert what(5432) == ("PostgreSQL", "database")
    assert what(6379) == ("Redis", "cache")
    assert what(9092) == ("kafka", "message broker")
    assert what(9200) == ("Elasticsearch", "search engine")
    assert what(8080) is None
    assert what(15672) == ("rabbitmq-management", "admin interface")
    assert what(9000) is None  # ClickHouse, MinIO, SonarQube: ambiguous
    assert what(9000, image="clickhouse/clickhouse-server:24") == ("ClickHouse", "database")
    assert what(1433, image="mcr.microsoft.com/mssql/server:2022") is not None
    assert what(9090, image="nginx:1.27") is None  # the image says what runs there

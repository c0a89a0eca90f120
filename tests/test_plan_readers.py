"""Reading plan files: YAML as Docker reads it, interpolation, the three readers."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import portkit.plan as pp
from portkit.errors import PlanError
from portkit.plan._interp import interpolate, parse_env_file
from portkit.plan._yaml import Base60Str, YamlMap, base60_value, line_of, load_documents
from portkit.render.plan import describe, mapping_json

FORMS = Path(__file__).parent / "data" / "plan" / "forms"
RULES = Path(__file__).parent / "data" / "plan" / "rules"


# --- YAML 1.2, as yaml.v3 decodes it ---------------------------------------------------


def test_unquoted_host_container_is_a_string_remembered_as_base60() -> None:
    doc = load_documents("ports:\n  - 22:22\n  - 8080:80\n  - '22:22'\n  - 1:30:59\n")[0]
    ports = doc["ports"]
    assert ports == ["22:22", "8080:80", "22:22", "1:30:59"]
    assert [isinstance(p, Base60Str) for p in ports] == [True, False, False, True]
    assert base60_value("22:22") == 1342  # what PyYAML's safe_load gives
    import yaml

    assert yaml.safe_load("- 22:22")[0] == 1342  # the YAML 1.1 trap this module avoids


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("yes", "yes"),
        ("on", "on"),
        ("NO", "NO"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("null", None),
        ("0755", 493),  # yaml.v3 keeps YAML 1.1 octal for compatibility
        ("0o17", 15),
        ("0x1F", 31),
        ("1_000", 1000),
        ("-3", -3),
        ("3.5", 3.5),
        ("1e3", 1000.0),
        ("2001-01-01", "2001-01-01"),  # no implicit timestamps
        ("8080/tcp", "8080/tcp"),
        ("'80'", "80"),
        ("99999999999999999999", 1e20),
    ],
)
def test_scalars_follow_yaml_1_2(text: str, value: object) -> None:
    assert load_documents(f"v: {text}\n")[0]["v"] == value


def test_lines_are_kept_for_keys_and_items() -> None:
    doc = load_documents("a: 1\nports:\n  - x\n\n  - y\nm: {k: v}\n")[0]
    assert isinstance(doc, YamlMap)
    assert line_of(doc, "ports") == 2
    assert [line_of(doc["ports"], i) for i in range(2)] == [3, 5]
    assert line_of(doc["m"], "k") == 6


def test_merge_keys_aliases_and_many_documents() -> None:
    docs = load_documents(
        "base: &b {ports: ['80:80'], restart: always}\n"
        "svc:\n  <<: *b\n  restart: 'no'\n---\n---\nkind: x\n...\n"
    )
    assert docs[0]["svc"] == {"ports": ["80:80"], "restart": "no"}
    assert docs[1] is None
    assert docs[2] == {"kind": "x"}


def test_json_flow_documents() -> None:
    assert load_documents('{"a": [1, {"b": "c"}]}')[0] == {"a": [1, {"b": "c"}]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: [1\n", "f.yaml:2: YAML error"),
        ("a: 1\nb: 2\na: 3\n", 'f.yaml:3: mapping key "a" already defined at line 1'),
        ("a: *nope\n", "f.yaml:1: YAML error: found undefined alias"),
        ("x: {{ .Values.port }}\n", "f.yaml:1: invalid map key"),
    ],
)
def test_yaml_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(PlanError) as exc:
        load_documents(text, "f.yaml")
    assert str(exc.value).startswith(message)


@given(st.text(alphabet=" \n\t-:[]{},'\"&*!|>#%@`~?abc019", max_size=60))
def test_any_text_gives_documents_or_a_plan_error(text: str) -> None:
    with contextlib.suppress(PlanError):
        load_documents(text)


# --- interpolation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "result", "unset", "errors"),
    [
        ("${A}", {"A": "1"}, "1", (), 0),
        ("$A:$B", {"A": "1", "B": "2"}, "1:2", (), 0),
        ("${A:-80}", {"A": ""}, "80", (), 0),
        ("${A-80}", {"A": ""}, "", (), 0),
        ("${A-80}", {}, "80", (), 0),
        ("${A:-${B:-81}}", {}, "81", (), 0),
        ("${A:+on}", {"A": "x"}, "on", (), 0),
        ("${A+on}", {"A": ""}, "on", (), 0),
        ("${A:+on}", {"A": ""}, "", (), 0),
        ("${A}:80", {}, ":80", ("A",), 0),
        ("${A:?need A}", {}, "", (), 1),
        ("${A?need A}", {"A": ""}, "", (), 0),
        ("$$A", {"A": "1"}, "$A", (), 0),
        ("$", {}, "$", (), 0),
        ("${A", {}, "${A", (), 1),
        ("${}", {}, "${}", (), 1),
        ("${A:x}", {}, "${A:x}", (), 1),
    ],
)
def test_interpolation(
    text: str, env: dict[str, str], result: str, unset: tuple[str, ...], errors: int
) -> None:
    got = interpolate(text, env)
    assert (got.text, got.unset, len(got.errors)) == (result, unset, errors)


def test_required_variable_message_is_composes() -> None:
    got = interpolate("${PORT:?set PORT}", {})
    assert got.errors == ("required variable PORT is missing a value: set PORT",)


def test_env_file() -> None:
    text = (
        "# comment\n\nexport A=1\nB = 2 # trailing\nC='${A} raw'\nD=\"x\\ny\"\nE=${A}:${B}\n"
        'M="multi\nline"\nNOEQUALS\n'
    )
    assert parse_env_file(text) == {
        "A": "1",
        "B": "2",
        "C": "${A} raw",
        "D": "x\ny",
        "E": "1:2",
        "M": "multi\nline",
    }


def test_environment_overrides_the_env_file(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  web:\n    ports: ['${PORT}:80']\n")
    (tmp_path / ".env").write_text("PORT=8080\n")
    plan = pp.load_plan([str(compose)], environ={})
    assert str(plan.mappings[0].host_port) == "8080"  # .env beside the file, as compose reads it
    plan = pp.load_plan([str(compose)], environ={"PORT": "9090"})
    assert str(plan.mappings[0].host_port) == "9090"
    other = tmp_path / "other.env"
    other.write_text("PORT=7070\n")
    plan = pp.load_plan([str(compose)], env_files=[str(other)], environ={})
    assert str(plan.mappings[0].host_port) == "7070"
    with pytest.raises(PlanError, match="couldn't find env file"):
        pp.load_plan([str(compose)], env_files=[str(tmp_path / "missing.env")], environ={})


# --- readers -------------------------------------------------------------------------------


def _json(path: Path) -> list[dict[str, object]]:
    return [mapping_json(m) for m in pp.load_plan([str(path)], environ={}).mappings]


def test_compose_every_form() -> None:
    ms = _json(FORMS / "compose-syntax.yaml")
    got = [
        (
            m["service"],
            m["host_ip"],
            m["host_port"],
            m["container_port"],
            m["protocol"],
            m["source"],
        )
        for m in ms
    ]
    assert got == [
        ("short", None, None, 3000, "tcp", "ports"),
        ("short", None, None, "3000-3005", "tcp", "ports"),
        ("short", None, 8000, 8000, "tcp", "ports"),
        ("short", None, "9090-9091", "8080-8081", "tcp", "ports"),
        ("short", None, 49100, 22, "tcp", "ports"),
        ("short", None, "8000-9000", 80, "tcp", "ports"),
        ("short", "127.0.0.1", 8001, 8001, "tcp", "ports"),
        ("short", "127.0.0.1", "5000-5010", "5000-5010", "tcp", "ports"),
        ("short", "::1", 6000, 6000, "tcp", "ports"),
        ("short", "::1", 6001, 6001, "tcp", "ports"),
        ("short", None, 6060, 6060, "udp", "ports"),
        ("short", None, None, 3001, "tcp", "ports"),
        ("long", "127.0.0.1", 8080, 80, "tcp", "ports"),
        ("long", None, 8443, 443, "tcp", "ports"),
        ("long", None, None, 5353, "udp", "ports"),
        ("long", None, "9000-9100", 9000, "tcp", "ports"),
        ("exposed", None, None, 6379, "tcp", "expose"),
        ("exposed", None, None, 7000, "tcp", "expose"),
        ("exposed", None, None, "7001-7003", "tcp", "expose"),
        ("exposed", None, None, 53, "udp", "expose"),
        ("host-net", None, 9100, 9100, "tcp", "expose"),
    ]
    long = ms[12]
    assert (long["mode"], long["name"], long["app_protocol"]) == ("host", "web", "http")
    assert ms[5]["pool"] is True and ms[15]["pool"] is True
    assert ms[20]["network_mode_host"] is True


def test_the_issues_own_example_in_plain_words(tmp_path: Path) -> None:
    f = tmp_path / "compose.yaml"
    f.write_text("services:\n  web:\n    ports: ['8080:3000']\n")
    (m,) = pp.load_plan([str(f)], environ={}).mappings
    assert describe(m) == (
        "host 0.0.0.0:8080/tcp -> container web:3000/tcp, reachable on every interface of the host"
    )


def test_kubernetes_every_form() -> None:
    ms = _json(FORMS / "k8s-forms.yaml")
    got = [
        (m["kind"], m["name"], m["port"], m["target_port"], m["node_port"], m["container_port"],
         m["host_port"], m["host_ip"], m["protocol"], m["type"])
        for m in ms
    ]  # fmt: skip
    assert got == [
        ("Pod", "pod", None, None, None, 9100, 9100, None, "TCP", None),
        ("Pod", "pod", None, None, None, 1234, 1234, None, "TCP", None),
        ("CronJob", "cron", None, None, None, 8125, 8125, "127.0.0.1", "UDP", None),
        ("Job", "job", None, None, None, 7070, None, None, "TCP", None),
        ("ReplicaSet", "rs", None, None, None, 7071, None, None, "TCP", None),
        ("ReplicationController", "rc", None, None, None, 7072, None, None, "SCTP", None),
        ("Service", "rs", 80, "web", None, 7071, None, None, "TCP", "ClusterIP"),
        ("Service", "alias", 5432, 5432, None, 5432, None, None, "TCP", "ExternalName"),
        ("Service", "lb", 7072, 7072, 31000, 7072, None, None, "SCTP", "LoadBalancer"),
        ("Ingress", "legacy", None, None, None, None, None, None, "TCP", None),
    ]
    assert ms[0]["host_network"] is True and ms[0]["port_name"] == "metrics"
    assert ms[6]["selected"] == ["ReplicaSet/rs"] and ms[6]["namespace"] == "prod"
    assert (ms[9]["backend"], ms[9]["port_name"]) == ("rs", "web")


def test_plan_every_form() -> None:
    plan = pp.load_plan([str(FORMS / "plan-forms.yaml")], environ={})
    got = [
        (m.service, str(m.host_port), m.protocol, m.exposure.value, m.host_ip, m.scope)
        for m in plan.mappings
    ]
    assert got == [
        ("short", "8080", "tcp", "internal", None, None),
        ("short", "8081", "tcp", "internal", None, None),
        ("short", "53", "udp", "internal", None, None),
        ("short", "8000-8010", "tcp", "internal", None, None),
        ("long", "443", "tcp", "public", "0.0.0.0", "127.0.0.1"),
        ("long", "9090", "tcp", "loopback", "127.0.0.1", "127.0.0.1"),
        ("long", "5432", "tcp", "internal", "10.0.0.5", "127.0.0.1"),
    ]
    assert not [f for f in pp.lint(plan) if f.severity >= pp.Severity.WARNING]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty file"),
        ("just: a mapping\n", "not a compose file, Kubernetes manifest or portkit plan"),
        ("- a\n- b\n", "empty file, or no YAML mapping"),
        ("portkit: plan/v9\nservices: {}\n", "unsupported plan version 'plan/v9'"),
        ("portkit: plan/v1\nservices: [a]\n", "services: must be a mapping"),
        ("services:\n  a: 1\nservices:\n  b: 2\n", 'mapping key "services" already defined'),
    ],
)
def test_files_that_cannot_be_read_at_all(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "x.yaml"
    f.write_text(text)
    with pytest.raises(PlanError, match=message):
        pp.load_plan([str(f)], environ={})


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="No such file"):
        pp.load_plan([str(tmp_path / "nope.yaml")])
    f = tmp_path / "bin.yaml"
    f.write_bytes(b"services:\n  a: \xff\xfe\n")
    with pytest.raises(PlanError, match="not UTF-8"):
        pp.load_plan([str(f)])


def test_format_can_be_forced(tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("apiVersion: v1\nkind: Service\nservices:\n  web:\n    ports: ['80:80']\n")
    assert pp.load_plan([str(f)], environ={}).files[0].format == "kubernetes"
    forced = pp.load_plan([str(f)], environ={}, format="compose")
    assert forced.files[0].format == "compose" and len(forced.mappings) == 1


def test_import_portkit_plan_stays_light() -> None:
    code = "import sys, portkit.plan; print('yaml' in sys.modules, 'click' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_schema_is_package_data() -> None:
    schema = pp.schema()
    portkit_key: Any = schema["properties"]
    assert portkit_key["portkit"]["const"] == "plan/v1"

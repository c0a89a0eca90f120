"""Compose projects read as Docker Compose reads them (issue 17): several files merged,
entries de-duplicated, extends/include/profiles followed, version 1 and 2/3 files,
``.env`` as compose-go's dotenv, Kubernetes Service validation, helm template output.

Each fact names the compose-go or Kubernetes test (or function) it comes from; the
code is portkit's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import portkit.plan as pp
from portkit.errors import PlanError
from portkit.plan._interp import interpolate, parse_env_file
from tests.conftest import run_portkit

PROJECT = Path(__file__).parent / "data" / "plan" / "project"


def _plan(*names: str, **kw: object) -> pp.Plan:
    return pp.load_plan([str(PROJECT / n) for n in names], environ=kw.pop("environ", {}), **kw)  # type: ignore[arg-type]


def _ports(plan: pp.Plan, service: str) -> list[str]:
    return [
        f"{m.host_ip or ''}:{m.host_port}:{m.container_port}/{m.protocol}"
        for m in plan.mappings
        if m.service == service and m.origin == "ports"
    ]


# --- merging files (compose-go loader.loadYamlModel: override.Merge, EnforceUnicity) -----


def test_base_and_override_publishing_the_same_port_is_one_port() -> None:
    """The issue's layout: docker compose starts it, so lint finds no conflict."""
    plan = _plan("override/compose.yaml", "override/compose.override.yaml")
    assert _ports(plan, "web") == [":8080:80/tcp", "127.0.0.1:9090:9090/tcp"]
    assert not [f for f in pp.lint(plan) if f.rule == "host-port-conflict"]
    web = [m for m in plan.mappings if m.service == "web"]
    # the override's copy wins (its file and line), in the base's place
    assert web[0].file.endswith("compose.override.yaml")
    # a short entry and its long-syntax override are one port (portIndexer's
    # HOST_IP:PUBLISHED:TARGET/PROTO), and the override's fields win
    assert (web[1].mode, web[1].name) == ("host", "metrics")


def test_expose_is_kept_unique_too() -> None:
    """override/uncity.go: expose entries indexed by their text ("3000" and 3000)."""
    plan = _plan("override/compose.yaml", "override/compose.override.yaml")
    assert [str(m.container_port) for m in plan.mappings if m.origin == "expose"] == ["3000"]


def test_different_services_on_one_host_port_still_conflict(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("services:\n  web:\n    ports: ['8080:80']\n")
    (tmp_path / "b.yaml").write_text("services:\n  api:\n    ports: ['8080:3000']\n")
    plan = pp.load_plan([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")], environ={})
    (conflict,) = [f for f in pp.lint(plan) if f.rule == "host-port-conflict"]
    assert conflict.file.endswith("b.yaml")


def test_different_mappings_of_one_service_still_conflict(tmp_path: Path) -> None:
    """8080:80 and 8080:81 are two ports to compose (loader_test.go
    TestLoadMultipleConfigs keeps 8080:80 and 8080:81 both), and Docker cannot bind both."""
    (tmp_path / "a.yaml").write_text("services:\n  web:\n    ports: ['8080:80']\n")
    (tmp_path / "b.yaml").write_text("services:\n  web:\n    ports: ['8080:81']\n")
    plan = pp.load_plan([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")], environ={})
    assert _ports(plan, "web") == [":8080:80/tcp", ":8080:81/tcp"]
    assert [f.rule for f in pp.lint(plan)].count("host-port-conflict") == 1


def test_docker_docs_merge_example() -> None:
    """Docker's 'Merge Compose files' page: the override adds ports to every service;
    with the production file instead, web publishes 80:80 and db nothing."""
    dev = _plan("docker-docs-merge/compose.yaml", "docker-docs-merge/compose.override.yaml")
    assert _ports(dev, "web") == [":8883:80/tcp"]
    assert _ports(dev, "db") == [":5432:5432/tcp"]
    assert _ports(dev, "cache") == [":6379:6379/tcp"]
    assert all(m.file.endswith("compose.override.yaml") for m in dev.mappings)
    prod = _plan("docker-docs-merge/compose.yaml", "docker-docs-merge/compose.prod.yaml")
    assert _ports(prod, "web") == [":80:80/tcp"]
    assert _ports(prod, "db") == []
    assert {f.path for f in prod.files} == {
        str(PROJECT / "docker-docs-merge" / n) for n in ("compose.yaml", "compose.prod.yaml")
    }


def test_the_command_line_reads_the_merged_project() -> None:
    r = run_portkit(
        "plan",
        "lint",
        str(PROJECT / "override" / "compose.yaml"),
        str(PROJECT / "override" / "compose.override.yaml"),
        "--json",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert not [f for f in json.loads(r.stdout) if f["severity"] == "error"]


# --- extends, include, profiles ------------------------------------------------------------


def test_extends_another_file_and_the_same_file() -> None:
    """compose-go extends: the base's ports first, then the service's own."""
    plan = _plan("extends/compose.yaml")
    assert _ports(plan, "web") == [":8080:80/tcp", ":8443:443/tcp"]
    assert _ports(plan, "worker") == [":8080:80/tcp", ":8443:443/tcp", ":9000:9000/tcp"]
    inherited = next(m for m in plan.mappings if m.service == "web")
    assert inherited.file.endswith("common.yaml") and inherited.line == 4
    assert str(PROJECT / "extends" / "common.yaml") in {f.path for f in plan.files}
    # web and worker both take 8080 and 8443: different services, so a conflict
    assert {f.rule for f in pp.lint(plan)} >= {"host-port-conflict"}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("services:\n  a: {extends: b}\n  b: {extends: a}\n", "circular reference with extends"),
        ("services:\n  a: {extends: nope}\n", "service 'nope' not found"),
        ("services:\n  a: {extends: {file: missing.yaml, service: x}}\n", "missing.yaml"),
        ("services:\n  a: {extends: 1}\n", "must be a service name"),
    ],
)
def test_extends_that_compose_refuses(text: str, says: str, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(text)
    with pytest.raises(PlanError, match=says):
        pp.load_plan([str(tmp_path / "compose.yaml")], environ={})


def test_include_loads_a_project_of_its_own() -> None:
    plan = _plan("include/compose.yaml")
    assert _ports(plan, "db") == [":5432:5432/tcp"]
    db = next(m for m in plan.mappings if m.service == "db")
    assert db.file.endswith("db/compose.yaml")
    assert "datastore-public" in {f.rule for f in pp.lint(plan)}


@pytest.mark.parametrize(
    ("main", "other", "says"),
    [
        (
            "include: [other.yaml]\nservices:\n  db: {image: x}\n",
            "services:\n  db: {image: y}\n",
            "conflicts with imported resource",
        ),
        ("include: [other.yaml]\nservices: {}\n", "include: [compose.yaml]\n", "include cycle"),
    ],
)
def test_include_that_compose_refuses(main: str, other: str, says: str, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(main)
    (tmp_path / "other.yaml").write_text(other)
    with pytest.raises(PlanError, match=says):
        pp.load_plan([str(tmp_path / "compose.yaml")], environ={})


PROFILED = """\
services:
  web: {image: nginx, ports: ['8080:80']}
  debug:
    image: busybox
    profiles: [debug]
    ports: ['8080:8080']
"""


@pytest.mark.parametrize(
    ("profiles", "environ", "active"),
    [
        (None, {}, ["web"]),
        (["debug"], {}, ["web", "debug"]),
        (None, {"COMPOSE_PROFILES": "tools,debug"}, ["web", "debug"]),
        (["*"], {}, ["web", "debug"]),
        (["other"], {"COMPOSE_PROFILES": "debug"}, ["web"]),  # --profile wins over the env
    ],
)
def test_profiles(
    profiles: list[str] | None, environ: dict[str, str], active: list[str], tmp_path: Path
) -> None:
    (tmp_path / "compose.yaml").write_text(PROFILED)
    plan = pp.load_plan([str(tmp_path / "compose.yaml")], environ=environ, profiles=profiles)
    assert list(dict.fromkeys(m.service for m in plan.mappings)) == active
    conflicts = [f for f in pp.lint(plan) if f.rule == "host-port-conflict"]
    assert bool(conflicts) == ("debug" in active)
    if "debug" not in active:
        assert plan.files[0].inactive == {"debug": ("debug",)}


def test_profile_on_the_command_line(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text(PROFILED)
    r = run_portkit("plan", "explain", str(tmp_path / "compose.yaml"), "--profile", "debug")
    assert r.returncode == 0 and "service debug" in r.stdout
    r = run_portkit("plan", "explain", str(tmp_path / "compose.yaml"), env={"NO_COLOR": "1"})
    assert "service debug (profiles: debug): --profile debug or COMPOSE_PROFILES=debug" in (
        r.stdout
    )


# --- old file formats ------------------------------------------------------------------------


def test_version_2_and_3_files(tmp_path: Path) -> None:
    """docker-compose 1.x files with version: "2.4" (the test suite's own shop project) or
    "3.8": compose-go ignores version (a warning that it is obsolete)."""
    for version in ("2.4", "3.8", "3"):
        path = tmp_path / "docker-compose.yml"
        path.write_text(
            f'version: "{version}"\nservices:\n  web:\n    image: x\n    ports: ["18082:80"]\n'
        )
        assert _ports(pp.load_plan([str(path)], environ={}), "web") == [":18082:80/tcp"]


def test_version_1_files_have_services_at_the_top(tmp_path: Path) -> None:
    path = tmp_path / "docker-compose.yml"
    path.write_text("web:\n  image: nginx\n  ports: ['8080:80']\ndb:\n  image: postgres\n")
    plan = pp.load_plan([str(path)], environ={})
    assert _ports(plan, "web") == [":8080:80/tcp"]
    assert plan.files[0].format == "compose"


# --- .env as compose-go's dotenv (dotenv/godotenv_test.go, parser_test.go) -------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # TestParsing
        ("FOO=bar", {"FOO": "bar"}),
        ('FOO="bar"', {"FOO": "bar"}),
        ("FOO='bar'", {"FOO": "bar"}),
        ('FOO="escaped\\"bar"', {"FOO": 'escaped"bar'}),
        ("FOO=\"'d'\"", {"FOO": "'d'"}),
        ('FOO="bar\\nbaz"', {"FOO": "bar\nbaz"}),
        ("FOO.BAR=foobar", {"FOO.BAR": "foobar"}),
        ('FOO="bar#baz" # comment', {"FOO": "bar#baz"}),
        ("FOO=foobar=", {"FOO": "foobar="}),
        ("FOO=bar ", {"FOO": "bar"}),
        ("KEY: value", {"KEY": "value"}),  # yaml-style
        ("export OPTION_A=2", {"OPTION_A": "2"}),
        ("export\tOPTION_B=3", {"OPTION_B": "3"}),
        ("export OPTION_B='\\n'", {"OPTION_B": "\\n"}),  # single quotes: literal
        ("FOO='it\\'s'", {"FOO": "it's"}),  # \' inside single quotes
        ("FOO='multi\nline'", {"FOO": "multi\nline"}),  # single quotes span lines
        ('FOO="\\a\\b\\f\\v\\t"', {"FOO": "\a\b\f\v\t"}),
        ('FOO="\\0123"', {"FOO": "S"}),  # \0NNN octal
        ('FOO="\\$BAR"', {"FOO": "$BAR"}),  # \$ is a literal $
        # TestComments
        ("qux=thud thud # fred # other", {"qux": "thud thud"}),
        ("thud=fred#qux # other", {"thud": "fred#qux"}),
        ('baz="foo"#bar', {"baz": "foo"}),
        ("tab=fred\t# other", {"tab": "fred"}),  # any blank before "#" (isSpace)
        ("hash=#fred", {"hash": "#fred"}),
        # TestWhitespace
        (" A=a\n", {"A": "a"}),
        ("\tA=a\n", {"A": "a"}),
        (" export A=a", {"A": "a"}),
        ("A=a \t \n", {"A": "a"}),
        ("A=a", {"A": "a"}),
        # TestReadPlainEnv
        (
            "OPTION_C= 3\nOPTION_D =4\nOPTION_F =\nOPTION_H=1 2",
            {"OPTION_C": "3", "OPTION_D": "4", "OPTION_F": "", "OPTION_H": "1 2"},
        ),
    ],
)
def test_dotenv_parsing(text: str, expected: dict[str, str]) -> None:
    assert parse_env_file(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('FOO="unterminated\nBAR=1\n', 'line 1: unterminated quoted value "unterminated'),
        ("A=1\nFOO BAR=1\n", "line 2: key cannot contain a space"),
        ("A$B=1\n", 'line 1: unexpected character "$" in variable name "A$B=1"'),
        ("A=${B:?must be set}\n", "line 1: required variable B is missing a value: must be set"),
    ],
)
def test_dotenv_that_compose_refuses(text: str, says: str) -> None:
    """TestErrorParsing and friends: compose refuses the whole file, naming the line."""
    with pytest.raises(PlanError, match=__import__("re").escape(says)):
        parse_env_file(text, {}, ".env")


def test_dotenv_interpolation_prefers_the_environment() -> None:
    """TestSubstitutionsWithEnvFilePrecedence: ${OTHER} in .env is the shell's first,
    then the lines above; a bare KEY takes the shell's value (TestInheritedEnvVariable)."""
    text = "OTHER=file\nA=${OTHER}\nB='${OTHER}'\nHOME\n"
    env = {"OTHER": "shell", "HOME": "/root"}
    assert parse_env_file(text, env) == {
        "OTHER": "file",
        "A": "shell",
        "B": "${OTHER}",
        "HOME": "/root",
    }
    assert parse_env_file(text, {})["A"] == "file"


def test_env_file_errors_stop_the_command(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    ports: ['${P}:80']\n")
    (tmp_path / ".env").write_text("P=8080\nQ='open\n")
    r = run_portkit("plan", "lint", str(tmp_path / "compose.yaml"))
    assert r.returncode == 2
    assert "line 2: unterminated quoted value 'open" in r.stderr


# --- interpolation (template/template_test.go) ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "env", "result"),
    [
        ("ok ${UNSET_VAR-$FOO}", {"FOO": "first"}, "ok first"),  # TestDefaultsWithNestedExpansion
        ("ok ${UNSET_VAR-${FOO} ${FOO}}", {"FOO": "first"}, "ok first first"),
        ("ok ${BAR+$FOO}", {"FOO": "first", "BAR": ""}, "ok first"),
        (
            "ok ${BAR:-/non:-alphanumeric}",
            {},
            "ok /non:-alphanumeric",
        ),  # TestNonAlphanumericDefault
        # Braces balance (compose-go's getFirstBraceClosingIndex counts every "{" since
        # it stopped counting only "${"; bash and docker-compose 1.29 close at the first
        # "}" and leave a stray one): issue 17's ${VAR:-{x}}.
        ("${VAR:-{x}}", {"VAR": "1"}, "1"),
        ("${VAR:-{x}}", {}, "{x}"),
        ("${A:-{x}} and ${B:-y}", {}, "{x} and y"),
        ("${A:-$${x}}", {}, "${x}"),  # "$$" is no escape to the brace count
        ("${A:-{{x}", {}, "{{x"),  # never balanced: the line's last "}" closes
        ("${A:-{}}", {"A": "v"}, "v"),
    ],
)
def test_interpolation_as_compose_go(text: str, env: dict[str, str], result: str) -> None:
    assert interpolate(text, env).text == result


# --- Kubernetes Services (pkg/apis/core/validation, TestValidateServiceCreate) --------------


@pytest.mark.parametrize(
    ("spec", "rule", "message"),
    [
        ("{selector: {app: x}}", "invalid-port", "spec.ports: Required value"),
        ("{type: NodePort, ports: []}", "invalid-port", "spec.ports: Required value"),
        (
            "{type: NodePort, clusterIP: None, ports: [{port: 80}]}",
            "invalid-service-type",
            "may not be set to 'None' for NodePort services",
        ),
        (
            "{type: LoadBalancer, clusterIP: None, ports: [{port: 80}]}",
            "invalid-service-type",
            "may not be set to 'None' for LoadBalancer services",
        ),
    ],
)
def test_services_the_api_server_refuses(
    spec: str, rule: str, message: str, tmp_path: Path
) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(f"apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {spec}\n")
    findings = pp.lint(pp.load_plan([str(path)], environ={}))
    assert any(f.rule == rule and message in f.message for f in findings), findings


@pytest.mark.parametrize(
    "spec",
    ["{clusterIP: None, selector: {app: x}}", "{type: ExternalName, externalName: db.example}"],
)
def test_services_without_ports_the_api_server_takes(spec: str, tmp_path: Path) -> None:
    path = tmp_path / "svc.yaml"
    path.write_text(f"apiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {spec}\n")
    assert not [f for f in pp.lint(pp.load_plan([str(path)], environ={})) if f.severity == 3]


# --- helm template output on stdin ------------------------------------------------------------

HELM = """\
---
# Source: web/templates/serviceaccount.yaml
apiVersion: v1
kind: ServiceAccount
metadata:
  name: release-web
---
# Source: web/templates/service.yaml
apiVersion: v1
kind: Service
metadata:
  name: release-web
  labels:
    app.kubernetes.io/name: web
    app.kubernetes.io/instance: release
spec:
  type: NodePort
  ports:
    - port: 80
      targetPort: http
      protocol: TCP
      name: http
  selector:
    app.kubernetes.io/name: web
    app.kubernetes.io/instance: release
---
# Source: web/templates/deployment.yaml
apiVersion: apps/v1
kind: Deployment
metadata:
  name: release-web
spec:
  replicas: 1
  selector:
    matchLabels:
      app.kubernetes.io/name: web
      app.kubernetes.io/instance: release
  template:
    metadata:
      labels:
        app.kubernetes.io/name: web
        app.kubernetes.io/instance: release
    spec:
      serviceAccountName: release-web
      containers:
        - name: web
          image: "nginx:1.16.0"
          imagePullPolicy: IfNotPresent
          ports:
            - name: http
              containerPort: 80
              protocol: TCP
          livenessProbe:
            httpGet:
              path: /
              port: http
---
# Source: web/templates/tests/test-connection.yaml
apiVersion: v1
kind: Pod
metadata:
  name: "release-web-test-connection"
  annotations:
    "helm.sh/hook": test
spec:
  containers:
    - name: wget
      image: busybox
      command: ['wget']
      args: ['release-web:80']
  restartPolicy: Never
"""


def test_helm_template_output_on_stdin() -> None:
    """``helm template release ./web | portkit plan lint -`` (the chart ``helm create``
    makes, rendered, with its test hook): read from stdin like any manifest stream."""
    r = run_portkit("plan", "explain", "-", "--json", input=HELM)
    assert r.returncode == 0, r.stderr
    objs = {(m["kind"], m["name"]) for m in json.loads(r.stdout)}
    assert ("Service", "release-web") in objs and ("Deployment", "release-web") in objs
    svc = next(m for m in json.loads(r.stdout) if m["kind"] == "Service")
    assert svc["container_port"] == 80 and svc["file"] == "-"
    lint = run_portkit("plan", "lint", "-", "--json", input=HELM)
    assert lint.returncode == 0, lint.stdout + lint.stderr

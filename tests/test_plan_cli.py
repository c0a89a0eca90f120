"""``portkit plan explain | lint`` through the real entry point, bad input included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Runner

ROOT = Path(__file__).parent.parent
DATA = ROOT / "tests" / "data" / "plan"
EXAMPLES = ROOT / "examples"


def test_explain_in_plain_words(cli: Runner, tmp_path: Path) -> None:
    f = tmp_path / "compose.yaml"
    f.write_text(
        "services:\n  web:\n    ports:\n      - '8080:3000'\n      - '127.0.0.1:5432:5432'\n"
    )
    r = cli("plan", "explain", str(f))
    assert r.returncode == 0, r.stderr
    assert (
        "host 0.0.0.0:8080/tcp -> container web:3000/tcp, reachable on every interface of the host"
        in r.stdout
    )
    assert "reachable from this host only (loopback)" in r.stdout
    assert "Host ports these files take" in r.stdout
    assert "\x1b[" not in r.stdout


def test_explain_json_keys(cli: Runner) -> None:
    r = cli(
        "plan",
        "explain",
        str(DATA / "forms" / "compose-syntax.yaml"),
        str(EXAMPLES / "kubernetes" / "manifests.yaml"),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    objs = json.loads(r.stdout)
    compose = [o for o in objs if o["format"] == "compose"]
    kube = [o for o in objs if o["format"] == "kubernetes"]
    for o in compose:
        assert {"service", "host_ip", "host_port", "container_port", "protocol", "source"} <= set(o)
        assert o["source"] in ("ports", "expose")
    for o in kube:
        keys = {"kind", "name", "port", "target_port", "node_port", "container_port"}
        assert keys | {"host_port", "host_ip", "protocol", "type"} <= set(o)
    pool = next(o for o in compose if o["host_port"] == "8000-9000")
    assert pool["container_port"] == 80
    nodeport = next(o for o in kube if o["name"] == "web-nodeport")
    assert (nodeport["node_port"], nodeport["container_port"], nodeport["type"]) == (
        30080,
        8080,
        "NodePort",
    )


def test_lint_exit_codes_and_fail_on(cli: Runner) -> None:
    ssh = str(DATA / "rules" / "compose-ssh.yaml")  # warnings only
    r = cli("plan", "lint", ssh)
    assert r.returncode == 0, r.stdout
    assert "ssh-exposed" in r.stdout and "0 errors, 3 warnings, 0 info in 1 file" in r.stdout
    assert cli("plan", "lint", ssh, "--fail-on", "warning").returncode == 1
    assert cli("plan", "lint", ssh, "--fail-on", "info").returncode == 1
    bad = str(DATA / "rules" / "compose-invalid-port.yaml")
    assert cli("plan", "lint", bad).returncode == 1
    clean = str(EXAMPLES / "kubernetes" / "manifests.yaml")
    r = cli("plan", "lint", clean, "--fail-on", "info")
    assert (r.returncode, r.stdout.strip()) == (0, "no findings in 1 file")


def test_lint_json(cli: Runner) -> None:
    r = cli("plan", "lint", str(DATA / "rules" / "k8s-nodeport.yaml"), "--json")
    assert r.returncode == 1
    findings = json.loads(r.stdout)
    assert all(
        list(f) == ["rule", "severity", "file", "line", "object", "message", "hint"]
        for f in findings
    )
    assert {"nodeport-range", "nodeport-on-clusterip", "duplicate-port"} <= {
        f["rule"] for f in findings
    }


def test_lint_sarif(cli: Runner) -> None:
    r = cli("plan", "lint", str(DATA / "rules" / "compose-conflict-a.yaml"), "--sarif")
    assert r.returncode == 1
    log = json.loads(r.stdout)
    assert log["version"] == "2.1.0" and log["$schema"].endswith("sarif-2.1.0.json")
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert {"id", "shortDescription", "help", "defaultConfiguration"} <= set(rules[0])
    result = run["results"][0]
    assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    assert result["level"] in ("error", "warning", "note")
    loc = result["locations"][0]["physicalLocation"]
    assert loc["artifactLocation"]["uri"].endswith("compose-conflict-a.yaml")
    assert loc["region"]["startLine"] >= 1


def test_lint_env_file_and_ignore(cli: Runner) -> None:
    f = str(DATA / "rules" / "compose-interpolation.yaml")
    env = str(DATA / "rules" / "compose-interpolation.env")
    r = cli("plan", "lint", f, "--env-file", env, "--json", "--ignore", "invalid-port")
    rules = {x["rule"] for x in json.loads(r.stdout)}
    assert rules == {"unset-variable", "invalid-interpolation"}


def test_list_rules(cli: Runner) -> None:
    r = cli("plan", "lint", "--list-rules")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0].split() == ["RULE", "SEVERITY", "WHAT"]
    assert "datastore-public" in r.stdout and "unquoted-base60" in r.stdout


def test_stdin(cli: Runner) -> None:
    r = cli("plan", "explain", "-", "--json", input="services:\n  a:\n    ports: ['9000:9000']\n")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["host_port"] == 9000


def test_examples_lint_clean(cli: Runner) -> None:
    files = sorted(str(p) for p in EXAMPLES.glob("*/*.yaml"))
    assert len(files) == 6
    for f in files:
        r = cli("plan", "lint", f, "--fail-on", "warning")
        assert r.returncode == 0, (f, r.stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "lint", "/nonexistent/compose.yaml"], "No such file"),
        (["plan", "explain", "{bad}"], None),
        (["plan", "lint"], "no FILE given"),
        (["plan", "lint", "--sarif", "--json", "x.yaml"], "exclusive"),
        (["plan", "lint", "--fail-on", "fatal", "x.yaml"], "fatal"),
        (["plan", "lint", "--node-port-range", "9-1", "x.yaml"], "reversed"),
        (["plan", "check", "--timeout", "0", "x.yaml"], "0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    cli: Runner, tmp_path: Path, args: list[str], message: str | None
) -> None:
    if args[-1] == "{bad}":
        bad = tmp_path / "broken.yaml"
        bad.write_text("services:\n  web:\n    ports: [\n")
        args = [*args[:-1], str(bad)]
        message = "YAML error"
    r = cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_file_not_a_plan_and_unknown_rule_exit_2(cli: Runner, tmp_path: Path) -> None:
    f = tmp_path / "x.yaml"
    f.write_text("hello: world\n")
    r = cli("plan", "lint", str(f))
    assert r.returncode == 2 and "not a compose file" in r.stderr
    r = cli("plan", "lint", str(DATA / "rules" / "compose-ssh.yaml"), "--ignore", "nope")
    assert r.returncode == 2 and "unknown rule 'nope'" in r.stderr


def test_help_has_examples(cli: Runner) -> None:
    for sub in ("explain", "lint", "check"):
        r = cli("plan", sub, "--help")
        assert r.returncode == 0 and "Examples:" in r.stdout
    assert "plan" in cli("--help").stdout

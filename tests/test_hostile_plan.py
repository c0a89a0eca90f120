"""Hostile input for ``portkit plan`` (issue 14): what a careless or hostile file, stdin
or argument can do to the readers, and the contract they keep. Bad input is one line on
stderr and exit 2 (or a lint finding), never a traceback; memory stays bounded (checked
under an address-space limit, ``resource.setrlimit`` in the child) and time stays linear
(a child that hangs or goes quadratic hits the generous ``timeout``; nothing is timed).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import portkit.plan as pp
from portkit.errors import PlanError, UsageError
from portkit.plan._interp import MAX_DEPTH, interpolate, parse_env_file
from portkit.plan._yaml import MAX_ALIAS_NODES, load_documents

#: The address space a child portkit may use: a plan command needs ~100 MB.
LIMIT_MB = 512
#: Seconds: only a hang or a quadratic blow-up gets near it.
BOUND = 60


def _limited() -> None:
    limit = LIMIT_MB * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _portkit(
    *args: str, stdin: Any = None, pass_fds: tuple[int, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portkit", *args],
        capture_output=True,
        text=True,
        stdin=stdin if stdin is not None else subprocess.DEVNULL,
        timeout=BOUND,
        preexec_fn=_limited,
        pass_fds=pass_fds,
        env={**os.environ, "NO_COLOR": "1"},
    )


def _one_line_error(r: subprocess.CompletedProcess[str], says: str, code: int = 2) -> None:
    assert r.returncode == code, (r.returncode, r.stdout[-500:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr[-2000:]
    assert says in lines[0], lines[0]


def _load(tmp_path: Path, text: str, name: str = "f.yaml", **kw: Any) -> pp.Plan:
    path = tmp_path / name
    path.write_text(text)
    return pp.load_plan([str(path)], environ=kw.pop("environ", {}), **kw)


# --- reads stop at the size cap --------------------------------------------------------


def test_dev_zero_as_a_file_stops_at_the_cap() -> None:
    _one_line_error(_portkit("plan", "explain", "/dev/zero"), "larger than 32 MB")


def test_dev_zero_on_stdin_stops_at_the_cap() -> None:
    with open("/dev/zero", "rb") as zero:
        _one_line_error(_portkit("plan", "explain", "-", stdin=zero), "larger than 32 MB")


def test_an_endless_pipe_on_stdin_stops_at_the_cap() -> None:
    yes = subprocess.Popen(["yes", "services:"], stdout=subprocess.PIPE)
    try:
        _one_line_error(_portkit("plan", "lint", "-", stdin=yes.stdout), "larger than 32 MB")
    finally:
        yes.kill()
        yes.wait()
        assert yes.stdout is not None
        yes.stdout.close()


def test_env_file_dev_zero_stops_at_the_cap(tmp_path: Path) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text('services:\n  web:\n    ports: ["${P:-8080}:80"]\n')
    r = _portkit("plan", "lint", str(compose), "--env-file", "/dev/zero")
    _one_line_error(r, "larger than 32 MB")


def test_a_huge_sparse_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    with open(big, "wb") as f:
        f.truncate(4 * 1024 * 1024 * 1024)  # 4 GB of holes: cheap to make, costly to read
    _one_line_error(_portkit("plan", "lint", str(big)), "larger than 32 MB")


# --- YAML aliases are counted, recursive ones refused -----------------------------------


def _laughs(levels: int, fan: int = 9) -> str:
    lines = ["x-a: &a [" + ", ".join(['"80:80"'] * fan) + "]"]
    prev = "a"
    for i in range(levels):
        lines.append(f"x-{i}: &n{i} [" + ", ".join([f"*{prev}"] * fan) + "]")
        prev = f"n{i}"
    return "\n".join([*lines, "services:", "  web:", f"    image: *{prev}", ""])


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (_laughs(8), "document contains excessive aliasing"),  # 9^9 strings once expanded
        (_laughs(30, fan=2), "document contains excessive aliasing"),  # 2^31, in a thin file
        (
            "x-big: &big [" + ", ".join(f'"{i}"' for i in range(2000)) + "]\n"
            "services:\n  web:\n    ports: [" + ", ".join(["*big"] * 1000) + "]\n",
            "document contains excessive aliasing",  # one wide anchor used 1,000 times
        ),
        ("services:\n  web:\n    ports: &p [*p]\n", "anchor 'p' value contains itself"),
        ("services: &s\n  web: *s\n", "anchor 's' value contains itself"),
        ("x: &m\n  <<: *m\nservices: {}\n", "anchor 'm' value contains itself"),
        (
            "apiVersion: v1\nkind: List\nitems: &i\n  - *i\n",
            "anchor 'i' value contains itself",
        ),
    ],
    ids=["laughs-9x8", "laughs-2x30", "wide", "list", "map", "merge", "k8s-list"],
)
def test_aliases_are_bounded(text: str, says: str, tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    with pytest.raises(PlanError, match=says):
        pp.load_plan([str(path)], environ={})


def test_an_alias_bomb_stays_in_bounded_memory(tmp_path: Path) -> None:
    """The same on the command line, under the address-space limit: one line, exit 2."""
    path = tmp_path / "bomb.yaml"
    path.write_text(_laughs(8))
    _one_line_error(_portkit("plan", "lint", str(path)), "document contains excessive aliasing")


def test_alias_budget_is_generous_for_real_files() -> None:
    """x- anchors for shared defaults, as compose files use them, stay far below it."""
    text = "x-ports: &ports ['8080:80', '8443:443']\nservices:\n" + "".join(
        f"  s{i}: {{image: nginx, ports: *ports}}\n" for i in range(1000)
    )
    assert load_documents(text)[0]["services"]["s999"]["ports"] == ["8080:80", "8443:443"]
    assert MAX_ALIAS_NODES >= 1_000_000


@pytest.mark.parametrize("depth", [300, 990])
def test_deep_nesting_is_no_recursion_error(depth: int, tmp_path: Path) -> None:
    """libyaml nests up to 1,000 levels: the converter and readers walk without recursion."""
    for text in (
        "services:\n  web:\n    ports: " + "[" * depth + "]" * depth + "\n",
        "services:\n  web:\n    image: " + "{a: " * depth + "1" + "}" * depth + "\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: "
        + "[" * depth
        + "]" * depth
        + "\n",
    ):
        plan = _load(tmp_path, text)
        pp.lint(plan)


# --- lint stays linear: one finding per host port ---------------------------------------


def _compose_lines(entries: list[str]) -> str:
    return "services:\n  web:\n    image: nginx\n    ports:\n" + "".join(
        f'      - "{e}"\n' for e in entries
    )


@pytest.mark.parametrize(
    "text",
    [
        _compose_lines([f"8080:{1000 + i}" for i in range(1000)]),  # one service, 1,000 entries
        "services:\n"
        + "".join(f"  s{i}:\n    ports: ['8080:80']\n" for i in range(1000)),  # 1,000 services
        _compose_lines(["1-20000:1-20000", "127.0.0.1:1-20000:1-20000"]),  # every port, twice
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
        + "".join(
            f"    - {{name: c{i}, ports: [{{containerPort: {1000 + i}, hostPort: 8080}}]}}\n"
            for i in range(1000)
        ),  # one pod, 1,000 containers on hostPort 8080
    ],
    ids=["entries", "services", "ranges", "pod"],
)
def test_conflicts_are_reported_once_per_port(text: str, tmp_path: Path) -> None:
    import json

    from portkit.render.plan import findings_json

    findings = pp.lint(_load(tmp_path, text, "many.yaml"))
    conflicts = [f for f in findings if f.rule == "host-port-conflict"]
    assert len(conflicts) == 1, [c.message[:200] for c in conflicts[:5]]
    # a few findings per entry at most, never one per pair
    assert len(json.dumps(findings_json(findings))) < 1_000_000
    if "1-20000" not in text:
        assert "1000 bindings of this port collide" in conflicts[0].message
        assert conflicts[0].message.endswith(" and 994 more")


def test_a_crowded_port_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(_compose_lines([f"8080:{1000 + i}" for i in range(1000)]))
    r = _portkit("plan", "lint", str(path))
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stdout.count("host-port-conflict") == 2  # the finding and its hint


def test_the_same_file_twice_is_read_once(tmp_path: Path) -> None:
    path = tmp_path / "f.yaml"
    path.write_text(_compose_lines(["8080:80", "5432:5432"]))
    twice = pp.load_plan([str(path), str(tmp_path / "." / "f.yaml")], environ={})
    assert len(twice.files) == 1
    assert not [f for f in pp.lint(twice) if f.rule == "host-port-conflict"]


# --- interpolation and .env files: bounded depth, linear time ---------------------------


def test_nested_defaults_3000_deep_are_an_error_not_a_recursion_error() -> None:
    text = "${A:-" * 3000 + "x" + "}" * 3000
    result = interpolate(text, {})
    assert result.errors and f"nested more than {MAX_DEPTH} levels" in result.errors[0]
    assert len(result.errors[0]) < 400
    unclosed = "${A:-" * 3000 + "x"
    assert "invalid interpolation format" in interpolate(unclosed, {}).errors[0]
    assert interpolate("${A:-" * 50 + "80" + "}" * 50, {}).text == "80"


def test_deep_defaults_in_a_compose_file_are_a_finding(tmp_path: Path) -> None:
    text = "services:\n  web:\n    ports: ['" + "${A:-" * 3000 + "80" + "}" * 3000 + ":80']\n"
    findings = pp.lint(_load(tmp_path, text, "deep.yaml"))
    assert sorted(f.rule for f in findings) == ["invalid-interpolation", "invalid-port"]


def test_interpolation_results_are_capped() -> None:
    result = interpolate("$A" * 10_000, {"A": "x" * 10_000})  # would be 100 MB
    assert result.errors and "longer than" in result.errors[0]


def test_env_file_unclosed_quote_before_100k_lines_is_refused_at_once(tmp_path: Path) -> None:
    env = tmp_path / "bad.env"
    env.write_text('A="unclosed\n' + "".join(f"B{i}=1\n" for i in range(100_000)))
    compose = tmp_path / "compose.yaml"
    compose.write_text("services:\n  web:\n    ports: ['${P:-8080}:80']\n")
    r = _portkit("plan", "lint", str(compose), "--env-file", str(env))
    _one_line_error(r, 'line 1: unterminated quoted value "unclosed')


@pytest.mark.parametrize(
    "text",
    [
        "".join(f"K{i}=v{i} # c\n" for i in range(100_000)),
        "A='" + "x\n" * 100_000 + "'\n",
        'A="' + "\\n" * 100_000 + '"\n',
        "# c\n" * 100_000 + "A=1\n",
        "A=" + "$B" * 50_000 + "\n",
    ],
    ids=["lines", "single-quoted", "escapes", "comments", "references"],
)
def test_env_files_parse_in_linear_time(text: str) -> None:
    values = parse_env_file(text, {"B": "b"})
    assert values


def test_a_long_extends_chain_is_refused_without_recursion(tmp_path: Path) -> None:
    text = "services:\n" + "".join(f"  s{i}: {{extends: s{i + 1}}}\n" for i in range(5000))
    text += "  s5000: {image: x, ports: ['80:80']}\n"
    with pytest.raises(PlanError, match="a chain of more than 64 services"):
        _load(tmp_path, text)
    short = "services:\n" + "".join(f"  s{i}: {{extends: s{i + 1}}}\n" for i in range(60))
    plan = _load(tmp_path, short + "  s60: {image: x, ports: ['80:80']}\n")
    assert len(plan.mappings) == 61


def test_an_include_of_dev_zero_stops_at_the_cap(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match="larger than 32 MB"):
        _load(tmp_path, "include: [/dev/zero]\nservices: {}\n")


# --- arguments ----------------------------------------------------------------------------


@pytest.fixture
def compose(tmp_path: Path) -> Path:
    path = tmp_path / "compose.yaml"
    path.write_text("services:\n  web:\n    ports: ['${P:-18999}:80']\n")
    return path


@pytest.mark.parametrize("host", ["", "[]", "a b", "-x", "x" * 300, "host\n", "a..b"])
def test_check_host_must_be_a_name_or_an_address(host: str, compose: Path) -> None:
    plan = pp.load_plan([str(compose)], environ={})
    with pytest.raises(UsageError, match="is not a host name or an IP address"):
        pp.check(plan, host=host)


def test_an_empty_host_on_the_command_line(compose: Path) -> None:
    r = _portkit("plan", "check", str(compose), "--host", "")
    _one_line_error(r, "is not a host name or an IP address")


def test_check_host_takes_a_bracketed_ipv6_address(compose: Path) -> None:
    r = _portkit("plan", "check", str(compose), "--host", "[::1]", "--json")
    assert r.returncode in (0, 1), r.stderr
    import json

    assert json.loads(r.stdout)[0]["where"] == "::1"


def test_env_file_may_be_a_pipe(compose: Path) -> None:
    read, write = os.pipe()
    os.write(write, b"P=18123\n")
    os.close(write)
    try:
        r = _portkit(
            "plan", "explain", str(compose), "--env-file", f"/dev/fd/{read}", pass_fds=(read,)
        )
    finally:
        os.close(read)
    assert r.returncode == 0, r.stderr
    assert "18123" in r.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--list-rules", "--sarif"], "drop --sarif"),
        (["--list-rules", "x.yaml"], "drop FILE"),
        (["--sarif", "--json", "x.yaml"], "exclusive"),
    ],
)
def test_conflicting_lint_flags_are_a_usage_error(args: list[str], says: str) -> None:
    _one_line_error(_portkit("plan", "lint", *args), says)


# --- every reader validates types ----------------------------------------------------------

FORMS = sorted((Path(__file__).parent / "data" / "plan" / "forms").glob("*.yaml"))
WRONG = [1, "x", [1], {"a": 1}, None, True, 1.5, [], {}, [{"a": [1]}], "${", -1, 70000]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


def test_ingress_rules_of_the_wrong_type_is_a_finding(tmp_path: Path) -> None:
    plan = _load(
        tmp_path,
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: x}\nspec: {rules: 1}\n",
    )
    (finding,) = pp.lint(plan)
    assert finding.rule == "invalid-type"
    assert "cannot unmarshal number into Go struct field IngressSpec.spec.rules" in (
        finding.message
    )


@settings(max_examples=80)
@given(data=st.data())
def test_any_value_of_any_type_anywhere_is_a_finding_or_a_plan_error(data: Any) -> None:
    """Replace one value of a real file, at any depth, by a value of another type."""
    import copy

    import yaml

    from portkit.render import Style
    from portkit.render.plan import explain_text, mapping_json

    path = data.draw(st.sampled_from(FORMS))
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    index = data.draw(st.integers(0, len(docs) - 1))
    where = data.draw(st.sampled_from(_paths(docs[index])[1:]))
    value = data.draw(st.sampled_from(WRONG))
    docs = copy.deepcopy(docs)
    target = docs[index]
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    text = yaml.safe_dump_all(docs)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        plan = pp.load_plan([f.name], environ={})
    except PlanError:
        return
    finally:
        os.unlink(f.name)
    pp.lint(plan)
    explain_text(plan, Style(False))
    [mapping_json(m) for m in plan.mappings]

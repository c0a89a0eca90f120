"""The JSON Schema shipped for the plan format agrees with the reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest

import portkit.plan as pp
from portkit.plan._yaml import load_documents

ROOT = Path(__file__).parent.parent
PLANS = [
    *sorted((ROOT / "examples").glob("*/portkit-plan.yaml")),
    ROOT / "tests/data/plan/forms/plan-forms.yaml",
    ROOT / "tests/data/plan/rules/plan-connections.yaml",
]


def _validator() -> jsonschema.Draft202012Validator:
    schema = pp.schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _doc(text: str) -> Any:
    return load_documents(text)[0]


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_valid_plans_pass_the_schema(path: Path) -> None:
    errors = list(_validator().iter_errors(_doc(path.read_text())))
    assert not errors, [e.message for e in errors]


def test_the_invalid_plan_fails_both_the_schema_and_the_reader() -> None:
    path = ROOT / "tests/data/plan/rules/plan-invalid.yaml"
    errors = list(_validator().iter_errors(_doc(path.read_text())))
    assert len(errors) >= 5
    plan = pp.load_plan([str(path)])
    assert {f.rule for f in pp.lint(plan)} >= {"invalid-plan", "invalid-port", "invalid-protocol"}


@pytest.mark.parametrize(
    "text",
    [
        "portkit: plan/v1\nservices: {a: {ports: [{port: 80, exposure: everywhere}]}}\n",
        "portkit: plan/v1\nservices: {a: {ports: [{port: 70000}]}}\n",
        "portkit: plan/v1\nservices: {a: {ports: [{port: 80, protocol: icmp}]}}\n",
        "portkit: plan/v1\nservices: {a: {listens: [80]}}\n",
        "portkit: plan/v1\nservices: {external: {ports: [80]}}\n",
        "portkit: plan/v1\nservices: {a: {}}\nconnections: [{from: a}]\n",
        "portkit: plan/v1\nservices: {a: {ports: [{port: 80, forwards_to: b}]}}\n",
    ],
)
def test_schema_and_reader_reject_the_same_mistakes(text: str, tmp_path: Path) -> None:
    assert list(_validator().iter_errors(_doc(text)))
    f = tmp_path / "plan.yaml"
    f.write_text(text)
    findings = pp.lint(pp.load_plan([str(f)]))
    assert any(x.severity == pp.Severity.ERROR for x in findings), text

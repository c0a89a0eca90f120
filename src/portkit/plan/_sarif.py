"""Lint findings as SARIF 2.1.0, the format code-scanning tools read (GitHub, GitLab, Azure).

Pure: findings in, one JSON-ready dict out. Every rule of the table is listed in
``tool.driver.rules`` (so a clean run still documents them); each result points at
its file and line and names the object in ``logicalLocations``.
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any

from portkit.plan._rules import RULES, Severity

if TYPE_CHECKING:
    from collections.abc import Sequence

    from portkit.plan._rules import Finding, Rule

__all__ = ["SARIF_SCHEMA", "to_sarif"]

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVELS = {Severity.ERROR: "error", Severity.WARNING: "warning", Severity.INFO: "note"}
#: Default security-severity scores, for the tools that rank by them.
_SCORES = {Severity.ERROR: "7.0", Severity.WARNING: "5.0", Severity.INFO: "2.0"}


def _uri(path: str) -> str:
    if path == "-":
        return "stdin"
    if os.path.isabs(path):
        from pathlib import Path

        return Path(path).as_uri()
    # Code-scanning tools match results to files by repository-relative path.
    return os.path.normpath(path).replace(os.sep, "/")


def _rule_object(rule: Rule) -> dict[str, Any]:
    name = "".join(part.capitalize() for part in rule.id.split("-"))
    return {
        "id": rule.id,
        "name": name,
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.title},
        "help": {"text": rule.hint, "markdown": rule.hint},
        "defaultConfiguration": {"level": _LEVELS[rule.severity]},
        "properties": {"tags": ["ports", "network"], "security-severity": _SCORES[rule.severity]},
    }


def to_sarif(
    findings: Sequence[Finding], *, version: str, rules: Sequence[Rule] = RULES
) -> dict[str, Any]:
    """One SARIF log with one run of portkit's plan lint.

    Args:
        findings: what :func:`~portkit.plan.lint` returned.
        version: portkit's version, for ``tool.driver.version``.
        rules: the rule table (every rule is described, found or not).
    """
    index = {r.id: i for i, r in enumerate(rules)}
    results = []
    for f in findings:
        location: dict[str, Any] = {"artifactLocation": {"uri": _uri(f.file)}}
        if f.line:
            location["region"] = {"startLine": f.line}
        digest = hashlib.sha256(f"{f.rule}\0{f.file}\0{f.object}\0{f.message}".encode()).hexdigest()
        results.append(
            {
                "ruleId": f.rule,
                "ruleIndex": index[f.rule],
                "level": _LEVELS[f.severity],
                "message": {"text": f"{f.message} ({f.object})"},
                "locations": [
                    {
                        "physicalLocation": location,
                        "logicalLocations": [{"name": f.object, "kind": "object"}],
                    }
                ],
                "partialFingerprints": {"portkitFinding/v1": digest[:32]},
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "portkit",
                        "version": version,
                        "informationUri": "https://pypi.org/project/portkit/",
                        "rules": [_rule_object(r) for r in rules],
                    }
                },
                "results": results,
            }
        ],
    }

"""Plan a stack's ports: compose files, Kubernetes manifests and portkit plans.

Read files into one :class:`Plan`, explain it, lint it, check it against a live host:

    >>> import portkit.plan as pp
    >>> plan = pp.load_plan(["examples/web-stack/compose.yaml"])  # doctest: +SKIP
    >>> [f.rule for f in pp.lint(plan)]                           # doctest: +SKIP
    ['datastore-public']
    >>> [r.status for r in pp.check(plan)]                        # doctest: +SKIP

Layout: ``_yaml`` reads YAML as Docker does (1.2, with lines); ``_spec`` parses the
compose port syntax; ``_interp`` does ``${VAR}``; ``_compose``, ``_kube`` and
``_native`` turn decoded files into the model of ``_model``; ``_plan`` joins files;
``_rules`` is the lint table; ``_sarif`` formats findings for code scanning;
``_check`` decides and ``_live`` observes. Only ``_io`` (files) and ``_live``
(sockets, probes) do I/O. Importing this package does not import PyYAML.
"""

from __future__ import annotations

from portkit.plan._baseline import Listener, is_baseline, snapshot_text, unexpected_listeners
from portkit.plan._check import CheckResult, check
from portkit.plan._io import load_plan
from portkit.plan._model import Exposure, Issue, PlanFile, PortMapping
from portkit.plan._plan import Plan
from portkit.plan._rules import RULES, Finding, Rule, Severity, lint
from portkit.plan._spec import PortSpec, parse_port_spec

__all__ = [
    "RULES",
    "CheckResult",
    "Exposure",
    "Finding",
    "Issue",
    "Listener",
    "Plan",
    "PlanFile",
    "PortMapping",
    "PortSpec",
    "Rule",
    "Severity",
    "check",
    "is_baseline",
    "lint",
    "load_plan",
    "parse_port_spec",
    "schema",
    "snapshot_text",
    "unexpected_listeners",
]


def schema() -> dict[str, object]:
    """The JSON Schema of the portkit plan format (package data ``schema.json``)."""
    import json
    from importlib import resources

    data: dict[str, object] = json.loads(
        resources.files("portkit.plan").joinpath("schema.json").read_text(encoding="utf-8")
    )
    return data

"""``portkit lookup``: the runner both the click command and the shortcut call."""

from __future__ import annotations

from portkit.cli._output import out, stdout_style, stdout_width
from portkit.registry import lookup
from portkit.render import to_json
from portkit.render.lookup import answers_json, answers_table

__all__ = ["write_lookup"]


def write_lookup(queries: list[str], *, as_json: bool, limit: int | None) -> int:
    """Answer every query; exit 1 when one of them found nothing at all."""
    answers = [a for q in queries for a in lookup(q, limit=limit)]
    if as_json:
        out(to_json(answers_json(answers)))
    else:
        out(answers_table(answers, stdout_style(), stdout_width()))
    return 0 if all(a.found or a.kind != "name" for a in answers) else 1

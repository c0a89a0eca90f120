"""``portkit why``: a checklist per target, one line per layer, then the verdict and fix."""

from __future__ import annotations

from portkit.render import safe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from portkit.render import Style
    from portkit.why import WhyResult

__all__ = ["why_text"]

#: ok -> the mark shown (None: not visible from here, or could not decide).
MARKS = {True: "✓", False: "✗", None: "?"}


def why_text(results: list[WhyResult], style: Style) -> str:
    """The checklists of every target, separated by a blank line."""
    blocks = []
    for r in results:
        lines = [style.bold(f"{r.target} from {r.source}")]
        for c in r.layers:
            mark = MARKS[c.ok]
            if c.ok is False:
                mark = style.red(mark)
            elif c.ok is None:
                mark = style.yellow(mark)
            else:
                mark = style.green(mark)
            lines.append(f"  {mark} {c.layer:<9} {safe(c.evidence)}")
        verdict = style.green(r.verdict) if r.reachable else style.red(r.verdict)
        lines.append(verdict)
        if r.fix:
            lines.append(f"fix: {r.fix}")
        if r.blind:
            lines.append(style.dim(f"not visible without privilege: {', '.join(r.blind)}"))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)

"""A Dockerfile's ``EXPOSE`` instructions: which ports the image says it listens on.

Pure: text in, ports out. Lines are joined at ``\\`` continuations, comments and parser
directives skipped, instructions read case-insensitively; the stage that counts is the
``build.target`` one, else the last (``FROM ... AS name`` starts a stage). A port
given through a variable (``EXPOSE $PORT``) is left out: its value is only known at
build time. Literal ports outside 0-65535 are hadolint's DL3011.

    >>> text = "FROM nginx\\nEXPOSE 80 443/tcp 53/udp \\\\\\n  8000-8001\\n"
    >>> parse_expose(text)[0]
    ((80, 80, 'tcp', 2), (443, 443, 'tcp', 2), (53, 53, 'udp', 2), (8000, 8001, 'tcp', 2))
    >>> parse_expose("FROM x\\nEXPOSE 70000\\n")[1]
    (('70000', 2),)
"""

from __future__ import annotations

import re

__all__ = ["parse_expose"]

_FROM = re.compile(r"^FROM\s+\S+(?:\s+AS\s+(\S+))?", re.IGNORECASE)
_EXPOSE = re.compile(r"^EXPOSE\s+(.*)$", re.IGNORECASE | re.DOTALL)
_PORT = re.compile(r"^(\d+)(?:-(\d+))?(?:/(\w+))?$")


def _instructions(text: str) -> list[tuple[int, str]]:
    """(line, instruction) with continuations joined and comments left out."""
    out: list[tuple[int, str]] = []
    current: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not current:
            start = number
        if line.endswith("\\"):
            current.append(line[:-1])
            continue
        current.append(line)
        out.append((start, " ".join(current)))
        current = []
    if current:
        out.append((start, " ".join(current)))
    return out


def parse_expose(
    text: str, target: str | None = None
) -> tuple[tuple[tuple[int, int, str, int], ...], tuple[tuple[str, int], ...]]:
    """The ports the ``target`` stage (None: the last) EXPOSEs, and the invalid ones.

    Returns:
        ((start, end, protocol, line), ...) and ((text, line), ...) for ports that are
        not 0-65535 (hadolint DL3011).
    """
    stages: list[tuple[str | None, list[tuple[int, int, str, int]], list[tuple[str, int]]]] = []
    for line, instruction in _instructions(text):
        found = _FROM.match(instruction)
        if found:
            stages.append((found.group(1), [], []))
            continue
        expose = _EXPOSE.match(instruction)
        if not expose or not stages:
            continue
        ports, invalid = stages[-1][1], stages[-1][2]
        for token in expose.group(1).split():
            if "$" in token:
                continue
            m = _PORT.match(token)
            if not m:
                invalid.append((token, line))
                continue
            start = int(m.group(1)) if len(m.group(1)) <= 6 else 1 << 20
            end = int(m.group(2)) if m.group(2) and len(m.group(2)) <= 6 else start
            proto = (m.group(3) or "tcp").lower()
            if start > 65535 or end > 65535 or end < start:
                invalid.append((token, line))
                continue
            ports.append((start, end, proto, line))
    if not stages:
        return (), ()
    chosen = stages[-1]
    if target is not None:
        chosen = next((s for s in stages if s[0] and s[0].lower() == target.lower()), chosen)
    return tuple(chosen[1]), tuple(chosen[2])

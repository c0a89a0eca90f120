"""Compose variable interpolation (``${VAR}``, ``${VAR:-default}``...) and ``.env`` files.

Pure functions of text and an environment mapping, following compose-go's
``template`` package and the compose-spec "Interpolation" section:

    ==================  =================================================
    ``$VAR``, ``${VAR}``  the value; unset: empty string and a warning
    ``${VAR:-default}``   default when VAR is unset or empty
    ``${VAR-default}``    default when VAR is unset
    ``${VAR:?message}``   error when VAR is unset or empty
    ``${VAR?message}``    error when VAR is unset
    ``${VAR:+other}``     other when VAR is set and not empty, else empty
    ``${VAR+other}``      other when VAR is set, else empty
    ``$$``                a literal ``$``
    ==================  =================================================

Defaults may themselves hold ``${...}`` (``${A:-${B:-80}}``).

    >>> interpolate("${WEB_PORT:-8080}:80", {}).text
    '8080:80'
    >>> r = interpolate("${HOST_IP}:5432:5432", {})
    >>> r.text, r.unset
    (':5432:5432', ('HOST_IP',))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["Interpolated", "interpolate", "parse_env_file"]

_NAME_START = frozenset("_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_NAME_CHARS = _NAME_START | frozenset("0123456789")
_OPERATORS = (":-", ":?", ":+", "-", "?", "+")


@dataclass(frozen=True)
class Interpolated:
    """The result: the text, the variables found unset, and errors (required or invalid)."""

    text: str
    unset: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()


@dataclass
class _State:
    env: Mapping[str, str]
    unset: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Invalid(Exception):
    pass


def _name(text: str, i: int) -> int:
    """End index of the variable name starting at ``i`` (== i when there is none)."""
    if i >= len(text) or text[i] not in _NAME_START:
        return i
    j = i + 1
    while j < len(text) and text[j] in _NAME_CHARS:
        j += 1
    return j


def _closing(text: str, i: int) -> int:
    """Index of the ``}`` closing a ``${`` whose argument starts at ``i``; -1 if none."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c == "$" and text.startswith("$$", i):
            i += 2
            continue
        if c == "$" and text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if c == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def _expand(text: str, st: _State) -> str:
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        end = _name(text, i + 1)
        if end > i + 1:
            out.append(_lookup(text[i + 1 : end], st))
            i = end
            continue
        if nxt != "{":
            out.append(c)  # a lone "$" is left as written, as compose-go does
            i += 1
            continue
        end = _name(text, i + 2)
        if end == i + 2:
            raise _Invalid
        name = text[i + 2 : end]
        if end < n and text[end] == "}":
            out.append(_lookup(name, st))
            i = end + 1
            continue
        op = next((o for o in _OPERATORS if text.startswith(o, end)), None)
        if op is None:
            raise _Invalid
        close = _closing(text, end + len(op))
        if close < 0:
            raise _Invalid
        arg = text[end + len(op) : close]
        out.append(_apply(name, op, arg, st))
        i = close + 1
    return "".join(out)


def _lookup(name: str, st: _State) -> str:
    value = st.env.get(name)
    if value is None:
        st.unset.append(name)
        return ""
    return value


def _apply(name: str, op: str, arg: str, st: _State) -> str:
    value = st.env.get(name)
    empty = value is None or (op.startswith(":") and value == "")
    if op in (":-", "-"):
        return _expand(arg, st) if empty else str(value)
    if op in (":?", "?"):
        if empty:
            st.errors.append(f"required variable {name} is missing a value: {_expand(arg, st)}")
            return ""
        return str(value)
    # ":+" and "+": the alternative when set (and not empty for ":+").
    return "" if empty else _expand(arg, st)


def interpolate(text: str, env: Mapping[str, str], where: str = "") -> Interpolated:
    """Substitute variables in ``text`` from ``env``.

    Args:
        text: one string value of a compose file.
        env: the variables (the process environment over the ``.env`` file).
        where: the place of ``text`` (``services.web.ports``), named in errors.

    Returns:
        The substituted text, the names found unset (each substituted by an empty
        string, as Docker does) and the errors: ``required variable X is missing a
        value: msg`` or an invalid-format message (the text is then kept as is).
    """
    if "$" not in text:
        return Interpolated(text)
    st = _State(env)
    try:
        result = _expand(text, st)
    except _Invalid:
        place = f" for {where}" if where else ""
        return Interpolated(
            text,
            errors=(
                f'invalid interpolation format{place}: "{text}"; '
                "you may need to escape any $ with another $",
            ),
        )
    return Interpolated(result, tuple(dict.fromkeys(st.unset)), tuple(st.errors))


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def _unescape(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body) and body[i + 1] in _ESCAPES:
            out.append(_ESCAPES[body[i + 1]] if body[i + 1] != "$" else "$$")
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def parse_env_file(text: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Parse a compose ``.env`` file: ``KEY=VALUE`` lines, as compose-go's dotenv reads them.

    ``export KEY=...`` is accepted; ``#`` starts a comment (in an unquoted value only
    after whitespace); single quotes are literal; double quotes take ``\\n``-style
    escapes and may span lines; unquoted and double-quoted values interpolate
    variables defined above them (or in ``environ``).

    >>> parse_env_file('# ports\\nexport WEB=8080\\nDB="5432" # pg\\nURL=${WEB:-1}/x\\n')
    {'WEB': '8080', 'DB': '5432', 'URL': '8080/x'}
    """
    values: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, raw = line.partition("=")
        key = key.strip()
        if not sep or not key:
            continue
        raw = raw.lstrip()
        scope = {**(environ or {}), **values}
        if raw.startswith("'"):
            end = raw.find("'", 1)
            values[key] = raw[1:end] if end > 0 else raw[1:]
            continue
        if raw.startswith('"'):
            body = raw[1:]
            while True:
                end = _closing_quote(body)
                if end >= 0 or i >= len(lines):
                    break
                body += "\n" + lines[i]
                i += 1
            body = body[:end] if end >= 0 else body
            values[key] = interpolate(_unescape(body), scope).text
            continue
        hash_at = next(
            (j for j, ch in enumerate(raw) if ch == "#" and (j == 0 or raw[j - 1] in " \t")), -1
        )
        if hash_at >= 0:
            raw = raw[:hash_at]
        values[key] = interpolate(raw.strip(), scope).text
    return values


def _closing_quote(body: str) -> int:
    i = 0
    while i < len(body):
        if body[i] == "\\":
            i += 2
            continue
        if body[i] == '"':
            return i
        i += 1
    return -1

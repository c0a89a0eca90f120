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

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from portkit.errors import PlanError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["MAX_DEPTH", "MAX_RESULT", "Interpolated", "interpolate", "parse_env_file"]

#: Defaults nest at most this deep (``${A:-${B:-...}}``); compose-go has no limit, but
#: nothing real nests past a handful and each level rescans the text.
MAX_DEPTH = 100
#: The longest text one interpolation may produce: ``$A$A$A...`` with a long A could
#: otherwise grow without bound.
MAX_RESULT = 1 << 20

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
    depth: int = 0
    size: int = 0


class _Invalid(Exception):
    def __init__(self, why: str = "") -> None:
        super().__init__(why)
        self.why = why


def _name(text: str, i: int) -> int:
    """End index of the variable name starting at ``i`` (== i when there is none)."""
    if i >= len(text) or text[i] not in _NAME_START:
        return i
    j = i + 1
    while j < len(text) and text[j] in _NAME_CHARS:
        j += 1
    return j


def _closing(text: str, i: int) -> int:
    """Index of the ``}`` closing a ``${`` whose argument starts at ``i``; -1 if none.

    As compose-go's ``getFirstBraceClosingIndex`` counts (template.go, current v2):
    every ``{`` opens a level and the character after it is skipped, every ``}``
    closes one, so ``${VAR:-{x}}`` closes at the last brace. When the levels never
    come back to zero, the last ``}`` of the line closes (where the template pattern's
    greedy ``(.*)}`` ends); the pattern never crosses a line break.

    >>> _closing("${A:-{x}}", 5), _closing("${A:-{{x}", 5), _closing("${A:-x\\n}", 5)
    (8, 8, -1)
    """
    depth = 0
    last = -1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            break
        if c == "}":
            if depth == 0:
                return i
            depth -= 1
            last = i
        elif c == "{":
            depth += 1
            i += 1
        i += 1
    return last


def _expand(text: str, st: _State) -> str:
    out: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 >= n:
            nxt_dollar = text.find("$", i)
            stop = n if nxt_dollar < 0 or nxt_dollar == n - 1 else nxt_dollar
            if stop == i:
                stop = i + 1
            _grow(st, stop - i)
            out.append(text[i:stop])
            i = stop
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


def _grow(st: _State, size: int) -> None:
    st.size += size
    if st.size > MAX_RESULT:
        raise _Invalid(f"the result is longer than {MAX_RESULT // 1024} KB")


def _lookup(name: str, st: _State) -> str:
    value = st.env.get(name)
    if value is None:
        st.unset.append(name)
        return ""
    _grow(st, len(value))
    return str(value)


def _nested(arg: str, st: _State) -> str:
    st.depth += 1
    if st.depth > MAX_DEPTH:
        raise _Invalid(f"defaults nested more than {MAX_DEPTH} levels deep")
    try:
        return _expand(arg, st)
    finally:
        st.depth -= 1


def _apply(name: str, op: str, arg: str, st: _State) -> str:
    value = st.env.get(name)
    empty = value is None or (op.startswith(":") and value == "")
    if op in (":-", "-"):
        if empty:
            return _nested(arg, st)
        _grow(st, len(value or ""))
        return str(value)
    if op in (":?", "?"):
        if empty:
            st.errors.append(f"required variable {name} is missing a value: {_nested(arg, st)}")
            return ""
        _grow(st, len(value or ""))
        return str(value)
    # ":+" and "+": the alternative when set (and not empty for ":+").
    return "" if empty else _nested(arg, st)


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
    except _Invalid as exc:
        place = f" for {where}" if where else ""
        shown = text if len(text) <= 80 else f"{text[:60]}...{text[-10:]}"
        if exc.why:
            message = f'invalid interpolation{place}: "{shown}": {exc.why} (portkit\'s limit)'
        else:
            message = (
                f'invalid interpolation format{place}: "{shown}"; '
                "you may need to escape any $ with another $"
            )
        return Interpolated(text, errors=(message,))
    return Interpolated(result, tuple(dict.fromkeys(st.unset)), tuple(st.errors))


# --- .env files, as compose-go's dotenv package reads them ----------------------------
#
# compose-go (pkg dotenv, parser.go) reads a .env file statement by statement, not line
# by line. python-dotenv was weighed and differs from compose-go's own tests where users
# feel it: it skips a line it cannot parse with a logged warning (compose refuses the
# file: "line 3: unterminated quoted value"), has no ``KEY: value`` form and no bare
# ``KEY`` (inherit from the environment), decodes ``\0123`` as Python's octal ``\012`` +
# "3", interpolates only ``${VAR}``/``${VAR:-default}``, and lets earlier lines win over
# the environment when interpolating. Hence this small port.

#: compose-go ``isSpace``: blanks that are not a line break.
_BLANK_CHARS = "\t\v\f\r \x85\xa0"
_BLANKS = frozenset(_BLANK_CHARS)
_EXPORT = re.compile(r"export[\t\n\f\r ]")
#: Where an unquoted value's comment starts: a "#" after one of those blanks.
_COMMENT = re.compile(f"[{re.escape(_BLANK_CHARS)}]#")
#: compose-go ``escapeRegex``: the escapes a double-quoted value takes.
_ESCAPE = re.compile(r'\\(?:[abfnrtv$"\\]|0[0-7]{0,3})')
_ESCAPE_CHARS = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "\\": "\\",
    "$": "$$",  # a literal $ for the interpolation that follows
}


def _unescape(match: re.Match[str]) -> str:
    body = match.group(0)[1:]
    if body[0] == "0":
        # compose-go rewrites \0NNN to Go's \NNN, which needs exactly three digits.
        digits = body[1:]
        return chr(int(digits, 8)) if len(digits) == 3 and int(digits, 8) < 256 else "\\" + body
    return _ESCAPE_CHARS[body]


class _EnvError(Exception):
    def __init__(self, pos: int, message: str) -> None:
        super().__init__(message)
        self.pos = pos
        self.message = message


def parse_env_file(
    text: str, environ: Mapping[str, str] | None = None, source: str = ".env"
) -> dict[str, str]:
    """Parse a compose ``.env`` file exactly as compose-go's dotenv does.

    * ``KEY=VALUE``, ``KEY: VALUE`` and ``export KEY=VALUE`` (any blank after
      ``export``); a bare ``KEY`` takes the value from ``environ`` if it is set there.
    * Unquoted values end at the line break; `` #`` starts a comment; trailing
      blanks go. They are interpolated.
    * ``'single'`` quotes are literal except ``\\'``, and may span lines.
    * ``"double"`` quotes take ``\\a \\b \\f \\n \\r \\t \\v \\" \\\\ \\$`` and ``\\0NNN``
      (octal), may span lines, and are interpolated.
    * Interpolation (``${VAR:-default}`` and the rest) looks in ``environ`` first,
      then at the keys defined above.
    * A key holds letters, digits, ``_ . - [ ]``; anything else, a space in a key,
      an unterminated quote or a failed ``${VAR:?message}`` refuses the whole file,
      naming the line, as ``docker compose`` does.

    Linear in the size of the text, however it is quoted.

    >>> parse_env_file('# ports\\nexport WEB=8080\\nDB="5432" # pg\\nURL=${WEB:-1}/x\\nX: y\\n')
    {'WEB': '8080', 'DB': '5432', 'URL': '8080/x', 'X': 'y'}
    >>> parse_env_file("HOME\\nA=${HOME}\\n", {"HOME": "/root"})
    {'HOME': '/root', 'A': '/root'}

    Raises:
        PlanError: ``.env:3: unterminated quoted value "abc`` and the like.
    """
    env = environ or {}
    out: dict[str, str] = {}
    try:
        _parse_env(text, env, out)
    except _EnvError as exc:
        line = text.count("\n", 0, exc.pos) + 1
        raise PlanError(f"{source}: line {line}: {exc.message}", file=source, line=line) from None
    return out


def _statement_start(text: str, pos: int) -> int:
    """compose-go ``getStatementStart``: skip blanks, line breaks and comment lines."""
    n = len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if pos >= n or text[pos] != "#":
            return pos
        nl = text.find("\n", pos)
        if nl < 0:
            return n
        pos = nl


def _parse_env(text: str, env: Mapping[str, str], out: dict[str, str]) -> None:
    n = len(text)
    pos = _statement_start(text, 0)
    while pos < n:
        start = pos
        if _EXPORT.match(text, pos):
            pos += len("export")
            while pos < n and text[pos] in _BLANKS:
                pos += 1
        # compose-go locateKeyName: the key ends at "=", ":" or a line break.
        i = pos
        end = None
        while i < n:
            c = text[i]
            if c in "=:\n":
                end = c
                break
            if not (c in _BLANKS or c in "_.-[]" or c.isalnum()):
                nl = text.find("\n", pos)
                first_line = text[pos : n if nl < 0 else nl]
                raise _EnvError(
                    start,
                    f"unexpected character {_go_quote(c)} in variable name {_go_quote(first_line)}",
                )
            i += 1
        key = text[pos:i].rstrip()
        if " " in key:
            raise _EnvError(start, "key cannot contain a space")
        if end != "=" and end != ":":
            # A bare KEY (up to a line break, or the end of the file): inherited.
            if key and key in env:
                out[key] = env[key]
            pos = _statement_start(text, i)
            continue
        pos = i + 1
        while pos < n and text[pos] in _BLANKS:
            pos += 1
        value, pos = _env_value(text, pos, env, out, start)
        if key:
            out[key] = value
        pos = _statement_start(text, pos)


def _env_value(
    text: str, pos: int, env: Mapping[str, str], out: dict[str, str], start: int
) -> tuple[str, int]:
    """compose-go extractVarValue: (the value, where the rest of the text starts)."""
    n = len(text)
    quote = text[pos] if pos < n and text[pos] in "'\"" else None
    if quote is None:
        nl = text.find("\n", pos)
        nl = n if nl < 0 else nl
        line = text[pos:nl]
        comment = _COMMENT.search(line)  # the first "#" after a blank: compose-go's scan
        value = (line[: comment.start()] if comment else line).strip(_BLANK_CHARS)
        return _env_interpolate(value, env, out, start), nl
    chars: list[str] = []
    stop = re.compile(r"[\\" + quote + "]")
    i = pos + 1
    while True:
        m = stop.search(text, i)
        if m is None:
            nl = text.find("\n", pos)
            raise _EnvError(pos, f"unterminated quoted value {text[pos : n if nl < 0 else nl]}")
        j = m.start()
        chars.append(text[i:j])
        if text[j] == quote:
            i = j + 1
            break
        # A backslash: an escaped quote loses it, any other escape keeps it for later.
        if j + 1 >= n:
            chars.append("\\")
            i = j + 1
            continue
        nxt = text[j + 1]
        chars.append(nxt if nxt == quote else "\\" + nxt)
        i = j + 2
    value = "".join(chars)
    if quote == '"':
        value = _env_interpolate(_ESCAPE.sub(_unescape, value), env, out, start)
    return value, i


def _env_interpolate(value: str, env: Mapping[str, str], out: dict[str, str], start: int) -> str:
    if "$" not in value:
        return value
    result = interpolate(value, _Chain(env, out))
    if result.errors:
        raise _EnvError(start, result.errors[0])
    return result.text


class _Chain(dict[str, str]):
    """The environment first, then the keys defined above (compose-go's lookup order)."""

    def __init__(self, first: Mapping[str, str], second: Mapping[str, str]) -> None:
        super().__init__()
        self.first = first
        self.second = second

    def get(self, key: str, default: Any = None) -> Any:
        if key in self.first:
            return self.first[key]
        return self.second.get(key, default)


def _go_quote(text: str) -> str:
    """Go's %q for the words of an error."""
    return json.dumps(text, ensure_ascii=False)

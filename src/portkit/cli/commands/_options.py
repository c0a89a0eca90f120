"""Options and parameter types shared by the commands."""

from __future__ import annotations

from typing import Any

import click

from portkit.errors import ParseError
from portkit.model import PortRange, Protocol, parse_float, parse_int

__all__ = [
    "MAX_PID",
    "PORT",
    "PORT_RANGE",
    "PROTOCOL",
    "Count",
    "Seconds",
    "json_option",
]

#: The largest pid Linux hands out (``kernel.pid_max`` can go up to 2**22).
MAX_PID = 4_194_304

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document instead of a table."
)


class _ModelType(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A click type backed by one of portkit's parsers: a ParseError becomes a usage error."""

    def __init__(self, name: str, parse: Any) -> None:
        self.name = name
        self._parse = parse

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self._parse(value)
        except ParseError as exc:
            self.fail(str(exc), param, ctx)


PORT_RANGE = _ModelType("START-END", PortRange.parse)
PROTOCOL = _ModelType("PROTO", Protocol.parse)


def _what(param: click.Parameter | None) -> str:
    names = getattr(param, "opts", None) or []
    return max(names, key=len) if names else "value"


class Count(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A whole number in ``low..high`` through portkit's bounded parser (never a
    5,000-digit int conversion)."""

    name = "integer"

    def __init__(self, low: int, high: int) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return parse_int(value, what=_what(param), low=self.low, high=self.high)
        except ParseError as exc:
            self.fail(str(exc), param, ctx)


class Seconds(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A finite number of seconds in ``low..high``: NaN and infinities are refused,
    as are intervals so small they would spin."""

    name = "seconds"

    def __init__(self, low: float, high: float, *, low_open: bool = False) -> None:
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return parse_float(
                value, what=_what(param), low=self.low, high=self.high, low_open=self.low_open
            )
        except ParseError as exc:
            self.fail(str(exc), param, ctx)


#: A port number option (0 allowed: "any port").
PORT = Count(0, 65535)


#: ``--from WHERE``: where a probe (or a client) runs: a container, an ``ip netns``
#: namespace, or a process's namespace (check, wait, scan, connect).
from_option = click.option(
    "--from",
    "origin",
    metavar="container:NAME|netns:NAME|pid:PID",
    help="Run from inside that network namespace (setns in a worker; names resolve "
    "with its /etc/hosts and resolv.conf).",
)


def origin_of(text: str | None) -> Any:
    """The parsed ``--from`` (None: here)."""
    from portkit.probe import parse_origin

    return parse_origin(text) if text is not None else None

"""Options and parameter types shared by the commands."""

from __future__ import annotations

from typing import Any

import click

from portkit.errors import ParseError
from portkit.model import PortRange, Protocol

__all__ = ["PORT_RANGE", "PROTOCOL", "json_option"]

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

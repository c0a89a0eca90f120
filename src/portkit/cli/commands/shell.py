"""``portkit completion``: shell completion scripts, from click."""

from __future__ import annotations

import click
from click.shell_completion import get_completion_class


@click.command(
    "completion",
    epilog="""\b
Examples:
  portkit completion bash > /etc/bash_completion.d/portkit
  eval "$(portkit completion zsh)"
  portkit completion fish > ~/.config/fish/completions/portkit.fish""",
)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell: str) -> int:
    """Print the completion script for SHELL."""
    from portkit.cli._app import cli

    cls = get_completion_class(shell)
    assert cls is not None
    comp = cls(cli, {}, "portkit", "_PORTKIT_COMPLETE")
    click.echo(comp.source())
    return 0

"""The click application: the root group, lazily loaded commands, error mapping.

Commands live one capability per module under ``portkit.cli.commands`` and are
imported only when run, so ``portkit --help`` and shell completion stay quick.
Every error reaches the user as one line on stderr with the exit code its class
carries (``portkit.errors``): 2 for bad input, 3 for the environment.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from portkit._version import __version__
from portkit.cli._output import err
from portkit.errors import PortkitError

__all__ = ["COMMANDS", "cli", "run"]

#: name -> (module, attribute, one-line help). The help is here so that listing
#: the commands does not import them.
COMMANDS: dict[str, tuple[str, str, str]] = {
    # know
    "lookup": (
        "portkit.cli.commands.know",
        "lookup_cmd",
        "What a port is for: the registry and everyday use.",
    ),
    "free": (
        "portkit.cli.commands.know",
        "free_cmd",
        "Ports that are free right now (bind-tested).",
    ),
    # see
    "ls": (
        "portkit.cli.commands.see",
        "ls_cmd",
        "List sockets like ss/netstat (-tulnpa46e), with owners, roles and --json.",
    ),
    "who": (
        "portkit.cli.commands.see",
        "who_cmd",
        "Which processes own a port, and its connections; --kill to stop them.",
    ),
    "stats": (
        "portkit.cli.commands.see",
        "stats_cmd",
        "Socket counts, accept queues, TIME-WAIT and ephemeral port use.",
    ),
    "kill": (
        "portkit.cli.commands.kill",
        "kill_cmd",
        "Close the sockets a filter matches (like ss -K): peers get a reset.",
    ),
    # reach
    "check": (
        "portkit.cli.commands.reach",
        "check_cmd",
        "Is HOST:PORT reachable now? State, reason, ms; --tls, --http, --banner.",
    ),
    "wait": (
        "portkit.cli.commands.reach",
        "wait_cmd",
        "Wait until ports accept connections (or are free), then run a command.",
    ),
    "scan": (
        "portkit.cli.commands.reach",
        "scan_cmd",
        "Scan hosts' TCP/UDP ports with nmap's states, as fast as nmap -sT.",
    ),
    "why": (
        "portkit.cli.commands.why",
        "why_cmd",
        "Why can't a client reach HOST:PORT? Every layer in order, the first that breaks.",
    ),
    # connect and forward
    "serve": (
        "portkit.cli.commands.forward",
        "serve_cmd",
        "A small echo, discard or http server (TCP and UDP) for testing a path.",
    ),
    "connect": (
        "portkit.cli.commands.forward",
        "connect_cmd",
        "A netcat-like client: stdin to a TCP/UDP endpoint, the answer to stdout.",
    ),
    "forward": (
        "portkit.cli.commands.forward",
        "forward_cmd",
        "Forward ports (docker -p / ssh -L specs), TCP and UDP, in one process.",
    ),
    # plan
    "plan": (
        "portkit.cli.commands.plan",
        "plan_group",
        "A stack's port plan (compose, Kubernetes, plan YAML): explain, lint, check.",
    ),
    # watch
    "top": (
        "portkit.cli.commands.watch",
        "top_cmd",
        "Live view: listeners, connections, states over time, ephemeral use.",
    ),
    "exporter": (
        "portkit.cli.commands.watch",
        "exporter_cmd",
        "Serve socket metrics to Prometheus (/metrics), read at scrape time.",
    ),
    # shell
    "completion": (
        "portkit.cli.commands.shell",
        "completion_cmd",
        "Print the shell completion script (bash, zsh, fish).",
    ),
    # `portkit` alone (hidden from the listing)
    "overview": (
        "portkit.cli.commands.see",
        "overview_cmd",
        "What listens on this machine and what needs attention (= portkit alone).",
    ),
}


#: Commands that work but are not listed in ``portkit --help``.
HIDDEN = frozenset({"overview"})


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, from :data:`COMMANDS`."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None:
            return None
        module, attr, _ = spec
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, spec[2]) for name, spec in COMMANDS.items() if name not in HIDDEN]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


ROOT_HELP = """Ports and sockets for DevOps: know, see, reach, forward, plan, watch.

\b
Examples:
  portkit                           overview of this machine
  portkit --json                    the same, as JSON
  portkit lookup 5432               what is port 5432 for?
  portkit ls -tlnp                  what listens here, and who owns it
  portkit check db.internal:5432    is it reachable from here?
  portkit wait 127.0.0.1:5432 -- ./migrate
  portkit forward 8080:localhost:3000
  portkit plan lint compose.yaml    will these ports collide or leak?
  portkit top                       watch it live
"""


def _overview(ctx: click.Context, as_json: bool) -> int:
    """``portkit`` alone: the overview when the see capability provides one."""
    command = cli.get_command(ctx, "overview")
    if command is None:
        click.echo(ctx.get_help())
        return 0
    return int(ctx.invoke(command, as_json=as_json) or 0)


@click.group(
    cls=LazyGroup,
    help=ROOT_HELP,
    invoke_without_command=True,
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
        "terminal_width": 100,
    },
)
@click.version_option(__version__, "-V", "--version", prog_name="portkit")
@click.option("--json", "as_json", is_flag=True, help="The overview as one JSON document.")
@click.pass_context
def cli(ctx: click.Context, as_json: bool) -> int | None:
    if ctx.invoked_subcommand is None:
        return _overview(ctx, as_json)
    if as_json:
        raise click.UsageError(
            f"--json goes after the command: portkit {ctx.invoked_subcommand} --json"
        )
    return None


#: An error line longer than this is cut in the middle: a bad 5,000-character argument
#: is named, not echoed back whole.
MAX_ERROR_LINE = 400


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def _error_line(args: list[str], message: str) -> str:
    """``portkit CMD: error: MESSAGE`` on one line of at most :data:`MAX_ERROR_LINE`."""
    line = f"{_command_name(args)}: error: {_one_line(message)}"
    if len(line) > MAX_ERROR_LINE:
        keep = MAX_ERROR_LINE // 2 - 3
        line = f"{line[:keep]} ... {line[-keep:]}"
    return line


def _command_name(args: list[str]) -> str:
    return f"portkit {args[0]}" if args and args[0] in COMMANDS else "portkit"


def run(args: list[str]) -> int:
    """Run the click application on ``args``; map every error to one line and a code."""
    bad = next((a for a in args if "\0" in a), None)
    if bad is not None:
        # A real command line cannot carry one (argv is C strings); a caller can.
        err(_error_line(args, f"argument {bad!r} contains a NUL character"))
        return 2
    try:
        result: Any = cli.main(args, prog_name="portkit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        err("portkit: aborted")
        return 130
    except click.ClickException as exc:
        err(_error_line(args, exc.format_message()))
        return exc.exit_code
    except PortkitError as exc:
        err(_error_line(args, str(exc)))
        return exc.exit_code
    except OSError as exc:
        # Anything the capabilities did not translate is still an environment failure,
        # reported in one line rather than as a traceback.
        err(_error_line(args, str(exc.strerror or exc)))
        return 3
    finally:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            from portkit.cli._output import discard_stdout

            discard_stdout()
    return result if isinstance(result, int) else 0

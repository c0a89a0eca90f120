"""``portkit why``: the layers between a client and a port, and the first that breaks."""

from __future__ import annotations

import click

from portkit.cli._output import out, stdout_style
from portkit.cli.commands._options import Seconds, json_option
from portkit.render import to_json


@click.command(
    "why",
    epilog="""\b
Examples:
  portkit why db:5432                      why can't this host reach db on 5432?
  portkit why --from container:web db:5432 ... from inside the container web
  portkit why --from netns:lab 10.0.0.5:80 --json
  portkit why localhost:8080               the IPv6-first trap, a 127.0.0.1-only server
  portkit why --plan compose.yaml web:80   where compose publishes web's port 80
\b
Exit codes: 0 reachable, 1 a layer blocks it, 2 bad input, 3 not enough privilege
to look at a layer (it says which).""",
)
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@click.option(
    "--from",
    "source",
    metavar="WHERE",
    help="Where the client stands: container:NAME|ID, netns:NAME or pid:PID (default: here).",
)
@click.option("--udp", is_flag=True, help="Ask about UDP (targets without /tcp or /udp).")
@click.option(
    "--plan",
    "plans",
    multiple=True,
    metavar="FILE",
    help="Compose files or manifests: a TARGET may then be one of their SERVICE:PORT "
    "(the port inside; asked where the plan publishes it). Repeatable.",
)
@click.option(
    "--timeout",
    type=Seconds(0.05, 60),
    default=2.0,
    show_default=True,
    help="Seconds the probe waits.",
)
@json_option
def why_cmd(
    targets: tuple[str, ...],
    source: str | None,
    udp: bool,
    plans: tuple[str, ...],
    timeout: float,
    as_json: bool,
) -> int:
    """Walk every layer a packet meets on its way from the client to TARGET (name, route,
    firewall, NAT, listener, the client's own limits) and name the first one that stops
    it, with the evidence and the fix; a real connection from the client's side checks
    the prediction. TARGET is HOST:PORT[/PROTO] (the port may be a service name), or
    SERVICE:PORT of a --plan."""
    from portkit.render.why import why_text
    from portkit.why import why

    results = why(list(targets), source=source, udp=udp, timeout=timeout, plan=plans)
    if as_json:
        out(to_json([r.as_json() for r in results]))
    else:
        out(why_text(results, stdout_style()))
    if any(r.blind for r in results) and not all(r.reachable for r in results):
        return 3
    return 0 if all(r.reachable for r in results) else 1

"""Port knowledge: ``portkit lookup`` and ``portkit free``."""

from __future__ import annotations

import click

from portkit.cli._output import out
from portkit.cli.commands._options import PORT_RANGE, PROTOCOL, Count, json_option
from portkit.cli.lookup import write_lookup
from portkit.free import free_ports
from portkit.model import PortRange, Protocol
from portkit.render import to_json


@click.command(
    "lookup",
    epilog="""\b
Examples:
  portkit lookup 5432               port 5432: PostgreSQL
  portkit lookup 53/udp             one protocol only
  portkit lookup 30000-32767        everything registered in a range
  portkit lookup 10.0.0.5:9200      the port of an endpoint
  portkit lookup redis kafka        by service name (fuzzy, any case)
  portkit lookup "node exporter" --json""",
)
@click.argument("queries", nargs=-1, required=True, metavar="QUERY...")
@click.option(
    "--limit",
    type=Count(0, 100_000),
    default=50,
    show_default=True,
    help="At most this many rows per name query (0: all).",
)
@json_option
def lookup_cmd(queries: tuple[str, ...], limit: int, as_json: bool) -> int:
    """What a port is for: the IANA registry, the guide's table, DevOps defaults.

    QUERY is a port (5432), PORT/PROTO (53/udp), a range (30000-32767), a port list
    (22,80), an endpoint (10.0.0.5:9200) or a service name or keywords (redis,
    "node exporter"). Each answer gives the services, their source, the IANA range
    class, and whether the port lies in this OS's ephemeral range or the Kubernetes
    NodePort range. Where the registry and everyday use disagree, both are shown.
    Exit 1 when a name matches nothing.
    """
    return write_lookup(list(queries), as_json=as_json, limit=limit or None)


@click.command(
    "free",
    epilog="""\b
Examples:
  portkit free                      one free TCP port
  portkit free -n 3 --proto udp     three free UDP ports
  portkit free --range 8000-8100 --host 127.0.0.1 --json""",
)
@click.option(
    "-n",
    "count",
    type=Count(1, 1000),
    default=1,
    show_default=True,
    help="How many distinct ports.",
)
@click.option(
    "--range",
    "port_range",
    type=PORT_RANGE,
    default=None,
    help="Look only here (default: 1024-65535 minus the ephemeral range).",
)
@click.option(
    "--proto", "protocol", type=PROTOCOL, default="tcp", show_default=True, help="tcp or udp."
)
@click.option("--host", default=None, help="Address to test (default: all, IPv4 and IPv6).")
@click.option("--ephemeral", is_flag=True, help="Also offer ports in the OS's ephemeral range.")
@json_option
def free_cmd(
    count: int,
    port_range: PortRange | None,
    protocol: Protocol,
    host: str | None,
    ephemeral: bool,
    as_json: bool,
) -> int:
    """Ports that are free right now: each one bound and released, not guessed.

    By default the ports come from outside this OS's ephemeral range, so that an
    outgoing connection cannot take one a moment later.
    """
    ports = free_ports(
        count, protocol=protocol, host=host, port_range=port_range, allow_ephemeral=ephemeral
    )
    if as_json:
        out(to_json([{"port": p, "protocol": protocol.value} for p in ports]))
    else:
        out("\n".join(str(p) for p in ports))
    return 0

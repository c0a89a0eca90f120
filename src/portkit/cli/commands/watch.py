"""Watching over time: ``portkit top`` (live terminal view) and ``portkit exporter``.

Both read the same socket snapshot (:mod:`portkit.exporter.snapshot`). textual and
prometheus_client are imported inside the command that needs them, never here.
"""

from __future__ import annotations

import click

from portkit.cli._output import err, out
from portkit.cli.commands._options import MAX_PID, Count, Seconds, _ModelType
from portkit.errors import PortkitError, UsageError
from portkit.exporter import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    is_loopback,
    parse_destinations,
    parse_listen,
)
from portkit.model import Endpoint, PortRange, parse_ports

LISTEN = _ModelType("ADDR", parse_listen)
PORT_LIST = _ModelType("LIST", parse_ports)
DEST_LIST = _ModelType("IP:PORT,...", parse_destinations)

netns_option = click.option(
    "--netns", default=None, metavar="NAME", help="Look into this `ip netns` namespace."
)
pid_netns_option = click.option(
    "--pid-netns",
    type=Count(1, MAX_PID),
    default=None,
    metavar="PID",
    help="Look into the network namespace of this process (a container's, say).",
)


def _missing_extra(module: str, extra: str) -> PortkitError:
    """An environment failure (exit 3): the optional dependency is not installed."""
    return PortkitError(f"{module} is not installed: pip install 'portkit[{extra}]'")


@click.command(
    "exporter",
    epilog=f"""\b
Examples:
  portkit exporter                          serve on 127.0.0.1:{DEFAULT_PORT}
  portkit exporter --listen 0.0.0.0:{DEFAULT_PORT}    for a Prometheus on another host
  portkit exporter --ports 22,80,443,8000-8100
  portkit exporter --dest 10.0.0.5:5432,10.0.0.6:6379
  portkit exporter --once | grep accept_queue   print one scrape and exit
  portkit exporter --grafana-dashboard > portkit.json   the dashboard, to import
  portkit exporter --alert-rules > portkit-rules.yml    the alerting rules
\b
Prometheus scrape config:
  scrape_configs:
    - job_name: portkit
      static_configs: [{{targets: ['HOST:{DEFAULT_PORT}']}}]""",
)
@click.option(
    "--listen",
    type=LISTEN,
    default=f"{DEFAULT_HOST}:{DEFAULT_PORT}",
    show_default=True,
    help="Address to serve /metrics on (loopback unless told otherwise).",
)
@click.option(
    "--ports",
    type=PORT_LIST,
    default=None,
    help="Per-port series only for these ports: single ports always (0 listeners when "
    "down), ranges where something listens. Default: every listening port.",
)
@click.option(
    "--dest",
    type=DEST_LIST,
    default=None,
    help="Report ephemeral port use towards these IP:PORT destinations.",
)
@netns_option
@pid_netns_option
@click.option("--once", is_flag=True, help="Print one scrape (text format) and exit.")
@click.option(
    "--grafana-dashboard",
    "dashboard",
    is_flag=True,
    help="Print portkit's Grafana dashboard (JSON, to import) and exit.",
)
@click.option(
    "--alert-rules", is_flag=True, help="Print portkit's Prometheus alerting rules (YAML) and exit."
)
@click.option(
    "--baseline",
    metavar="FILE",
    default=None,
    type=click.Path(dir_okay=False),
    help="A baseline plan (portkit plan snapshot): export the listeners it does not allow "
    "as portkit_unexpected_listener.",
)
@click.option(
    "--no-container-label",
    is_flag=True,
    help="Leave the container label off portkit_listeners and portkit_port_info (and "
    "never ask the container runtimes).",
)
def exporter_cmd(
    listen: tuple[str, int],
    ports: tuple[PortRange, ...] | None,
    dest: tuple[Endpoint, ...] | None,
    netns: str | None,
    pid_netns: int | None,
    once: bool,
    dashboard: bool,
    alert_rules: bool,
    baseline: str | None,
    no_container_label: bool,
) -> int:
    """Serve this host's sockets as Prometheus metrics (/metrics), read at scrape time.

    Per listening port: listeners, connections by state and the accept queue (now
    and its limit); totals by protocol and state; the ephemeral port range and its
    use, overall and per --dest destination; the scrape's own duration. A listening
    port's container (one that listens there, or that its publisher publishes for)
    is a label, at most 200 names. Remote addresses never become labels. See
    docs/watch.md for every metric.
    """
    if dashboard or alert_rules:
        from portkit.exporter import packaged

        out(packaged("grafana-dashboard.json" if dashboard else "portkit-rules.yml").rstrip())
        return 0
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise _missing_extra("prometheus_client", "exporter") from None
    from portkit.exporter import (
        SocketCollector,
        make_registry,
        make_server,
        serve_until_stopped,
    )
    from portkit.exporter.snapshot import Snapshot, provider

    plan = None
    if baseline is not None:
        from portkit.plan import is_baseline, load_plan

        plan = load_plan([baseline], format="plan")
        if not is_baseline(plan):
            raise UsageError(
                f"--baseline {baseline}: not a baseline plan (baseline: true; "
                "portkit plan snapshot writes one)"
            )
    take = provider(
        traffic=True, containers=not no_container_label, netns=netns, pid_netns=pid_netns
    )
    # One reading now: a bad namespace or missing privilege fails here, as one line
    # and its exit code, not later as portkit_up 0.
    first = [take()]

    def snapshot() -> Snapshot:
        return first.pop() if first else take()

    collector = SocketCollector(
        snapshot,
        ports=ports,
        destinations=dest or (),
        on_error=lambda msg: err(f"portkit exporter: warning: {msg} (portkit_up 0)"),
        baseline=plan,
    )
    if once:
        from prometheus_client import generate_latest

        out(generate_latest(make_registry(collector, process_metrics=False)).decode().rstrip())
        return 0 if collector.last_error is None else 3
    host, port = listen
    server = make_server(collector, host, port)
    if not is_loopback(host):
        err(
            f"portkit exporter: listening on {host} (not loopback): anyone who can reach "
            "this port can read this host's socket table"
        )
    err(f"portkit exporter: serving {server.url}/metrics")
    serve_until_stopped(server)
    return 0


@click.command(
    "top",
    epilog="""\b
Examples:
  portkit top                       refresh every second
  portkit top -i 5                  every 5 seconds
  portkit top --netns blue          the sockets of an `ip netns` namespace
  portkit top --pid-netns 4242      a container's, by one of its processes
\b
Keys:
  /        filter connections (estab, 8080, 8000-8100, nginx, state:..., pid:...)
  esc      clear the filter
  s, r     sort by the next column, reverse (or click a column title)
  p, space pause and resume
  +, -     refresh less or more often
  enter    details of the selected row's process
  tab      switch between listening ports and connections
  q        quit""",
)
@click.option(
    "-i",
    "--interval",
    type=Seconds(0.1, 3600),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@netns_option
@pid_netns_option
def top_cmd(interval: float, netns: str | None, pid_netns: int | None) -> int:
    """Live view: listening ports, connections, counts by state over time, ephemeral use.

    Listening ports show their service, owner, bind scope, connections and accept
    queue (now/limit). Connections can be filtered and sorted by any column; rows
    keep their place and selection across refreshes. Run as root to see every
    process's sockets with their owners.
    """
    import sys

    try:
        import textual  # noqa: F401
    except ImportError:
        raise _missing_extra("textual", "tui") from None
    from portkit.exporter.snapshot import provider
    from portkit.tui import run_top

    # traffic: tcp_info and the destroy events give the rates per socket, port, process
    take = provider(owners=True, traffic=True, netns=netns, pid_netns=pid_netns)
    take()  # a bad namespace fails here, as one line, before the screen is taken over
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("portkit top needs a terminal; for scripts use `portkit ls` or `stats`")
    where = f" (netns {netns})" if netns else f" (netns of pid {pid_netns})" if pid_netns else ""
    run_top(take, interval=interval, title=f"portkit top{where}")
    return 0

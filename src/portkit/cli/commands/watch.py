"""Watching over time: ``portkit top`` (live terminal view) and ``portkit exporter``.

Both read the same socket snapshot (:mod:`portkit.exporter.snapshot`). textual and
prometheus_client are imported inside the command that needs them, never here.
"""

from __future__ import annotations

import click

from portkit.cli._output import err, out
from portkit.cli.commands._options import _ModelType
from portkit.errors import PortkitError
from portkit.exporter._config import (
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
    type=click.IntRange(min=1),
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
def exporter_cmd(
    listen: tuple[str, int],
    ports: tuple[PortRange, ...] | None,
    dest: tuple[Endpoint, ...] | None,
    netns: str | None,
    pid_netns: int | None,
    once: bool,
) -> int:
    """Serve this host's sockets as Prometheus metrics (/metrics), read at scrape time.

    Per listening port: listeners, connections by state and the accept queue (now
    and its limit); totals by protocol and state; the ephemeral port range and its
    use, overall and per --dest destination; the scrape's own duration. Remote
    addresses never become labels. See docs/watch.md for every metric.
    """
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise _missing_extra("prometheus_client", "exporter") from None
    from portkit.exporter import SocketCollector, make_registry, make_server
    from portkit.exporter.snapshot import provider

    collector = SocketCollector(
        provider(netns=netns, pid_netns=pid_netns),
        ports=ports,
        destinations=dest or (),
        on_error=lambda msg: err(f"portkit exporter: warning: {msg} (portkit_up 0)"),
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
    return _serve(server)


def _serve(server: object) -> int:
    """Serve until SIGTERM or Ctrl-C; both end cleanly with exit 0."""
    import signal
    import threading

    from portkit.exporter._server import MetricsServer

    assert isinstance(server, MetricsServer)

    def stop(signum: int, frame: object) -> None:
        # shutdown() waits for serve_forever() to return: call it from another thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.server_close()
    return 0

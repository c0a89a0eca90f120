"""Connect and forward: ``portkit serve``, ``portkit connect`` and ``portkit forward``."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from portkit.cli._output import err, out
from portkit.cli.commands._options import PORT, Count, Seconds, from_option, origin_of
from portkit.errors import ProbeError
from portkit.model import Endpoint, Protocol
from portkit.render import Style, to_json, use_color

if TYPE_CHECKING:
    from portkit.forward import Forwarder
    from portkit.forward.serve import Server

#: Timeouts: 1 ms to a day (NaN and infinities refused); intervals at least 0.1 s, so
#: that a periodic line can never flood the terminal.
_SECONDS = Seconds(0.001, 86_400)
_INTERVAL = Seconds(0.1, 86_400)


def _stderr_style() -> Style:
    return Style(use_color(sys.stderr))


# --- forward ---------------------------------------------------------------------------


@click.command(
    "forward",
    epilog="""\b
Examples:
  portkit forward 8080:3000                     127.0.0.1:8080 -> localhost:3000
  portkit forward 8080:db.internal:5432         ssh -L style: 127.0.0.1:8080 -> db.internal:5432
  portkit forward 127.0.0.1:5353:10.0.0.2:53/udp
  portkit forward 8000-8010:9000-9010           a range: eleven mappings, one process
  portkit forward '[::1]:8443:[2001:db8::5]:443'
  portkit forward 0.0.0.0:8080:3000 --allow 10.0.0.0/8 --max-conns 500
  portkit forward 8080:3000 --log-format json --stats-interval 10 --idle-timeout 300""",
)
@click.argument("specs", nargs=-1, required=True, metavar="SPEC...")
@click.option(
    "--allow",
    "allow",
    multiple=True,
    metavar="CIDR",
    help="Only clients from this network (repeatable); others are reset at once.",
)
@click.option(
    "--max-conns",
    type=Count(1, 10_000_000),
    default=None,
    help="Concurrent TCP connections at most (default: what RLIMIT_NOFILE allows).",
)
@click.option(
    "--idle-timeout",
    type=_SECONDS,
    default=None,
    metavar="SECONDS",
    help="Close a TCP connection after this long without data (default: never).",
)
@click.option(
    "--connect-timeout",
    type=_SECONDS,
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Give up on the target after this long; the client is reset.",
)
@click.option(
    "--udp-timeout",
    type=_SECONDS,
    default=60.0,
    show_default=True,
    metavar="SECONDS",
    help="End a UDP session after this long without datagrams.",
)
@click.option(
    "--max-udp-sessions",
    type=Count(1, 10_000_000),
    default=None,
    help="Concurrent UDP sessions per mapping at most (default: from RLIMIT_NOFILE).",
)
@click.option(
    "--grace",
    type=Seconds(0, 86_400),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="On SIGTERM/SIGINT: stop accepting, let live connections finish this long.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Per-connection lines on stderr as text or JSON lines.",
)
@click.option("-q", "--quiet", is_flag=True, help="No per-connection lines (notices stay).")
@click.option(
    "--stats-interval",
    type=_INTERVAL,
    default=None,
    metavar="SECONDS",
    help="Print the counters every SECONDS (and once at exit).",
)
@click.option(
    "--proxy-protocol",
    type=click.Choice(["v1", "v2"]),
    default=None,
    help="Send a PROXY protocol header to TCP targets (the client's real address).",
)
def forward_cmd(
    specs: tuple[str, ...],
    allow: tuple[str, ...],
    max_conns: int | None,
    idle_timeout: float | None,
    connect_timeout: float,
    udp_timeout: float,
    max_udp_sessions: int | None,
    grace: float,
    log_format: str,
    quiet: bool,
    stats_interval: float | None,
    proxy_protocol: str | None,
) -> int:
    """Forward ports, TCP and UDP, many mappings in one process.

    SPEC is docker style [BIND_IP:]LISTEN_PORT:TARGET_PORT[/udp] (the target is on
    this host), ssh -L style [BIND_IP:]LISTEN_PORT:TARGET_HOST:TARGET_PORT[/udp],
    equal-length ranges (8000-8010:9000-9010), IPv6 in brackets.

    Without BIND_IP a mapping listens on 127.0.0.1 only (docker -p would listen on
    every interface). One line per finished connection goes to stderr: client,
    target, bytes each way, duration and who closed. SIGTERM stops accepting and
    drains live connections for --grace seconds.
    """
    from portkit.forward import Forwarder
    from portkit.forward.access import AllowList
    from portkit.forward.runner import loop_name, run_forwarder
    from portkit.forward.spec import parse_specs
    from portkit.render import forward as render

    mappings = parse_specs(specs)
    allow_list = AllowList.parse(allow)
    as_json = log_format == "json"
    conn_line = render.conn_json if as_json else render.conn_text
    notice_line = render.notice_json if as_json else render.notice_text
    stats_line = render.stats_json if as_json else render.stats_text
    style = _stderr_style()

    def notice(level: str, message: str) -> None:
        line = notice_line(level, message)
        err(style.yellow(line) if level == "warning" and not as_json else line)

    def ready(fwd: Forwarder) -> None:
        for m in fwd.bound:
            err(render.mapping_json(m) if as_json else render.mapping_text(m))
            if m.is_wildcard:
                notice(
                    "warning",
                    f"{m.listen}/{m.protocol} listens on EVERY interface: anyone who can reach "
                    f"this host reaches {m.target}"
                    + ("" if allow_list else "; limit it with --allow CIDR"),
                )
        if not all(m.explicit_bind for m in fwd.mappings):
            notice(
                "info",
                "no bind address given: listening on 127.0.0.1 only (loopback); "
                "write e.g. 0.0.0.0:8080:3000 to listen on every interface",
            )
        notice(
            "info",
            f"{loop_name()} loop; up to {fwd.max_conns} TCP connections "
            f"(RLIMIT_NOFILE {fwd.nofile}); allow {allow_list}",
        )

    def stopping(active: int, seconds: float) -> None:
        notice("info", f"stopping: no new connections; draining {active} for up to {seconds} s")

    forwarder = Forwarder(
        mappings,
        allow=allow_list,
        max_conns=max_conns,
        idle_timeout=idle_timeout,
        connect_timeout=connect_timeout,
        udp_timeout=udp_timeout,
        max_udp_sessions=max_udp_sessions,
        proxy_protocol=proxy_protocol,
        on_close=None if quiet else (lambda rec: err(conn_line(rec))),
        on_notice=notice,
    )
    return run_forwarder(
        forwarder,
        grace=grace,
        stats_interval=stats_interval,
        on_stats=(lambda s: err(stats_line(s))) if stats_interval else None,
        on_stop=stopping,
        on_ready=ready,
    )


# --- serve -----------------------------------------------------------------------------


@click.command(
    "serve",
    epilog="""\b
Examples:
  portkit serve echo                     TCP echo on 127.0.0.1, a free port (printed)
  portkit serve echo --tcp 7007 --udp 7007
  portkit serve http --tcp 8080 --bind 0.0.0.0
  portkit serve discard --udp 9999 --json""",
)
@click.argument("kind", type=click.Choice(["echo", "discard", "http"]))
@click.option("--tcp", "tcp", type=PORT, default=None, help="TCP port (0: any).")
@click.option("--udp", "udp", type=PORT, default=None, help="UDP port (0: any).")
@click.option(
    "--bind", default="127.0.0.1", show_default=True, help="Address to listen on (IPv4 or IPv6)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the endpoints as one JSON document.")
def serve_cmd(kind: str, tcp: int | None, udp: int | None, bind: str, as_json: bool) -> int:
    """A small echo, discard or http server for testing a path end to end.

    Listens on TCP (a free port unless --tcp/--udp say otherwise) and prints the
    endpoints it got on stdout, one per line; each client's endpoint is logged on
    stderr as it arrives. Runs until SIGTERM or Ctrl-C.
    """
    from portkit.forward.runner import run_server
    from portkit.forward.serve import Server

    if tcp is None and udp is None:
        tcp = 0
    if bind in ("0.0.0.0", "::", "[::]"):
        err(_stderr_style().yellow(f"warning: --bind {bind} listens on every interface"))

    def client(protocol: Protocol, endpoint: str, event: str) -> None:
        err(f"{protocol.value} client {endpoint} {event}")

    def ready(server: Server) -> None:
        if as_json:
            out(to_json({"kind": kind, "endpoints": [str(e) for e in server.endpoints]}))
        else:
            for e in server.endpoints:
                out(str(e))
        sys.stdout.flush()
        err(f"serving {kind} on {', '.join(str(e) for e in server.endpoints)}")

    return run_server(Server(kind, tcp=tcp, udp=udp, bind=bind, on_client=client), on_ready=ready)


# --- connect ---------------------------------------------------------------------------


def _parse_target(text: str) -> Endpoint:
    """``HOST:PORT[/udp]``, the port a number or a service name (``localhost:http``);
    port 0 ("any port") cannot be connected to."""
    from portkit.errors import ParseError
    from portkit.registry import parse_endpoint

    endpoint = parse_endpoint(text)
    if endpoint.port == 0:
        raise ParseError(
            f"{text!r}: port 0 is not a port to connect to", text=text, accepted="ports 1-65535"
        )
    return endpoint


@click.command(
    "connect",
    epilog="""\b
Examples:
  echo hello | portkit connect 127.0.0.1:7007
  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | portkit connect localhost:8080
  printf 'one\\ntwo\\n' | portkit connect 127.0.0.1:7007/udp   two datagrams
  portkit connect '[::1]:22'                                   read the SSH banner""",
)
@click.argument("target", metavar="TARGET[/udp]")
@click.option(
    "--timeout",
    type=_SECONDS,
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="TCP connect timeout.",
)
@click.option(
    "--wait",
    type=Seconds(0, 86_400),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="UDP: after stdin ends, wait this long for late replies.",
)
@click.option("-q", "--quiet", is_flag=True, help="Do not report the endpoints on stderr.")
@from_option
def connect_cmd(target: str, timeout: float, wait: float, quiet: bool, origin: str | None) -> int:
    """A netcat-like client: stdin to TARGET, what comes back to stdout.

    TARGET is HOST:PORT, [IPv6]:PORT, with /udp for UDP. TCP half-closes after
    stdin's end and still reads the answer to its end. UDP sends one datagram per
    line. The local ephemeral endpoint the OS picked is reported on stderr.
    --from runs the client inside a container's or namespace's network (stdin and
    stdout stay this terminal's). Exit 1 when the connection is refused or times out.
    """
    from portkit.forward.connect import connect
    from portkit.probe import run_from

    endpoint = _parse_target(target)
    if endpoint.protocol not in (Protocol.TCP, Protocol.UDP):
        from portkit.errors import UsageError

        raise UsageError(f"connect speaks tcp and udp, not {endpoint.protocol.value}")

    def connected(local: str, remote: str) -> None:
        if not quiet:
            port = local.rsplit(":", 1)[1]
            err(f"connected {local} -> {remote}/{endpoint.protocol} (local ephemeral port {port})")

    try:
        run_from(
            origin_of(origin),
            connect,
            endpoint,
            timeout=timeout,
            wait=wait,
            on_connected=connected,
        )
    except ProbeError as exc:
        err(f"portkit connect: error: {exc}")
        return 1
    return 0

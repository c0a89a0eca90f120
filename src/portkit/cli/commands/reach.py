"""Reach a port: ``portkit check``, ``portkit wait`` and ``portkit scan``."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from portkit.cli._output import err, out, stdout_style, stdout_width
from portkit.cli.commands._options import Count, Seconds, from_option, json_option, origin_of
from portkit.errors import ParseError, UsageError
from portkit.render import to_json

_TIMEOUT = Seconds(0.001, 3600)


def _handshake_options(f: Any) -> Any:
    """--proto, --status, --expect-body, --min-days: the readiness handshake's options."""
    options = [
        click.option(
            "--proto",
            metavar="NAME|auto",
            help="After the connect, a readiness handshake: postgres, redis, mysql, http, "
            "https, tls, grpc, mongodb, amqp, kafka, smtp, ssh, dns, ldap, ... or auto (the "
            "port's everyday service).",
        ),
        click.option(
            "--status",
            "statuses",
            metavar="SET",
            help="HTTP statuses that count as ready (200-299,304 or 2xx; default 200-399).",
        ),
        click.option(
            "--expect-body", metavar="REGEX", help="The HTTP body must match REGEX (Python re)."
        ),
        click.option(
            "--min-days",
            type=Count(0, 36500),
            help="The TLS certificate must have at least N days left.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


class _Progress:
    """One self-rewriting status line on stderr, only when stderr is a terminal."""

    def __init__(self) -> None:
        self.enabled = sys.stderr.isatty()
        self.shown = False

    def show(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write("\r\x1b[K" + text)
            sys.stderr.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self.shown = False


# --- check ----------------------------------------------------------------------------


@click.command(
    "check",
    epilog="""\b
Examples:
  portkit check 192.168.1.100:80           is the web server reachable?
  portkit check db:5432 cache:6379         several targets, in parallel
  portkit check 10.0.0.53:53/udp --banner  UDP: a DNS query, and its answer
  portkit check example.com:443 --tls      handshake, certificate subject and expiry
  portkit check api:8080 --http /health    the HTTP status of a health endpoint
  portkit check 10.0.0.5:22 --banner --json
  portkit check db:5432 --proto postgres   does PostgreSQL accept sessions?
  portkit check 127.0.0.1:8080 --proto http --http /healthz --expect-body ok
  portkit check web:443 --proto https --min-days 14
  portkit check cache:6379 --proto auto    the port's everyday service: redis

\b
Exit: 0 healthy (every target open and, with --proto, ready), 1 unhealthy,
2 bad input: what Docker's HEALTHCHECK expects of a command.""",
)
@click.argument("targets", nargs=-1, required=True, metavar="TARGET...")
@click.option("--timeout", type=_TIMEOUT, default=3.0, show_default=True, help="Seconds per try.")
@click.option(
    "--retries",
    type=Count(0, 10),
    default=0,
    show_default=True,
    help="Extra tries before a silent port is called filtered.",
)
@click.option("--tls", is_flag=True, help="TLS handshake: protocol, certificate subject, expiry.")
@click.option("--http", "http_path", metavar="PATH", help="GET PATH and report the status code.")
@click.option("--banner", is_flag=True, help="What the service says first (or answers).")
@click.option("--sni", metavar="NAME", help="TLS server name (default: the target's host name).")
@_handshake_options
@from_option
@json_option
def check_cmd(
    targets: tuple[str, ...],
    timeout: float,
    retries: int,
    tls: bool,
    http_path: str | None,
    banner: bool,
    sni: str | None,
    proto: str | None,
    statuses: str | None,
    expect_body: str | None,
    min_days: int | None,
    origin: str | None,
    as_json: bool,
) -> int:
    """Is each TARGET (HOST:PORT[/tcp|udp]) reachable from here, now?

    Prints per target the state as nmap names it (open, closed, filtered;
    open|filtered for a silent UDP port), the reason (syn-ack, conn-refused,
    port-unreach, admin-prohibited, host-unreach, no-response, ...), the connect
    time in ms and the address used. Exit 0 when every target is open (and passes
    --tls / --http: a handshake, a status below 400; --proto: the service answers
    its readiness handshake as ready), 1 otherwise.
    """
    from portkit.probe import check
    from portkit.probe._origin import run_from
    from portkit.render.probe import check_json, check_table

    results = run_from(
        origin_of(origin),
        check,
        list(targets),
        timeout=timeout,
        retries=retries,
        tls=tls,
        http=http_path,
        banner=banner,
        server_name=sni,
        proto=proto,
        expect_body=expect_body,
        statuses=statuses,
        min_days=min_days,
    )
    if as_json:
        out(to_json(check_json(results)))
    else:
        out(check_table(results, stdout_style(), stdout_width()))
    return 0 if all(r.ok for r in results) else 1


# --- wait -----------------------------------------------------------------------------


class _CommandAfterDashes(click.Command):
    """Keeps everything after the first ``--`` as the command to run (argv, no shell)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            i = args.index("--")
            ctx.meta["portkit.argv"] = args[i + 1 :]
            args = args[:i]
        return super().parse_args(ctx, args)


def _exec(argv: list[str]) -> int:
    """Replace this process with ``argv`` (PID 1 semantics kept in containers)."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvp(argv[0], argv)
    except FileNotFoundError:
        err(f"portkit wait: {argv[0]}: command not found")
        return 127
    except PermissionError:
        err(f"portkit wait: {argv[0]}: permission denied")
        return 126
    except OSError as exc:
        err(f"portkit wait: {argv[0]}: {exc.strerror or exc}")
        return 126


@click.command(
    "wait",
    cls=_CommandAfterDashes,
    epilog="""\b
Examples:
  portkit wait db:5432                      until PostgreSQL accepts connections
  portkit wait db:5432 cache:6379 -- ./app  then run ./app (argv, no shell)
  portkit wait a:80 b:80 --any --timeout 60 the first one that is up
  portkit wait api:8080 --http /health      until /health answers below 400
  portkit wait 127.0.0.1:8080 --closed      until the port is free again
  portkit wait db:5432 --proto postgres     until PostgreSQL accepts sessions
  portkit wait cache:6379 --proto redis     until Redis has loaded its dataset

\b
Exit: 0 ready (or the command's own code), 124 timed out (like timeout(1)
and wait-for-it; the command is not run), 2 bad input.""",
)
@click.argument("targets", nargs=-1, required=True, metavar="TARGET... [-- CMD ARGS...]")
@click.option(
    "--timeout",
    type=Seconds(0, 366 * 86_400),
    default=30.0,
    show_default=True,
    help="Give up after this many seconds (0: never).",
)
@click.option(
    "--interval",
    type=Seconds(0.01, 3600),
    default=0.5,
    show_default=True,
    help="Seconds between tries.",
)
@click.option(
    "--all/--any",
    "all_mode",
    default=True,
    show_default=True,
    help="Wait for every target, or for the first one.",
)
@click.option("--closed", is_flag=True, help="Wait until the targets no longer accept connections.")
@click.option(
    "--attempt-timeout",
    type=_TIMEOUT,
    default=2.0,
    show_default=True,
    help="Seconds one try may take.",
)
@click.option("--tls", is_flag=True, help="Also require a TLS handshake.")
@click.option("--http", "http_path", metavar="PATH", help="Also require GET PATH to answer < 400.")
@_handshake_options
@from_option
@click.option("-q", "--quiet", is_flag=True, help="Print nothing (the exit code says it).")
@json_option
@click.pass_context
def wait_cmd(
    ctx: click.Context,
    targets: tuple[str, ...],
    timeout: float,
    interval: float,
    all_mode: bool,
    closed: bool,
    attempt_timeout: float,
    tls: bool,
    http_path: str | None,
    proto: str | None,
    statuses: str | None,
    expect_body: str | None,
    min_days: int | None,
    origin: str | None,
    quiet: bool,
    as_json: bool,
) -> int:
    """Wait until every TARGET (HOST:PORT) accepts TCP connections, then run CMD.

    Names are resolved again on every try (a container's DNS record may appear
    late); a TCP self-connect on a loopback port never counts as open. Progress
    shows on stderr when it is a terminal; the result goes to stderr too (stdout
    stays the command's), or as JSON on stdout with --json.
    """
    from portkit.probe import wait_for_sync
    from portkit.registry import parse_endpoint
    from portkit.render.probe import wait_json, wait_lines

    argv: list[str] = ctx.meta.get("portkit.argv", [])
    if argv and not argv[0]:
        raise UsageError("the command after -- is empty")
    if as_json and argv:
        raise UsageError("--json prints the result on stdout, which belongs to CMD: choose one")
    endpoints = [parse_endpoint(t) for t in targets]
    if closed and (tls or http_path):
        raise UsageError("--closed waits for ports to stop accepting: --tls/--http make no sense")
    progress = _Progress()
    progress.enabled = progress.enabled and not quiet

    def on_attempt(elapsed: float, results: list[Any]) -> None:
        waiting = [
            f"{r.target} {r.state.value} ({r.reason.value})"
            if r.handshake is None
            else f"{r.target} {r.handshake.state.value} ({r.handshake.reason})"
            for r in results
            if (r.state.value == "open" if closed else not r.ok)
        ]
        limit = f"/{timeout:g}" if timeout else ""
        progress.show(f"waiting {elapsed:.1f}{limit} s: " + ", ".join(waiting[:3]))

    from portkit.probe._origin import run_from

    where = origin_of(origin)
    result = run_from(
        where,
        wait_for_sync,
        endpoints,
        timeout=timeout or None,
        interval=interval,
        mode="all" if all_mode else "any",
        closed=closed,
        attempt_timeout=attempt_timeout,
        tls=tls,
        http=http_path,
        proto=proto,
        expect_body=expect_body,
        statuses=statuses,
        min_days=min_days,
        raise_on_timeout=False,
        on_attempt=on_attempt,
    )
    progress.clear()
    if as_json:
        out(to_json(wait_json(result)))
    elif not quiet:
        for line in wait_lines(result):
            err(f"portkit wait: {line}")
    if not result.ready:
        return 124
    if argv:
        return _exec(argv)
    return 0


# --- scan -----------------------------------------------------------------------------


@click.command(
    "scan",
    epilog="""\b
Examples:
  portkit scan 10.0.0.5                     the 1000 most common ports (TCP connect)
  portkit scan 10.0.0.5 -p-                 every TCP port, 1-65535
  portkit scan 10.0.0.0/24 -p 22,80,443     a subnet, three ports
  portkit scan 10.0.0.1-20 --top 100 --all  every state, not only open ports
  portkit scan db.internal -p 53,123,161 --udp --banner
  portkit scan -iL hosts.txt -p 8000-8100 --json
  portkit scan 10.0.0.5 -p- -oG scan.gnmap  nmap's grepable format to a file

\b
States and reasons are nmap's: open (syn-ack), closed (conn-refused,
port-unreach), filtered (no-response, admin-prohibited, host-unreach, ...),
open|filtered (UDP silence). Only scan hosts you are allowed to scan.""",
)
@click.argument("targets", nargs=-1, metavar="TARGET...")
@click.option("-p", "ports", metavar="PORTS", help="22,80,8000-8100, - (all), U:53,T:22.")
@click.option("--top", type=Count(1, 65535), help="The N most common ports (registry).")
@click.option("--udp", "-sU", "udp", is_flag=True, help="UDP scan (protocol payloads).")
@click.option(
    "-iL",
    "input_list",
    type=click.File("r"),
    help="Read targets from FILE ('-': stdin), blank-separated, # comments.",
)
@click.option(
    "--concurrency",
    type=Count(1, 65536),
    help="Probes in flight (default 1000 TCP, 256 UDP; fitted under the fd limit).",
)
@click.option("--rate", type=Seconds(0.1, 1_000_000), help="At most this many probes/second.")
@click.option("--timeout", type=_TIMEOUT, help="Seconds per try (default: adaptive, from RTTs).")
@click.option("--retries", type=Count(0, 10), default=1, show_default=True, help="Extra tries.")
@click.option("--banner", is_flag=True, help="Grab what open services say (UDP: the reply).")
@click.option("--all", "show_all", is_flag=True, help="Show every port, not only open ones.")
@click.option("-6", "ipv6", is_flag=True, help="Scan the IPv6 address of host names.")
@click.option(
    "-oG", "grep_file", metavar="FILE", help="Write nmap's grepable format ('-': stdout)."
)
@click.option("--grepable", is_flag=True, help="Print one grepable line per host (-oG -).")
@from_option
@json_option
def scan_cmd(
    targets: tuple[str, ...],
    ports: str | None,
    top: int | None,
    udp: bool,
    input_list: Any,
    concurrency: int | None,
    rate: float | None,
    timeout: float | None,
    retries: int,
    banner: bool,
    show_all: bool,
    ipv6: bool,
    grep_file: str | None,
    grepable: bool,
    origin: str | None,
    as_json: bool,
) -> int:
    """Scan TARGETS' ports: names, IPs, CIDRs (v4, v6), ranges (10.0.0.1-20), -iL FILE.

    A TCP connect scan on an epoll engine (hundreds of probes in flight, adaptive
    timeouts, one retry before "filtered"), or a UDP scan with protocol payloads
    (DNS, NTP, SNMP, SSDP, ...) with --udp. Prints a table of open ports (--all:
    every port) and a summary of every state; --json prints a list of objects.
    Exit 0 when the scan ran, whatever it found.
    """
    from portkit.probe import PortState, scan
    from portkit.probe._targets import parse_target_list
    from portkit.render.probe import (
        progress_line,
        scan_grepable,
        scan_json_text,
        scan_summary,
        scan_table,
    )

    if ports is not None:
        from portkit.probe import parse_port_spec

        plan = parse_port_spec(ports, default="udp" if udp else "tcp")
        if 0 in plan.tcp or 0 in plan.udp:
            raise ParseError(
                f"-p {ports}: port 0 cannot be probed (it means 'any port' to the OS)",
                text=ports,
                accepted="ports 1-65535",
            )
    names = list(targets)
    if input_list is not None:
        names += parse_target_list(input_list.read())
    if not names:
        raise UsageError("no targets: give TARGET... or -iL FILE")
    if grepable:
        if grep_file not in (None, "-"):
            raise UsageError("--grepable prints to stdout and -oG FILE writes a file: choose one")
        grep_file = "-"
    if as_json and grep_file == "-":
        raise UsageError("--json and the grepable format both go to stdout: choose one")
    states = None if show_all else frozenset({PortState.OPEN})
    progress = _Progress()
    started = time.monotonic()

    def on_progress(done: int, total: int) -> None:
        progress.show(progress_line(done, total, time.monotonic() - started))

    from portkit.probe._origin import run_from

    where = origin_of(origin)
    report = run_from(
        where,
        scan,
        names,
        ports,
        udp=udp,
        top=top,
        concurrency=concurrency,
        rate=rate,
        timeout=timeout,
        retries=retries,
        banner=banner,
        keep=None if show_all else ("open",),
        ipv6=ipv6,
        progress=on_progress if progress.enabled else None,
    )
    progress.clear()
    for note in report.notes:
        err(f"portkit scan: note: {note}")
    if grep_file is not None:
        text = scan_grepable(report, states)
        if grep_file == "-":
            out(text)
            return 0
        with open(grep_file, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if as_json:
        out(scan_json_text(report, states))
        return 0
    body = scan_table(report, stdout_style(), states=states, banner=banner, width=stdout_width())
    if body:
        out(body)
    else:
        out("no open ports" if states is not None else "no ports scanned")
    out(scan_summary(report, states))
    return 0

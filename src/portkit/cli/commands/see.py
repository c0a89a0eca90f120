"""Seeing sockets: ``portkit ls``, ``who``, ``stats`` and the overview."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click

from portkit.cli._output import err, out, stdout_style, stdout_width
from portkit.cli.commands._options import MAX_PID, Count, Seconds, json_option
from portkit.cli.see import families_for, names_for, write_ls
from portkit.errors import ParseError, PermissionDenied, UsageError
from portkit.model import Protocol, parse_port, parse_ports
from portkit.render import to_json

if TYPE_CHECKING:
    from portkit.see import Holder

__all__ = ["ls_cmd", "overview_cmd", "stats_cmd", "who_cmd"]


class _Ports(click.ParamType):  # type: ignore[type-arg,unused-ignore]
    """A port, list or range (``22``, ``22,80``, ``8000-8100``), parsed by the model."""

    name = "PORTS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return parse_ports(value)
        except ParseError as exc:
            self.fail(str(exc), param, ctx)


PORTS = _Ports()


def _netns_options(f: Any) -> Any:
    f = click.option(
        "--pid-netns",
        type=Count(1, MAX_PID),
        default=None,
        metavar="PID",
        help="Look into the network namespace of this process (a container's, say).",
    )(f)
    f = click.option(
        "--netns",
        default=None,
        metavar="NAME",
        help="Look into this network namespace (a name from `ip netns list`).",
    )(f)
    return f


def _proto_flags(f: Any) -> Any:
    f = click.option("-6", "--ipv6", is_flag=True, help="IPv6 only.")(f)
    f = click.option("-4", "--ipv4", is_flag=True, help="IPv4 only.")(f)
    f = click.option("-u", "--udp", is_flag=True, help="UDP sockets.")(f)
    f = click.option("-t", "--tcp", is_flag=True, help="TCP sockets.")(f)
    return f


_SORT_HELP = (
    "Sort by proto, state, local, remote, sport, dport, recv-q, send-q, pid, process, "
    "user, uid, inode or role (prefix - for descending)."
)


def _check_sort(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from portkit.render.sockets import SORT_KEYS

    if value is not None and value.lstrip("-").lower().replace("_", "-") not in SORT_KEYS:
        raise click.BadParameter(f"unknown column {value!r}; accepted: {', '.join(SORT_KEYS)}")
    return value


@click.command(
    "ls",
    epilog="""\b
Examples:
  portkit ls -tln                   listening TCP ports, numeric (ss -tln)
  portkit ls -tuanp                 every TCP/UDP socket with its process
  portkit ls -t --state time-wait   TIME-WAIT sockets
  portkit ls --dport 5432 -p        who is connected to PostgreSQL
  portkit ls --src 127.0.0.0/8 -l   listeners bound to loopback
  portkit ls -tan --json | jq '.[] | select(.role == "client")'
  portkit ls -tin --dport 443       rtt, retransmits and bytes of HTTPS clients
  portkit ls --pid-netns 4242 -tln  listeners inside a container
  portkit ls --watch --dport 5432   connections to PostgreSQL opening and closing
  portkit ls --all-netns -tlnp      listeners in every network namespace""",
)
@_proto_flags
@click.option("-l", "--listening", is_flag=True, help="Listening sockets only.")
@click.option("-a", "--all", "all_states", is_flag=True, help="Sockets in every state.")
@click.option("-n", "--numeric", is_flag=True, help="Port numbers, not service names.")
@click.option("-p", "--processes", is_flag=True, help="Show the owning process (pid, name, user).")
@click.option("-e", "--extended", is_flag=True, help="Show uid, inode and cgroup.")
@click.option(
    "-i",
    "--info",
    is_flag=True,
    help="TCP internals (tcp_info): rtt, rto, cwnd, retransmits, bytes, rates (ss -i).",
)
@click.option("-m", "--memory", is_flag=True, help="Socket memory (ss -m's skmem).")
@click.option("-o", "--options", "timers", is_flag=True, help="Timers (ss -o).")
@click.option("-r", "--resolve", is_flag=True, help="Resolve addresses to host names (DNS).")
@click.option(
    "--state",
    "states",
    multiple=True,
    metavar="STATE",
    help="ss state or group: established, syn-sent, time-wait, listening, connected, "
    "synchronized, bucket, big, all ... (repeatable).",
)
@click.option("--sport", type=PORTS, default=None, help="Local port, list or range.")
@click.option("--dport", type=PORTS, default=None, help="Remote port, list or range.")
@click.option("--port", type=PORTS, default=None, help="Either side's port, list or range.")
@click.option("--src", multiple=True, metavar="CIDR", help="Local address or network.")
@click.option("--dst", multiple=True, metavar="CIDR", help="Remote address or network.")
@click.option("--pid", "pids", type=Count(1, MAX_PID), multiple=True, help="Owned by PID.")
@click.option("--process", default=None, metavar="NAME", help="Owned by a process named so.")
@click.option("--sort", default=None, metavar="COLUMN", callback=_check_sort, help=_SORT_HELP)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@click.option(
    "--all-netns",
    is_flag=True,
    help="Every network namespace that has a process or a name (containers too).",
)
@click.option(
    "--watch",
    is_flag=True,
    help="Stream sockets opening and closing (like ss -E) until Ctrl-C; --json: JSON lines.",
)
@click.option("--count", type=Count(1, 10**9), default=None, help="--watch: stop after N events.")
@click.option(
    "--duration",
    type=Seconds(0, 10**7, low_open=True),
    default=None,
    help="--watch: stop after S s.",
)
@click.option(
    "--interval",
    type=Seconds(0, 3600),
    default=1.0,
    show_default=True,
    help="--watch: seconds between the readings that find openings (0: closings only).",
)
@json_option
@_netns_options
def ls_cmd(**kw: Any) -> int:
    """List TCP and UDP sockets, with ss's flags and their meanings.

    Without -a, -l or --state: connected sockets (not TIME-WAIT), as ss shows them.
    Each socket says its role: server (its local port listens here) or client.
    Ports on the server side are named from portkit's registry unless -n.
    Filters are applied by the kernel; owners are looked up only with -p,
    --pid or --process.
    """
    if kw["as_json"] and kw["as_csv"]:
        raise UsageError("--json and --csv do not go together")
    if kw["all_netns"] and (kw["netns"] or kw["pid_netns"]):
        raise UsageError("--all-netns looks into every namespace: drop --netns/--pid-netns")
    if kw["all_netns"] and (kw["info"] or kw["memory"] or kw["timers"]):
        raise UsageError("-i, -m and -o look into one namespace: drop --all-netns")
    watching = {k: kw.pop(k) for k in ("watch", "count", "duration", "interval")}
    if watching["watch"]:
        return _watch(kw, watching)
    if watching["count"] is not None or watching["duration"] is not None:
        raise UsageError("--count and --duration go with --watch")
    return write_ls(**kw)


def _watch(kw: dict[str, Any], watching: dict[str, Any]) -> int:
    from portkit.cli.events import write_watch
    from portkit.see import Query

    for flag in ("as_csv", "all_netns", "info", "memory", "timers", "sort", "resolve"):
        if kw[flag]:
            name = {"as_csv": "--csv", "all_netns": "--all-netns", "timers": "-o"}.get(
                flag, f"--{flag.replace('_', '-')}"
            )
            raise UsageError(f"--watch streams events: {name} does not go with it")
    query = Query(
        tcp=kw["tcp"],
        udp=kw["udp"],
        listening=kw["listening"],
        all=kw["all_states"],
        states=list(kw["states"]) or None,
        families=families_for(kw["ipv4"], kw["ipv6"]),
        sports=kw["sport"],
        dports=kw["dport"],
        ports=kw["port"],
        src=list(kw["src"]) or None,
        dst=list(kw["dst"]) or None,
        pids=list(kw["pids"]) or None,
        process=kw["process"],
        owners=kw["processes"],
    )
    return write_watch(
        query,
        as_json=kw["as_json"],
        netns=kw["netns"],
        pid_netns=kw["pid_netns"],
        interval=watching["interval"],
        duration=watching["duration"],
        count=watching["count"],
    )


def _parse_port_arg(text: str) -> tuple[int, Protocol | None]:
    body, sep, proto = text.strip().partition("/")
    return parse_port(body), (Protocol.parse(proto) if sep else None)


@click.command(
    "who",
    epilog="""\b
Examples:
  portkit who 8080                  who holds port 8080, and its connections
  portkit who 53/udp --json
  portkit who 8080 --kill           ask, then send SIGTERM to its owners
  portkit who 8080 --kill --signal KILL --yes""",
)
@click.argument("port", metavar="PORT[/PROTO]")
@click.option("--kill", is_flag=True, help="Signal the owning processes (asks first).")
@click.option("--signal", "signame", default="TERM", show_default=True, help="Signal for --kill.")
@click.option("--yes", is_flag=True, help="Do not ask before --kill.")
@json_option
@_netns_options
def who_cmd(
    port: str,
    kill: bool,
    signame: str,
    yes: bool,
    as_json: bool,
    netns: str | None,
    pid_netns: int | None,
) -> int:
    """Which processes own PORT (pid, command line, user, since when), its service and
    its connections. Exit 1 when nothing owns it."""
    import signal as signals

    from portkit.render.see import who_json, who_text
    from portkit.see import who

    number, proto = _parse_port_arg(port)
    sig_name = signame.upper().removeprefix("SIG")
    sig = getattr(signals, f"SIG{sig_name}", None)
    if not isinstance(sig, signals.Signals):
        raise ParseError(
            f"unknown signal {signame!r}", text=signame, accepted="TERM, INT, KILL, HUP"
        )
    result = who(number, proto, netns=netns, pid_netns=pid_netns)
    names = names_for(list(result.rows))
    if as_json:
        out(to_json(who_json(result, names)))
    else:
        out(who_text(result, names, stdout_style(), stdout_width()))
    if result.owners_hidden and not result.holders:
        from portkit.render.see import hidden_owners_note

        note = hidden_owners_note(result.owners_hidden, as_root=os.geteuid() == 0)
        err(f"portkit who: note: {note}")
    if not result.holders:
        return 1
    if kill:
        return _kill(result.holders, sig, yes)
    return 0


def _kill(holders: tuple[Holder, ...], sig: Any, yes: bool) -> int:
    targets = [h for h in holders if h.pid not in (os.getpid(), 1)]
    if not targets:
        raise UsageError("refusing to signal pid 1 or portkit itself")
    if not yes and not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError("--kill asks before it signals, which needs a terminal: add --yes")
    listing = ", ".join(f"{h.pid} ({h.process})" for h in targets)
    if not yes and not click.confirm(f"Send {sig.name} to {listing}?", default=False, err=True):
        err("portkit who: nothing was signalled")
        return 1
    for h in targets:
        try:
            os.kill(h.pid, sig)
        except ProcessLookupError:
            continue  # exited meanwhile: what we wanted
        except PermissionError as exc:
            raise PermissionDenied(f"cannot signal pid {h.pid}", needed="its user or root") from exc
        err(f"portkit who: sent {sig.name} to {h.pid} ({h.process})")
    return 0


@click.command(
    "stats",
    epilog="""\b
Examples:
  portkit stats                     counts, listeners, accept queues, ephemeral use
  portkit stats -t --json
  portkit stats -p                  name each listener's process""",
)
@_proto_flags
@click.option("-p", "--processes", is_flag=True, help="Name each listener's process.")
@json_option
@_netns_options
def stats_cmd(
    tcp: bool,
    udp: bool,
    ipv4: bool,
    ipv6: bool,
    processes: bool,
    as_json: bool,
    netns: str | None,
    pid_netns: int | None,
) -> int:
    """Counts by protocol and state, connections and accept queue per listener,
    TIME-WAIT, and the ephemeral port range's use overall and per destination,
    with a warning above 70%."""
    from portkit.render.see import stats_json, stats_text
    from portkit.see import socket_stats

    stats = socket_stats(
        tcp=tcp,
        udp=udp,
        families=families_for(ipv4, ipv6),
        owners=processes,
        netns=netns,
        pid_netns=pid_netns,
    )
    names = _listener_names(stats)
    if as_json:
        out(to_json(stats_json(stats, names)))
    else:
        out(stats_text(stats, stdout_style(), names))
    if processes and stats.owners_hidden:
        from portkit.render.see import hidden_owners_note

        note = hidden_owners_note(stats.owners_hidden, as_root=os.geteuid() == 0)
        err(f"portkit stats: note: {note}")
    return 0


def _listener_names(stats: Any) -> dict[str, dict[int, str]]:
    from portkit.registry import service_names

    by_proto: dict[str, set[int]] = {}
    for ls in stats.listeners:
        by_proto.setdefault(ls.protocol.value, set()).add(ls.port)
    return {p: service_names(ports, p) for p, ports in by_proto.items()}


@click.command(
    "overview",
    epilog="""\b
Examples:
  portkit                           the same
  portkit overview --json""",
)
@json_option
@_netns_options
def overview_cmd(
    as_json: bool = False, netns: str | None = None, pid_netns: int | None = None
) -> int:
    """What listens on this machine: by port, with service, owner, bind scope and
    connections; databases, caches and brokers open on all interfaces are flagged;
    then the top warnings from `portkit stats`."""
    from portkit.render.see import overview_json, overview_text
    from portkit.see import overview, socket_stats

    stats = socket_stats(owners=True, netns=netns, pid_netns=pid_netns)
    hidden = stats.owners_hidden
    view = overview(stats)
    if as_json:
        out(to_json(overview_json(view, hidden)))
    else:
        out(overview_text(view, stdout_style(), stdout_width(), hidden, as_root=os.geteuid() == 0))
    return 0

"""Seeing sockets: ``portkit ls``, ``who``, ``stats`` and the overview."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import click

from portkit.cli._output import err, out, stdout_style, stdout_width
from portkit.cli.commands._options import MAX_PID, Count, Seconds, json_option
from portkit.cli.see import families_for, names_for, owner_boxes, write_ls
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


def _where_options(f: Any) -> Any:
    """``--netns``, ``--pid-netns`` and ``--container``: where to look."""
    f = click.option(
        "--container",
        default=None,
        metavar="NAME|ID",
        help="Look into the network namespace of this container (Docker, Podman).",
    )(f)
    return _netns_options(f)


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


def _container_netns(container: str | None, netns: str | None, pid_netns: int | None) -> int | None:
    """The pid whose namespace ``--container`` means (through the container layer)."""
    if container is None:
        return pid_netns
    if netns is not None or pid_netns is not None:
        raise UsageError("give one of --container, --netns, --pid-netns")
    from portkit.containers import container_pid
    from portkit.system import require_linux

    require_linux("containers")
    return container_pid(container)


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
@_where_options
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
    container = kw.pop("container")
    if kw["all_netns"] and (kw["netns"] or kw["pid_netns"] or container):
        raise UsageError(
            "--all-netns looks into every namespace: drop --netns/--pid-netns/--container"
        )
    kw["pid_netns"] = _container_netns(container, kw["netns"], kw["pid_netns"])
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
  portkit who 8080 --kill --signal KILL --yes
  portkit who 8080 --stop-container a container publishes it: stop that container""",
)
@click.argument("port", metavar="PORT[/PROTO]")
@click.option("--kill", is_flag=True, help="Signal the owning processes (asks first).")
@click.option(
    "--stop-container",
    is_flag=True,
    help="Stop the container that holds or publishes the port (its runtime's API; asks first).",
)
@click.option("--signal", "signame", default="TERM", show_default=True, help="Signal for --kill.")
@click.option("--yes", is_flag=True, help="Do not ask before --kill.")
@json_option
@_where_options
def who_cmd(
    port: str,
    kill: bool,
    signame: str,
    yes: bool,
    as_json: bool,
    netns: str | None,
    pid_netns: int | None,
    container: str | None = None,
    stop_container: bool = False,
) -> int:
    """Which processes own PORT (pid, command line, user, since when), its service and
    its connections, and the container behind it (the one a proxy publishes it for).
    Exit 1 when nothing owns it."""
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
    pid_netns = _container_netns(container, netns, pid_netns)
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
    if kill and stop_container:
        raise UsageError("--kill signals processes, --stop-container stops a container: pick one")
    if stop_container:
        return _stop(result, yes)
    if kill:
        publishing = [h for h in result.holders if h.publisher]
        if publishing and publishing[0].container and publishing[0].container.container:
            label = publishing[0].container.container.label()
            raise UsageError(
                f"port {number} is published by container {label}: --kill would only kill "
                f"its proxy ({publishing[0].process}); use portkit who {port} --stop-container"
            )
        return _kill(result.holders, sig, yes)
    return 0


def _container_section(netns: str | None, pid_netns: int | None) -> tuple[Any, ...]:
    """The overview's containers (on the host's own view only; none where no runtime
    answers). Notes about runtimes that could not be asked go to stderr."""
    if netns is not None or pid_netns is not None or not sys.platform.startswith("linux"):
        return ()
    from portkit.containers import Resolver
    from portkit.see import container_ports

    resolver = Resolver()
    found = container_ports(resolver)
    for note in resolver.notes:
        err(f"portkit: note: {note}")
    return found


def _nat_section(stats: Any, netns: str | None, pid_netns: int | None) -> tuple[Any, ...]:
    """Ports published by NAT rules with no socket (a note when the rules are unreadable)."""
    if not sys.platform.startswith("linux"):
        return ()
    from portkit.errors import PortkitError
    from portkit.see import nat_ports, netns_path

    path = netns_path(netns, pid_netns) if netns or pid_netns else None
    held = [(ls.protocol.value, ls.port) for ls in stats.listeners]
    try:
        return nat_ports(held, path)
    except (PortkitError, OSError) as exc:
        err(f"portkit: note: NAT rules not read ({exc})")
        return ()


def _stop(result: Any, yes: bool) -> int:
    from portkit.containers import stop_container

    behind = result.container
    if behind is None or behind.container is None:
        raise UsageError(f"no container holds or publishes port {result.port}")
    target = behind.container
    if not yes and not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise UsageError("--stop-container asks first, which needs a terminal: add --yes")
    question = f"Stop container {target.label()} ({target.short_id})?"
    if not yes and not click.confirm(question, default=False, err=True):
        err("portkit who: nothing was stopped")
        return 1
    stop_container(target)
    err(f"portkit who: stopped container {target.name} ({target.short_id})")
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
@_where_options
def stats_cmd(
    tcp: bool,
    udp: bool,
    ipv4: bool,
    ipv6: bool,
    processes: bool,
    as_json: bool,
    netns: str | None,
    pid_netns: int | None,
    container: str | None = None,
) -> int:
    """Counts by protocol and state, connections and accept queue per listener,
    TIME-WAIT, and the ephemeral port range's use overall and per destination,
    with a warning above 70%."""
    from portkit.render.see import stats_json, stats_text
    from portkit.see import socket_stats

    pid_netns = _container_netns(container, netns, pid_netns)
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
@_where_options
def overview_cmd(
    as_json: bool = False,
    netns: str | None = None,
    pid_netns: int | None = None,
    container: str | None = None,
) -> int:
    """What listens on this machine: by port, with service, owner, bind scope and
    connections; databases, caches and brokers open on all interfaces are flagged;
    then the top warnings from `portkit stats`."""
    from portkit.render.see import overview_json, overview_text
    from portkit.see import overview, socket_stats

    pid_netns = _container_netns(container, netns, pid_netns)
    stats = socket_stats(owners=True, netns=netns, pid_netns=pid_netns)
    hidden = stats.owners_hidden
    owners = {ls.pid: (ls.process, None) for ls in stats.listeners if ls.pid}
    view = overview(
        stats,
        _container_section(netns, pid_netns),
        owner_boxes(owners),
        _nat_section(stats, netns, pid_netns),
    )
    if as_json:
        out(to_json(overview_json(view, hidden)))
    else:
        out(overview_text(view, stdout_style(), stdout_width(), hidden, as_root=os.geteuid() == 0))
    return 0

"""``portkit kill FILTER``: close the sockets a filter matches, as ``ss -K`` does."""

from __future__ import annotations

import errno
import os
import sys
from typing import Any

import click

from portkit.cli._output import err, out, stdout_style
from portkit.cli.commands._options import MAX_PID, Count, json_option
from portkit.cli.commands.see import PORTS, _netns_options, _proto_flags
from portkit.cli.see import families_for, names_for
from portkit.errors import UsageError

__all__ = ["kill_cmd"]


@click.command(
    "kill",
    epilog="""\b
Examples:
  portkit kill --dport 5432 --state established     every connection to PostgreSQL
  portkit kill --dport 5432 --dry-run               which ones it would close
  portkit kill --src 10.0.0.7 --sport 8080 --yes    a client's connections, no question
  portkit kill --pid 4242 --dport 443               one process's HTTPS connections
  portkit kill --sport 8080 -l                      the listener on 8080""",
)
@_proto_flags
@click.option("-l", "--listening", is_flag=True, help="Listening sockets only.")
@click.option("-a", "--all", "all_states", is_flag=True, help="Sockets in every state.")
@click.option(
    "--state",
    "states",
    multiple=True,
    metavar="STATE",
    help="ss state or group: established, syn-sent, close-wait, connected, ... (repeatable).",
)
@click.option("--sport", type=PORTS, default=None, help="Local port, list or range.")
@click.option("--dport", type=PORTS, default=None, help="Remote port, list or range.")
@click.option("--port", type=PORTS, default=None, help="Either side's port, list or range.")
@click.option("--src", multiple=True, metavar="CIDR", help="Local address or network.")
@click.option("--dst", multiple=True, metavar="CIDR", help="Remote address or network.")
@click.option("--pid", "pids", type=Count(1, MAX_PID), multiple=True, help="Owned by PID.")
@click.option("--process", default=None, metavar="NAME", help="Owned by a process named so.")
@click.option("--yes", is_flag=True, help="Do not ask before closing.")
@click.option("--dry-run", is_flag=True, help="List the sockets that would be closed; close none.")
@json_option
@_netns_options
def kill_cmd(**kw: Any) -> int:
    """Close the TCP and UDP sockets a filter matches, from outside their process
    (SOCK_DESTROY, like ss -K): a connection's peer gets a reset, its process gets
    ECONNABORTED, a listener stops listening.

    The filters are ls's; at least a port, address, owner or state is needed.
    Without -a, -l or --state: connected sockets (not TIME-WAIT), as ss -K. Lists
    them and asks first (--yes: not; --dry-run: only list). Needs root or
    CAP_NET_ADMIN. Exit 1 when nothing matches.
    """
    from portkit.see import Query, netns_path, scan
    from portkit.see._destroy import destroy, targets
    from portkit.system import require_linux

    require_linux("closing sockets from outside (sock_diag SOCK_DESTROY)")
    if not (
        kw["sport"] or kw["dport"] or kw["port"] or kw["src"] or kw["dst"] or kw["pids"]
    ) and not (kw["process"] or kw["states"] or kw["listening"]):
        raise UsageError(
            "kill needs a filter: --sport, --dport, --port, --src, --dst, --pid, --process, "
            "--state or -l (it never closes every socket)"
        )
    if not (kw["yes"] or kw["dry_run"] or (sys.stdin.isatty() and sys.stderr.isatty())):
        raise UsageError("kill asks before it closes sockets, which needs a terminal: add --yes")
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
        owners=True,
        timers=True,  # every entry carries the socket's cookie
    )
    netns, pid_netns = kw["netns"], kw["pid_netns"]
    found = scan(query, netns=netns, pid_netns=pid_netns)
    rows = found.rows
    names = names_for(rows)
    if not rows:
        if kw["as_json"]:
            out(_json(rows, names, None))
        else:
            err("portkit kill: no socket matches")
        return 1
    if not kw["as_json"]:
        from portkit.render.sockets import ls_text

        style = stdout_style()
        out(ls_text(rows, names=names, owners=True, style=style if style.color else None))
    if kw["dry_run"]:
        if kw["as_json"]:
            out(_json(rows, names, None))
        else:
            err(f"portkit kill: {_count(len(rows))} would be closed (--dry-run: none was)")
        return 0
    if not kw["yes"] and not click.confirm(f"Close {_count(len(rows))}?", default=False, err=True):
        err("portkit kill: nothing was closed")
        return 1
    done = destroy(targets(rows, found.health), netns_path(netns, pid_netns))
    if kw["as_json"]:
        out(_json(rows, names, done))
    else:
        parts = [f"closed {_count(len(done.closed))}"]
        if done.gone:
            parts.append(f"{len(done.gone)} had closed already")
        for i, code in done.failed:
            parts.append(
                f"{_where(rows[i])}: {os.strerror(code)} ({errno.errorcode.get(code, code)})"
            )
        err("portkit kill: " + "; ".join(parts))
    return 0 if not done.failed else 3


def _count(n: int) -> str:
    return f"{n} socket{'s' if n != 1 else ''}"


def _where(row: tuple[Any, ...]) -> str:
    def addr(ip: str | None, port: int | None) -> str:
        if ip is None:
            return "*"
        return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"

    return f"{addr(row[3], row[4])} -> {addr(row[5], row[6])}"


def _json(rows: list[tuple[Any, ...]], names: Any, done: Any) -> str:
    """``{"sockets": [ls objects, each with its "result"], "closed", "gone", "failed"}``;
    without ``done`` (nothing matched, or --dry-run) every result is ``null``."""
    import json

    from portkit.render.sockets import ls_json

    objs = json.loads(ls_json(rows, names))
    results: dict[int, str] = {}
    if done is not None:
        results.update((i, "closed") for i in done.closed)
        results.update((i, "gone") for i in done.gone)
        results.update((i, errno.errorcode.get(code, str(code))) for i, code in done.failed)
    for i, obj in enumerate(objs):
        obj["result"] = results.get(i)
    doc = {
        "sockets": objs,
        "closed": len(done.closed) if done is not None else 0,
        "gone": len(done.gone) if done is not None else 0,
        "failed": len(done.failed) if done is not None else 0,
    }
    return json.dumps(doc, indent=2)

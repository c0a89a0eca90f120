"""The backend for systems without sock_diag (macOS, Windows, the BSDs): psutil.

Same rows as the Linux backend; filters run in Python since psutil cannot push them
to the kernel. Owners come with psutil's answer (it always scans them).
"""

from __future__ import annotations

from portkit._sockrow import LOCAL_PORT, PID, PIDS, PROCESS, REMOTE_IP, USER
from portkit.errors import PermissionDenied, UsageError
from portkit.model import Protocol, TcpState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portkit.see._query import Query
    from portkit.see._scan import Scan

__all__ = ["rows", "scan", "with_owners"]

# psutil's status strings -> TcpState ("NONE" is an unconnected UDP socket).
_STATUS = {
    "ESTABLISHED": TcpState.ESTABLISHED,
    "SYN_SENT": TcpState.SYN_SENT,
    "SYN_RECV": TcpState.SYN_RECV,
    "FIN_WAIT1": TcpState.FIN_WAIT1,
    "FIN_WAIT2": TcpState.FIN_WAIT2,
    "TIME_WAIT": TcpState.TIME_WAIT,
    "CLOSE": TcpState.CLOSE,
    "CLOSE_WAIT": TcpState.CLOSE_WAIT,
    "LAST_ACK": TcpState.LAST_ACK,
    "LISTEN": TcpState.LISTEN,
    "CLOSING": TcpState.CLOSING,
    "NONE": TcpState.CLOSE,
}


def rows(query: Query, netns: str | None) -> tuple[list[tuple[Any, ...]], int]:
    """Rows in ``SocketRecord.row`` layout, and the number of hidden owners (unknown: 0)."""
    if netns is not None:
        raise UsageError("--netns and --pid-netns need Linux")
    try:
        import psutil
    except ImportError as exc:
        raise UsageError(
            "listing sockets on this system needs psutil: pip install 'portkit[psutil]'"
        ) from exc
    import socket

    kinds = {6: "tcp", 17: "udp"}
    fams = {2: socket.AF_INET, 10: socket.AF_INET6}
    want_fams = {fams[f] for f in query.families}
    out: list[tuple[Any, ...]] = []
    cache: dict[str, tuple[int, int]] = {}
    names: dict[int, tuple[str | None, str | None]] = {}
    for proto in query.protocols:
        try:
            conns = psutil.net_connections(kinds[proto])
        except psutil.AccessDenied as exc:
            raise PermissionDenied("cannot list sockets", needed="administrator") from exc
        p = Protocol.TCP if proto == 6 else Protocol.UDP
        batch: list[tuple[Any, ...]] = []
        for c in conns:
            if c.family not in want_fams:
                continue
            state = _STATUS.get(c.status, TcpState.CLOSE)
            remote = c.raddr if c.raddr else None
            batch.append(
                (
                    p,
                    4 if c.family == socket.AF_INET else 6,
                    state,
                    c.laddr.ip,
                    c.laddr.port,
                    remote.ip if remote else None,
                    remote.port if remote else None,
                    0,
                    0,
                    0,
                    0,
                    "server" if remote is None else "client",
                    c.pid,
                    None,
                    None,
                    (c.pid,) if c.pid else (),
                    None,
                )
            )
        listening = {r[LOCAL_PORT] for r in batch if r[REMOTE_IP] is None}
        for r in batch:
            if not query.matches(r, cache):
                continue
            if r[REMOTE_IP] is not None and r[LOCAL_PORT] in listening:
                r = (*r[:11], "server", *r[12:])
            if query.owners and r[PID]:
                if r[PID] not in names:
                    try:
                        proc = psutil.Process(r[PID])
                        names[r[PID]] = (proc.name(), proc.username())
                    except psutil.Error:
                        names[r[PID]] = (None, None)
                name, user = names[r[PID]]
                r = (*r[:13], name, user, *r[15:])
                if query.owner_filtered and not query.owner_matches(r[PIDS], (name or "",)):
                    continue
            elif query.owner_filtered:
                continue
            out.append(r)
    return out, 0


def scan(
    query: Query, netns_path: str | None, netns_pid: int | None, procfs: str, roles: bool
) -> Scan:
    """The backend's scan: psutil's connection table, filtered and owned in Python."""
    from portkit.see._scan import Scan

    found, hidden = rows(query, netns_path)
    return Scan(found, hidden, "psutil")


def with_owners(
    found: list[tuple[Any, ...]], query: Query, procfs: str
) -> tuple[list[tuple[Any, ...]], int]:
    """Name the process and user of every row that has a pid (psutil gives pids)."""
    import psutil

    names: dict[int, tuple[str | None, str | None]] = {}
    hidden = 0
    out = []
    for r in found:
        pid = r[PID]
        if pid:
            if pid not in names:
                try:
                    proc = psutil.Process(pid)
                    names[pid] = (proc.name(), proc.username())
                except psutil.AccessDenied:
                    names[pid] = (None, None)
                    hidden += 1
                except psutil.Error:
                    names[pid] = (None, None)
            r = (*r[:PROCESS], *names[pid], *r[USER + 1 :])
        out.append(r)
    return out, hidden

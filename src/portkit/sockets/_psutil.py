"""The backend for systems without sock_diag (macOS, Windows, the BSDs): psutil.

Same rows as the Linux backend; filters run in Python since psutil cannot push them
to the kernel. Owners come with psutil's answer (it always scans them).
"""

from __future__ import annotations

from portkit.errors import PermissionDenied, UsageError
from portkit.model import Protocol, TcpState

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portkit.sockets._query import Query

__all__ = ["rows"]

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
        listening = {r[4] for r in batch if r[5] is None}
        for r in batch:
            if not query.matches(r, cache):
                continue
            if r[5] is not None and r[4] in listening:
                r = (*r[:11], "server", *r[12:])
            if query.owners and r[12]:
                if r[12] not in names:
                    try:
                        proc = psutil.Process(r[12])
                        names[r[12]] = (proc.name(), proc.username())
                    except psutil.Error:
                        names[r[12]] = (None, None)
                name, user = names[r[12]]
                r = (*r[:13], name, user, *r[15:])
                if query.owner_filtered and not query.owner_matches(r[15], (name or "",)):
                    continue
            elif query.owner_filtered:
                continue
            out.append(r)
    return out, 0

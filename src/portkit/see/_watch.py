"""``portkit ls --watch``: sockets opening and closing, as they happen (``ss -E``).

Closings come from the kernel itself: the sock_diag destroy groups (``_events``) tell
of every TCP and UDP socket of the namespace as it is freed, with both ends, its
cookie and, for TCP, its last ``tcp_info`` (the bytes it moved), however short its
life. The kernel has no such group for sockets being created, so openings are found
by reading the table every ``interval`` seconds and reporting the sockets (by
cookie) that were not there the time before: a connection that opens and closes
between two readings shows only as a closing.

Owners: a socket's owner is known from the readings (with ``owners``: one owner pass
each); a closing socket gets the owner a reading saw it with, else, on the server
side, its listener's; a socket that lived and died between two readings on the
client side may have none ("where it can be found in time").
"""

from __future__ import annotations

import time

from portkit._sockrow import LOCAL_PORT, PID, PROCESS, PROTOCOL, REMOTE_IP, STATE
from portkit.see import _netlink as nl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from portkit.see._query import Query

__all__ = ["WatchEvent", "watch"]

_PROTOCOLS = {6: "tcp", 17: "udp"}


class WatchEvent:
    """One line of ``ls --watch``.

    Attributes:
        time: wall-clock time it was seen (``time.time()``).
        kind: ``open``, ``close`` or ``lost`` (events the kernel could not deliver:
            ``count`` of them).
        row: the socket as a ``SocketRecord.row`` tuple (``pid``/``process`` filled
            where the owner was found); None for ``lost``.
        cookie: the kernel's id of the socket.
        info: its last tcp_info tuple (closings of TCP sockets), else None.
        count: for ``lost``, how many.
    """

    __slots__ = ("time", "kind", "row", "cookie", "info", "count")

    def __init__(
        self,
        time: float,
        kind: str,
        row: tuple[Any, ...] | None,
        cookie: int = 0,
        info: tuple[Any, ...] | None = None,
        count: int = 0,
    ) -> None:
        self.time = time
        self.kind = kind
        self.row = row
        self.cookie = cookie
        self.info = info
        self.count = count


def _event_row(event: tuple[Any, ...], server: bool) -> tuple[Any, ...]:
    from portkit.model import Protocol, TcpState

    family, proto, state, lip, lport, rip, rport = event[:7]
    return (
        Protocol.TCP if proto == 6 else Protocol.UDP,
        family,
        TcpState.from_code(state) if 0 < state < 13 else TcpState.CLOSE,
        lip,
        lport,
        rip,
        rport,
        0,
        0,
        0,
        0,
        "server" if server or rport is None else "client",
        None,
        None,
        None,
        (),
        None,
    )


def watch(
    query: Query,
    *,
    netns_path: str | None = None,
    procfs: str = "/proc",
    interval: float = 1.0,
    duration: float | None = None,
    count: int | None = None,
    ready: Any = None,
) -> Iterator[WatchEvent]:
    """Sockets matching ``query`` opening and closing, until ``count`` events or
    ``duration`` seconds (None: no end; the caller stops on Ctrl-C).

    Args:
        query: what to watch (``ls``'s filters; its states apply to openings, a
            closing socket is in CLOSE whatever it was).
        netns_path: the namespace to watch (None: ours).
        interval: seconds between the readings that find openings (0: none).
        ready: called once the kernel is listening for us (tests wait for it).

    Raises:
        PortkitError: the groups cannot be joined; PermissionDenied: the namespace.
    """
    import copy

    from portkit.model import TcpState
    from portkit.see._backend import backend
    from portkit.see._events import EventSocket
    from portkit.see._tcpinfo import row_entry

    protocols = query.protocols
    families = query.families
    sock = EventSocket(families=families, protocols=protocols, netns_path=netns_path)
    opening = query.states
    closing = copy.copy(query)
    closing.states = frozenset(TcpState)
    reading = copy.copy(query)
    # listeners too: a closing socket on a listening port is a server's
    reading.states = query.states | {TcpState.LISTEN, TcpState.CLOSE}
    reading.health = 1  # timers: every entry carries the cookie
    reading.pids = None
    reading.process = None
    cache: dict[str, tuple[int, int]] = {}
    owners: dict[int, tuple[int | None, str | None]] = {}  # cookie -> (pid, process)
    listeners: dict[tuple[int, int], tuple[int | None, str | None]] = {}  # (proto, port)
    seen: set[int] = set()
    emitted = 0
    lost_before = 0
    end = time.monotonic() + duration if duration is not None else None

    def read_table(first: bool) -> list[WatchEvent]:
        found = backend().scan(reading, netns_path, None, procfs, True)
        health = found.health
        out = []
        now_seen: set[int] = set()
        listeners.clear()
        for r in found.rows:
            entry = row_entry(health, r)
            if entry is None:
                continue
            cookie = entry[4]  # E_COOKIE
            now_seen.add(cookie)
            if r[PID] is not None:
                owners[cookie] = (r[PID], r[PROCESS])
            if r[REMOTE_IP] is None:
                listeners[_PROTO_NUM[r[PROTOCOL].value], r[LOCAL_PORT]] = (r[PID], r[PROCESS])
            if not first and cookie not in seen and r[STATE] in opening and _owner_ok(query, r):
                out.append(WatchEvent(time.time(), "open", r, cookie))
        seen.clear()
        seen.update(now_seen)
        if len(owners) > 4 * len(now_seen) + 10000:  # keep it bounded: drop the departed
            for cookie in list(owners):
                if cookie not in now_seen:
                    del owners[cookie]
        return out

    try:
        read_table(first=True)
        if ready is not None:
            ready()
        next_read = time.monotonic() + interval if interval > 0 else None
        while True:
            now = time.monotonic()
            if end is not None and now >= end:
                return
            waits = [t - now for t in (end, next_read) if t is not None]
            got = sock.read(timeout=max(0.0, min(waits)) if waits else 1.0)
            for event in got:
                family, proto = event[0], event[1]
                if (nl.AF_INET if family == 4 else nl.AF_INET6) not in families:
                    continue
                listener = listeners.get((proto, event[4]))
                row = _event_row(event, listener is not None)
                if not closing.matches(row, cache):
                    continue
                known = owners.pop(event[7], None)
                pid, process = known or listener or (None, None)
                row = (*row[:PID], pid, process, None, (pid,) if pid else (), None)
                if not _owner_ok(query, row):
                    continue
                # a listener's tcp_info says nothing of traffic
                info = event[8] if event[6] is not None else None
                yield WatchEvent(time.time(), "close", row, event[7], info)
                emitted += 1
                seen.discard(event[7])
                if count is not None and emitted >= count:
                    return
            lost = sock.lost
            if lost > lost_before or sock.overruns:
                yield WatchEvent(time.time(), "lost", None, count=max(lost - lost_before, 1))
                lost_before = lost
                sock.overruns = 0
            if next_read is not None and time.monotonic() >= next_read:
                for opened in read_table(first=False):
                    yield opened
                    emitted += 1
                    if count is not None and emitted >= count:
                        return
                next_read = time.monotonic() + interval
    finally:
        sock.close()


_PROTO_NUM = {"tcp": 6, "udp": 17}


def _owner_ok(query: Query, row: tuple[Any, ...]) -> bool:
    if not query.owner_filtered:
        return True
    pid = row[PID]
    return pid is not None and query.owner_matches((pid,), (row[PROCESS] or "",))

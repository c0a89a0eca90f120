"""``ls --watch`` lines and JSON lines, one per event (``see._watch.WatchEvent``)."""

from __future__ import annotations

import json
import time

from portkit._sockrow import (
    LOCAL_IP,
    LOCAL_PORT,
    PID,
    PROCESS,
    PROTOCOL,
    REMOTE_IP,
    REMOTE_PORT,
    ROLE,
    STATE,
)
from portkit.render import safe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portkit.see._watch import WatchEvent

__all__ = ["WATCH_HEADER", "event_json", "event_line"]

WATCH_HEADER = (
    f"{'TIME':<12}  {'EVENT':<5}  PROTO  {'STATE':<11}  {'LOCAL':>27}    {'REMOTE':<27}  "
    f"{'ROLE':<6}  {'ACKED':>10}  {'RECEIVED':>10}  PID/PROCESS"
)


def _addr(ip: str | None, port: int | None) -> str:
    if ip is None:
        return "*"
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _clock(t: float) -> str:
    """``HH:MM:SS.mmm`` local time.

    >>> len(_clock(0.0))
    12
    """
    return time.strftime("%H:%M:%S", time.localtime(t)) + f".{int(t * 1000) % 1000:03d}"


def event_line(ev: WatchEvent) -> str:
    """One line of the table ``ls --watch`` streams (no column is measured first:
    lines go out as events come)."""
    if ev.kind == "lost":
        return f"{_clock(ev.time):<12}  lost   {ev.count} event(s) the kernel could not deliver"
    r = ev.row
    assert r is not None
    from portkit.see import _tcpinfo as ti

    acked = received = "-"
    if ev.info is not None and ev.info[ti.BYTES_ACKED] is not None:
        acked, received = str(ev.info[ti.BYTES_ACKED]), str(ev.info[ti.BYTES_RECEIVED])
    who = "-" if r[PID] is None else f"{r[PID]}/{safe(r[PROCESS] or '-')}"
    proto = r[PROTOCOL].value
    # a TCP socket is freed in CLOSE (ss's UNCONN is UDP's word for it)
    state = "CLOSE" if proto == "tcp" and r[STATE].value == "CLOSE" else r[STATE].ss_name
    return (
        f"{_clock(ev.time):<12}  {ev.kind:<5}  {proto:<5}  {state:<11}  "
        f"{_addr(r[LOCAL_IP], r[LOCAL_PORT]):>27} -> {_addr(r[REMOTE_IP], r[REMOTE_PORT]):<27}  "
        f"{r[ROLE]:<6}  {acked:>10}  {received:>10}  {who}"
    )


def event_json(ev: WatchEvent) -> str:
    """One JSON document on one line: ``time`` (UTC, ISO 8601), ``event``, and for a
    socket ``ls --json``'s keys (``proto``, ``state``, ``local``, ``remote``, ``role``,
    ``pid``, ``process``) with its ``cookie`` and ``tcp_info`` (ss's keys, the last
    ones of a closing TCP socket; else null); for ``lost``, its ``count``."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ev.time))
    doc: dict[str, Any] = {"time": f"{stamp}.{int(ev.time * 1000) % 1000:03d}Z", "event": ev.kind}
    if ev.kind == "lost":
        doc["count"] = ev.count
        return json.dumps(doc)
    from portkit.render.health import info_dict

    r = ev.row
    assert r is not None
    doc.update(
        {
            "proto": r[PROTOCOL].value,
            "family": r[1],
            "state": r[STATE].value,
            "local": {"ip": r[LOCAL_IP], "port": r[LOCAL_PORT]},
            "remote": None
            if r[REMOTE_IP] is None
            else {"ip": r[REMOTE_IP], "port": r[REMOTE_PORT]},
            "role": r[ROLE],
            "pid": r[PID],
            "process": r[PROCESS],
            "cookie": ev.cookie,
            "tcp_info": info_dict(((0, 0, 0), None, ev.info, None, ev.cookie))
            if ev.info is not None
            else None,
        }
    )
    if doc["tcp_info"] is not None:
        del doc["tcp_info"]["cong"]  # not in an event
    return json.dumps(doc, ensure_ascii=False)

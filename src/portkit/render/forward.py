"""Forwarder output: per-connection log lines, counters and notices, as text or JSON lines.

Every line is one complete record so that logs can be grepped or fed to ``jq``.

    >>> from portkit.forward.records import ConnLog
    >>> rec = ConnLog("tcp", "10.0.0.9:40000", "127.0.0.1:8080", "127.0.0.1:3000",
    ...               bytes_up=12, bytes_down=3400, duration=0.0123, closed_by="client")
    >>> conn_text(rec)
    'tcp 10.0.0.9:40000 -> 127.0.0.1:8080 -> 127.0.0.1:3000 up=12 down=3400 0.012s closed-by=client'
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portkit.forward.records import ConnLog
    from portkit.forward.spec import Mapping

__all__ = [
    "conn_json",
    "conn_text",
    "mapping_json",
    "mapping_text",
    "notice_json",
    "notice_text",
    "stats_json",
    "stats_text",
]


def _stamp(when: float | None = None) -> str:
    t = time.time() if when is None else when
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def _line(event: str, fields: dict[str, Any]) -> str:
    return json.dumps({"time": _stamp(), "event": event, **fields}, separators=(",", ":"))


def conn_text(rec: ConnLog) -> str:
    """One line per finished connection: who, where, bytes each way, how long, who closed."""
    line = (
        f"{rec.protocol} {rec.client} -> {rec.listen} -> {rec.target} "
        f"up={rec.bytes_up} down={rec.bytes_down} {rec.duration:.3f}s closed-by={rec.closed_by}"
    )
    return f"{line} error={rec.error!r}" if rec.error else line


def conn_json(rec: ConnLog) -> str:
    """The same as a JSON object (keys: time, event=close, protocol, client, listen, ...)."""
    fields = rec.as_dict()
    fields["duration"] = round(rec.duration, 6)
    fields["started"] = _stamp(rec.started) if rec.started else None
    return _line("close", fields)


def mapping_text(m: Mapping) -> str:
    return f"listening {m.listen}/{m.protocol} -> {m.target}/{m.protocol}"


def mapping_json(m: Mapping) -> str:
    return _line(
        "listen",
        {
            "protocol": m.protocol.value,
            "listen": m.listen,
            "target": m.target,
            "explicit_bind": m.explicit_bind,
        },
    )


def stats_text(stats: dict[str, int]) -> str:
    return "stats " + " ".join(f"{k}={v}" for k, v in stats.items())


def stats_json(stats: dict[str, int]) -> str:
    return _line("stats", stats)


def notice_text(level: str, message: str) -> str:
    return f"{level}: {message}" if level != "info" else message


def notice_json(level: str, message: str) -> str:
    return _line("notice", {"level": level, "message": message})

"""What a forwarder reports: one record per finished connection or UDP session, and counters.

Pure data; rendering (text or JSON lines) lives in :mod:`portkit.render.forward`.
"""

from __future__ import annotations

from portkit.model import _Record

__all__ = ["CLOSED_BY", "ConnLog", "Stats"]

#: ``closed_by`` values and what they mean (the docs and the log legend come from here).
CLOSED_BY: dict[str, str] = {
    "client": "the client finished first (FIN); the target's side was drained and closed",
    "target": "the target finished first (FIN); the client's side was drained and closed",
    "client-reset": "the client reset the connection; the reset was passed on to the target",
    "target-reset": "the target reset the connection; the reset was passed on to the client",
    "idle-timeout": "no data either way for --idle-timeout seconds",
    "udp-timeout": "a UDP session saw no datagram either way for --udp-timeout seconds",
    "evicted": "a UDP session made room for a new client at the session limit",
    "connect-failed": "the target refused or could not be reached; the client was reset",
    "connect-timeout": "the target did not answer within --connect-timeout; the client was reset",
    "refused-allow": "the client's address is outside every --allow network; reset at once",
    "refused-max-conns": "--max-conns connections were already open; reset at once",
    "shutdown": "the forwarder stopped (SIGTERM and --grace expired, or closed by its owner)",
}


class ConnLog(_Record):
    """One relayed TCP connection or UDP session, reported when it ends.

    ``bytes_up`` went client -> target, ``bytes_down`` target -> client. ``client``,
    ``listen`` and ``target`` are ``host:port`` texts (IPv6 in brackets).
    """

    __slots__ = (
        "protocol",
        "client",
        "listen",
        "target",
        "bytes_up",
        "bytes_down",
        "duration",
        "closed_by",
        "error",
        "started",
    )
    protocol: str
    client: str
    listen: str
    target: str
    bytes_up: int
    bytes_down: int
    duration: float
    closed_by: str
    error: str | None
    started: float

    def __init__(
        self,
        protocol: str,
        client: str,
        listen: str,
        target: str,
        *,
        bytes_up: int = 0,
        bytes_down: int = 0,
        duration: float = 0.0,
        closed_by: str = "client",
        error: str | None = None,
        started: float = 0.0,
    ) -> None:
        self._init(
            protocol=protocol,
            client=client,
            listen=listen,
            target=target,
            bytes_up=bytes_up,
            bytes_down=bytes_down,
            duration=duration,
            closed_by=closed_by,
            error=error,
            started=started,
        )


class Stats:
    """Counters of a running forwarder (mutable; :meth:`snapshot` copies them)."""

    __slots__ = (
        "tcp_active",
        "tcp_total",
        "tcp_refused",
        "tcp_failed",
        "tcp_timeouts",
        "bytes_up",
        "bytes_down",
        "accept_errors",
        "udp_sessions",
        "udp_sessions_total",
        "udp_datagrams_up",
        "udp_datagrams_down",
        "udp_dropped",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    tcp_active: int
    tcp_total: int
    tcp_refused: int
    tcp_failed: int
    tcp_timeouts: int
    bytes_up: int
    bytes_down: int
    accept_errors: int
    udp_sessions: int
    udp_sessions_total: int
    udp_datagrams_up: int
    udp_datagrams_down: int
    udp_dropped: int

    def snapshot(self) -> dict[str, int]:
        """The counters as a dict, in a stable order."""
        return {name: getattr(self, name) for name in self.__slots__}

"""When will a destination run out of ephemeral ports? Pure: rows and timers in,
forecasts out.

Linux picks a client's local port per (source address, destination address,
destination port), and a closed connection keeps its port in TIME-WAIT for a fixed
60 seconds (``TCP_TIMEWAIT_LEN``) on the side that closed first. So the TIME-WAIT
sockets towards a destination say how fast new connections are made to it: each one
carries its timer, i.e. how long ago it entered TIME-WAIT, and ``n`` of them that
entered over the last ``w`` seconds mean ``n / w`` connections a second. At that rate
the ports held are the open connections, the TIME-WAIT ones not yet expired, and the
new ones of the last 60 seconds; the forecast is the first moment that reaches the
range's size (``connect()`` then fails with EADDRNOTAVAIL), or None when the rate
levels off below it.

    >>> exhaustion_seconds(capacity=300, active=0, remaining=[55.0] * 50, rate=10.0)
    25.0
    >>> exhaustion_seconds(capacity=1000, active=10, remaining=[30.0] * 300, rate=10.0) is None
    True

``net.ipv4.tcp_tw_reuse`` lets a new connection take over a TIME-WAIT port (by
default, 2, only over loopback): where it applies the forecast is pessimistic.
"""

from __future__ import annotations

from portkit.model import PortRange, _Record
from portkit.see import _netlink as nl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Mapping, Sequence
    from typing import Any

__all__ = [
    "TIME_WAIT_SECONDS",
    "WARN_SECONDS",
    "Forecast",
    "exhaustion_seconds",
    "forecasts",
    "time_wait_ages",
]

#: TCP_TIMEWAIT_LEN (include/net/tcp.h): fixed, not a sysctl.
TIME_WAIT_SECONDS = 60.0
#: ``stats`` warns when a destination runs out sooner than this.
WARN_SECONDS = 600.0
#: The shortest window a rate is measured over (one fresh TIME-WAIT socket is not
#: a connection a millisecond).
_MIN_WINDOW = 1.0
_TW_STATE = 6


class Forecast(_Record):
    """Ephemeral port use towards one destination from one source address, and when
    it runs out at the current connection rate.

    Attributes:
        source_ip, ip, port: the source address and the destination.
        in_use: local ports held towards it (open connections and TIME-WAIT).
        time_wait: how many of those are in TIME-WAIT.
        capacity: ports in the ephemeral range.
        rate: new connections a second, from the TIME-WAIT sockets' timers.
        seconds: until every port is held at that rate; 0 when they already are,
            None when the rate levels off below the range's size.
    """

    __slots__ = ("source_ip", "ip", "port", "in_use", "time_wait", "capacity", "rate", "seconds")
    source_ip: str
    ip: str
    port: int
    in_use: int
    time_wait: int
    capacity: int
    rate: float
    seconds: float | None

    def __init__(
        self,
        source_ip: str,
        ip: str,
        port: int,
        in_use: int,
        time_wait: int,
        capacity: int,
        rate: float,
        seconds: float | None,
    ) -> None:
        self._init(
            source_ip=source_ip,
            ip=ip,
            port=port,
            in_use=in_use,
            time_wait=time_wait,
            capacity=capacity,
            rate=rate,
            seconds=seconds,
        )


def exhaustion_seconds(
    capacity: int, active: int, remaining: Sequence[float], rate: float
) -> float | None:
    """Seconds until ``capacity`` ports are held, or None if never at this rate.

    Ports held ``s`` seconds from now: ``active`` open connections, the TIME-WAIT
    sockets whose ``remaining`` seconds are more than ``s``, and ``rate * min(s, 60)``
    new ones (each new connection keeps its port at least until its TIME-WAIT ends,
    60 s after a short connection closes).
    """
    old = sorted(remaining)
    n = len(old)
    if active + n >= capacity:
        return 0.0
    if rate <= 0:
        return None
    start = 0.0
    for k in range(n + 1):
        end = old[k] if k < n else TIME_WAIT_SECONDS
        end = min(end, TIME_WAIT_SECONDS)
        # over [start, end): active + (n - k) old ones + rate * s
        s = (capacity - active - (n - k)) / rate
        if s < start:
            s = start
        if s < end or (k == n and s <= TIME_WAIT_SECONDS):
            return s
        start = max(start, end)
    return None


def time_wait_ages(
    batches: Iterable[tuple[int, int, nl.RawRows]],
    listen_ports: Mapping[int, Collection[int]],
    ephemeral: PortRange,
) -> dict[tuple[str, str, int], list[float]]:
    """``{(source ip, destination ip, destination port): [seconds left]}`` of the
    client side's TIME-WAIT sockets (local port in the ephemeral range, not a
    listening one) in a dump; -1 where the dump was read without timers."""
    from portkit.see._tcpinfo import HealthRows

    out: dict[tuple[str, str, int], list[float]] = {}
    lo, hi = ephemeral.start, ephemeral.end
    ports = nl.PORTS
    for family, proto, raw in batches:
        if proto != nl.IPPROTO_TCP:
            continue
        text = nl.IP_TEXT[family]
        lp = listen_ports.get(proto, ())
        if isinstance(raw, HealthRows):
            waiting: Iterable[tuple[Any, ...]] = raw.time_wait()
        else:
            waiting = ((t[4], t[5], t[2], t[3], -1000) for t in raw if t[1] == _TW_STATE)
        for src, dst, sport, dport, expires in waiting:
            if sport in lp or not lo <= ports[sport] <= hi:
                continue
            key = (text[src], text[dst], ports[dport])
            left = min(expires / 1000.0, TIME_WAIT_SECONDS) if expires >= 0 else -1.0
            got = out.get(key)
            if got is None:
                out[key] = [left]
            else:
                got.append(left)
    return out


def forecasts(
    held: Mapping[tuple[str, str, int], int],
    ages: Mapping[tuple[str, str, int], list[float]],
    ephemeral: PortRange,
    *,
    limit: int | None = 20,
    only: set[tuple[str, int]] | None = None,
) -> tuple[Forecast, ...]:
    """The forecast of every destination, soonest first (those that never run out
    after them, busiest first).

    Args:
        held: ``{(source ip, destination ip, port): ephemeral ports held}``, TIME-WAIT
            included (``compute_stats`` counts them).
        ages: :func:`time_wait_ages` of the same sockets.
        ephemeral: the namespace's ephemeral range.
        limit: how many to keep (None: all).
        only: just these destinations, ``{(ip, port)}`` (IPv4-mapped IPv6 peers of
            dual-stack sockets count as their IPv4 address).
    """
    capacity = len(ephemeral)
    out = []
    for key, in_use in held.items():
        src, ip, port = key
        if only is not None and (_unmap(ip), port) not in only:
            continue
        remaining = ages.get(key, [])
        waiting = len(remaining)
        active = max(in_use - waiting, 0)
        rate = _rate(remaining)
        known = [r if r >= 0 else TIME_WAIT_SECONDS / 2 for r in remaining]
        seconds = exhaustion_seconds(capacity, active, known, rate)
        out.append(Forecast(src, ip, port, in_use, waiting, capacity, rate, seconds))
    out.sort(
        key=lambda f: (
            f.seconds is None,
            f.seconds if f.seconds is not None else 0.0,
            -f.in_use,
            f.source_ip,
            f.ip,
            f.port,
        )
    )
    return tuple(out if limit is None else out[:limit])


def _unmap(ip: str) -> str:
    """``::ffff:10.0.0.5`` (an IPv4 peer of a dual-stack socket) -> ``10.0.0.5``."""
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


def _rate(remaining: list[float]) -> float:
    """Connections a second from the TIME-WAIT sockets' seconds left (-1: unknown)."""
    if not remaining:
        return 0.0
    if any(r < 0 for r in remaining):
        return len(remaining) / TIME_WAIT_SECONDS
    oldest = TIME_WAIT_SECONDS - min(remaining)
    return len(remaining) / max(oldest, _MIN_WINDOW)


def warning(f: Forecast) -> str | None:
    """The ``stats`` warning for a forecast under :data:`WARN_SECONDS`, else None."""
    if f.seconds is None or f.seconds >= WARN_SECONDS:
        return None
    dest = f"[{f.ip}]:{f.port}" if ":" in f.ip else f"{f.ip}:{f.port}"
    when = "now" if f.seconds == 0 else f"in about {_duration(f.seconds)}"
    return (
        f"ephemeral ports for {f.source_ip} -> {dest} run out {when} at {f.rate:.1f} new "
        f"connections/s ({f.in_use} of {f.capacity} held, {f.time_wait} in TIME-WAIT): "
        "connect() will fail with EADDRNOTAVAIL (reuse connections, add source IPs or "
        "widen net.ipv4.ip_local_port_range)"
    )


def _duration(seconds: float) -> str:
    """
    >>> _duration(42.4), _duration(125), _duration(3600)
    ('42 s', '2 min 5 s', '60 min')
    """
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    return f"{m} min {s} s" if s else f"{m} min"

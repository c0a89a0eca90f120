"""The layers a packet meets between a client and a port, each a small function that
returns a :class:`Check`: ok (True), broken (False) or not visible from here (None),
with the evidence and, when broken, the fix.

Every layer uses the other capabilities through their public functions: names and
routes from this package's own netlink readers, listeners and stats from
:mod:`portkit.see`, the firewall and NAT from :mod:`portkit.netfilter`, the probe from
:func:`portkit.check`. The judgements (:func:`judge_listener`, :func:`judge_source`) are
pure functions of what was read.
"""

from __future__ import annotations

from portkit.model import BindScope, _Record, bind_scope

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from portkit.why._context import Place

__all__ = ["Check", "judge_listener", "judge_source"]

#: Above this share of the ephemeral range in use towards one destination, new
#: connections to it are about to fail (EADDRNOTAVAIL).
EPHEMERAL_FULL = 0.9
#: A conntrack table this full drops new connections ("nf_conntrack: table full").
CONNTRACK_FULL = 0.95
#: A range this small runs out under any real load.
NARROW_RANGE = 1000


class Check(_Record):
    """One layer's answer: ``ok`` True, False, or None (could not look / not visible)."""

    __slots__ = ("layer", "ok", "evidence", "fix", "data")
    layer: str
    ok: bool | None
    evidence: str
    fix: str | None
    data: dict[str, Any]

    def __init__(
        self,
        layer: str,
        ok: bool | None,
        evidence: str,
        fix: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        self._init(layer=layer, ok=ok, evidence=evidence, fix=fix, data=data or {})


# --- listener ---------------------------------------------------------------------


def _serves(listener_ip: str, address: str) -> bool:
    """Whether a socket bound to ``listener_ip`` takes connections to ``address``."""
    if bind_scope(listener_ip) is BindScope.WILDCARD:
        # An IPv6 wildcard takes IPv4 too unless V6ONLY; an IPv4 one only IPv4.
        return ":" in listener_ip or ":" not in address
    mapped = address.removeprefix("::ffff:")
    return listener_ip in (address, mapped, f"::ffff:{address}")


def judge_listener(
    address: str,
    port: int,
    protocol: str,
    rows: Sequence[tuple[str, str, str, int, int, str]],
    overflows_rising: bool = False,
    where: str = "there",
) -> Check:
    """The listener layer from the port's sockets in the namespace the packet ends in.

    ``rows`` are ``(protocol, state, local address, recv-q, send-q, owner)`` of every
    socket on ``port`` (the state ``LISTEN`` for TCP listeners, ``UNCONN`` for bound
    UDP).

    >>> judge_listener("10.0.0.2", 5432, "tcp", [("tcp", "LISTEN", "127.0.0.1", 0, 128, "")]).ok
    False
    """
    want = [r for r in rows if r[0] == protocol]
    if protocol == "tcp":
        listeners = [r for r in want if r[1] == "LISTEN"]
    else:
        listeners = [r for r in want if r[1] in ("UNCONN", "CLOSE")]
    other = "udp" if protocol == "tcp" else "tcp"
    label = f"{port}/{protocol}"
    serving = [r for r in listeners if _serves(r[2], address)]
    if not listeners:
        others = [r for r in rows if r[0] == other]
        if others:
            return Check(
                "listener",
                False,
                f"nothing listens on {label} {where}; only {other.upper()} does "
                f"({', '.join(sorted({r[2] for r in others}))})",
                f"ask for {port}/{other} (portkit uses /{other}), or make the server listen "
                f"on {protocol.upper()}",
            )
        waiting = [r for r in want if r[1] == "TIME-WAIT"]
        if waiting:
            return Check(
                "listener",
                False,
                f"nothing listens on {label} {where}; {len(waiting)} connections of it are "
                "in TIME-WAIT: the server closed them and is gone (crashed or stopped?)",
                "start the server again (its recent connections show it was there)",
            )
        return Check(
            "listener",
            False,
            f"nothing listens on {label} {where}",
            f"start the service, or check its port: portkit ls -lnp --sport {port}",
        )
    if not serving:
        bound = ", ".join(sorted({r[2] for r in listeners}))
        loopback = all(bind_scope(r[2]) is BindScope.LOOPBACK for r in listeners)
        extra = " (internal only: reachable from that host, not from elsewhere)" if loopback else ""
        return Check(
            "listener",
            False,
            f"{label} listens on {bound} only{extra}, not on {address}",
            f"bind the server to {address} or to all interfaces (0.0.0.0 / ::), "
            "and firewall it if it should stay private",
        )
    owner = next((r[5] for r in serving if r[5]), "")
    first = serving[0]
    if protocol == "tcp" and first[4] and first[3] >= first[4]:
        return Check(
            "listener",
            False,
            f"{label} listens on {first[2]}{f' ({owner})' if owner else ''}, but its accept "
            f"queue is full ({first[3]} of {first[4]})"
            + ("; TcpExtListenOverflows is rising" if overflows_rising else ""),
            "the server does not accept() fast enough: look at it (stuck, overloaded, too "
            "small a backlog for its bursts)",
        )
    return Check(
        "listener",
        True,
        f"{label} listens on {first[2]}{f' ({owner})' if owner else ''}",
    )


# --- source side ---------------------------------------------------------------------


def judge_source(
    destination: str,
    range_size: int,
    in_use: int,
    conntrack: tuple[int, int] | None,
) -> Check:
    """The client's own limits: ephemeral ports to this destination, the conntrack table.

    >>> judge_source("10.0.0.5:5432", 10, 10, None).ok
    False
    """
    notes = []
    if range_size and in_use >= EPHEMERAL_FULL * range_size:
        return Check(
            "source",
            False,
            f"{in_use} of {range_size} ephemeral ports are held by connections to "
            f"{destination}: new ones fail with EADDRNOTAVAIL",
            "widen net.ipv4.ip_local_port_range, reuse connections (pooling, keep-alive), "
            "or spread over more destination addresses",
            {"in_use": in_use, "range": range_size},
        )
    if range_size < NARROW_RANGE:
        notes.append(f"the ephemeral range is narrow ({range_size} ports)")
    if conntrack is not None:
        count, limit = conntrack
        if limit and count >= CONNTRACK_FULL * limit:
            return Check(
                "source",
                False,
                f"the conntrack table is full ({count} of {limit}): new connections are dropped",
                "raise net.netfilter.nf_conntrack_max, or shorten its timeouts",
                {"conntrack": [count, limit]},
            )
    evidence = f"{in_use} of {range_size} ephemeral ports in use towards {destination}"
    if conntrack is not None:
        evidence += f"; conntrack {conntrack[0]} of {conntrack[1]}"
    if notes:
        evidence += "; " + "; ".join(notes)
    return Check("source", True, evidence, data={"in_use": in_use, "range": range_size})


# --- I/O: reading what the judgements need ----------------------------------------------


def read_port(place: Place, port: int) -> list[tuple[str, str, str, int, int, str]]:
    """Every socket on local port ``port`` in ``place``: the rows of :func:`judge_listener`."""
    import portkit

    found = portkit.sockets(sports=port, owners=True, netns=place.netns, pid_netns=place.pid_netns)
    return [
        (
            s.protocol.value,
            s.state.ss_name,
            s.local_ip,
            s.recv_q,
            s.send_q,
            f"{s.process}/{s.pid}" if s.pid else "",
        )
        for s in found
    ]


def _in_place(place: Place, work: Any) -> Any:
    if place.path is None:
        return work()
    from portkit.see import run_in_netns

    return run_in_netns(place.path, work)


def listen_overflows(place: Place) -> int | None:
    """``TcpExtListenOverflows`` of ``place`` (None when the counter is not there)."""

    def read() -> int | None:
        try:
            with open("/proc/thread-self/net/netstat") as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        for head, values in zip(lines[::2], lines[1::2], strict=False):
            if head.startswith("TcpExt:"):
                table = dict(zip(head.split()[1:], values.split()[1:], strict=False))
                value = table.get("ListenOverflows")
                return int(value) if value and value.isdigit() else None
        return None

    result: int | None = _in_place(place, read)
    return result


def ephemeral_size(place: Place) -> int:
    from portkit.system import parse_ip_local_port_range

    def read() -> int:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return len(parse_ip_local_port_range(f.read()))

    size: int = _in_place(place, read)
    return size


def conntrack_fill(place: Place) -> tuple[int, int] | None:
    def read() -> tuple[int, int] | None:
        try:
            with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
                count = int(f.read().strip() or 0)
            with open("/proc/sys/net/netfilter/nf_conntrack_max") as f:
                limit = int(f.read().strip() or 0)
        except (OSError, ValueError):
            return None  # no conntrack module loaded: nothing to fill
        return count, limit

    found: tuple[int, int] | None = _in_place(place, read)
    return found


def connections_to(place: Place, address: str, port: int) -> int:
    """Client sockets of ``place`` holding a local port towards ``address:port``."""
    import portkit

    found = portkit.sockets(
        tcp=True, dports=port, dst=address, netns=place.netns, pid_netns=place.pid_netns
    )
    return sum(1 for s in found if s.role == "client")


# --- containers: the fix a container host needs ----------------------------------------


def container_fix(
    check: Check,
    place: Place,
    port: int,
    protocol: str,
    rows: Sequence[tuple[str, str, str, int, int, str]],
) -> Check:
    """A failed listener check with the fix a container host needs: a port published
    on loopback only names its container and the ``-p`` that publishes it wider; a port
    nobody listens on names the container that listens on it inside, unpublished.
    Any other check comes back as it was."""
    if check.ok is not False:
        return check
    from portkit.containers import published_by

    for _proto, _state, ip, _rq, _sq, owner in rows:
        name, _, pid = owner.rpartition("/")
        if not pid.isdigit():
            continue
        pub = published_by(int(pid), name, port, protocol, ip)
        if pub is not None and pub.container is not None:
            inside = pub.container_port or port
            return Check(
                check.layer,
                False,
                f"{check.evidence}; it is container {pub.container.label()}'s port, "
                f"published on {ip} only",
                f"publish it on all interfaces (docker run -p {port}:{inside}, compose "
                f'"{port}:{inside}") or on the address asked for; or ask from that host',
                check.data,
            )
    if rows or (place.label != "host" and not place.label.startswith("netns:")):
        return check
    from portkit.errors import PortkitError
    from portkit.see import container_ports

    try:
        boxes = container_ports()
    except (PortkitError, OSError):
        return check
    # Containers a runtime named first: one known only by its cgroup may belong to
    # another daemon, publishing on another namespace.
    for box in sorted(boxes, key=lambda b: b.container.api is None):
        if (protocol, port) in box.unpublished:
            return Check(
                check.layer,
                False,
                f"{check.evidence}; container {box.container.label()} listens on "
                f"{port}/{protocol} inside, but does not publish it",
                f"publish it: docker run -p {port}:{port} (compose ports: "
                f'["{port}:{port}"]), or reach the container at its own address',
                check.data,
            )
    return check

"""What to list, as data: protocols, families, states, ports, addresses, owners.

Pure: built from the arguments of :func:`portkit.sockets` (or the CLI flags), it
answers the two questions the backends ask: what to send to the kernel (state
bitmask + inet_diag bytecode) and, where the kernel cannot filter (the /proc and
psutil backends, pid/process filters), whether a decoded row matches.

    >>> q = Query(listening=True)
    >>> sorted(s.value for s in q.states)
    ['CLOSE', 'LISTEN']
    >>> q.state_mask() == (1 << 10) | (1 << 7)
    True
"""

from __future__ import annotations

from portkit._sockrow import FAMILY, LOCAL_IP, LOCAL_PORT, REMOTE_IP, REMOTE_PORT, STATE
from portkit.errors import ParseError, UsageError
from portkit.model import SS_STATE_GROUPS, PortRange, TcpState, parse_ports, parse_state_filter
from portkit.see import _netlink as nl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

__all__ = ["CONNECTED_DEFAULT", "Net", "Query", "parse_cidr", "port_ranges"]

#: ``ss`` without ``-a``/``-l``/``state``: connected sockets, but not TIME-WAIT nor
#: SYN-RECV (misc/ss.c: ``SS_CONN``).
CONNECTED_DEFAULT: frozenset[TcpState] = frozenset(TcpState) - {
    TcpState.LISTEN,
    TcpState.CLOSE,
    TcpState.TIME_WAIT,
    TcpState.SYN_RECV,
    TcpState.NEW_SYN_RECV,
}

_PROTOCOLS = {"tcp": nl.IPPROTO_TCP, "udp": nl.IPPROTO_UDP}
_FAMILIES = {4: nl.AF_INET, 6: nl.AF_INET6}

#: (family number, prefix length, network address packed, padded to 16 bytes as the
#: kernel sends addresses)
Net = tuple[int, int, bytes]


def parse_cidr(text: str) -> Net:
    """Parse ``10.0.0.0/8``, ``::1`` or ``127.0.0.1`` into ``(family, prefix, packed)``.

    >>> parse_cidr("127.0.0.0/8")[:2]
    (4, 8)

    Raises:
        ParseError: not an address or network.
    """
    import ipaddress  # only when an address filter is used

    try:
        net = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ParseError(
            f"bad address or network {text!r}",
            text=text,
            accepted="an IP address or CIDR, e.g. 10.0.0.0/8, 127.0.0.1, ::1, fd00::/8",
        ) from None
    packed = net.network_address.packed
    return (net.version, net.prefixlen, packed.ljust(16, b"\0"))


def port_ranges(
    value: str | int | PortRange | Iterable[int | PortRange] | None,
) -> tuple[PortRange, ...]:
    """Normalise a port filter: ``"22,80,8000-8100"``, ``22``, a range or a list of them.

    >>> [str(r) for r in port_ranges("22,8000-8100")]
    ['22', '8000-8100']
    """
    if value is None:
        return ()
    if isinstance(value, str):
        return parse_ports(value)
    if isinstance(value, PortRange):
        return (value,)
    if isinstance(value, int):
        return (PortRange(value),)
    out: list[PortRange] = []
    for item in value:
        out.extend(port_ranges(item))
    if not out:
        raise ParseError("empty port list", accepted="PORT[,PORT|START-END...]")
    return tuple(out)


def _states(value: Iterable[str | TcpState] | str | None) -> frozenset[TcpState] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    out: set[TcpState] = set()
    names: list[str] = []
    for item in value:
        if isinstance(item, TcpState):
            out.add(item)
        else:
            names.append(item)
    return frozenset(out | parse_state_filter(names))


def _nets(value: str | Iterable[str] | None) -> tuple[Net, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()] or [value]
    return tuple(parse_cidr(v) for v in value)


def _in_net(ip: str, nets: tuple[Net, ...], ntop_cache: dict[str, tuple[int, int]]) -> bool:
    """True when the text address ``ip`` lies in one of ``nets`` (v4-mapped v6 too)."""
    val = ntop_cache.get(ip)
    if val is None:
        from _socket import AF_INET, AF_INET6, inet_pton

        if ":" in ip:
            packed = inet_pton(AF_INET6, ip)
            if packed[:12] == b"\0" * 10 + b"\xff\xff":
                val = (4, int.from_bytes(packed[12:], "big"))
            else:
                val = (6, int.from_bytes(packed, "big"))
        else:
            val = (4, int.from_bytes(inet_pton(AF_INET, ip), "big"))
        ntop_cache[ip] = val
    fam, num = val
    for nfam, prefix, packed in nets:
        if nfam != fam:
            continue
        bits = 32 if fam == 4 else 128
        net = int.from_bytes(packed[: bits // 8], "big")
        shift = bits - prefix
        if (num >> shift) == (net >> shift):
            return True
    return False


class Query:
    """One listing request; every argument is optional.

    Args:
        tcp, udp: protocols (neither given: both).
        listening: listeners only (TCP LISTEN and unconnected UDP, as ``ss -l``).
        all: every state (``ss -a``). Without ``all``, ``listening`` or ``states``:
            connected sockets without TIME-WAIT and SYN-RECV, as ``ss`` does.
        states: ss state names or groups (``established``, ``connected``, ...) or
            :class:`TcpState` members.
        families: 4 and/or 6 (default both).
        sports, dports, ports: local, remote, either-side port filters (a port, a
            ``"22,80,8000-8100"`` list, :class:`PortRange` objects or ints).
        src, dst: local / remote address or CIDR filters (a list, or comma-separated).
        pids: only sockets held by these processes (implies owners).
        process: only sockets whose owner's name contains this (implies owners).
        owners: look up owning processes.
        extended: also fetch the cgroup (``ls -e``).
        info, memory, timers: also fetch tcp_info (``ls -i``), socket memory
            (``-m``) and timers (``-o``): :attr:`Scan.health <portkit.see.Scan.health>`.

    Raises:
        ParseError: a bad state, port or address.
        UsageError: filters that cannot go together.
    """

    __slots__ = (
        "protocols",
        "families",
        "states",
        "sports",
        "dports",
        "ports",
        "src",
        "dst",
        "pids",
        "process",
        "owners",
        "extended",
        "health",
    )

    def __init__(
        self,
        *,
        tcp: bool = False,
        udp: bool = False,
        listening: bool = False,
        all: bool = False,
        states: Iterable[str | TcpState] | str | None = None,
        families: Iterable[int] | None = None,
        sports: Any = None,
        dports: Any = None,
        ports: Any = None,
        src: str | Iterable[str] | None = None,
        dst: str | Iterable[str] | None = None,
        pids: Iterable[int] | int | None = None,
        process: str | None = None,
        owners: bool = False,
        extended: bool = False,
        info: bool = False,
        memory: bool = False,
        timers: bool = False,
    ) -> None:
        protos = [p for p, on in (("tcp", tcp), ("udp", udp)) if on] or ["tcp", "udp"]
        self.protocols = tuple(_PROTOCOLS[p] for p in protos)
        fams = tuple(families) if families is not None else (4, 6)
        for f in fams:
            if f not in _FAMILIES:
                raise ParseError(f"unknown address family {f!r}", text=str(f), accepted="4 or 6")
        if not fams:
            raise UsageError("no address family left to list (give 4, 6 or both)")
        self.families = tuple(_FAMILIES[f] for f in dict.fromkeys(fams))
        chosen = _states(states)
        if chosen is not None:
            base = chosen
            if listening:
                base = base | SS_STATE_GROUPS["listening"] | {TcpState.CLOSE}
        elif all:
            base = frozenset(TcpState)
        elif listening:
            base = frozenset({TcpState.LISTEN, TcpState.CLOSE})
        else:
            base = CONNECTED_DEFAULT
        self.states = base
        self.sports = port_ranges(sports)
        self.dports = port_ranges(dports)
        self.ports = port_ranges(ports)
        self.src = _nets(src)
        self.dst = _nets(dst)
        if isinstance(pids, int):
            pids = [pids]
        self.pids = frozenset(pids) if pids is not None else None
        self.process = process
        self.owners = owners or self.pids is not None or process is not None
        self.extended = extended
        #: ``_tcpinfo.WANT_*`` bits: timers 1, tcp_info 2, skmeminfo 4.
        self.health = (1 if timers else 0) | (2 if info else 0) | (4 if memory else 0)

    def __repr__(self) -> str:
        args = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.__slots__)
        return f"Query({args})"

    # --- what the kernel filters -------------------------------------------------------

    def state_mask(self) -> int:
        """The ``idiag_states`` bitmask (bit N = kernel state number N)."""
        mask = 0
        for state in self.states:
            mask |= 1 << state.code
        return mask

    @property
    def listen_only(self) -> bool:
        """Only listeners asked for: the kernel never walks the connection table."""
        return self.states <= {TcpState.LISTEN, TcpState.CLOSE}

    def clauses(self) -> list[list[nl.Alt]]:
        """The filter as AND-of-ORs for :func:`~portkit.see._netlink.compile_filter`."""
        out: list[list[nl.Alt]] = []
        for side, ranges in (("sport", self.sports), ("dport", self.dports)):
            alts = _range_alts(side, ranges)
            if alts:
                out.append(alts)
        if self.ports:
            either = _range_alts("sport", self.ports) + _range_alts("dport", self.ports)
            if either:
                out.append(either)
        for side, nets in (("src", self.src), ("dst", self.dst)):
            if nets:
                out.append(
                    [((side, (_FAMILIES[f], p, a[: 4 if f == 4 else 16])),) for f, p, a in nets]
                )
        return out

    def bytecode(self) -> bytes:
        return nl.compile_filter(self.clauses())

    # --- what user space filters -------------------------------------------------------

    def admits_listener(self, protocol: str, address: str, port: int, port_end: int) -> bool:
        """Whether a listener with no socket and no owner (a port NAT rules publish,
        ``address:port-port_end``) passes these filters: its protocol, family, local
        address and port; never with remote-side or owner filters."""
        if _PROTOCOLS.get(protocol) not in self.protocols:
            return False
        if _FAMILIES[6 if ":" in address else 4] not in self.families:
            return False
        if self.dports or self.dst or self.pids is not None or self.process is not None:
            return False
        span = range(port, port_end + 1)
        for ranges in (self.sports, self.ports):
            if ranges and not any(r.start <= span[-1] and span[0] <= r.end for r in ranges):
                return False
        return not (self.src and not _in_net(address, self.src, {}))

    def matches(self, row: tuple[Any, ...], cache: dict[str, tuple[int, int]]) -> bool:
        """Whether a decoded row (``SocketRecord.row`` layout) passes the kernel-side
        filters: for backends that cannot push them down."""
        if row[STATE] not in self.states:
            return False
        lport, rport = row[LOCAL_PORT], row[REMOTE_PORT] or 0
        if self.sports and not _in_ranges(lport, self.sports):
            return False
        if self.dports and not _in_ranges(rport, self.dports):
            return False
        if self.ports and not (_in_ranges(lport, self.ports) or _in_ranges(rport, self.ports)):
            return False
        if self.src and not _in_net(row[LOCAL_IP], self.src, cache):
            return False
        return not (
            self.dst and not _in_net(row[REMOTE_IP] or _any_ip(row[FAMILY]), self.dst, cache)
        )

    @property
    def owner_filtered(self) -> bool:
        return self.pids is not None or self.process is not None

    def owner_matches(self, pids: tuple[int, ...], names: tuple[str, ...]) -> bool:
        if self.pids is not None and not self.pids.intersection(pids):
            return False
        if self.process is not None:
            want = self.process.lower()
            return any(want in n.lower() for n in names)
        return True


def _any_ip(family: int) -> str:
    return "0.0.0.0" if family == 4 else "::"


def _in_ranges(port: int, ranges: tuple[PortRange, ...]) -> bool:
    return any(r.start <= port <= r.end for r in ranges)


def _range_alts(side: str, ranges: tuple[PortRange, ...]) -> list[nl.Alt]:
    alts: list[nl.Alt] = []
    for r in ranges:
        if r.start == 0 and r.end == 65535:
            return []  # matches everything: no clause at all
        if r.start == r.end:
            alts.append(((f"{side}==", r.start),))
        else:
            alts.append(((f"{side}>=", r.start), (f"{side}<=", r.end)))
    return alts

"""What ``stats``, ``top`` and the exporter count, from the kernel's raw rows. Pure.

A dump of 100,000 sockets read with tcp_info arrives as some 1,300 replies of whole
messages (``_netlink.RawRows``). Decoding every row into a ``SocketRecord.row`` (the
address text, the port numbers, the state, the role) costs as much as the kernel's
reading, yet a scrape only needs counts; so :func:`fold` takes them a column at a
time: one field of every message is a strided memoryview of the reply
(``_netlink.strided``: no object per message), which rows count is a mask of bytes
made by ``map`` over a set's ``__contains__``, and ``collections.Counter`` counts
``compress(zip(columns), mask)``. Every loop over the sockets runs in C; only the
keys (a port, an address, a state: few) become text and numbers. The rows without a
remote end (listeners, unconnected UDP sockets: few) are decoded whole.

:func:`fold` gives the :class:`~portkit.see._stats.SocketStats` that
``compute_stats`` gives for the same rows decoded (``tests/test_rawfold.py`` holds
them equal on real dumps and on made-up ones), and the exporter's per-port states
and per-destination counts (:class:`Fold`).

    >>> from portkit.model import PortRange
    >>> from portkit.see._netlink import RawRows, htons
    >>> lo = bytes([127, 0, 0, 1]) + bytes(12)
    >>> raw = RawRows([[(2, 10, htons(80), 0, lo, bytes(16), 0, 128, 0, 7),
    ...                 (2, 1, htons(80), htons(40000), lo, lo, 0, 0, 0, 8),
    ...                 (2, 1, htons(40000), htons(80), lo, lo, 0, 0, 0, 9)]])
    >>> f = fold([(2, 6, raw)], {6: {htons(80)}}, PortRange(32768, 60999))
    >>> f.stats.total, f.stats.listeners[0].connections, f.stats.ephemeral_in_use
    (3, 1, 1)
    >>> f.port_states({80}), f.destination_held({("127.0.0.1", 80)})
    ({80: {<TcpState.ESTABLISHED: 'ESTABLISHED'>: 1}}, {('127.0.0.1', '127.0.0.1', 80): 1})
"""

from __future__ import annotations

from _struct import Struct
from collections import Counter
from itertools import chain, compress
from operator import and_, itemgetter

from portkit.model import Protocol, TcpState
from portkit.see import _netlink as nl
from portkit.see._forecast import _unmap
from portkit.see._rows import _PROTOS, _STATES, attach_owners, decode
from portkit.see._stats import stats_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Iterator, Mapping
    from typing import Any

    from portkit.model import PortRange
    from portkit.see._owners import Owners
    from portkit.see._stats import SocketStats

__all__ = ["Fold", "fold"]

# (offset in a whole message, struct code, index in a RawRow) of the columns read
_STATE = (16 + 1, "B", 1)
_SPORT = (16 + 4, "H", 2)
_DPORT = (16 + 6, "H", 3)
_SRC = (16 + 8, 4)
_DST = (16 + 24, 5)
_TCP = nl.IPPROTO_TCP
_TIME_WAIT = TcpState.TIME_WAIT


def _column(part: Any, field: tuple[int, str, int]) -> Iterable[Any]:
    """One field of one ``RawRows`` part: a strided view of a uniform reply, else
    taken from its row tuples."""
    offset, code, index = field
    if isinstance(part, list):
        return map(itemgetter(index), part)
    view, size = part
    col = nl.strided(view, size, offset, code)
    if col is None:
        return map(itemgetter(index), nl._uniform_struct(size).iter_unpack(view))
    return col


def _address_column(part: Any, family: int, field: tuple[int, int]) -> Iterable[Any]:
    """One side's addresses of one part: u32 keys for a uniform IPv4 reply, else the
    16 address bytes (:func:`_ip` turns either into text)."""
    offset, index = field
    if isinstance(part, list):
        return map(itemgetter(index), part)
    view, size = part
    if family == nl.AF_INET:
        col = nl.strided(view, size, offset, "I")
        if col is not None:
            return col
    pick = _ADDRESS_PICKS.get((size, offset))
    if pick is None:
        pick = _ADDRESS_PICKS[size, offset] = Struct(f"={offset}x16s{size - offset - 16}x")
    return map(itemgetter(0), pick.iter_unpack(view))


_ADDRESS_PICKS: dict[tuple[int, int], Struct] = {}


class _Batch:
    """The columns of one (family, protocol) dump, each read once per part and then
    chained over the parts as often as a fold asks for it."""

    __slots__ = ("family", "parts", "_cols")

    def __init__(self, family: int, raw: nl.RawRows) -> None:
        self.family = family
        self.parts = raw.chunks()
        self._cols: dict[Any, list[Iterable[Any]]] = {}

    def _pieces(self, field: Any, read: Any) -> list[Iterable[Any]]:
        got = self._cols.get(field)
        if got is None:
            got = self._cols[field] = []
            for p in self.parts:
                col = read(p)
                # strided views can be read again; anything else is kept as a list
                got.append(col if isinstance(col, memoryview) else list(col))
        return got

    def col(self, field: tuple[int, str, int]) -> Iterator[Any]:
        return chain.from_iterable(self._pieces(field, lambda p: _column(p, field)))

    def addresses(self, field: tuple[int, int]) -> Iterator[Any]:
        family = self.family
        return chain.from_iterable(self._pieces(field, lambda p: _address_column(p, family, field)))

    def remoteless(self) -> list[nl.RawRow]:
        """The raw rows whose remote port is 0 (listeners, unconnected UDP), in order."""
        out: list[nl.RawRow] = []
        unpack = nl._MSG.unpack_from
        for part in self.parts:
            if isinstance(part, list):
                out += [t for t in part if not t[3]]
                continue
            view, size = part
            col = nl.strided(view, size, _DPORT[0], "H")
            if col is None:
                out += [t for t in nl._uniform_struct(size).iter_unpack(view) if not t[3]]
                continue
            packed = col.tobytes()
            at = packed.find(b"\0\0")
            while at >= 0:
                if not at % 2:  # a whole u16 of 0, not the halves of two ports
                    out.append(unpack(view, at // 2 * size + 16))
                at = packed.find(b"\0\0", at + 1)
        return out


def _ip(family: int, key: Any) -> str:
    """The text of an address key of :func:`_address_column`."""
    return nl.IP_TEXT[family][key if isinstance(key, bytes) else nl.ip4_key_bytes(key)]


_EPHEMERAL: dict[tuple[int, int], frozenset[int]] = {}


def _ephemeral_raw(ephemeral: PortRange) -> frozenset[int]:
    """The raw (network-order) values of the ephemeral range's ports (kept: a range
    rarely changes)."""
    key = (ephemeral.start, ephemeral.end)
    got = _EPHEMERAL.get(key)
    if got is None:
        if len(_EPHEMERAL) > 4:
            _EPHEMERAL.clear()
        got = _EPHEMERAL[key] = frozenset(map(nl.htons, range(key[0], key[1] + 1)))
    return got


_CLIENT_PORTS: dict[tuple[frozenset[int], frozenset[int]], frozenset[int]] = {}


def _client_raw(eph: frozenset[int], listening: frozenset[int]) -> frozenset[int]:
    """The ephemeral range's raw ports but the listening ones (the last answer kept)."""
    key = (eph, listening)
    got = _CLIENT_PORTS.get(key)
    if got is None:
        _CLIENT_PORTS.clear()
        got = _CLIENT_PORTS[key] = eph - listening
    return got


class Fold:
    """What one pass over a dump gathered.

    Attributes:
        stats: the :class:`~portkit.see._stats.SocketStats`.
        listening: the rows without a remote end (TCP listeners, unconnected UDP
            sockets), decoded, in the kernel's order, with owners when given.
        server_states: ``{port: {state: n}}`` of the TCP connections on each
            listening port (their local port; the listener itself not counted).
        dests: ``{(local ip, remote ip, remote port): n}`` of the client TCP sockets
            holding an ephemeral port (``compute_stats``'s per-destination use).
    """

    __slots__ = (
        "stats",
        "listening",
        "server_states",
        "dests",
        "_batches",
        "_listen_raw",
        "_ephemeral",
    )

    def __init__(
        self,
        stats: SocketStats,
        listening: list[tuple[Any, ...]],
        server_states: dict[int, dict[TcpState, int]],
        dests: dict[tuple[str, str, int], int],
        batches: list[tuple[int, int, nl.RawRows]],
        listen_raw: frozenset[int],
        ephemeral: PortRange,
    ) -> None:
        self.stats = stats
        self.listening = listening
        self.server_states = server_states
        self.dests = dests
        self._batches = batches
        self._listen_raw = listen_raw
        self._ephemeral = ephemeral

    def port_states(self, ports: Collection[int]) -> dict[int, dict[TcpState, int]]:
        """``{port: {state: n}}`` of the TCP sockets with a remote end whose local
        port is one of ``ports`` (those no listener holds are counted from the dump)."""
        out = {p: self.server_states[p] for p in ports if p in self.server_states}
        rest = {p for p in ports if nl.htons(p) not in self._listen_raw}
        if rest:
            out.update(_port_states(self._batches, rest))
        return out

    def destination_held(self, wanted: set[tuple[str, int]]) -> dict[tuple[str, str, int], int]:
        """``{(local ip, remote ip, port): n}``: the ephemeral-range local ports each
        local address holds towards the ``wanted`` ``(ip, port)`` destinations (an
        IPv4-mapped peer counts as its IPv4 address), any role."""
        held = {k: n for k, n in self.dests.items() if (_unmap(k[1]), k[2]) in wanted}
        # the sockets of a listening port inside the ephemeral range are not clients
        serving = self._listen_raw & _ephemeral_raw(self._ephemeral)
        if serving:
            dports = frozenset(nl.htons(p) for _, p in wanted)
            for k, n in _held(self._batches, serving, dports).items():
                if (_unmap(k[1]), k[2]) in wanted:
                    held[k] = held.get(k, 0) + n
        return held


def fold(
    batches: Iterable[tuple[int, int, nl.RawRows]],
    listen_ports: Mapping[int, Collection[int]],
    ephemeral: PortRange,
    *,
    owners_hidden: int = 0,
    time_wait: Mapping[tuple[str, str, int], list[float]] | None = None,
    owners: Owners | None = None,
    owner_names: dict[int, tuple[str | None, str | None]] | None = None,
) -> Fold:
    """The stats of a dump's raw rows (as ``compute_stats`` of them decoded) and the
    exporter's per-port and per-destination counts.

    Args:
        batches: ``(family, protocol, raw rows)`` as ``Scan.batches``.
        listen_ports: the raw listening ports per protocol (``Scan.listen_ports``).
        ephemeral: the namespace's ephemeral range.
        owners_hidden, time_wait: as for ``compute_stats``.
        owners, owner_names: ``Scan.owners`` and ``Scan.owner_names``, to name the
            listeners' owners (the rows of ``Scan.rows`` would carry them).
    """
    batches = list(batches)
    counts: dict[tuple[Protocol, TcpState], int] = {}
    listeners: list[tuple[Any, ...]] = []
    served: dict[tuple[int, str, int], int] = {}
    server_states: dict[int, dict[TcpState, int]] = {}
    used: set[int] = set()
    dests: dict[tuple[str, str, int], int] = {}
    eph = _ephemeral_raw(ephemeral)
    listen_tcp = frozenset(listen_ports.get(_TCP, ()))
    total = 0
    for family, proto, raw in batches:
        if not raw:
            continue
        b = _Batch(family, raw)
        total += len(raw)
        kind = _PROTOS[proto]
        for number, n in Counter(b.col(_STATE)).items():
            key = (kind, _STATES[number])
            counts[key] = counts.get(key, 0) + n
        remoteless = b.remoteless()
        listeners += decode(remoteless, family, proto, listen_ports.get(proto, ()))
        if proto == _TCP:
            _fold_tcp(b, remoteless, listen_tcp, eph, served, server_states, used, dests)
    if owners is not None:
        listeners = attach_owners(listeners, owners, owner_names or {})
    stats = stats_of(
        counts, total, listeners, served, len(used), dests, ephemeral, owners_hidden, time_wait
    )
    return Fold(stats, listeners, server_states, dests, batches, listen_tcp, ephemeral)


def _fold_tcp(
    b: _Batch,
    remoteless: list[nl.RawRow],
    listening: frozenset[int],
    eph: frozenset[int],
    served: dict[tuple[int, str, int], int],
    server_states: dict[int, dict[TcpState, int]],
    used: set[int],
    dests: dict[tuple[str, str, int], int],
) -> None:
    """One TCP dump's connections: the server side (local port listening) by port,
    address and state; the client side (local port ephemeral) by destination."""
    family = b.family
    fam = 4 if family == nl.AF_INET else 6
    ports = nl.PORTS
    if listening:
        mask = bytes(map(listening.__contains__, b.col(_SPORT)))
        side: dict[tuple[int, str, int], int] = {}
        picked = compress(zip(b.col(_SPORT), b.addresses(_SRC), b.col(_STATE), strict=True), mask)
        for (sport, src, number), n in Counter(picked).items():
            k = (ports[sport], _ip(family, src), number)
            side[k] = side.get(k, 0) + n
        for t in remoteless:  # the listeners themselves are no connection
            if t[2] in listening:
                k = (ports[t[2]], nl.IP_TEXT[family][t[4]], t[1])
                side[k] -= 1
        for (port, ip, number), n in side.items():
            if not n:
                continue
            state = _STATES[number]
            by_state = server_states.setdefault(port, {})
            by_state[state] = by_state.get(state, 0) + n
            if state is not _TIME_WAIT:
                key = (port, ip, fam)
                served[key] = served.get(key, 0) + n
    clients = _client_raw(eph, listening)
    if any(t[2] in clients for t in remoteless):
        mask = bytes(map(and_, map(clients.__contains__, b.col(_SPORT)), map(bool, b.col(_DPORT))))
    else:
        mask = bytes(map(clients.__contains__, b.col(_SPORT)))
    used.update(compress(b.col(_SPORT), mask))
    picked = compress(zip(b.addresses(_SRC), b.addresses(_DST), b.col(_DPORT), strict=True), mask)
    for (src, dst, dport), n in Counter(picked).items():
        d = (_ip(family, src), _ip(family, dst), ports[dport])
        dests[d] = dests.get(d, 0) + n


def _port_states(
    batches: Iterable[tuple[int, int, nl.RawRows]], ports: Collection[int]
) -> dict[int, dict[TcpState, int]]:
    """``{port: {state: n}}`` of the TCP sockets with a remote end on local ``ports``."""
    wanted = frozenset(nl.htons(p) for p in ports)
    out: dict[int, dict[TcpState, int]] = {}
    for family, proto, raw in batches:
        if proto != _TCP or not raw:
            continue
        b = _Batch(family, raw)
        mask = bytes(map(wanted.__contains__, b.col(_SPORT)))
        got = Counter(compress(zip(b.col(_SPORT), b.col(_STATE), strict=True), mask))
        for t in b.remoteless():
            if t[2] in wanted:
                got[t[2], t[1]] -= 1
        for (sport, number), n in got.items():
            if n:
                by_state = out.setdefault(nl.PORTS[sport], {})
                state = _STATES[number]
                by_state[state] = by_state.get(state, 0) + n
    return out


def _held(
    batches: Iterable[tuple[int, int, nl.RawRows]], sports: frozenset[int], dports: frozenset[int]
) -> dict[tuple[str, str, int], int]:
    """``{(local ip, remote ip, remote port): n}`` of the TCP sockets whose raw local
    port is in ``sports`` and raw remote port in ``dports``."""
    out: dict[tuple[str, str, int], int] = {}
    for family, proto, raw in batches:
        if proto != _TCP or not raw:
            continue
        b = _Batch(family, raw)
        mask = bytes(
            map(
                and_,
                map(sports.__contains__, b.col(_SPORT)),
                map(dports.__contains__, b.col(_DPORT)),
            )
        )
        picked = compress(
            zip(b.addresses(_SRC), b.addresses(_DST), b.col(_DPORT), strict=True), mask
        )
        for (src, dst, dport), n in Counter(picked).items():
            k = (_ip(family, src), _ip(family, dst), nl.PORTS[dport])
            out[k] = out.get(k, 0) + n
    return out

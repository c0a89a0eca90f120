"""TCP health in sock_diag replies: tcp_info, skmeminfo and timers, as bytes. No I/O.

What ``ss -i``, ``ss -m`` and ``ss -o`` show comes with the dump when the request's
extension bits ask for it (``inet_diag_req_v2.idiag_ext``): ``INET_DIAG_INFO``
(``struct tcp_info``, ``linux/tcp.h``), ``INET_DIAG_CONG`` (the congestion control's
name) and ``INET_DIAG_SKMEMINFO`` (``u32[SK_MEMINFO_VARS]``, ``linux/sock_diag.h``);
the timer (``idiag_timer``, ``idiag_retrans``, ``idiag_expires``) is in every message.
Nothing is asked for unless a listing shows it: ``ls -tan`` requests no extension.

A socket's health is one **entry**: ``(timers, skmem, info, cong, cookie)``:

- ``timers``: ``(timer, retrans, expires_ms)``; ``timer`` indexes :data:`TIMER_NAMES`;
- ``skmem``: the :data:`SKMEM_FIELDS` (ss's ``skmem:(r..,rb..,...)``) or None;
- ``info``: ``struct tcp_info`` as a tuple in :data:`TCP_INFO_FIELDS` order (None
  where an older kernel's shorter struct ends), or None (UDP, TIME-WAIT, SYN-RECV);
- ``cong``: ``"cubic"``, ``"bbr"``, ... or None;
- ``cookie``: the kernel's id of the socket (unique while the system runs; destroy
  events carry it too).

``struct tcp_info`` only ever grew at its end, so a kernel's struct is a prefix of
:data:`TCP_INFO_LAYOUT` (104 bytes in 2.6, 280 in 6.18) and a longer one from a newer
kernel is read as far as this layout goes.

    >>> import struct
    >>> info = parse_tcp_info(struct.pack("=8B24I", *range(8), *range(100, 124)))
    >>> info[RTO], info[SND_CWND], info[TOTAL_RETRANS], info[BYTES_ACKED]
    (100, 118, 123, None)
    >>> parse_skmeminfo(struct.pack("=9I", 0, 131072, 0, 2626560, 0, 0, 0, 0, 3))[SK_DROPS]
    3
    >>> timer_text(2, 7140000, 0), timer_text(1, 1500, 2), timer_text(3, 59843, 0)
    ('keepalive,119min,0', 'on,1.500ms,2', 'timewait,59sec,0')

Replies are decoded two ways with the same result (a property test holds them
equal): message by message (:func:`walk_entries`), and, for a reply whose messages
all have one size and the same attributes at the same places, column-wise with one
``struct.iter_unpack`` per part (:func:`chunk_entries`), which is what keeps
``ls -tin`` at 100,000 sockets near ``ss -tin``.
"""

from __future__ import annotations

from _bisect import bisect_right
from _operator import itemgetter
from _struct import Struct

from portkit.see import _netlink as nl

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any

__all__ = [
    "EXT_CONG",
    "EXT_INFO",
    "EXT_SKMEMINFO",
    "SKMEM_FIELDS",
    "TCP_INFO_FIELDS",
    "TCP_INFO_LAYOUT",
    "TIMER_NAMES",
    "WANT_ANY_ORDER",
    "WANT_INFO",
    "WANT_MEMORY",
    "WANT_TIMERS",
    "HealthRows",
    "chunk_entries",
    "entry_of_message",
    "ext_bits",
    "format_ms",
    "parse_skmeminfo",
    "parse_tcp_info",
    "split_chunk",
    "timer_text",
    "walk_entries",
]

# What a listing asks for (``ls -o``, ``-i``, ``-m``), as bits.
WANT_TIMERS, WANT_INFO, WANT_MEMORY = 1, 2, 4
#: For readers that only count (stats, the exporter): a reply's rows may be regrouped
#: (:func:`split_chunk`) rather than kept in the kernel's order.
WANT_ANY_ORDER = 8

# Request extension bits: 1 << (INET_DIAG_x - 1) (linux/inet_diag.h).
ATTR_MEMINFO, ATTR_INFO, ATTR_CONG, ATTR_SKMEMINFO = 1, 2, 4, 7
EXT_INFO = 1 << (ATTR_INFO - 1)
EXT_CONG = 1 << (ATTR_CONG - 1)
EXT_SKMEMINFO = 1 << (ATTR_SKMEMINFO - 1)


def ext_bits(want: int) -> int:
    """The ``idiag_ext`` byte for what a listing shows (timers need none).

    >>> ext_bits(WANT_TIMERS), ext_bits(WANT_INFO) == EXT_INFO | EXT_CONG
    (0, True)
    """
    ext = 0
    if want & WANT_INFO:
        ext |= EXT_INFO | EXT_CONG
    if want & WANT_MEMORY:
        ext |= EXT_SKMEMINFO
    return ext


#: ``struct tcp_info`` (include/uapi/linux/tcp.h) in order: (field, struct code).
#: Byte 6 holds ``snd_wscale:4, rcv_wscale:4`` and byte 7
#: ``delivery_rate_app_limited:1, fastopen_client_fail:2`` (bit-fields, low bits
#: first on little-endian machines: :func:`wscale`, :func:`app_limited`).
TCP_INFO_LAYOUT: tuple[tuple[str, str], ...] = (
    ("state", "B"),
    ("ca_state", "B"),
    ("retransmits", "B"),
    ("probes", "B"),
    ("backoff", "B"),
    ("options", "B"),
    ("wscale", "B"),
    ("flags", "B"),
    ("rto", "I"),
    ("ato", "I"),
    ("snd_mss", "I"),
    ("rcv_mss", "I"),
    ("unacked", "I"),
    ("sacked", "I"),
    ("lost", "I"),
    ("retrans", "I"),
    ("fackets", "I"),
    ("last_data_sent", "I"),
    ("last_ack_sent", "I"),
    ("last_data_recv", "I"),
    ("last_ack_recv", "I"),
    ("pmtu", "I"),
    ("rcv_ssthresh", "I"),
    ("rtt", "I"),
    ("rttvar", "I"),
    ("snd_ssthresh", "I"),
    ("snd_cwnd", "I"),
    ("advmss", "I"),
    ("reordering", "I"),
    ("rcv_rtt", "I"),
    ("rcv_space", "I"),
    ("total_retrans", "I"),  # 104 bytes: Linux 2.6
    ("pacing_rate", "Q"),
    ("max_pacing_rate", "Q"),  # 3.15
    ("bytes_acked", "Q"),
    ("bytes_received", "Q"),  # 4.1
    ("segs_out", "I"),
    ("segs_in", "I"),  # 4.2
    ("notsent_bytes", "I"),
    ("min_rtt", "I"),
    ("data_segs_in", "I"),
    ("data_segs_out", "I"),  # 4.6
    ("delivery_rate", "Q"),  # 4.9
    ("busy_time", "Q"),
    ("rwnd_limited", "Q"),
    ("sndbuf_limited", "Q"),  # 4.10
    ("delivered", "I"),
    ("delivered_ce", "I"),  # 4.18
    ("bytes_sent", "Q"),
    ("bytes_retrans", "Q"),
    ("dsack_dups", "I"),
    ("reord_seen", "I"),  # 4.19
    ("rcv_ooopack", "I"),
    ("snd_wnd", "I"),  # 5.4
    ("rcv_wnd", "I"),
    ("rehash", "I"),  # 6.2
    ("total_rto", "H"),
    ("total_rto_recoveries", "H"),
    ("total_rto_time", "I"),  # 6.7: 248 bytes
)
TCP_INFO_FIELDS = tuple(name for name, _ in TCP_INFO_LAYOUT)
_INFO_SIZES = {"B": 1, "H": 2, "I": 4, "Q": 8}

#: Where each field ends: a struct of ``n`` bytes holds the fields ending at or before n.
_INFO_ENDS: list[int] = []
_end = 0
for _name, _code in TCP_INFO_LAYOUT:
    _end += _INFO_SIZES[_code]
    _INFO_ENDS.append(_end)
del _end, _name, _code
#: The oldest layout (through ``total_retrans``); anything shorter is not a tcp_info.
TCP_INFO_MIN = 104
TCP_INFO_SIZE = _INFO_ENDS[-1]

(
    STATE,
    CA_STATE,
    RETRANSMITS,
    PROBES,
    BACKOFF,
    OPTIONS,
    WSCALE,
    FLAGS,
    RTO,
    ATO,
    SND_MSS,
    RCV_MSS,
    UNACKED,
    SACKED,
    LOST,
    RETRANS,
    FACKETS,
    LAST_DATA_SENT,
    LAST_ACK_SENT,
    LAST_DATA_RECV,
    LAST_ACK_RECV,
    PMTU,
    RCV_SSTHRESH,
    RTT,
    RTTVAR,
    SND_SSTHRESH,
    SND_CWND,
    ADVMSS,
    REORDERING,
    RCV_RTT,
    RCV_SPACE,
    TOTAL_RETRANS,
    PACING_RATE,
    MAX_PACING_RATE,
    BYTES_ACKED,
    BYTES_RECEIVED,
    SEGS_OUT,
    SEGS_IN,
    NOTSENT_BYTES,
    MIN_RTT,
    DATA_SEGS_IN,
    DATA_SEGS_OUT,
    DELIVERY_RATE,
    BUSY_TIME,
    RWND_LIMITED,
    SNDBUF_LIMITED,
    DELIVERED,
    DELIVERED_CE,
    BYTES_SENT,
    BYTES_RETRANS,
    DSACK_DUPS,
    REORD_SEEN,
    RCV_OOOPACK,
    SND_WND,
    RCV_WND,
    REHASH,
    TOTAL_RTO,
    TOTAL_RTO_RECOVERIES,
    TOTAL_RTO_TIME,
) = range(len(TCP_INFO_FIELDS))

#: ``tcpi_options`` bits (linux/tcp.h TCPI_OPT_*) and the words ss prints for them.
OPTION_NAMES = ((1, "ts"), (2, "sack"), (4, "wscale"), (8, "ecn"), (16, "ecnseen"))

#: ss's names for the ``skmem:(...)`` values (SK_MEMINFO_*), in kernel order.
SKMEM_FIELDS = ("r", "rb", "t", "tb", "f", "w", "o", "bl", "d")
SK_RMEM, SK_RCVBUF, SK_WMEM, SK_SNDBUF, SK_FWD, SK_QUEUED, SK_OPTMEM, SK_BACKLOG, SK_DROPS = range(
    9
)
#: Kernels before backlog (3.x) sent 7 values; drops came later (4.x).
SKMEM_MIN = 7

#: ``idiag_timer`` values (ss's names); 5 and above: ``unknown``.
TIMER_NAMES = ("off", "on", "keepalive", "timewait", "persist", "unknown")

#: Entry positions.
E_TIMERS, E_SKMEM, E_INFO, E_CONG, E_COOKIE = range(5)

Entry = tuple[
    tuple[int, int, int], "tuple[Any, ...] | None", "tuple[Any, ...] | None", "str | None", int
]


def _parse_error(message: str, data: bytes | memoryview) -> Exception:
    from portkit.errors import ParseError

    return ParseError(message, text=bytes(data[:64]).hex())


def parse_tcp_info(data: bytes | memoryview) -> tuple[Any, ...]:
    """``struct tcp_info`` as a tuple in :data:`TCP_INFO_FIELDS` order.

    Fields beyond the end of an older kernel's shorter struct are None; bytes beyond
    :data:`TCP_INFO_SIZE` (a newer kernel's fields) are ignored.

    Raises:
        ParseError: fewer than :data:`TCP_INFO_MIN` bytes (not a tcp_info of any
            kernel).
    """
    n = len(data)
    if n < TCP_INFO_MIN:
        raise _parse_error(
            f"tcp_info of {n} bytes: shorter than the oldest layout ({TCP_INFO_MIN})", data
        )
    known = _info_count(n)
    values = _info_struct(known).unpack_from(data)
    return values + (None,) * (len(TCP_INFO_FIELDS) - known)


def _info_count(size: int) -> int:
    """How many :data:`TCP_INFO_LAYOUT` fields a struct of ``size`` bytes holds.

    >>> _info_count(TCP_INFO_MIN), _info_count(TCP_INFO_MIN + 7), _info_count(1 << 12)
    (32, 32, 59)
    """
    return bisect_right(_INFO_ENDS, size)  # the ends only grow


_info_structs: dict[int, Struct] = {}


def _info_struct(count: int) -> Struct:
    s = _info_structs.get(count)
    if s is None:
        s = _info_structs[count] = Struct("=" + "".join(c for _, c in TCP_INFO_LAYOUT[:count]))
    return s


def parse_skmeminfo(data: bytes | memoryview) -> tuple[Any, ...]:
    """``INET_DIAG_SKMEMINFO`` (u32 values) as the 9 :data:`SKMEM_FIELDS`; None for the
    ones an older kernel did not send.

    Raises:
        ParseError: not a whole number of u32, or fewer than :data:`SKMEM_MIN` of them.
    """
    n = len(data)
    if n % 4 or n < 4 * SKMEM_MIN:
        raise _parse_error(f"skmeminfo of {n} bytes: not {SKMEM_MIN} or more u32 values", data)
    count = min(n // 4, len(SKMEM_FIELDS))
    values: tuple[Any, ...] = Struct(f"={count}I").unpack_from(data)
    return values + (None,) * (len(SKMEM_FIELDS) - count)


def parse_cong(data: bytes | memoryview) -> str:
    """``INET_DIAG_CONG``: a NUL-terminated name.

    >>> parse_cong(b"cubic\\x00\\x00\\x00")
    'cubic'
    """
    raw = bytes(data).split(b"\0", 1)[0]
    return raw.decode("ascii", "replace")


def wscale(info: tuple[Any, ...]) -> tuple[int, int] | None:
    """``(snd_wscale, rcv_wscale)`` when window scaling is on, else None."""
    if not info[OPTIONS] & 4:
        return None
    byte = info[WSCALE]
    return (byte & 0xF, byte >> 4) if _LITTLE else (byte >> 4, byte & 0xF)


def app_limited(info: tuple[Any, ...]) -> bool:
    """``tcpi_delivery_rate_app_limited``: the last delivery rate sample was limited
    by the application, not the network."""
    return bool(info[FLAGS] & (1 if _LITTLE else 0x80))


_LITTLE = Struct("=H").pack(1) == b"\x01\x00"


def format_ms(ms: int) -> str:
    """A timer's time left as ss prints it (``print_ms_timer`` in misc/ss.c).

    >>> format_ms(7140000), format_ms(59843), format_ms(1500), format_ms(200), format_ms(0)
    ('119min', '59sec', '1.500ms', '200ms', '')
    """
    secs, msecs = divmod(ms, 1000)
    minutes, secs = divmod(secs, 60)
    out = ""
    if minutes:
        msecs = 0
        out = f"{minutes}min"
        if minutes > 9:
            secs = 0
    if secs:
        if secs > 9:
            msecs = 0
        out += f"{secs}{'.' if msecs else 'sec'}"
    if msecs:
        out += f"{msecs:03d}ms"
    return out


def timer_text(timer: int, expires: int, retrans: int) -> str:
    """ss's ``timer:(NAME,TIME,RETRANS)`` without the wrapping, or ``""`` when off."""
    if not timer:
        return ""
    return f"{TIMER_NAMES[min(timer, 5)]},{format_ms(expires)},{retrans}"


# --- whole messages ----------------------------------------------------------------------

_HDR = Struct("=IHHII")
_NLA = Struct("=HH")
_MSG_SIZE = 72  # struct inet_diag_msg
_BASE = 16 + _MSG_SIZE
# timer, retrans at message offsets 18, 19; the cookie at 60, expires at 68
_TIMERS = Struct("=18xBB48xI")
_COOKIE = Struct("=60xQ")


def entry_of_message(data: bytes | memoryview, offset: int, length: int, want: int) -> Entry:
    """The entry of one SOCK_DIAG_BY_FAMILY message (``data[offset:offset+length]``).

    Attributes that do not parse (a truncated tcp_info, say) read as absent rather
    than failing the listing; :func:`parse_tcp_info` and :func:`parse_skmeminfo`
    say why when called on their own.
    """
    timer, retrans, expires = _TIMERS.unpack_from(data, offset)
    skmem = info = cong = None
    if want & (WANT_INFO | WANT_MEMORY):
        attrs = nl.parse_attrs(data, offset + _BASE, offset + length)
        if want & WANT_MEMORY and ATTR_SKMEMINFO in attrs:
            skmem = _or_none(parse_skmeminfo, attrs[ATTR_SKMEMINFO])
        if want & WANT_INFO:
            if ATTR_INFO in attrs:
                info = _or_none(parse_tcp_info, attrs[ATTR_INFO])
            if ATTR_CONG in attrs:
                cong = parse_cong(attrs[ATTR_CONG])
    return ((timer, retrans, expires), skmem, info, cong, _COOKIE.unpack_from(data, offset)[0])


def _or_none(parse: Any, data: bytes) -> Any:
    from portkit.errors import ParseError

    try:
        return parse(data)
    except ParseError:
        return None


def walk_entries(data: bytes | memoryview, want: int) -> tuple[list[nl.RawRow], list[Entry], bool]:
    """Rows and entries of one ``recv`` of a dump, message by message; and whether
    the dump is done.

    Raises:
        NetlinkError: the kernel answered with an error.
    """
    rows: list[nl.RawRow] = []
    entries: list[Entry] = []
    off, end = 0, len(data)
    unpack_msg = nl._MSG.unpack_from
    while off + 16 <= end:
        length, mtype = _HDR.unpack_from(data, off)[:2]
        if length < 16 or off + length > end:
            break
        if mtype == nl.SOCK_DIAG_BY_FAMILY and length >= _BASE:
            rows.append(unpack_msg(data, off + 16))
            entries.append(entry_of_message(data, off, length, want))
        elif mtype == nl.NLMSG_DONE:
            return rows, entries, True
        elif mtype == nl.NLMSG_ERROR:
            nl._error(data, off, length)
        off += (length + 3) & ~3
    return rows, entries, False


class _Layout:
    """Where the wanted attributes sit in every message of a uniform reply."""

    __slots__ = ("size", "skmem", "info", "cong", "structs")

    def __init__(
        self,
        size: int,
        skmem: tuple[int, int] | None,
        info: tuple[int, int] | None,
        cong: tuple[int, int] | None,
    ) -> None:
        self.size = size
        self.skmem, self.info, self.cong = skmem, info, cong  # (payload offset, length)
        structs: list[Struct | None] = [Struct(f"=18xBB48xI{size - 72}x")]
        if skmem is None:
            structs.append(None)
        else:
            off, n = skmem
            count = min(n // 4, len(SKMEM_FIELDS))
            structs.append(Struct(f"={off}x{count}I{size - off - 4 * count}x"))
        if info is None:
            structs.append(None)
        else:
            off, n = info
            known = _info_count(n)
            fmt = "".join(c for _, c in TCP_INFO_LAYOUT[:known])
            structs.append(Struct(f"={off}x{fmt}{size - off - _INFO_ENDS[known - 1]}x"))
        if cong is None:
            structs.append(None)
        else:
            off, n = cong
            structs.append(Struct(f"={off}x{n}s{size - off - n}x"))
        structs.append(Struct(f"=60xQ{size - 68}x"))
        self.structs = structs

    def entries(self, view: memoryview) -> Iterator[Entry]:
        from itertools import repeat

        t, s, i, c, k = self.structs
        assert t is not None
        assert k is not None
        timers = t.iter_unpack(view)
        skmem: Iterable[Any] = repeat(None)
        info: Iterable[Any] = repeat(None)
        cong: Iterable[Any] = repeat(None)
        if s is not None:
            skmem = s.iter_unpack(view)
            if len(SKMEM_FIELDS) > s.size // 4:  # an older kernel: pad with None
                skmem = map(_pad_skmem, skmem)
        if i is not None:
            info = i.iter_unpack(view)
            if self.info is not None and _info_count(self.info[1]) < len(TCP_INFO_FIELDS):
                info = map(_pad_info, info)
        if c is not None:
            cong = map(_CONG_TEXT.__getitem__, c.iter_unpack(view))
        cookies = map(itemgetter(0), k.iter_unpack(view))
        return zip(timers, skmem, info, cong, cookies)  # noqa: B905 (repeat is endless on purpose)

    def pick(
        self, view: memoryview, fields: tuple[tuple[int, str], ...], head: bool = True
    ) -> Iterator[Any] | None:
        """Tuples of the raw source port, the cookie (``head``) and ``fields`` (``(offset
        in the tcp_info, struct code)``, in order) of every message; None when this
        layout has no tcp_info long enough."""
        if self.info is None:
            return None
        off, n = self.info
        if fields[-1][0] + _INFO_SIZES[fields[-1][1]] > n:
            return None
        key = (self.size, off, fields, head)
        s = _PICKS.get(key)
        if s is None:
            fmt, pos = ("=20xH38xQ", 68) if head else ("=", 0)
            for rel, code in fields:
                fmt += f"{off + rel - pos}x{code}"
                pos = off + rel + _INFO_SIZES[code]
            s = _PICKS[key] = Struct(f"{fmt}{self.size - pos}x")
        return s.iter_unpack(view)

    def columns(self, view: memoryview, names: tuple[str, ...]) -> tuple[memoryview, ...] | None:
        """The raw source port, the cookie and the tcp_info fields ``names`` of every
        message as strided views of the reply (no object per message); None when the
        tcp_info ends before one of them or a field cannot be strided."""
        if self.info is None:
            return None
        off, n = self.info
        size = self.size
        out = [nl.strided(view, size, 16 + 4, "H"), nl.strided(view, size, 60, "Q")]
        for name in names:
            code = _CODES[name]
            at = INFO_OFFSETS[name]
            if at + _INFO_SIZES[code] > n:
                return None
            out.append(nl.strided(view, size, off + at, code))
        if any(c is None for c in out):
            return None
        return tuple(c for c in out if c is not None)

    def column(self, view: memoryview, name: str) -> memoryview | None:
        """One tcp_info field of every message as a strided view of the reply (no
        objects made), or None when the field is past this kernel's struct or the
        view cannot stride at its width."""
        if self.info is None:
            return None
        off, n = self.info
        code = _CODES[name]
        width = _INFO_SIZES[code]
        at = off + INFO_OFFSETS[name]
        if at + width > off + n or at % width or self.size % width:
            return None
        cast: Any = view.cast
        col: memoryview = cast(code)[at // width :: self.size // width]
        return col


_CODES = dict(TCP_INFO_LAYOUT)
_PICKS: dict[Any, Struct] = {}
#: Byte offset of each tcp_info field.
INFO_OFFSETS = {
    name: end - _INFO_SIZES[code]
    for (name, code), end in zip(TCP_INFO_LAYOUT, _INFO_ENDS, strict=True)
}


def _pad_skmem(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return values + (None,) * (len(SKMEM_FIELDS) - len(values))


def _pad_info(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return values + (None,) * (len(TCP_INFO_FIELDS) - len(values))


class _CongText(dict[tuple[bytes], str]):
    def __missing__(self, key: tuple[bytes]) -> str:
        text = self[key] = parse_cong(key[0])
        return text


_CONG_TEXT = _CongText()


def _layout_of(view: memoryview, size: int, want: int) -> tuple[_Layout | None, list[int]]:
    """The layout of the first message and the offsets of the attribute headers every
    other message must repeat; None when an attribute is malformed."""
    attrs: dict[int, tuple[int, int]] = {}
    heads: list[int] = []
    off = _BASE
    while off + 4 <= size:
        length, atype = _NLA.unpack_from(view, off)
        if length < 4 or off + length > size:
            return None, []
        atype &= 0x3FFF
        if atype in (ATTR_SKMEMINFO, ATTR_INFO, ATTR_CONG):
            attrs[atype] = (off + 4, length - 4)
            heads.append(off)
        off += (length + 3) & ~3
    skmem = attrs.get(ATTR_SKMEMINFO) if want & WANT_MEMORY else None
    info = attrs.get(ATTR_INFO) if want & WANT_INFO else None
    cong = attrs.get(ATTR_CONG) if want & WANT_INFO else None
    if skmem is not None and (skmem[1] % 4 or skmem[1] < 4 * SKMEM_MIN):
        return None, []
    if info is not None and info[1] < TCP_INFO_MIN:
        return None, []
    key = (size, skmem, info, cong)
    layout = _LAYOUTS.get(key)
    if layout is None:
        layout = _LAYOUTS[key] = _Layout(size, skmem, info, cong)
    return layout, heads


_LAYOUTS: dict[tuple[Any, ...], _Layout] = {}


def chunk_entries(
    data: bytes | memoryview, want: int
) -> tuple[Any, list[Entry] | tuple[_Layout, memoryview], bool]:
    """One ``recv`` of a dump: a :class:`~portkit.see._netlink.RawRows` part, its
    entries (a list, or ``(layout, view)`` to unpack column-wise) and whether the
    dump is done.

    A reply whose messages all have the first one's size, type and wanted attribute
    headers is kept as bytes; anything else is walked, the messages of its commonest
    size decoded together (:func:`_walk_grouped`).

    Raises:
        NetlinkError: the kernel answered with an error.
    """
    if len(data) < 16:
        return [], [], False
    uniform = _uniform_reply(data, want)
    if uniform is not None:
        return uniform
    return _walk_grouped(data, want)


def _uniform_reply(
    data: bytes | memoryview, want: int
) -> tuple[Any, tuple[_Layout, memoryview], bool] | None:
    """:func:`chunk_entries` of a reply whose messages all have one layout, else None."""
    n = len(data)
    size, mtype = _HDR.unpack_from(data, 0)[:2]
    done = False
    body = n
    if n >= 20 and _HDR.unpack_from(data, n - 20)[:2] == (20, nl.NLMSG_DONE):
        body, done = n - 20, True
    if mtype == nl.SOCK_DIAG_BY_FAMILY and size >= _BASE and size % 4 == 0 and body:
        view = memoryview(data)
        layout = _uniform_layout(view[:body], size, want)
        if layout is not None:
            part = view[:body]
            return (part, size), (layout, part), done
    return None


def _uniform_layout(view: memoryview, size: int, want: int) -> _Layout | None:
    """The layout of whole messages of ``size`` bytes when every one has the first
    one's length, type and flags, and the wanted attributes' headers (length and type)
    at the same places (checked as u32 columns); else None."""
    count, extra = divmod(len(view), size)
    if extra or size % 4 or size < _BASE:
        return None
    words = view.cast("I")
    step = size // 4
    if not all(words[w::step].tobytes() == words[w : w + 1].tobytes() * count for w in (0, 1)):
        return None
    layout, heads = _layout_of(view, size, want)
    if layout is None or not all(
        words[h // 4 :: step].tobytes() == words[h // 4 : h // 4 + 1].tobytes() * count
        for h in heads
    ):
        return None
    return layout


#: Below this many messages of one size a mixed reply is simply walked.
_GROUP_MIN = 8


def _messages(data: bytes | memoryview) -> tuple[list[int], list[int], bool] | None:
    """The offsets and lengths of a reply's socket messages and whether the dump is
    done; None when the reply holds an error or ends in a truncated message (the
    message walk says which)."""
    offsets: list[int] = []
    lengths: list[int] = []
    off, end = 0, len(data)
    hdr = _HDR.unpack_from
    while off + 16 <= end:
        length, mtype = hdr(data, off)[:2]
        if length < 16 or off + length > end or mtype == nl.NLMSG_ERROR:
            return None
        if mtype == nl.SOCK_DIAG_BY_FAMILY and length >= _BASE:
            offsets.append(off)
            lengths.append(length)
        elif mtype == nl.NLMSG_DONE:
            return offsets, lengths, True
        off += (length + 3) & ~3
    return offsets, lengths, False


def _groups(
    data: bytes | memoryview, want: int
) -> tuple[list[int], list[int], dict[int, tuple[memoryview, _Layout]], bool] | None:
    """A mixed reply's messages, grouped by size: ``(offsets, lengths, {size:
    (joined, layout)}, done)``, each group of at least :data:`_GROUP_MIN` messages
    with one layout copied together (the others are left out); None when the reply
    holds an error or a truncated message."""
    found = _messages(data)
    if found is None:
        return None
    offsets, lengths, done = found
    view = memoryview(data)
    groups: dict[int, tuple[memoryview, _Layout]] = {}
    for size in sorted(set(lengths), key=lengths.count, reverse=True):
        picked = [view[o : o + size] for o, n in zip(offsets, lengths, strict=True) if n == size]
        if len(picked) < _GROUP_MIN:
            break
        joined = memoryview(b"".join(picked))
        layout = _uniform_layout(joined, size, want)
        if layout is not None:
            groups[size] = (joined, layout)
    return offsets, lengths, groups, done


def _walk_grouped(data: bytes | memoryview, want: int) -> tuple[list[nl.RawRow], list[Entry], bool]:
    """What :func:`walk_entries` gives, for a reply whose messages differ in size (the
    TIME-WAIT sockets' carry no attributes, and a busy host has them everywhere in
    its table): the messages of each common size are copied together and decoded
    column-wise (:class:`_Layout`), the others one by one, and all put back in order.

    Raises:
        NetlinkError: the kernel answered with an error.
    """
    got = _groups(data, want)
    if got is None or not got[2]:
        return walk_entries(data, want)
    offsets, lengths, groups, done = got
    decoded = {
        size: zip(nl._uniform_struct(size).iter_unpack(joined), layout.entries(joined), strict=True)
        for size, (joined, layout) in groups.items()
    }
    rows: list[nl.RawRow] = []
    entries: list[Entry] = []
    unpack_msg = nl._MSG.unpack_from
    for o, n in zip(offsets, lengths, strict=True):
        group = decoded.get(n)
        if group is not None:
            row, entry = next(group)
        else:
            row = unpack_msg(data, o + 16)
            entry = entry_of_message(data, o, n, want)
        rows.append(row)
        entries.append(entry)
    return rows, entries, done


def split_chunk(data: bytes | memoryview, want: int) -> tuple[list[tuple[Any, Any]], bool]:
    """One ``recv`` of a dump as :class:`HealthRows` parts, ``[(part, entries)]``, for
    readers that only count (``WANT_ANY_ORDER``): a mixed reply becomes a uniform part
    per common size (the full sockets', the TIME-WAIT ones'), decoded column-wise, and
    a list part of the few others; every row is there, in another order than the
    kernel's within the reply. Others as :func:`chunk_entries`.

    Raises:
        NetlinkError: the kernel answered with an error.
    """
    if len(data) < 16:
        return [], False
    uniform = _uniform_reply(data, want)
    if uniform is not None:
        return [(uniform[0], uniform[1])], uniform[2]
    got = _groups(data, want)
    if got is None or not got[2]:
        rows, entries, done = walk_entries(data, want)
        return [(rows, entries)], done
    offsets, lengths, groups, done = got
    pieces: list[tuple[Any, Any]] = [
        ((joined, size), (layout, joined)) for size, (joined, layout) in groups.items()
    ]
    others = [(o, n) for o, n in zip(offsets, lengths, strict=True) if n not in groups]
    if others:
        unpack_msg = nl._MSG.unpack_from
        rows = [unpack_msg(data, o + 16) for o, _ in others]
        pieces.append((rows, [entry_of_message(data, o, n, want) for o, n in others]))
    return pieces, done


class HealthRows(nl.RawRows):
    """:class:`~portkit.see._netlink.RawRows` that also keep each socket's entry, in
    the same order as the rows (:meth:`entries`, :meth:`entry_parts`)."""

    __slots__ = ("_entries", "want")

    def __init__(self, want: int) -> None:
        super().__init__()
        self.want = want
        self._entries: list[Any] = []

    def add_chunk(self, data: bytes | memoryview) -> bool:
        """Add one ``recv`` of the dump; True when the dump is done."""
        if self.want & WANT_ANY_ORDER:
            pieces, done = split_chunk(data, self.want)
        else:
            part, entries, done = chunk_entries(data, self.want)
            pieces = [(part, entries)]
        for part, entries in pieces:
            before = len(self._parts)
            self.add(part)
            if len(self._parts) > before:
                self._entries.append(entries)
        return done

    def entry_parts(self) -> Iterator[Iterable[Entry]]:
        """One iterable of entries per part, aligned with :meth:`parts`."""
        for part in self._entries:
            if isinstance(part, list):
                yield part
            else:
                layout, view = part
                yield layout.entries(view)

    def entries(self) -> Iterator[Entry]:
        from itertools import chain

        return chain.from_iterable(self.entry_parts())

    def pick_info(self, names: tuple[str, ...]) -> Iterator[Iterable[tuple[Any, ...]]]:
        """``(raw source port, cookie, *tcp_info fields)`` of every socket that has a
        tcp_info with those fields (``names`` in :data:`TCP_INFO_LAYOUT` order), one
        iterable per part: column-wise from uniform parts, else from the entries."""
        codes = dict(TCP_INFO_LAYOUT)
        fields = tuple((INFO_OFFSETS[n], codes[n]) for n in names)
        indexes = [TCP_INFO_FIELDS.index(n) for n in names]
        for part, entries in zip(self._parts, self._entries, strict=True):
            yield _picked(part, entries, fields, indexes)

    def info_columns(
        self, names: tuple[str, ...]
    ) -> tuple[list[tuple[memoryview, ...]], list[Iterable[tuple[Any, ...]]]]:
        """What :meth:`pick_info` gives, column-wise where it can: ``(columns,
        rest)``, ``columns`` holding for each uniform part with a long enough tcp_info
        ``(raw source ports, cookies, *fields)`` as strided views
        (:meth:`_Layout.columns`), ``rest`` the other parts' :meth:`pick_info` tuples."""
        codes = dict(TCP_INFO_LAYOUT)
        fields = tuple((INFO_OFFSETS[n], codes[n]) for n in names)
        indexes = [TCP_INFO_FIELDS.index(n) for n in names]
        columns: list[tuple[memoryview, ...]] = []
        rest: list[Iterable[tuple[Any, ...]]] = []
        for part, entries in zip(self._parts, self._entries, strict=True):
            if not isinstance(entries, list):
                layout, view = entries
                cols = layout.columns(view, names)
                if cols is not None:
                    columns.append(cols)
                    continue
            rest.append(_picked(part, entries, fields, indexes))
        return columns, rest

    def columns(self, names: tuple[str, ...]) -> Iterator[tuple[list[Any], ...]]:
        """Per part, :func:`part_columns` of ``names``."""
        for entries in self._entries:
            yield part_columns(entries, names)

    def sources(self) -> Iterator[Any]:
        """Per part, what its entries come from: ``(layout, view)`` of a uniform reply,
        else the list of entries (:func:`part_columns` takes either)."""
        yield from self._entries

    def time_wait(self) -> Iterator[tuple[Any, ...]]:
        """``(src16, dst16, raw source port, raw destination port, expires ms)`` of every
        TIME-WAIT socket."""
        for part, entries in zip(self._parts, self._entries, strict=True):
            if isinstance(part, list):
                for t, e in zip(part, entries, strict=True):
                    if t[1] == _TIME_WAIT:
                        yield (t[4], t[5], t[2], t[3], e[0][2])
                continue
            view, size = part
            if _TIME_WAIT not in view[17::size]:  # the state column: none here
                continue
            pick = _TW_PICK.get(size)
            if pick is None:
                pick = _TW_PICK[size] = Struct(f"=17xB2xHH16s16s12xI{size - 72}x")
            for t in pick.iter_unpack(view):
                if t[0] == _TIME_WAIT:
                    yield (t[3], t[4], t[1], t[2], t[5])


_TIME_WAIT = 6
_TW_PICK: dict[int, Struct] = {}


def _picked(
    part: Any, entries: Any, fields: tuple[tuple[int, str], ...], indexes: list[int]
) -> Iterable[tuple[Any, ...]]:
    """One part's :meth:`HealthRows.pick_info` tuples."""
    if not isinstance(entries, list):
        layout, view = entries
        got: Iterable[tuple[Any, ...]] | None = layout.pick(view, fields)
        if got is not None:
            return got
        entries = list(layout.entries(view))
    rows = part if isinstance(part, list) else nl._uniform_struct(part[1]).iter_unpack(part[0])
    return [
        (t[2], e[4], *(e[2][i] for i in indexes))
        for t, e in zip(rows, entries, strict=True)
        if e[2] is not None and e[2][indexes[-1]] is not None
    ]


def part_columns(entries: Any, names: tuple[str, ...]) -> tuple[list[Any], ...]:
    """One part's ``(timers, congs, skmems, infos)``, aligned with its rows: ``infos``
    holds each socket's tcp_info fields ``names`` (in :data:`TCP_INFO_LAYOUT` order) as
    a tuple, or None where it has none (``skmems`` None where there is no skmeminfo).
    A uniform reply is unpacked column by column, for just those fields (the table of
    ``ls -i`` shows 19 of them: a third of the objects of whole tuples).

    Args:
        entries: a part's list of entries, or ``(layout, view)`` of a uniform reply
            (:meth:`HealthRows.sources`).
    """
    fields = tuple((INFO_OFFSETS[n], _CODES[n]) for n in names)
    pick = itemgetter(*(TCP_INFO_FIELDS.index(n) for n in names))
    if not isinstance(entries, list):
        layout, view = entries
        got = layout.pick(view, fields, head=False)
        if got is not None:
            t, m, _, c, _ = layout.structs
            assert t is not None
            timers = list(t.iter_unpack(view))
            n = len(timers)
            congs = (
                list(map(_CONG_TEXT.__getitem__, c.iter_unpack(view)))
                if c is not None
                else [None] * n
            )
            mems: list[Any] = [None] * n
            if m is not None:
                mems = list(m.iter_unpack(view))
                if len(SKMEM_FIELDS) > m.size // 4:
                    mems = list(map(_pad_skmem, mems))
            return timers, congs, mems, list(got)
        entries = list(layout.entries(view))
    return (
        [e[0] for e in entries],
        [e[3] for e in entries],
        [e[1] for e in entries],
        [None if e[2] is None else pick(e[2]) for e in entries],
    )


def entries_of(raw: nl.RawRows) -> Iterator[Iterable[Entry | None]]:
    """Entry parts of any rows: None for each row of rows read without them."""
    if isinstance(raw, HealthRows):
        yield from raw.entry_parts()
        return
    from itertools import repeat

    for part in raw.parts():
        yield repeat(None, sum(1 for _ in part))  # (render.health fills these in)


# --- decoded rows -----------------------------------------------------------------------


def health_key(
    inode: int, local_ip: str, local_port: int, remote_ip: str | None, remote_port: int | None
) -> Any:
    """How a decoded row finds its entry: the inode, or for sockets without one (in an
    accept queue, orphaned while closing, TIME-WAIT) both ends."""
    return inode or (local_ip, local_port, remote_ip, remote_port)


def health_map(batches: Iterable[tuple[int, int, nl.RawRows]]) -> dict[Any, Entry]:
    """``{health_key: entry}`` for every row of ``batches`` read with entries."""
    out: dict[Any, Entry] = {}
    for family, _proto, raw in batches:
        if not isinstance(raw, HealthRows):
            continue
        text = nl.IP_TEXT[family]
        ports = nl.PORTS
        inode_of = itemgetter(9)
        for part, entries in zip(raw.parts(), raw.entry_parts(), strict=True):
            rows = part if isinstance(part, list) else list(part)
            got = list(entries)
            out.update(zip(map(inode_of, rows), got, strict=True))
            if 0 in out:
                del out[0]
                for t, e in zip(rows, got, strict=True):
                    if not t[9]:
                        key = (
                            text[t[4]],
                            ports[t[2]],
                            text[t[5]] if t[3] else None,
                            ports[t[3]] if t[3] else None,
                        )
                        out[key] = e
    return out


def row_entry(health: dict[Any, Entry], row: tuple[Any, ...]) -> Entry | None:
    """The entry of a decoded row (``SocketRecord.row``) in a :func:`health_map`."""
    return health.get(row[10] or (row[3], row[4], row[5], row[6]))


def scan_entries(scan: Any) -> list[Entry | None]:
    """Each row's entry of a :class:`~portkit.see.Scan` made with health asked for, in
    the order of ``scan.rows``: straight from the kernel's parts when the rows were
    decoded from them in order, else looked up by :func:`row_entry`."""
    from itertools import chain

    rows = scan.rows
    batches = scan.batches
    if batches is not None and len(rows) == sum(len(raw) for _, _, raw in batches):
        parts = (part for _, _, raw in batches for part in entries_of(raw))
        return list(chain.from_iterable(parts))
    health = scan.health
    return [row_entry(health, r) for r in rows]

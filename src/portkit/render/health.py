"""``ls -i``, ``-m``, ``-o``: a socket's health (tcp_info, memory, timer) as table
columns, JSON keys and CSV columns.

The entries come from :mod:`portkit.see._tcpinfo` (``(timers, skmem, info, cong)``).
Cells are built column by column: each column picks its fields from every socket's
tcp_info with one ``itemgetter`` (C) and turns them into text through a cache keyed
by those values (most sockets share their cwnd, rto, retransmits, ...), so no Python
function runs per cell; that keeps ``ls -tin`` at 100,000 sockets near ``ss -tin``.

Units are ss's: times in milliseconds (``rtt`` as ``avg/var``), rates in bits per
second, counters in bytes or segments. JSON keys are ss's names where ss has one
(``rtt``, ``rto``, ``cwnd``, ``bytes_acked``, ``delivery_rate``, ``lastsnd``,
``skmem`` with ``r``, ``rb``, ``t``, ``tb``, ...).
"""

from __future__ import annotations

from _operator import itemgetter

from portkit.see import _tcpinfo as ti

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any

    from portkit.see._tcpinfo import Entry

__all__ = [
    "INFO_JSON_KEYS",
    "health_csv_columns",
    "health_headers",
    "health_json_parts",
    "health_tails",
    "health_text_columns",
]

_NONE_INFO: tuple[Any, ...] = (None,) * len(ti.TCP_INFO_FIELDS)
_NONE_SKMEM: tuple[Any, ...] = (None,) * len(ti.SKMEM_FIELDS)
_LISTEN = 10  # tcp_info's state of a listener
_UNLIMITED = (1 << 64) - 1  # pacing_rate ~0: no pacing
_INFINITE_SSTHRESH = 0xFFFF  # ss hides ssthresh from this value up (TCP_INFINITE_SSTHRESH)


def _ms(us: int) -> str:
    """Microseconds as ss's ``%g`` milliseconds.

    >>> _ms(28), _ms(200000), _ms(1500)
    ('0.028', '200', '1.5')
    """
    return f"{us / 1000:g}"


def _bps(bytes_per_s: int) -> str:
    """A rate in bytes/s as bits per second, as ss's ``sprint_bw`` writes it.

    >>> _bps(100), _bps(125), _bps(33445023787), _bps(1250), _bps(0)
    ('800bps', '1Kbps', '268Gbps', '10Kbps', '0bps')
    """
    bits = bytes_per_s * 8.0
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if bits >= scale:
            return f"{bits / scale:.3g}{unit}bps"
    return f"{bits:g}bps"


#: ``ls -i`` table columns: (header, tcp_info fields, values -> text). Most show one
#: field, so a socket's key for the column is a plain int (cheap to hash).
INFO_COLUMNS: tuple[tuple[str, tuple[int, ...], Callable[..., str]], ...] = (
    ("RTT", (ti.RTT, ti.RTTVAR), lambda a, b: f"{_ms(a)}/{_ms(b)}"),
    ("RTO", (ti.RTO,), _ms),
    ("CWND", (ti.SND_CWND,), str),
    ("SSTHRESH", (ti.SND_SSTHRESH,), lambda v: "-" if v >= _INFINITE_SSTHRESH else str(v)),
    ("RETRANS", (ti.RETRANS, ti.TOTAL_RETRANS), lambda a, b: f"{a}/{b}"),
    ("LOST", (ti.LOST,), str),
    ("BYTES-ACKED", (ti.BYTES_ACKED,), str),
    ("BYTES-RECV", (ti.BYTES_RECEIVED,), str),
    ("DELIVERY", (ti.DELIVERY_RATE,), _bps),
    ("PACING", (ti.PACING_RATE,), lambda v: "-" if v == _UNLIMITED else _bps(v)),
    ("BUSY", (ti.BUSY_TIME,), lambda v: f"{v // 1000}ms"),
    ("RWND-LTD", (ti.RWND_LIMITED,), lambda v: f"{v // 1000}ms"),
    ("SNDBUF-LTD", (ti.SNDBUF_LIMITED,), lambda v: f"{v // 1000}ms"),
    ("LASTSND", (ti.LAST_DATA_SENT,), str),
    ("LASTRCV", (ti.LAST_DATA_RECV,), str),
    ("LASTACK", (ti.LAST_ACK_RECV,), str),
)


#: The tcp_info fields the table shows (the state, to blank listeners, first), in the
#: struct's order: only these are unpacked for it.
SHOWN: tuple[str, ...] = tuple(
    name
    for name in ti.TCP_INFO_FIELDS
    if name == "state" or any(ti.TCP_INFO_FIELDS.index(name) in f for _, f, _ in INFO_COLUMNS)
)
_AT = {ti.TCP_INFO_FIELDS.index(name): i for i, name in enumerate(SHOWN)}


def health_headers(want: int) -> list[str]:
    """The column titles ``ls`` adds for ``want`` (``_tcpinfo.WANT_*`` bits)."""
    heads: list[str] = []
    if want & ti.WANT_TIMERS:
        heads.append("TIMER")
    if want & ti.WANT_INFO:
        heads += ["CC", *(h for h, _, _ in INFO_COLUMNS)]
    if want & ti.WANT_MEMORY:
        heads.append("SKMEM")
    return heads


def _skmem_text(values: tuple[Any, ...]) -> str:
    if values[0] is None:
        return "-"
    return ",".join(
        f"{name}{v}" for name, v in zip(ti.SKMEM_FIELDS, values, strict=True) if v is not None
    )


class _Renderer:
    """The columns ``want`` asks for: what each picks from an entry and how its value
    becomes text. Cells go through keys: a column's key for a socket is the field it
    shows (or the tuple of its fields), picked in C, and each distinct key is
    formatted once."""

    def __init__(self, want: int) -> None:
        self.want = want
        self.heads = health_headers(want)
        fmts: list[Callable[[Any], str]] = []
        #: Columns that show their field as it is (``str`` of an int): their cells are
        #: formatted in C by one ``%`` per line, with no lookup per cell.
        self.plain: list[bool] = []
        if want & ti.WANT_TIMERS:
            fmts.append(lambda t: ti.timer_text(t[0], t[2], t[1]) or "-")
            self.plain.append(False)
        if want & ti.WANT_INFO:
            fmts.append(lambda c: c or "-")
            self.picks = [itemgetter(*(_AT[f] for f in fields)) for _, fields, _ in INFO_COLUMNS]
            fmts += [_info_cell(fmt, len(fields)) for _, fields, fmt in INFO_COLUMNS]
            self.plain += [False, *(fmt is str for _, _, fmt in INFO_COLUMNS)]
        if want & ti.WANT_MEMORY:
            fmts.append(_skmem_text)
            self.plain.append(False)
        self.fmts = fmts

    def keys(self, part: tuple[list[Any], ...]) -> list[list[Any]]:
        """One list of keys per column, for one part's ``(timers, congs, skmems,
        infos)`` (``HealthRows.columns`` of :data:`SHOWN`, or :func:`_columns_of`)."""
        timers, congs, mems, infos = part
        cols: list[list[Any]] = []
        if self.want & ti.WANT_TIMERS:
            cols.append(timers)
        if self.want & ti.WANT_INFO:
            cols.append(congs)
            if None in infos:
                infos = [i or _NONE_SHOWN for i in infos]
            # A listener's tcp_info holds nothing worth a column (ss shows its cwnd).
            # The kernel dumps listeners first, so most parts have none: one C pass.
            if _LISTEN in set(map(itemgetter(0), infos)):
                infos = [_NONE_SHOWN if i[0] == _LISTEN else i for i in infos]
            cols += [list(map(pick, infos)) for pick in self.picks]
        if self.want & ti.WANT_MEMORY:
            cols.append([m or _NONE_SKMEM for m in mems] if None in mems else mems)
        return cols

    def texts(self, parts: list[list[list[Any]]], skip_plain: bool = False) -> list[dict[Any, str]]:
        """Per column, ``{key: text}`` for every distinct key of ``parts`` (with
        ``skip_plain``, nothing for the :attr:`plain` columns)."""
        out: list[dict[Any, str]] = []
        for i, fmt in enumerate(self.fmts):
            distinct: set[Any] = set()
            if not (skip_plain and self.plain[i]):
                for cols in parts:
                    distinct.update(cols[i])
            out.append({k: fmt(k) for k in distinct})
        return out


def _info_cell(fmt: Callable[..., str], fields: int) -> Callable[[Any], str]:
    """A tcp_info cell from its key: ``-`` where the field is missing (no tcp_info,
    a listener, an older kernel)."""
    if fields == 1:
        return lambda key: "-" if key is None else fmt(key)
    return lambda key: "-" if key[0] is None else fmt(*key)


_NO_ENTRY: Entry = ((0, 0, 0), None, None, None, 0)
_NONE_SHOWN: tuple[Any, ...] = (None,) * len(SHOWN)
_NO_SHOWN: Any = itemgetter(*(ti.TCP_INFO_FIELDS.index(n) for n in SHOWN))


def _columns_of(entries: Iterable[Entry | None]) -> tuple[list[Any], ...]:
    """``HealthRows.columns``'s lists, from entries (decoded rows, rows read without)."""
    got = [e or _NO_ENTRY for e in entries]
    return (
        [e[0] for e in got],
        [e[3] for e in got],
        [e[1] for e in got],
        [None if e[2] is None else _NO_SHOWN(e[2]) for e in got],
    )


def health_text_columns(
    entries: Sequence[Entry | None], want: int
) -> tuple[list[str], list[list[str]]]:
    """Headers and cell columns for decoded rows (``render.sockets.ls_text``'s extra
    columns), one entry (or None) per row."""
    render = _Renderer(want)
    cols = render.keys(_columns_of(entries))
    texts = render.texts([cols])
    return render.heads, [list(map(t.__getitem__, c)) for t, c in zip(texts, cols, strict=True)]


def health_tails(column_parts: Iterable[Any], want: int) -> tuple[str, list[list[Iterable[str]]]]:
    """For the raw listing: the header's tail and, per part, the text each of its
    lines ends with (``"  " + cells``, padded), in one iterable.

    Each line's tail is one ``%`` format of a tuple zipped from the columns: plain
    number columns give their ints as they are, the others their text through a
    dict made once per distinct value. A uniform reply's columns are strided views
    of the kernel's bytes (:func:`raw_columns`): no object per socket is kept, only
    made as a line is written.
    """
    from functools import partial
    from operator import is_not

    render = _Renderer(want)
    heads = render.heads
    parts: list[tuple[bool, list[Any]]] = [
        (True, part[1]) if part[0] == "fast" else (False, render.keys(part[1]))
        for part in column_parts
    ]
    texts: list[dict[Any, str]] = []
    for i, cell in enumerate(render.fmts):
        distinct: set[Any] = set()
        if not render.plain[i]:
            for _fast, cols in parts:
                distinct.update(_keys(cols[i]))
        texts.append({k: cell(k) for k in distinct})
    last = len(heads) - 1
    specs: list[str] = []
    cells: list[str] = []
    for i, (head, text) in enumerate(zip(heads, texts, strict=True)):
        if render.plain[i]:
            top = 0
            for fast, cols in parts:
                col = cols[i]
                if not fast and None in col:
                    col = filter(partial(is_not, None), col)
                top = max(top, max(col, default=0))
            width = max(len(head), len(str(top)))
        else:
            width = max([len(head), *map(len, text.values())])
        spec = "%s" if i == last else f"%-{width}s"
        specs.append(f"  {spec}")
        cells.append("  " + (head if i == last else head.ljust(width)))
    fmt = "".join(specs)
    tails: list[list[Iterable[str]]] = []
    for fast, cols in parts:
        columns: list[Iterable[Any]] = []
        for i, col in enumerate(cols):
            if render.plain[i]:
                columns.append(
                    ["-" if v is None else v for v in col] if not fast and None in col else col
                )
            else:
                columns.append(map(texts[i].__getitem__, _keys(col)))
        tails.append([map(fmt.__mod__, zip(*columns))])  # noqa: B905 (one part: one length)
    return "".join(cells), tails


def _keys(col: Any) -> Iterable[Any]:
    """A column's keys: a sequence, or ``("zip", a, b, ...)`` for keys of several
    fields zipped from strided views."""
    if isinstance(col, tuple) and col and col[0] == "zip":
        return zip(*col[1:])  # noqa: B905 (views of one reply)
    return col  # type: ignore[no-any-return]


def _fast_part(layout: Any, view: memoryview, want: int) -> list[Any] | None:
    """The columns of a uniform reply as strided views of its bytes, or None where
    that does not work (no tcp_info, a listener in it, fields that cannot stride)."""
    from portkit.see._tcpinfo import _CONG_TEXT, _pad_skmem

    if want & ti.WANT_INFO:
        state = layout.column(view, "state")
        if state is None or _LISTEN in state:
            return None
    size = layout.size
    cols: list[Any] = []
    _, m, _, c, _ = layout.structs
    if want & ti.WANT_TIMERS:
        expires = view.cast("I")[68 // 4 :: size // 4] if size % 4 == 0 else None
        if expires is None:
            return None
        cols.append(("zip", view[18::size], view[19::size], expires))
    if want & ti.WANT_INFO:
        if c is None:
            return None
        cols.append(list(map(_CONG_TEXT.__getitem__, c.iter_unpack(view))))
        for _, fields, _ in INFO_COLUMNS:
            views = [layout.column(view, ti.TCP_INFO_FIELDS[f]) for f in fields]
            if any(v is None for v in views):
                return None
            cols.append(views[0] if len(views) == 1 else ("zip", *views))
    if want & ti.WANT_MEMORY:
        if m is None:
            return None
        mems = list(m.iter_unpack(view))
        if len(ti.SKMEM_FIELDS) > m.size // 4:
            mems = list(map(_pad_skmem, mems))
        cols.append(mems)
    return cols


# --- JSON and CSV ---------------------------------------------------------------------


def _ms_float(us: int | None) -> float | None:
    return None if us is None else us / 1000


def _ms_int(us: int | None) -> int | None:
    return None if us is None else us // 1000


def _bits(rate: int | None) -> int | None:
    return None if rate is None or rate == _UNLIMITED else rate * 8


def _opt(bit: int) -> Callable[[tuple[Any, ...]], bool]:
    return lambda i: bool(i[ti.OPTIONS] & bit)


def _raw(index: int) -> Callable[[tuple[Any, ...]], Any]:
    return itemgetter(index)


#: ``tcp_info`` keys in ``ls --json -i``: ss's name -> value from the tcp_info tuple.
INFO_JSON: tuple[tuple[str, Callable[[tuple[Any, ...]], Any]], ...] = (
    ("ts", _opt(1)),
    ("sack", _opt(2)),
    ("ecn", _opt(8)),
    ("ecnseen", _opt(16)),
    ("wscale", lambda i: list(w) if (w := ti.wscale(i)) else None),
    ("rto", lambda i: _ms_float(i[ti.RTO])),
    ("backoff", _raw(ti.BACKOFF)),
    ("rtt", lambda i: _ms_float(i[ti.RTT])),
    ("rttvar", lambda i: _ms_float(i[ti.RTTVAR])),
    ("ato", lambda i: _ms_float(i[ti.ATO])),
    ("mss", _raw(ti.SND_MSS)),
    ("pmtu", _raw(ti.PMTU)),
    ("rcvmss", _raw(ti.RCV_MSS)),
    ("advmss", _raw(ti.ADVMSS)),
    ("cwnd", _raw(ti.SND_CWND)),
    (
        "ssthresh",
        lambda i: None if i[ti.SND_SSTHRESH] >= _INFINITE_SSTHRESH else i[ti.SND_SSTHRESH],
    ),
    ("bytes_sent", _raw(ti.BYTES_SENT)),
    ("bytes_retrans", _raw(ti.BYTES_RETRANS)),
    ("bytes_acked", _raw(ti.BYTES_ACKED)),
    ("bytes_received", _raw(ti.BYTES_RECEIVED)),
    ("segs_out", _raw(ti.SEGS_OUT)),
    ("segs_in", _raw(ti.SEGS_IN)),
    ("data_segs_out", _raw(ti.DATA_SEGS_OUT)),
    ("data_segs_in", _raw(ti.DATA_SEGS_IN)),
    ("lastsnd", _raw(ti.LAST_DATA_SENT)),
    ("lastrcv", _raw(ti.LAST_DATA_RECV)),
    ("lastack", _raw(ti.LAST_ACK_RECV)),
    ("pacing_rate", lambda i: _bits(i[ti.PACING_RATE])),
    ("max_pacing_rate", lambda i: _bits(i[ti.MAX_PACING_RATE])),
    ("delivery_rate", lambda i: _bits(i[ti.DELIVERY_RATE])),
    ("delivered", _raw(ti.DELIVERED)),
    ("delivered_ce", _raw(ti.DELIVERED_CE)),
    ("app_limited", ti.app_limited),
    ("busy", lambda i: _ms_int(i[ti.BUSY_TIME])),
    ("rwnd_limited", lambda i: _ms_int(i[ti.RWND_LIMITED])),
    ("sndbuf_limited", lambda i: _ms_int(i[ti.SNDBUF_LIMITED])),
    ("unacked", _raw(ti.UNACKED)),
    ("retrans", _raw(ti.RETRANS)),
    ("total_retrans", _raw(ti.TOTAL_RETRANS)),
    ("lost", _raw(ti.LOST)),
    ("sacked", _raw(ti.SACKED)),
    ("dsack_dups", _raw(ti.DSACK_DUPS)),
    ("reordering", _raw(ti.REORDERING)),
    ("reord_seen", _raw(ti.REORD_SEEN)),
    ("rcv_rtt", lambda i: _ms_float(i[ti.RCV_RTT])),
    ("rcv_space", _raw(ti.RCV_SPACE)),
    ("rcv_ssthresh", _raw(ti.RCV_SSTHRESH)),
    ("notsent", _raw(ti.NOTSENT_BYTES)),
    ("minrtt", lambda i: _ms_float(i[ti.MIN_RTT])),
    ("snd_wnd", _raw(ti.SND_WND)),
    ("rcv_wnd", _raw(ti.RCV_WND)),
    ("rcv_ooopack", _raw(ti.RCV_OOOPACK)),
)
INFO_JSON_KEYS = ("cong", *(k for k, _ in INFO_JSON))


def info_dict(entry: Entry | None) -> dict[str, Any] | None:
    """The ``tcp_info`` object of ``ls --json -i`` (None: no tcp_info)."""
    if entry is None or entry[2] is None:
        return None
    info = entry[2]
    out: dict[str, Any] = {"cong": entry[3]}
    for key, get in INFO_JSON:
        try:
            out[key] = get(info)
        except TypeError:  # a field an older kernel does not have (None)
            out[key] = None
    return out


def skmem_dict(entry: Entry | None) -> dict[str, Any] | None:
    if entry is None or entry[1] is None:
        return None
    return dict(zip(ti.SKMEM_FIELDS, entry[1], strict=True))


def timer_dict(entry: Entry | None) -> dict[str, Any] | None:
    """``{"name", "expires_ms", "retrans"}``, or None when no timer runs."""
    if entry is None or not entry[0][0]:
        return None
    timer, retrans, expires = entry[0]
    return {"name": ti.TIMER_NAMES[min(timer, 5)], "expires_ms": expires, "retrans": retrans}


def health_json_parts(entries: Iterable[Entry | None], want: int) -> list[str]:
    """Per row, the JSON text to add inside its object: ``, "timer": ..., "tcp_info":
    ..., "skmem": ...`` (the keys ``want`` asks for)."""
    import json

    cache: dict[Any, str] = {}
    out = []
    for entry in entries:
        text = cache.get(entry)
        if text is None:
            doc: dict[str, Any] = {}
            if want & ti.WANT_TIMERS:
                doc["timer"] = timer_dict(entry)
            if want & ti.WANT_INFO:
                doc["tcp_info"] = info_dict(entry)
            if want & ti.WANT_MEMORY:
                doc["skmem"] = skmem_dict(entry)
            text = ", " + json.dumps(doc, separators=(", ", ": "))[1:-1]
            if len(cache) < 4096:
                cache[entry] = text
        out.append(text)
    return out


def health_csv_columns(
    entries: Sequence[Entry | None], want: int
) -> tuple[list[str], list[list[Any]]]:
    """Headers and value columns ``ls --csv`` adds: ``timer``, ``timer_expires_ms``,
    ``timer_retrans``; the tcp_info keys; ``skmem_r``, ``skmem_rb``, ..."""
    heads: list[str] = []
    cols: list[list[Any]] = []
    if want & ti.WANT_TIMERS:
        timers = [timer_dict(e) for e in entries]
        heads += ["timer", "timer_expires_ms", "timer_retrans"]
        cols.append([t and t["name"] for t in timers])
        cols.append([t and t["expires_ms"] for t in timers])
        cols.append([t and t["retrans"] for t in timers])
    if want & ti.WANT_INFO:
        infos = [info_dict(e) or {} for e in entries]
        for key in INFO_JSON_KEYS:
            heads.append(key)
            cols.append([_csv_value(i.get(key)) for i in infos])
    if want & ti.WANT_MEMORY:
        mems = [skmem_dict(e) or {} for e in entries]
        for key in ti.SKMEM_FIELDS:
            heads.append(f"skmem_{key}")
            cols.append([m.get(key) for m in mems])
    return heads, cols


def _csv_value(value: Any) -> Any:
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, bool):
        return int(value)
    return value


def raw_columns(batches: Iterable[tuple[int, int, Any]], want: int) -> list[Any]:
    """:func:`health_tails`'s input from a dump's batches, a part per reply chunk in
    the order the raw listing writes them: ``("fast", strided columns)`` for a uniform
    reply, else ``("keys", HealthRows.columns part)`` (rows read without health:
    dashes)."""
    out: list[Any] = []
    for _family, _proto, raw in batches:
        if not raw:
            continue
        if not isinstance(raw, ti.HealthRows):
            out.extend(("keys", _columns_of([None] * len(list(part)))) for part in raw.parts())
            continue
        for source in raw.sources():
            fast = None if isinstance(source, list) else _fast_part(source[0], source[1], want)
            if fast is not None:
                out.append(("fast", fast))
            else:
                out.append(("keys", ti.part_columns(source, SHOWN)))
    return out

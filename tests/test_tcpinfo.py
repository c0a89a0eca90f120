"""The pure parts of ``ls -i/-m/-o``: tcp_info, skmeminfo and timers in sock_diag replies.

Replies are built here message by message (a header, ``inet_diag_msg``, attributes) so
that both decoders (message by message, and column-wise for uniform replies) can be
held to the same answer on any input hypothesis makes.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.errors import ParseError
from portkit.render import health as rh
from portkit.see import _netlink as nl
from portkit.see import _tcpinfo as ti

INFO_FMT = "=" + "".join(code for _, code in ti.TCP_INFO_LAYOUT)


def _attr(atype: int, payload: bytes) -> bytes:
    head = struct.pack("=HH", 4 + len(payload), atype)
    return head + payload + bytes(-len(payload) % 4)


def _message(
    *,
    state: int = 1,
    timer: tuple[int, int, int] = (0, 0, 0),
    sport: int = 8080,
    dport: int = 40000,
    inode: int = 7,
    cookie: int = 0,
    info: bytes | None = None,
    skmem: bytes | None = None,
    cong: bytes | None = None,
) -> bytes:
    t, retrans, expires = timer
    body = struct.pack("=BBBB", 2, state, t, retrans)
    body += struct.pack(">HH", sport, dport) + bytes([127, 0, 0, 1]) + bytes(12)
    body += bytes([127, 0, 0, 2]) + bytes(12) + struct.pack("=IQ", 0, cookie)
    body += struct.pack("=IIIII", expires, 0, 0, 0, inode)
    body += _attr(8, b"\x00")  # INET_DIAG_SHUTDOWN, as the kernel sends it first
    if skmem is not None:
        body += _attr(ti.ATTR_SKMEMINFO, skmem)
    if info is not None:
        body += _attr(ti.ATTR_INFO, info)
    if cong is not None:
        body += _attr(ti.ATTR_CONG, cong)
    return struct.pack("=IHHII", 16 + len(body), nl.SOCK_DIAG_BY_FAMILY, 2, 1, 0) + body


def _info(values: list[int]) -> bytes:
    return struct.pack(INFO_FMT, *values)


_FIELD_MAX = {"B": 255, "H": 0xFFFF, "I": 0xFFFFFFFF, "Q": (1 << 64) - 1}
infos = st.tuples(*(st.integers(0, _FIELD_MAX[c]) for _, c in ti.TCP_INFO_LAYOUT)).map(list)


def test_layout_size_matches_the_kernel_struct() -> None:
    """248 bytes through ``tcpi_total_rto_time`` (Linux 6.7); a struct of 280 bytes (6.18)
    is read as far as this layout goes."""
    assert struct.calcsize(INFO_FMT) == ti.TCP_INFO_SIZE == 248
    values = list(range(len(ti.TCP_INFO_FIELDS)))
    longer = _info(values) + b"\xff" * 32
    assert ti.parse_tcp_info(longer) == tuple(values)


@pytest.mark.parametrize(
    ("size", "last"),
    [(104, "total_retrans"), (136, "bytes_received"), (160, "data_segs_out"), (232, "snd_wnd")],
)
def test_older_kernels_shorter_structs(size: int, last: str) -> None:
    values = list(range(1, len(ti.TCP_INFO_FIELDS) + 1))
    got = ti.parse_tcp_info(_info(values)[:size])
    upto = ti.TCP_INFO_FIELDS.index(last) + 1
    assert got[:upto] == tuple(values[:upto])
    assert got[upto:] == (None,) * (len(ti.TCP_INFO_FIELDS) - upto)


def test_too_short_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="shorter than the oldest layout"):
        ti.parse_tcp_info(bytes(103))
    with pytest.raises(ParseError):
        ti.parse_skmeminfo(bytes(24))
    with pytest.raises(ParseError):
        ti.parse_skmeminfo(bytes(30))


@given(st.binary(max_size=400))
def test_tcp_info_any_bytes(data: bytes) -> None:
    try:
        got = ti.parse_tcp_info(data)
    except ParseError:
        assert len(data) < ti.TCP_INFO_MIN
        return
    assert len(got) == len(ti.TCP_INFO_FIELDS)
    assert all(v is None or isinstance(v, int) for v in got)


@given(st.binary(max_size=64))
def test_skmeminfo_any_bytes(data: bytes) -> None:
    try:
        got = ti.parse_skmeminfo(data)
    except ParseError:
        assert len(data) % 4 or len(data) < 28
        return
    assert len(got) == 9
    assert got[: len(data) // 4] == struct.unpack(f"={min(9, len(data) // 4)}I", data[:36])


@given(st.binary(max_size=2000))
def test_reply_any_bytes(data: bytes) -> None:
    """Any bytes: rows and entries (as many of each), or the kernel's error."""
    for want in (1, 3, 7):
        try:
            part, entries, _done = ti.chunk_entries(data, want)
        except nl.NetlinkError:
            return
        rows = nl.RawRows([part])
        got = list(entries) if isinstance(entries, list) else list(entries[0].entries(entries[1]))
        assert len(got) == len(rows)


message_args = st.fixed_dictionaries(
    {
        "state": st.sampled_from([1, 6, 8, 10]),
        "timer": st.tuples(st.integers(0, 6), st.integers(0, 255), st.integers(0, 2**32 - 1)),
        "sport": st.integers(1, 65535),
        "dport": st.integers(0, 65535),
        "inode": st.integers(0, 2**32 - 1),
        "cookie": st.integers(0, 2**64 - 1),
    }
)


@given(
    st.lists(
        st.tuples(message_args, infos, st.lists(st.integers(0, 2**32 - 1), min_size=9, max_size=9)),
        min_size=1,
        max_size=12,
    ),
    st.sampled_from([104, 168, 248, 280]),
    st.sampled_from([b"cubic\x00", b"bbr\x00", b"reno\x00"]),
    st.sampled_from([1, 2, 3, 4, 6, 7]),
)
def test_uniform_replies_decode_like_message_by_message(
    messages: list[tuple[dict[str, object], list[int], list[int]]],
    info_size: int,
    cong: bytes,
    want: int,
) -> None:
    """The column-wise decoder gives exactly what the message walk gives."""
    data = b"".join(
        _message(
            **args,  # type: ignore[arg-type]
            info=(_info(values) + bytes(32))[:info_size],
            skmem=struct.pack("=9I", *mem),
            cong=cong,
        )
        for args, values, mem in messages
    )
    data += struct.pack("=IHHIIi", 20, nl.NLMSG_DONE, 2, 1, 0, 0)
    part, entries, done = ti.chunk_entries(data, want)
    assert done
    assert isinstance(entries, tuple), "a uniform reply is decoded column-wise"
    fast = list(entries[0].entries(entries[1]))
    rows, slow, done2 = ti.walk_entries(data, want)
    assert done2
    assert fast == slow
    assert list(nl.RawRows([part])) == rows
    for (args, values, mem), entry in zip(messages, slow, strict=True):
        timer, retrans, expires = args["timer"]  # type: ignore[misc]
        assert entry[ti.E_TIMERS] == (timer, retrans, expires)
        if want & ti.WANT_INFO:
            assert entry[ti.E_INFO] == ti.parse_tcp_info((_info(values) + bytes(32))[:info_size])
            assert entry[ti.E_CONG] == cong.rstrip(b"\0").decode()
        else:
            assert entry[ti.E_INFO] is None
        assert entry[ti.E_SKMEM] == (tuple(mem) if want & ti.WANT_MEMORY else None)
        assert entry[ti.E_COOKIE] == args["cookie"]


def test_mixed_replies_are_walked() -> None:
    """TIME-WAIT messages carry no attributes: a reply mixing them is walked, and their
    entries have the timer only."""
    full = _message(info=_info([0] * len(ti.TCP_INFO_FIELDS)), cong=b"cubic\x00")
    tw = _message(state=6, timer=(3, 0, 59000), inode=0, cookie=77)
    _part, entries, _ = ti.chunk_entries(full + tw, 3)
    assert isinstance(entries, list)
    assert entries[1] == ((3, 0, 59000), None, None, None, 77)
    assert entries[0][ti.E_CONG] == "cubic"


def test_bad_attributes_read_as_absent() -> None:
    """A tcp_info too short to be one is no reason to fail a listing."""
    msg = _message(info=bytes(40), skmem=bytes(8))
    (entry,) = ti.walk_entries(msg, 7)[1]
    assert entry[ti.E_INFO] is None and entry[ti.E_SKMEM] is None


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (7140000, "119min"),
        (600000, "10min"),
        (65000, "1min5sec"),
        (59843, "59sec"),
        (9500, "9.500ms"),
        (1500, "1.500ms"),
        (200, "200ms"),
        (0, ""),
    ],
)
def test_format_ms_like_ss(ms: int, text: str) -> None:
    """misc/ss.c print_ms_timer, case by case."""
    assert ti.format_ms(ms) == text


def test_wscale_and_flags() -> None:
    values = [0] * len(ti.TCP_INFO_FIELDS)
    values[ti.OPTIONS] = 7
    values[ti.WSCALE] = 0x7A  # snd 10, rcv 7 (low nibble first)
    values[ti.FLAGS] = 1
    info = ti.parse_tcp_info(_info(values))
    assert ti.wscale(info) == (10, 7)
    assert ti.app_limited(info)
    values[ti.OPTIONS] = 3
    assert ti.wscale(ti.parse_tcp_info(_info(values))) is None


def test_health_columns_render_ss_units() -> None:
    values = [0] * len(ti.TCP_INFO_FIELDS)
    values[ti.STATE] = 1
    values[ti.RTT], values[ti.RTTVAR], values[ti.RTO] = 28, 14, 204000
    values[ti.SND_CWND], values[ti.SND_SSTHRESH] = 10, 0x7FFFFFFF
    values[ti.RETRANS], values[ti.TOTAL_RETRANS] = 1, 5
    values[ti.DELIVERY_RATE] = 125_000_000
    values[ti.PACING_RATE] = (1 << 64) - 1
    values[ti.BUSY_TIME] = 2_500_000
    info = ti.parse_tcp_info(_info(values))
    entry = ((2, 0, 7140000), None, info, "cubic", 1)
    heads, cols = rh.health_text_columns([entry, None], ti.WANT_INFO | ti.WANT_TIMERS)
    row = dict(zip(heads, (c[0] for c in cols), strict=True))
    assert row["TIMER"] == "keepalive,119min,0"
    assert (row["CC"], row["RTT"], row["RTO"], row["CWND"]) == ("cubic", "0.028/0.014", "204", "10")
    assert (row["SSTHRESH"], row["RETRANS"], row["DELIVERY"], row["PACING"]) == (
        "-",
        "1/5",
        "1Gbps",
        "-",
    )
    assert row["BUSY"] == "2500ms"
    empty = dict(zip(heads, (c[1] for c in cols), strict=True))
    assert set(empty.values()) == {"-"}
    doc = rh.info_dict(entry)
    assert doc is not None
    assert (doc["rtt"], doc["rto"], doc["ssthresh"], doc["pacing_rate"]) == (
        0.028,
        204.0,
        None,
        None,
    )
    assert doc["delivery_rate"] == 1_000_000_000  # bits per second, as ss
    assert list(doc) == list(rh.INFO_JSON_KEYS)

"""The pure parts of ``portkit.sockets``: netlink replies, /proc/net text, filters.

The captured data in tests/data was made by tests/data/proc_net_capture.py in a
fresh network namespace; ``proc_net_ss.txt`` is ``ss -tuanH`` for the same sockets,
the expected answer for both parsers.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.errors import ParseError, UsageError
from portkit.model import PortRange, TcpState
from portkit.see import _netlink as nl
from portkit.see._procnet import decode_address, parse_lines
from portkit.see._query import CONNECTED_DEFAULT, Query, parse_cidr, port_ranges
from portkit.see._rows import container_id, decode

DATA = Path(__file__).parent / "data"
_SS_STATES = {
    "LISTEN": "LISTEN",
    "ESTAB": "ESTABLISHED",
    "TIME-WAIT": "TIME_WAIT",
    "UNCONN": "CLOSE",
    "SYN-SENT": "SYN_SENT",
}

Key = tuple[str, str, str, str]


def _ss_expected() -> set[Key]:
    """(proto, state, local, remote) from the captured ``ss -tuanH``."""
    out = set()
    for line in (DATA / "proc_net_ss.txt").read_text().splitlines():
        proto, state, _, _, local, remote = line.split()
        local = local.replace("*:", "[::]:")  # ss writes a dual-stack :: listener as *
        remote = "*" if remote.endswith(":*") else remote
        out.add((proto, _SS_STATES[state], local, remote))
    return out


def _keys(rows: list[tuple[object, ...]]) -> set[Key]:
    def addr(ip: object, port: object) -> str:
        return f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"

    return {
        (
            str(r[0]),
            str(r[2]),
            addr(r[3], r[4]),
            "*" if r[5] is None else addr(r[5], r[6]),
        )
        for r in rows
    }


def _chunks(name: str) -> list[bytes]:
    data = (DATA / name).read_bytes()
    out, off = [], 0
    while off < len(data):
        (n,) = struct.unpack_from("=I", data, off)
        out.append(data[off + 4 : off + 4 + n])
        off += 4 + n
    return out


CAPTURES = [
    ("tcp4", 2, 6, "tcp"),
    ("tcp6", 10, 6, "tcp6"),
    ("udp4", 2, 17, "udp"),
    ("udp6", 10, 17, "udp6"),
]


def _netlink_rows() -> list[tuple[object, ...]]:
    rows = []
    for name, family, proto, _ in CAPTURES:
        raw: list[nl.RawRow] = []
        done = False
        for chunk in _chunks(f"sock_diag_{name}.bin"):
            _, done = nl.parse_chunk(chunk, raw)
        assert done, name
        rows += decode(raw, family, proto, set())
    return rows


def test_netlink_capture_matches_ss() -> None:
    assert _keys(_netlink_rows()) == _ss_expected()


def test_proc_capture_matches_ss() -> None:
    rows = []
    for _, family, proto, fname in CAPTURES:
        text = (DATA / f"proc_net_{fname}.txt").read_text().splitlines()
        rows += decode(parse_lines(text, family), family, proto, set())
    assert _keys(rows) == _ss_expected()


def test_netlink_and_proc_agree_on_every_field_they_share() -> None:
    nl_rows = {(r[0], r[3], r[4], r[5], r[6]): r for r in _netlink_rows()}
    for _, family, proto, fname in CAPTURES:
        text = (DATA / f"proc_net_{fname}.txt").read_text().splitlines()
        for r in decode(parse_lines(text, family), family, proto, set()):
            twin = nl_rows[r[0], r[3], r[4], r[5], r[6]]
            assert (twin[2], twin[9], twin[10]) == (r[2], r[9], r[10])


def test_listener_queues_come_from_the_dump() -> None:
    listeners = [r for r in _netlink_rows() if r[2] is TcpState.LISTEN and r[3] != "::"]
    assert listeners
    assert all(r[8] == 7 for r in listeners)  # listen(7): the accept queue maximum


def test_walk_and_bulk_parse_agree() -> None:
    for name, *_ in CAPTURES:
        for chunk in _chunks(f"sock_diag_{name}.bin"):
            bulk, done_bulk = nl.parse_chunk(chunk)
            walked: list[nl.RawRow] = []
            done_walk = nl._walk(chunk, walked)
            assert (bulk, done_bulk) == (walked, done_walk)
            pairs, _ = nl.walk_with_attrs(chunk)
            assert [p[0] for p in pairs] == walked


def test_mixed_message_sizes_fall_back_to_the_walk() -> None:
    tcp = b"".join(_chunks("sock_diag_tcp4.bin"))
    udp = b"".join(_chunks("sock_diag_udp6.bin"))
    msgs = []
    for blob in (tcp, udp):
        off = 0
        while off < len(blob):
            length, mtype = struct.unpack_from("=IH", blob, off)
            if mtype == nl.SOCK_DIAG_BY_FAMILY:
                msgs.append(blob[off : off + length])
            off += length
    mixed = b"".join(msgs)
    rows, done = nl.parse_chunk(mixed)
    assert not done
    assert len(rows) == len(msgs)


def test_error_reply_raises_with_errno() -> None:
    err = struct.pack("=IHHII", 36, nl.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -22) + bytes(16)
    with pytest.raises(nl.NetlinkError) as info:
        nl.parse_chunk(err)
    assert info.value.errno == 22


@given(st.binary(max_size=400))
def test_parse_chunk_never_crashes_on_garbage(data: bytes) -> None:
    try:
        rows, done = nl.parse_chunk(data)
    except nl.NetlinkError:
        return
    assert isinstance(rows, list)
    assert isinstance(done, bool)


def test_request_layout() -> None:
    req = nl.build_request(nl.AF_INET6, nl.IPPROTO_UDP, 1 << 7, b"\x00" * 8, seq=5)
    length, mtype, flags, seq, _ = struct.unpack_from("=IHHII", req)
    assert (length, mtype, flags, seq) == (len(req), 20, 0x301, 5)
    assert struct.unpack_from("=BBBxI", req, 16) == (10, 17, 0, 1 << 7)
    assert struct.unpack_from("=HH", req, 16 + 56) == (12, nl.INET_DIAG_REQ_BYTECODE)


# --- bytecode --------------------------------------------------------------------------


def _run_bc(bc: bytes, sport: int, dport: int) -> bool:
    """The kernel's inet_diag_bc_run for port conditions, to check our jumps."""
    pos, left = 0, len(bc)
    while left > 0:
        code, yes, no = struct.unpack_from("=BBH", bc, pos)
        ok = True
        if code in (nl.BC_S_EQ, nl.BC_S_GE, nl.BC_S_LE, nl.BC_D_EQ, nl.BC_D_GE, nl.BC_D_LE):
            (val,) = struct.unpack_from("=H", bc, pos + 6)
            port = sport if code in (nl.BC_S_EQ, nl.BC_S_GE, nl.BC_S_LE) else dport
            ok = {
                nl.BC_S_EQ: port == val,
                nl.BC_D_EQ: port == val,
                nl.BC_S_GE: port >= val,
                nl.BC_D_GE: port >= val,
                nl.BC_S_LE: port <= val,
                nl.BC_D_LE: port <= val,
            }[code]
        elif code == nl.BC_JMP:
            ok = False
        step = yes if ok else no
        assert step >= 4 and step % 4 == 0 and step <= left + 4
        pos += step
        left -= step
    return left == 0


ranges = st.lists(
    st.tuples(st.integers(0, 70), st.integers(0, 70)).map(lambda t: PortRange(min(t), max(t))),
    min_size=1,
    max_size=5,
)


@given(ranges, ranges, st.integers(0, 75), st.integers(0, 75))
def test_bytecode_matches_python_filter(
    sports: list[PortRange], ports: list[PortRange], sport: int, dport: int
) -> None:
    q = Query(all=True, sports=sports, ports=ports)
    bc = q.bytecode()
    expected = any(r.start <= sport <= r.end for r in sports) and any(
        r.start <= p <= r.end for r in ports for p in (sport, dport)
    )
    assert _run_bc(bc, sport, dport) == expected


def test_long_alternatives_use_jumps_that_fit() -> None:
    many = ",".join(str(p) for p in range(1000, 1200, 2))  # 100 alternatives, 800+ bytes
    bc = Query(all=True, sports=many).bytecode()
    assert len(bc) > 255
    assert _run_bc(bc, 1100, 0) and not _run_bc(bc, 1101, 0)


def test_address_condition_layout() -> None:
    bc = Query(all=True, src="127.0.0.0/8").bytecode()
    code, yes, no = struct.unpack_from("=BBH", bc)
    assert (code, yes, no) == (nl.BC_S_COND, 16, 20)
    assert struct.unpack_from("=BBxxi", bc, 4) == (2, 8, -1)
    assert bc[12:16] == bytes([127, 0, 0, 0])


# --- filters ---------------------------------------------------------------------------


def test_state_defaults_follow_ss() -> None:
    assert Query().states == CONNECTED_DEFAULT
    assert TcpState.TIME_WAIT not in Query().states
    assert Query(all=True).states == frozenset(TcpState)
    assert Query(listening=True).listen_only
    assert Query(states=["time-wait", "listening"]).states == {
        TcpState.TIME_WAIT,
        TcpState.LISTEN,
    }
    assert Query(states="bucket").states == {
        TcpState.SYN_RECV,
        TcpState.NEW_SYN_RECV,
        TcpState.TIME_WAIT,
    }


def test_bad_filters_raise_parse_errors() -> None:
    with pytest.raises(ParseError, match="unknown state"):
        Query(states=["establishd"])
    with pytest.raises(ParseError):
        Query(sports="80-")
    with pytest.raises(ParseError, match="bad address"):
        Query(src="10.0.0.300/8")
    with pytest.raises(ParseError):
        Query(families=[5])
    with pytest.raises(UsageError):
        Query(families=[])


@given(st.text(max_size=30))
def test_cidr_parser_gives_a_net_or_a_parse_error(text: str) -> None:
    try:
        fam, prefix, packed = parse_cidr(text)
    except ParseError:
        return
    assert fam in (4, 6)
    assert 0 <= prefix <= (32 if fam == 4 else 128)
    assert len(packed) == 16


@given(st.text(max_size=30))
def test_port_filter_parser_gives_ranges_or_a_parse_error(text: str) -> None:
    try:
        got = port_ranges(text)
    except ParseError:
        return
    assert got and all(0 <= r.start <= r.end <= 65535 for r in got)


@given(st.lists(st.text(max_size=12), max_size=3))
def test_state_filter_gives_states_or_a_parse_error(names: list[str]) -> None:
    try:
        q = Query(states=names)
    except ParseError:
        return
    assert q.states <= set(TcpState)


def test_python_filter_agrees_with_kernel_semantics() -> None:
    q = Query(all=True, src="127.0.0.0/8", dports="5432")
    cache: dict[str, tuple[int, int]] = {}
    row = list(_netlink_rows()[0])
    row[2], row[3], row[5], row[6] = TcpState.ESTABLISHED, "127.0.0.9", "10.0.0.1", 5432
    assert q.matches(tuple(row), cache)
    row[3] = "::ffff:127.0.0.9"  # v4-mapped counts as IPv4, as in the kernel
    assert q.matches(tuple(row), cache)
    row[3] = "10.1.1.1"
    assert not q.matches(tuple(row), cache)


def test_decode_address() -> None:
    assert decode_address("0100007F:0016") == (bytes([127, 0, 0, 1]) + bytes(12), 22)
    with pytest.raises(ParseError):
        decode_address("zz:0016")


@given(st.text(max_size=200))
def test_proc_parser_gives_rows_or_a_parse_error(text: str) -> None:
    try:
        rows = parse_lines(text.splitlines(), 2)
    except ParseError:
        return
    assert all(len(r) == 10 for r in rows)


def test_raw_rows_keep_chunks_and_agree_with_parse_chunk() -> None:
    for name, *_ in CAPTURES:
        rows = nl.RawRows()
        expected: list[nl.RawRow] = []
        for chunk in _chunks(f"sock_diag_{name}.bin"):
            part, done = nl.chunk_part(chunk)
            rows.add(part)
            nl.parse_chunk(chunk, expected)
        assert done
        assert list(rows) == expected and len(rows) == len(expected)
        assert rows.states() == {r[1] for r in expected}
        assert [i for col in rows.inode_columns() for i in col] == [r[9] for r in expected]
        assert rows.ports() == {r[2] for r in expected} | {r[3] for r in expected}
        assert rows.addresses() == {r[4] for r in expected}
        assert rows.addresses(remote=True) == {r[5] for r in expected}
        assert rows.queue_max() == max([0, *(r[6] for r in expected), *(r[7] for r in expected)])
    # a chunk of mixed message sizes is kept as parsed rows
    tcp = b"".join(_chunks("sock_diag_tcp4.bin"))
    udp = b"".join(_chunks("sock_diag_udp6.bin"))
    mixed = b""
    for blob in (tcp, udp):
        off = 0
        while off < len(blob):
            length, mtype = struct.unpack_from("=IH", blob, off)
            if mtype == nl.SOCK_DIAG_BY_FAMILY:
                mixed += blob[off : off + length]
            off += length
    part, done = nl.chunk_part(mixed)
    assert isinstance(part, list) and not done
    assert nl.RawRows([part]).states() == {r[1] for r in part}


@pytest.mark.parametrize(
    ("cgroup", "expected"),
    [
        ("/system.slice/docker-" + "ab" * 32 + ".scope", "abababababab"),
        ("/docker/" + "a1" * 32, "a1a1a1a1a1a1"),
        (
            "/kubepods.slice/kubepods-burstable.slice/cri-containerd-" + "0f" * 32 + ".scope",
            "0f0f0f0f0f0f",
        ),
        ("/kubepods/besteffort/pod1234/" + "b2" * 32, "b2b2b2b2b2b2"),
        ("/machine.slice/libpod-" + "c3" * 32 + ".scope", "c3c3c3c3c3c3"),
        ("/user.slice/user-1000.slice/session-4.scope", None),
        ("/", None),
        (None, None),
    ],
)
def test_container_id_from_cgroup(cgroup: str | None, expected: str | None) -> None:
    assert container_id(cgroup) == expected


@given(st.text(max_size=120))
def test_container_id_is_none_or_short_hex(text: str) -> None:
    cid = container_id(text)
    assert cid is None or (len(cid) == 12 and set(cid) <= set("0123456789abcdef"))


def test_columns_read_the_same_fields_as_rows() -> None:
    for name, family, *_ in CAPTURES:
        for chunk in _chunks(f"sock_diag_{name}.bin"):
            part, _ = nl.chunk_part(chunk)
            if isinstance(part, list) or not part:
                continue
            view, size = part
            rows = list(nl._uniform_struct(size).iter_unpack(view))
            c = nl.Columns(view, size, family)
            assert list(c.states) == [r[1] for r in rows]
            assert list(c.sports) == [r[2] for r in rows]
            assert list(c.dports) == [r[3] for r in rows]
            assert list(c.recv_q) == [r[6] for r in rows]
            assert list(c.send_q) == [r[7] for r in rows]
            assert list(c.inodes) == [r[9] for r in rows]
            if family == nl.AF_INET:
                assert [nl.ip4_key_bytes(k) for k in c.src] == [r[4] for r in rows]
                assert [nl.ip4_key_bytes(k) for k in c.dst] == [r[5] for r in rows]
            else:
                assert list(c.src) == [r[4] for r in rows]
                assert list(c.dst) == [r[5] for r in rows]


def test_shipped_port_table_is_the_computed_one() -> None:
    import marshal
    import sys

    from portkit.render.sockets_raw import PORT_TABLE_FILE, computed_port_table, port_table

    with open(PORT_TABLE_FILE, "rb") as f:
        shipped = marshal.loads(f.read())
    if sys.byteorder == "little":
        assert shipped == computed_port_table(5)
    table = port_table(5)
    assert table[nl.htons(22)] == "22     " and table[0] == "*      " and len(table) == 65536
    assert port_table(3)[nl.htons(65535)] == "65535  "


def test_raw_tables_agree_with_the_model() -> None:
    # The raw-row renderer and the ls shortcut carry their own tables (so that the
    # plain listing never imports the model): they must say what the model says.
    from portkit.render import sockets_raw

    for state in TcpState:
        assert nl.TCP_STATES[state.code] == state.value
        assert sockets_raw._RAW_STATE_TEXT[state.code] == state.ss_name
        assert sockets_raw._RAW_STATE_VALUE[state.code] == state.value
    assert len(sockets_raw._RAW_STATE_TEXT) == len(sockets_raw._RAW_STATE_VALUE) == 256
    assert sockets_raw._RAW_STATE_TEXT[13] == "UNCONN"
    assert sockets_raw._RAW_STATE_VALUE[13] == "CLOSE"
    assert (nl.TCP_CLOSE, nl.TCP_LISTEN) == (TcpState.CLOSE.code, TcpState.LISTEN.code)


def test_ls_shortcut_state_masks_are_the_querys() -> None:
    from portkit.cli import see

    assert see.STATES_ALL == Query(all=True).state_mask()
    assert see.STATES_LISTENING == Query(listening=True).state_mask()
    assert see.STATES_CONNECTED == Query().state_mask()
    assert see.STATES_ALL == Query(all=True, listening=True).state_mask()

"""The pure model: ports, ranges, endpoints, states, classification."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.errors import ParseError
from portkit.model import (
    NODEPORT_RANGE,
    SS_STATE_GROUPS,
    Connection,
    Endpoint,
    PortRange,
    Protocol,
    RangeClass,
    TcpState,
    classify_port,
    iter_ports,
    parse_port,
    parse_ports,
    parse_state_filter,
)

GUIDE_FORMS = [
    ("192.168.1.100:8080/TCP", "192.168.1.100", 8080, Protocol.TCP),
    ("192.168.1.100:8080", "192.168.1.100", 8080, Protocol.TCP),
    ("[2001:db8::1]:443/tcp", "2001:db8::1", 443, Protocol.TCP),
    ("localhost:5432", "localhost", 5432, Protocol.TCP),
    ("db.internal:6379/tcp", "db.internal", 6379, Protocol.TCP),
    ("(192.168.1.100, 8080, TCP)", "192.168.1.100", 8080, Protocol.TCP),
    ("127.0.0.1:53/UDP", "127.0.0.1", 53, Protocol.UDP),
    ("[::1]:5353/udp", "::1", 5353, Protocol.UDP),
    ("('10.0.0.5', 9200)", "10.0.0.5", 9200, Protocol.TCP),
]


@pytest.mark.parametrize(("text", "host", "port", "proto"), GUIDE_FORMS)
def test_endpoint_forms(text: str, host: str, port: int, proto: Protocol) -> None:
    ep = Endpoint.parse(text)
    assert (ep.host, ep.port, ep.protocol) == (host, port, proto)
    assert Endpoint.parse(str(ep)) == ep


def test_endpoint_str_and_tuple() -> None:
    ep = Endpoint.parse("192.168.1.100:8080/TCP")
    assert str(ep) == "192.168.1.100:8080/tcp"
    assert ep.as_tuple() == ("192.168.1.100", 8080, "TCP")
    assert str(Endpoint.parse("[2001:DB8::1]:443")) == "[2001:db8::1]:443/tcp"


@pytest.mark.parametrize(
    ("text", "part"),
    [
        ("abc:80:1/tcp", "too many ':'"),
        ("10.0.0.1:70000", "70000"),
        ("10.0.0.1:80/tcpx", "tcpx"),
        ("10.0.0.1", "missing port"),
        (":80", "missing host"),
        ("2001:db8::1:443", "brackets"),
        ("[::1]443", "[IPv6]:PORT"),
        ("bad host!:80", "bad host"),
        ("(1.2.3.4, 80", "unclosed"),
        ("", "empty"),
    ],
)
def test_endpoint_errors_name_the_bad_part(text: str, part: str) -> None:
    with pytest.raises(ParseError) as info:
        Endpoint.parse(text)
    assert part in str(info.value)


@given(st.text(max_size=60))
def test_endpoint_parse_gives_record_or_parse_error(text: str) -> None:
    try:
        ep = Endpoint.parse(text)
    except ParseError:
        return
    assert 0 <= ep.port <= 65535
    assert Endpoint.parse(str(ep)) == ep


@given(st.from_regex(r"\A[0-9a-z:\[\]/.,() -]{0,30}\Z"))
def test_endpoint_parse_near_miss_inputs(text: str) -> None:
    with contextlib.suppress(ParseError):
        Endpoint.parse(text)


@given(st.ip_addresses(), st.integers(0, 65535), st.sampled_from(list(Protocol)))
def test_endpoint_round_trip(ip: object, port: int, proto: Protocol) -> None:
    ep = Endpoint(str(ip), port, proto)
    assert Endpoint.parse(str(ep)) == ep
    assert Endpoint.parse(f"({ep.host}, {port}, {proto.value.upper()})") == ep


def test_ports_and_ranges() -> None:
    assert parse_port("22") == 22
    assert [str(r) for r in parse_ports("22,80,8000-8100")] == ["22", "80", "8000-8100"]
    r = PortRange.parse("8000-8100")
    assert len(r) == 101 and 8050 in r and 8101 not in r
    assert iter_ports(parse_ports("3,1-2,2")) == [1, 2, 3]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("8100-8000", "reversed"),
        ("65536-1", "65536"),
        ("1-", "incomplete"),
        ("22,,80", "empty item"),
        ("70000", "out of range"),
        ("x", "not a number"),
        ("", "empty"),
    ],
)
def test_port_list_errors(text: str, message: str) -> None:
    with pytest.raises(ParseError, match=message):
        parse_ports(text)


@given(st.text(max_size=30))
def test_parse_ports_gives_ranges_or_parse_error(text: str) -> None:
    try:
        ranges = parse_ports(text)
    except ParseError:
        return
    assert all(0 <= r.start <= r.end <= 65535 for r in ranges)


@given(st.integers(0, 65535), st.integers(0, 65535))
def test_port_range_round_trip(a: int, b: int) -> None:
    lo, hi = min(a, b), max(a, b)
    r = PortRange(lo, hi)
    assert PortRange.parse(str(r)) == r
    assert len(r) == hi - lo + 1


def test_protocol_case_insensitive() -> None:
    assert Protocol.parse("UDP") is Protocol.UDP
    with pytest.raises(ParseError, match="tcp, udp, sctp, dccp"):
        Protocol.parse("icmp")


def test_every_linux_tcp_state_has_code_and_meaning() -> None:
    names = [
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
        "NEW_SYN_RECV",
    ]
    assert [s.value for s in TcpState] == names
    assert [s.code for s in TcpState] == list(range(1, 13))  # include/net/tcp_states.h
    assert all(TcpState.from_code(s.code) is s and s.meaning for s in TcpState)
    assert TcpState.TIME_WAIT.meaning.startswith(
        "connection closed but port reserved, prevents old packets from interfering"
    )


def test_state_filters_follow_ss() -> None:
    assert parse_state_filter(["connected"]) == SS_STATE_GROUPS["connected"]
    assert TcpState.LISTEN not in parse_state_filter(["connected"])
    assert parse_state_filter(["bucket"]) >= {TcpState.TIME_WAIT, TcpState.SYN_RECV}
    with pytest.raises(ParseError, match="unknown state"):
        parse_state_filter(["sleeping"])


def test_connection_record() -> None:
    c = Connection(
        Protocol.TCP,
        Endpoint.parse("203.0.113.50:54321"),
        Endpoint.parse("192.168.1.100:8080"),
        TcpState.ESTABLISHED,
    )
    assert str(c) == "203.0.113.50:54321/tcp <-> 192.168.1.100:8080/tcp ESTABLISHED"
    with pytest.raises(AttributeError):
        c.state = TcpState.CLOSE  # type: ignore[misc]


@pytest.mark.parametrize(
    ("port", "cls", "eph", "node"),
    [
        (0, "well-known", False, False),
        (1023, "well-known", False, False),
        (1024, "registered", False, False),
        (30000, "registered", False, True),
        (32767, "registered", False, True),
        (32768, "registered", True, False),
        (49151, "registered", True, False),
        (49152, "dynamic", True, False),
        (61000, "dynamic", False, False),
        (65535, "dynamic", False, False),
    ],
)
def test_classify(port: int, cls: str, eph: bool, node: bool) -> None:
    c = classify_port(port, PortRange(32768, 60999))
    assert (c.range_class.value, c.ephemeral, c.nodeport) == (cls, eph, node)


def test_range_classes_cover_every_port_once() -> None:
    assert sum(len(c.ports) for c in RangeClass) == 65536
    assert str(NODEPORT_RANGE) == "30000-32767"


@given(st.lists(st.text(max_size=15), max_size=4))
def test_state_filter_gives_states_or_parse_error(names: list[str]) -> None:
    try:
        states = parse_state_filter(names)
    except ParseError:
        return
    assert states <= frozenset(TcpState)


@given(st.text(max_size=30))
def test_ip_local_port_range_parser(text: str) -> None:
    from portkit.system import parse_ip_local_port_range

    try:
        r = parse_ip_local_port_range(text)
    except ParseError:
        return
    assert 0 <= r.start <= r.end <= 65535


@pytest.mark.parametrize(
    ("address", "scope"),
    [
        (None, "wildcard"),
        ("", "wildcard"),
        ("*", "wildcard"),
        ("0.0.0.0", "wildcard"),
        ("::", "wildcard"),
        ("[::]", "wildcard"),
        ("0:0:0:0:0:0:0:0", "wildcard"),
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("[::1]", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("localhost", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1%eth0", "link-local"),
        ("::ffff:169.254.1.1", "link-local"),
        ("10.0.0.5", "specific"),
        ("::ffff:10.0.0.5", "specific"),
        ("2001:db8::1", "specific"),
        ("db.internal", "specific"),
    ],
)
def test_bind_scope_for_every_form(address: str | None, scope: str) -> None:
    from portkit.model import bind_scope

    assert bind_scope(address).value == scope


@given(st.one_of(st.none(), st.text(max_size=60), st.ip_addresses().map(str)))
def test_bind_scope_answers_anything(address: str | None) -> None:
    from portkit.model import BindScope, bind_scope, widest_scope

    assert bind_scope(address) in set(BindScope)
    assert widest_scope([address, "0.0.0.0"]) is BindScope.WILDCARD

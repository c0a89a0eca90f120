"""The pure parts of forward: specs, the allow list, the fd budget, PROXY headers."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portkit.errors import ParseError
from portkit.forward.access import AllowList, connection_budget
from portkit.forward.proxy import PROXY_V2_SIGNATURE, build_header, proxy_v1, proxy_v2
from portkit.forward.spec import Mapping, parse_spec, parse_specs
from portkit.model import Protocol


@pytest.mark.parametrize(
    ("spec", "listen", "target", "proto", "explicit"),
    [
        ("8080:3000", "127.0.0.1:8080", "localhost:3000", "tcp", False),
        ("127.0.0.1:8080:80", "127.0.0.1:8080", "localhost:80", "tcp", True),
        ("0.0.0.0:8080:80/tcp", "0.0.0.0:8080", "localhost:80", "tcp", True),
        ("8080:localhost:3000", "127.0.0.1:8080", "localhost:3000", "tcp", False),
        ("8080:10.0.0.5:80", "127.0.0.1:8080", "10.0.0.5:80", "tcp", False),
        ("127.0.0.1:5353:10.0.0.2:53/udp", "127.0.0.1:5353", "10.0.0.2:53", "udp", True),
        ("53:53/UDP", "127.0.0.1:53", "localhost:53", "udp", False),
        ("[::1]:8443:[2001:db8::5]:443", "[::1]:8443", "[2001:db8::5]:443", "tcp", True),
        ("[::]:8080:80", "[::]:8080", "localhost:80", "tcp", True),
        ("8080:[::1]:80", "127.0.0.1:8080", "[::1]:80", "tcp", False),
        ("8080:db.internal:5432", "127.0.0.1:8080", "db.internal:5432", "tcp", False),
        (" 0:3000 ", "127.0.0.1:0", "localhost:3000", "tcp", False),
    ],
)
def test_spec_forms(spec: str, listen: str, target: str, proto: str, explicit: bool) -> None:
    (m,) = parse_spec(spec)
    assert (m.listen, m.target, m.protocol.value, m.explicit_bind) == (
        listen,
        target,
        proto,
        explicit,
    )


def test_ranges_expand_pairwise() -> None:
    maps = parse_spec("8000-8010:9000-9010")
    assert len(maps) == 11
    assert [(m.listen_port, m.target_port) for m in maps][:2] == [(8000, 9000), (8001, 9001)]
    assert maps[-1].listen_port == 8010 and maps[-1].target_port == 9010
    udp = parse_spec("10.0.0.1:7000-7001:db:8000-8001/udp")
    assert [m.spec() for m in udp] == ["10.0.0.1:7000:db:8000/udp", "10.0.0.1:7001:db:8001/udp"]


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ("", "empty"),
        ("8080", "fields"),
        ("1:2:3:4:5", "fields"),
        ("8000-8010:9000-9005", "differ in length"),
        ("8010-8000:9000-9010", "reversed"),
        ("70000:80", "out of range"),
        ("8080:0", "target port 0"),
        ("8080:80/sctp", "unknown protocol"),
        ("::1:8080:80", "fields"),
        ("[::1:8080:80", "unclosed"),
        ("[10.0.0.1]:8080:80", "IPv6"),
        ("localhost:8080:80", "not an IP address"),
        ("8080:bad_host!:80", "bad host"),
        ("8080:::1:80", "fields"),
        ("0-3:10-13", "port 0"),
    ],
)
def test_bad_specs_name_the_problem(spec: str, needle: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_spec(spec)
    assert needle in str(info.value)


def test_duplicate_listeners_are_refused_but_tcp_and_udp_may_share() -> None:
    assert len(parse_specs(["8080:80", "8080:53/udp"])) == 2
    with pytest.raises(ParseError, match="given twice"):
        parse_specs(["8080:80", "127.0.0.1:8080:81"])


_ALPHABET = "0123456789:[]/-.abcdeflhostudpUDPx "


@settings(max_examples=400, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_any_text_is_mappings_or_parse_error(text: str) -> None:
    try:
        maps = parse_spec(text)
    except ParseError as exc:
        message = str(exc)
        assert message and "\n" not in message
        return
    assert maps and all(isinstance(m, Mapping) for m in maps)
    assert all(m.protocol in (Protocol.TCP, Protocol.UDP) for m in maps)


_hosts = st.one_of(
    st.ip_addresses().map(str),
    st.sampled_from(["localhost", "db.internal", "a-b.example.com"]),
)


@settings(max_examples=200, deadline=None)
@given(
    bind=st.ip_addresses().map(str),
    lport=st.integers(1, 65535),
    host=_hosts,
    tport=st.integers(1, 65535),
    proto=st.sampled_from(["tcp", "udp"]),
)
def test_spec_round_trips(bind: str, lport: int, host: str, tport: int, proto: str) -> None:
    m = Mapping(lport, host, tport, protocol=proto, listen_host=bind)
    (again,) = parse_spec(m.spec())
    assert again == m


def test_allow_list() -> None:
    allow = AllowList.parse(["10.0.0.0/8", "2001:db8::/32", "192.168.1.5"])
    assert allow.permits("10.200.0.1")
    assert allow.permits("::ffff:10.1.1.1")
    assert allow.permits("2001:db8::77")
    assert allow.permits("192.168.1.5")
    assert not allow.permits("192.168.1.6")
    assert not allow.permits("127.0.0.1")
    assert not allow.permits("not-an-ip")
    assert AllowList.parse([]).permits("203.0.113.9")
    with pytest.raises(ParseError, match="--allow"):
        AllowList.parse(["10.0.0.0/33"])


@given(st.ip_addresses(), st.integers(0, 32))
def test_allow_list_agrees_with_ipaddress(ip: ipaddress.IPv4Address, prefix: int) -> None:
    if ip.version != 4:
        return
    net = ipaddress.ip_network(f"{ip}/{prefix}", strict=False)
    probe = ipaddress.ip_address(int(ip) ^ 1)
    assert AllowList([net]).permits(str(probe)) == (probe in net)


def test_connection_budget() -> None:
    assert connection_budget(20000) == 9936
    assert connection_budget(1024) == 448
    assert connection_budget(10) == 1


def test_proxy_v1() -> None:
    assert proxy_v1(("::ffff:192.0.2.1", 5000), ("127.0.0.1", 80)) == (
        b"PROXY TCP4 192.0.2.1 127.0.0.1 5000 80\r\n"
    )
    six = proxy_v1(("2001:db8::1", 5000), ("::1", 443))
    assert six == b"PROXY TCP6 2001:db8::1 ::1 5000 443\r\n"
    assert build_header("v1", ("10.0.0.1", 1), ("10.0.0.2", 2)).startswith(b"PROXY TCP4 ")
    with pytest.raises(ParseError):
        build_header("v3", ("10.0.0.1", 1), ("10.0.0.2", 2))


def test_proxy_v2_layout() -> None:
    head = proxy_v2(("192.0.2.1", 5000), ("127.0.0.1", 80))
    assert head[:12] == PROXY_V2_SIGNATURE
    ver_cmd, fam, length = struct.unpack("!BBH", head[12:16])
    assert (ver_cmd, fam, length) == (0x21, 0x11, 12)
    assert head[16:20] == bytes([192, 0, 2, 1]) and head[20:24] == bytes([127, 0, 0, 1])
    assert struct.unpack("!HH", head[24:28]) == (5000, 80)
    six = proxy_v2(("2001:db8::1", 1), ("::1", 2))
    assert six[13] == 0x21 and struct.unpack("!H", six[14:16])[0] == 36

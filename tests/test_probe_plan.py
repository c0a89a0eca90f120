"""The pure side of the reach capability: targets, ports, verdict tables, timing, payloads."""

from __future__ import annotations

import errno
import ssl

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.errors import ParseError, UsageError
from portkit.probe import PortState, Reason, parse_port_spec, parse_target, top_ports
from portkit.probe._payloads import (
    UDP_PAYLOADS,
    parse_status_line,
    summarize_banner,
    tcp_probe_for,
    udp_payload_for,
)
from portkit.probe._scan import plan_ports
from portkit.probe._states import (
    ORIGIN_ICMP,
    ORIGIN_ICMP6,
    icmp_verdict,
    parse_extended_err,
    tcp_errno_verdict,
    udp_errno_verdict,
)
from portkit.probe._targets import MAX_HOSTS, parse_target_list, parse_targets
from portkit.probe._timing import RateLimiter, RttEstimator, concurrency_for
from portkit.probe._x509 import EXAMPLE_HEX, read_certificate
from portkit.registry import service_name
from tests import _lab

# --- targets ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "first", "last", "count"),
    [
        ("10.0.0.5", "ip", "10.0.0.5", "10.0.0.5", 1),
        ("[2001:db8::1]", "ip", "2001:db8::1", "2001:db8::1", 1),
        ("2001:DB8::1", "ip", "2001:db8::1", "2001:db8::1", 1),
        ("10.0.0.0/30", "cidr", "10.0.0.0", "10.0.0.3", 4),
        ("10.0.0.77/30", "cidr", "10.0.0.76", "10.0.0.79", 4),
        ("fd00::/126", "cidr", "fd00::", "fd00::3", 4),
        ("10.0.0.1-20", "octets", "10.0.0.1", "10.0.0.20", 20),
        ("10.0.0-1.1-2", "octets", "10.0.0.1", "10.0.1.2", 4),
        ("10.0.0.1,5,9", "octets", "10.0.0.1", "10.0.0.9", 3),
        ("10.0.0.*", "octets", "10.0.0.0", "10.0.0.255", 256),
        ("10.0.0.250-10.0.1.2", "range", "10.0.0.250", "10.0.1.2", 9),
        ("fd00::1-fd00::3", "range", "fd00::1", "fd00::3", 3),
    ],
)
def test_target_forms(text: str, kind: str, first: str, last: str, count: int) -> None:
    spec = parse_target(text)
    addrs = list(spec.addresses())
    assert spec.kind == kind
    assert spec.count == count == len(addrs)
    assert (addrs[0], addrs[-1]) == (first, last)


def test_target_name() -> None:
    spec = parse_target("db.internal")
    assert spec.kind == "name"
    assert spec.hostname == "db.internal"
    assert list(spec.addresses()) == []


@pytest.mark.parametrize(
    "text",
    [
        "",
        "10.0.0.300",
        "10.0.0.1-300",
        "10.0.0.20-1",
        "10.0.0.0/33",
        "fd00::/64",  # more than MAX_HOSTS
        "10.0.0.5-fd00::1",
        "fd00::9-fd00::1",
        "-bad-.example",
        "a..b",
        "1:2:3",
        "host/24",
    ],
)
def test_bad_targets(text: str) -> None:
    with pytest.raises(ParseError):
        parse_target(text)


def test_max_hosts_boundary() -> None:
    assert parse_target("10.0.0.0/12").count == MAX_HOSTS
    with pytest.raises(ParseError, match="more than"):
        parse_target("10.0.0.0/11")
    with pytest.raises(ParseError):
        parse_targets([])


def test_target_list_file() -> None:
    text = "10.0.0.1  10.0.0.2 # lab\n\n# only a comment\n db.internal\n10.0.0.1,5\n"
    assert parse_target_list(text) == ["10.0.0.1", "10.0.0.2", "db.internal", "10.0.0.1,5"]


@given(st.text(max_size=40))
def test_any_target_text_parses_or_raises(text: str) -> None:
    try:
        spec = parse_target(text)
    except ParseError:
        return
    assert 1 <= spec.count <= MAX_HOSTS
    assert spec.kind in ("ip", "cidr", "range", "octets", "name")


@given(st.ip_addresses(), st.integers(0, 32))
def test_cidr_count_matches(addr: object, bits: int) -> None:
    prefix = bits if ":" not in str(addr) else 128 - bits // 4
    size = 2 ** ((32 if ":" not in str(addr) else 128) - prefix)
    if size > MAX_HOSTS:
        with pytest.raises(ParseError, match="more than"):
            parse_target(f"{addr}/{prefix}")
        return
    spec = parse_target(f"{addr}/{prefix}")
    assert spec.count == size
    if size <= 64:
        assert len(list(spec.addresses())) == size


# --- ports --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tcp", "udp"),
    [
        ("22", (22,), ()),
        ("22,80,443", (22, 80, 443), ()),
        ("8000-8003", (8000, 8001, 8002, 8003), ()),
        ("-3", (1, 2, 3), ()),
        ("65534-", (65534, 65535), ()),
        ("80,22,80", (80, 22), ()),
        ("U:53,161,T:22", (22,), (53, 161)),
        ("u:53, t:22-23", (22, 23), (53,)),
        ("0", (0,), ()),
    ],
)
def test_port_specs(text: str, tcp: tuple[int, ...], udp: tuple[int, ...]) -> None:
    plan = parse_port_spec(text)
    assert (plan.tcp, plan.udp) == (tcp, udp)


def test_all_ports_and_udp_default() -> None:
    assert parse_port_spec("-").tcp == tuple(range(1, 65536))
    assert parse_port_spec("53,123", default="udp").udp == (53, 123)


@pytest.mark.parametrize("text", ["", "22,", "70000", "20-10", "x", "S:22", "22-23-24", "--"])
def test_bad_port_specs(text: str) -> None:
    with pytest.raises(ParseError):
        parse_port_spec(text)


@given(st.text(alphabet="0123456789-,TU: ", max_size=25))
def test_any_port_spec_parses_or_raises(text: str) -> None:
    try:
        plan = parse_port_spec(text)
    except ParseError:
        return
    for port in (*plan.tcp, *plan.udp):
        assert 0 <= port <= 65535
    assert len(set(plan.tcp)) == len(plan.tcp)


def test_top_ports_come_from_the_registry() -> None:
    top = top_ports(16)
    # The guide's table of common ports comes first.
    assert {22, 80, 443, 5432, 6379, 3306, 8080, 27017} <= set(top)
    hundred = top_ports(100)
    assert hundred[:16] == top
    assert 6443 in hundred  # a DevOps everyday port (kube-apiserver)
    assert len(set(top_ports(1000))) == 1000
    assert 53 in top_ports(5, "udp")
    with pytest.raises(ParseError):
        top_ports(0)


def test_plan_ports() -> None:
    assert plan_ports(None).tcp == top_ports(1000)
    assert plan_ports(None, top=10, udp=True).udp == top_ports(10, "udp")
    assert plan_ports([443, 80, 443]).tcp == (443, 80)
    with pytest.raises(UsageError):
        plan_ports("22", top=5)


def test_service_names() -> None:
    assert service_name(22) == "ssh"
    assert service_name(53, "udp") == "dns"
    assert service_name(8080) == "http-alt"
    assert service_name(9092) == "kafka"  # everyday use wins over IANA's XmlIpcRegSvc
    assert service_name(123, "udp") == "ntp"


# --- verdict tables -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "state", "reason"),
    [
        (0, PortState.OPEN, Reason.SYN_ACK),
        (errno.ECONNREFUSED, PortState.CLOSED, Reason.CONN_REFUSED),
        (errno.EHOSTUNREACH, PortState.FILTERED, Reason.HOST_UNREACH),
        (errno.ENETUNREACH, PortState.FILTERED, Reason.NET_UNREACH),
        (errno.EACCES, PortState.FILTERED, Reason.ADMIN_PROHIBITED),
        (errno.ETIMEDOUT, PortState.FILTERED, Reason.NO_RESPONSE),
        (errno.ECONNRESET, PortState.OPEN, Reason.SYN_ACK),
        (errno.EBADF, PortState.FILTERED, Reason.LOCAL_ERROR),
    ],
)
def test_tcp_errno_table(err: int, state: PortState, reason: Reason) -> None:
    assert tcp_errno_verdict(err) == (state, reason)


@pytest.mark.parametrize(
    ("origin", "typ", "code", "state", "reason"),
    [
        (ORIGIN_ICMP, 3, 3, PortState.CLOSED, Reason.PORT_UNREACH),
        (ORIGIN_ICMP, 3, 13, PortState.FILTERED, Reason.ADMIN_PROHIBITED),
        (ORIGIN_ICMP, 3, 1, PortState.FILTERED, Reason.HOST_UNREACH),
        (ORIGIN_ICMP, 3, 0, PortState.FILTERED, Reason.NET_UNREACH),
        (ORIGIN_ICMP, 3, 2, PortState.FILTERED, Reason.PROTO_UNREACH),
        (ORIGIN_ICMP, 3, 9, PortState.FILTERED, Reason.NET_PROHIBITED),
        (ORIGIN_ICMP, 3, 10, PortState.FILTERED, Reason.HOST_PROHIBITED),
        (ORIGIN_ICMP, 3, 4, PortState.FILTERED, Reason.HOST_UNREACH),
        (ORIGIN_ICMP, 11, 0, PortState.FILTERED, Reason.TIME_EXCEEDED),
        (ORIGIN_ICMP6, 1, 4, PortState.CLOSED, Reason.PORT_UNREACH),
        (ORIGIN_ICMP6, 1, 1, PortState.FILTERED, Reason.ADMIN_PROHIBITED),
        (ORIGIN_ICMP6, 1, 3, PortState.FILTERED, Reason.HOST_UNREACH),
        (ORIGIN_ICMP6, 1, 0, PortState.FILTERED, Reason.NET_UNREACH),
    ],
)
def test_icmp_table(origin: int, typ: int, code: int, state: PortState, reason: Reason) -> None:
    assert icmp_verdict(origin, typ, code, "udp") == (state, reason)
    assert icmp_verdict(origin, typ, code, "tcp") == (state, reason)


def test_icmp_local_origin_says_nothing() -> None:
    assert icmp_verdict(1, 0, 0, "udp") is None
    assert icmp_verdict(ORIGIN_ICMP, 8, 0, "udp") is None  # an echo request is no verdict
    assert udp_errno_verdict(errno.ECONNREFUSED) == (PortState.CLOSED, Reason.PORT_UNREACH)


def test_extended_err_parser() -> None:
    # Captured from the lab: ICMPv6 type 1 code 4 (port unreachable), errno 111.
    data = bytes.fromhex("6f00000003010400000000000000000000")
    ee = parse_extended_err(data)
    assert (ee.errno, ee.origin, ee.type, ee.code) == (111, 3, 1, 4)
    with pytest.raises(ParseError):
        parse_extended_err(b"\x00" * 15)


@given(st.binary(max_size=40))
def test_extended_err_any_bytes(data: bytes) -> None:
    try:
        ee = parse_extended_err(data)
    except ParseError:
        assert len(data) < 16
        return
    assert 0 <= ee.type <= 255


# --- timing -------------------------------------------------------------------------------


def test_rtt_estimator_adapts_and_clamps() -> None:
    est = RttEstimator(initial=1.0, minimum=0.1, maximum=2.0)
    assert est.timeout == 1.0
    for _ in range(20):
        est.update(0.0005)
    assert est.timeout == 0.1
    for _ in range(50):
        est.update(0.4)
    assert 0.4 <= est.timeout <= 2.0
    for _ in range(50):
        est.update(10.0)
    assert est.timeout == 2.0


@given(st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=50))
def test_rtt_timeout_always_within_bounds(samples: list[float]) -> None:
    est = RttEstimator(initial=1.0, minimum=0.1, maximum=2.0)
    for s in samples:
        est.update(s)
        assert 0.1 <= est.timeout <= 2.0


def test_rate_limiter() -> None:
    rl = RateLimiter(100, burst=1, now=0.0)
    assert rl.take(0.0)
    assert not rl.take(0.0)
    assert rl.wait(0.0) == pytest.approx(0.01)
    assert rl.take(0.01)
    sent = sum(rl.take(t / 1000) for t in range(20, 1020))
    assert 95 <= sent <= 101
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0)


def test_concurrency_from_rlimit() -> None:
    assert concurrency_for(None, 1024, 1024) == (960, 1024)
    assert concurrency_for(None, 1024, 4096) == (1000, 1064)
    assert concurrency_for(5000, 1024, 2048) == (1984, 2048)
    assert concurrency_for(100, 65536, 65536) == (100, 65536)
    assert concurrency_for(10, 20, 20) == (1, 20)
    assert concurrency_for(2000, 1024, -1) == (2000, 2064)  # RLIM_INFINITY


# --- payloads and answers -----------------------------------------------------------------


def _ber_ok(data: bytes) -> bool:
    """A BER element whose short/long length covers exactly the rest of ``data``."""
    if len(data) < 2:
        return False
    length, pos = data[1], 2
    if length & 0x80:
        n = length & 0x7F
        length, pos = int.from_bytes(data[2 : 2 + n], "big"), 2 + n
    return pos + length == len(data)


def test_udp_payload_table() -> None:
    for name in ("dns", "ntp", "snmp", "ssdp", "netbios-ns", "sip", "stun", "quic"):
        assert name in {p.name for p in UDP_PAYLOADS.values()}
    dns = udp_payload_for(53)
    assert dns[4:6] == b"\x00\x01"  # one question
    assert len(udp_payload_for(123)) == 48
    assert udp_payload_for(123)[0] & 0x07 == 3  # NTP client mode
    snmp = udp_payload_for(161)
    assert snmp[0] == 0x30
    assert _ber_ok(snmp)
    assert b"public" in snmp
    assert udp_payload_for(1900).startswith(b"M-SEARCH * HTTP/1.1\r\n")
    assert len(udp_payload_for(443)) == 1200
    assert udp_payload_for(3478)[4:8] == b"\x21\x12\xa4\x42"  # STUN magic cookie
    assert len(udp_payload_for(3478)) == 20
    assert udp_payload_for(40000) == b""


def test_tcp_probes() -> None:
    assert tcp_probe_for(6379) == b"PING\r\n"
    assert tcp_probe_for(8080).startswith(b"HEAD / HTTP/1.0")


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"HTTP/1.1 200 OK\r\n", 200),
        (b"HTTP/1.0 404 Not Found\r\nServer: x\r\n\r\n", 404),
        (b"HTTP/2 503\n", 503),
    ],
)
def test_status_line(data: bytes, code: int) -> None:
    assert parse_status_line(data) == code


@given(st.binary(max_size=64))
def test_status_line_any_bytes(data: bytes) -> None:
    try:
        code = parse_status_line(data)
    except ParseError:
        return
    assert 100 <= code <= 999


def test_banner_summary() -> None:
    assert summarize_banner(b"220 mail ESMTP\r\nmore\r\n") == "220 mail ESMTP"
    assert summarize_banner(b"HTTP/1.1 200 OK\r\nServer: lab\r\n\r\n") == (
        "HTTP/1.1 200 OK (Server: lab)"
    )
    assert summarize_banner(b"\x81\x80\x00\x01\x00\x00").startswith("6 bytes: ")
    assert summarize_banner(b"") == ""
    assert summarize_banner(b"x" * 500).endswith("…")


@given(st.binary(max_size=300))
def test_banner_summary_any_bytes(data: bytes) -> None:
    text = summarize_banner(data)
    assert "\n" not in text
    assert len(text) <= 160


# --- certificates -------------------------------------------------------------------------


def test_certificate_reader_example() -> None:
    cert = read_certificate(bytes.fromhex(EXAMPLE_HEX))
    assert cert.subject == cert.issuer == "CN=portkit.test"
    assert (cert.not_before, cert.not_after) == ("2025-01-01T00:00:00Z", "2035-01-01T00:00:00Z")


def test_certificate_reader_on_openssl_cert(tmp_path: object) -> None:
    crt, _ = _lab.self_signed_cert(
        str(tmp_path),
        cn="probe.portkit.test",
        org="portkit tests",
        san="DNS:probe.portkit.test,IP:127.0.0.1",
        days=10,
    )
    with open(crt) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    cert = read_certificate(der)
    decoded = ssl._ssl._test_decode_cert(crt)  # type: ignore[attr-defined]
    assert cert.subject == "CN=probe.portkit.test, O=portkit tests"
    assert cert.issuer == cert.subject
    assert cert.san == ("probe.portkit.test", "127.0.0.1")
    import time

    end = time.strptime(decoded["notAfter"], "%b %d %H:%M:%S %Y GMT")
    assert cert.not_after == time.strftime("%Y-%m-%dT%H:%M:%SZ", end)


@given(st.binary(max_size=200))
def test_certificate_reader_any_bytes(data: bytes) -> None:
    try:
        cert = read_certificate(data)
    except ParseError:
        return
    assert isinstance(cert.subject, str)


@given(st.integers(0, len(bytes.fromhex(EXAMPLE_HEX)) - 1), st.integers(0, 255))
def test_certificate_reader_mutations(pos: int, value: int) -> None:
    data = bytearray(bytes.fromhex(EXAMPLE_HEX))
    data[pos] = value
    try:
        cert = read_certificate(bytes(data))
    except ParseError:
        return
    assert cert.not_after[:4].isdigit()

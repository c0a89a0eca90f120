"""The compose port short syntax, parsed as Docker's go-connections parses it."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from portkit.errors import ParseError
from portkit.model import PortRange
from portkit.plan import PortSpec, parse_port_spec
from portkit.plan._spec import parse_expose, parse_ip, parse_port_range

R = PortRange

#: every short-syntax form of the compose spec (05-services.md, "ports")
FORMS = [
    ("3000", None, None, R(3000), "tcp", False),
    ("3000-3005", None, None, R(3000, 3005), "tcp", False),
    ("8000:8000", None, R(8000), R(8000), "tcp", False),
    ("9090-9091:8080-8081", None, R(9090, 9091), R(8080, 8081), "tcp", False),
    ("49100:22", None, R(49100), R(22), "tcp", False),
    ("8000-9000:80", None, R(8000, 9000), R(80), "tcp", True),
    ("127.0.0.1:8001:8001", "127.0.0.1", R(8001), R(8001), "tcp", False),
    ("127.0.0.1:5000-5010:5000-5010", "127.0.0.1", R(5000, 5010), R(5000, 5010), "tcp", False),
    ("::1:6000:6000", "::1", R(6000), R(6000), "tcp", False),
    ("[::1]:6001:6001", "::1", R(6001), R(6001), "tcp", False),
    ("6060:6060/udp", None, R(6060), R(6060), "udp", False),
    ("53:53/UDP", None, R(53), R(53), "udp", False),
    ("9999:9999/sctp", None, R(9999), R(9999), "sctp", False),
    ("127.0.0.1::80", "127.0.0.1", None, R(80), "tcp", False),
    (":80", None, None, R(80), "tcp", False),
    ("80/", None, None, R(80), "tcp", False),
    ("[2001:db8::1]:443:443", "2001:db8::1", R(443), R(443), "tcp", False),
    ("0.0.0.0:8080:80", "0.0.0.0", R(8080), R(80), "tcp", False),
    ("0:80", None, R(0), R(80), "tcp", False),
]


@pytest.mark.parametrize(("text", "ip", "host", "container", "proto", "pool"), FORMS)
def test_every_short_syntax_form(
    text: str, ip: str | None, host: PortRange | None, container: PortRange, proto: str, pool: bool
) -> None:
    spec = parse_port_spec(text)
    assert (spec.host_ip, spec.host, spec.container, spec.protocol, spec.pool) == (
        ip,
        host,
        container,
        proto,
        pool,
    )


ERRORS = [
    ("80:70000", "invalid containerPort: 70000"),
    ("70000", "invalid containerPort: 70000"),
    ("99999:80", "invalid hostPort: 99999"),
    ("8080-80:80", "invalid hostPort: 8080-80"),
    ("80:90-80", "invalid containerPort: 90-80"),
    ("80:http", "invalid containerPort: http"),
    ("80:-1", "invalid containerPort: -1"),
    ("80:+1", "invalid containerPort: +1"),
    ("80: 80", "invalid containerPort:  80"),
    ("80:80/http", "invalid proto: http"),
    ("1.2.3:80:80", "invalid IP address: 1.2.3"),
    ("localhost:80:80", "invalid IP address: localhost"),
    ("fe80::1%eth0:80:80", "invalid IP address: fe80::1%eth0"),
    ("[::1:80:80", "invalid IP address [::1: address [::1:: missing ']' in address"),
    ("80:", "no port specified: 80:<empty>"),
    ("", "no port specified: <empty>"),
    ("/udp", "no port specified: /udp<empty>"),
    (
        "9090-9091:8080-8082",
        "invalid ranges specified for container and host Ports: 8080-8082 and 9090-9091",
    ),
    ("1-2-3", "invalid containerPort: 1-2-3"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors_in_dockers_words(text: str, message: str) -> None:
    with pytest.raises(ParseError) as exc:
        parse_port_spec(text)
    assert exc.value.message == message


def test_expose_entries() -> None:
    assert parse_expose("3000") == (R(3000), "tcp")
    assert parse_expose("8000-8010/udp") == (R(8000, 8010), "udp")
    with pytest.raises(ParseError, match="invalid proto: icmp"):
        parse_expose("53/icmp")
    with pytest.raises(ParseError, match="invalid containerPort: 70000"):
        parse_expose("70000")


def test_helpers() -> None:
    assert parse_port_range("0") == R(0)
    assert parse_port_range("65536") is None
    assert parse_port_range("") is None
    assert parse_ip("0:0:0:0:0:0:0:1") == "::1"
    assert parse_ip("010.0.0.1") is None  # Go refuses leading zeros, as Python does


# --- properties ----------------------------------------------------------------------

ports = st.integers(0, 65535)
ips = st.sampled_from([None, "127.0.0.1", "0.0.0.0", "10.1.2.3", "::1", "2001:db8::5", "::"])
protos = st.sampled_from(["tcp", "udp", "sctp"])


@st.composite
def specs(draw: st.DrawFn) -> PortSpec:
    start = draw(ports)
    length = draw(st.integers(1, 5))
    container = R(start, min(start + length - 1, 65535))
    host: PortRange | None = None
    if draw(st.booleans()):
        hstart = draw(st.integers(0, 65535 - len(container)))
        if len(container) == 1 and draw(st.booleans()):
            host = R(hstart, min(hstart + draw(st.integers(0, 100)), 65535))  # a pool
        else:
            host = R(hstart, hstart + len(container) - 1)
    ip = draw(ips)
    return PortSpec(ip, host, container, draw(protos))


@given(specs())
def test_str_parses_back_to_the_same_spec(spec: PortSpec) -> None:
    assert parse_port_spec(str(spec)) == spec


@given(st.text(alphabet="0123456789:-/[].abcdefpstu %", max_size=30))
@example("::::")
@example("[]:1:1")
@example("1.1.1.1.1:1:1")
@example("65535-0:1")
def test_any_text_gives_a_spec_or_a_parse_error(text: str) -> None:
    try:
        spec = parse_port_spec(text)
    except ParseError as exc:
        message = exc.message
        assert message
        return
    assert 0 <= spec.container.start <= spec.container.end <= 65535
    assert spec.protocol in ("tcp", "udp", "sctp")
    if spec.host is not None and len(spec.host) != len(spec.container):
        assert len(spec.container) == 1


@given(st.text(max_size=40))
def test_any_unicode_gives_a_spec_or_a_parse_error(text: str) -> None:
    with contextlib.suppress(ParseError):
        parse_port_spec(text)

"""The NAT readers on captured and reconstructed rulesets (tests/data/netfilter):
Docker's (iptables-nft, userland proxy on and off; its nftables backend), kube-proxy's
(nftables and iptables modes), Podman's netavark, rules written by hand."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.errors import ParseError
from portkit.netfilter import (
    NatMapping,
    parse_iptables_save,
    parse_nft,
    parse_ruleset,
    parse_save,
)
from portkit.netfilter._nat import Match
from portkit.netfilter._nft import render_rule

DATA = Path(__file__).parent / "data" / "netfilter"
CONTAINERS = Path(__file__).parent / "data" / "containers"


def _nft(name: str) -> list[NatMapping]:
    return list(parse_nft(json.loads((DATA / name).read_text())).mappings)


def _save(name: str, family: int = 4) -> list[NatMapping]:
    return parse_iptables_save((DATA / name).read_text(), family)


def _rows(mappings: list[NatMapping]) -> set[tuple[str, str, str | None, tuple[str, ...]]]:
    """``(published, destination, iifname, hooks)`` of each mapping."""
    return {(m.published(), m.destination(), m.iifname, m.hooks) for m in mappings}


BOTH = ("prerouting", "output")

# --- Docker, captured here (Debian's docker.io 20.10, iptables-nft) ------------------------


def test_docker_iptables_nft_targets_are_opaque_in_json() -> None:
    found = parse_nft(json.loads((DATA / "docker-iptables-nft.json").read_text()))
    assert found.mappings == ()
    assert found.opaque == {4: 8}  # the eight DNAT rules of the DOCKER chain


def test_docker_iptables_save() -> None:
    assert _rows(_save("docker-iptables-save.txt")) == {
        ("tcp 0.0.0.0:18081", "172.17.0.2:80", "!docker0", BOTH),
        # OUTPUT skips 127.0.0.0/8 (! -d): a local client reaches docker-proxy instead
        ("tcp 127.0.0.1:18080", "172.17.0.2:80", "!docker0", ("prerouting",)),
        ("udp 0.0.0.0:5353", "172.17.0.3:53", "!docker0", BOTH),
        ("tcp 0.0.0.0:18083", "172.17.0.5:8080", "!docker0", BOTH),
        ("tcp 0.0.0.0:18082", "172.18.0.2:80", "!br-" + _compose_bridge(), BOTH),
        ("tcp 0.0.0.0:18100", "172.17.0.6:8100", "!docker0", BOTH),
        ("tcp 0.0.0.0:18101", "172.17.0.6:8101", "!docker0", BOTH),
        ("tcp 0.0.0.0:18102", "172.17.0.6:8102", "!docker0", BOTH),
    }
    first = _save("docker-iptables-save.txt")[0]
    assert first.where == "iptables nat DOCKER rule 3"
    assert first.path == ("PREROUTING", "DOCKER")
    assert first.text.startswith("-A DOCKER ! -i docker0 -p tcp")


def _compose_bridge() -> str:
    text = (DATA / "docker-iptables-save.txt").read_text()
    return text.split("! -i br-", 1)[1].split()[0]


def test_docker_rules_agree_with_the_proxies() -> None:
    """Every IPv4 docker-proxy has the DNAT rule of the same mapping (captured together)."""
    mappings = _save("docker-iptables-save.txt")
    for argv in json.loads((CONTAINERS / "docker-proxy-argv.json").read_text()):
        words = dict(zip(argv[1::2], argv[2::2], strict=False))
        if ":" in words["-host-ip"]:
            continue
        port = int(words["-host-port"])
        (m,) = [x for x in mappings if x.dport == port and x.protocol == words["-proto"]]
        assert m.target(port) == (words["-container-ip"], int(words["-container-port"]))
        assert m.covers(port, words["-proto"], words["-host-ip"].replace("0.0.0.0", "10.1.1.1"))


def test_docker_without_userland_proxy() -> None:
    found = parse_nft(json.loads((DATA / "docker-userland-proxy-off.json").read_text()))
    assert found.mappings == ()
    assert found.opaque == {4: 1}
    # no "! -d 127.0.0.0/8" in OUTPUT: a local client is NATed too (route_localnet)
    assert _rows(_save("docker-userland-proxy-off-iptables-save.txt")) == {
        ("tcp 0.0.0.0:18090", "172.17.0.2:80", None, BOTH)
    }


# --- reconstructed shapes --------------------------------------------------------------------


def test_docker_nftables_backend() -> None:
    found = _nft("docker-nftables.json")
    assert _rows(found) == {
        ("tcp 127.0.0.1:18080", "172.17.0.2:80", "!docker0", ("prerouting",)),
        ("tcp 0.0.0.0:18081", "172.17.0.2:80", "!docker0", BOTH),
        ("udp 0.0.0.0:5353", "172.17.0.3:53", "!docker0", BOTH),
    }
    assert {m.comment for m in found} == {"DNAT"}
    assert {m.table for m in found} == {"ip docker-bridges"}
    assert found[0].path == ("nat-PREROUTING", "nat-prerouting-and-output")


def test_kube_proxy_nftables() -> None:
    found = _nft("kube-proxy-nftables.json")
    assert _rows(found) == {
        ("tcp 10.96.120.7:80", "10.244.1.7:8080", None, BOTH),  # two endpoints, one each
        ("tcp 10.96.120.7:80", "10.244.2.9:8080", None, BOTH),
        ("tcp 10.96.33.4:80", "10.244.1.8:8080", None, BOTH),
        ("tcp 192.168.56.10:30080", "10.244.1.8:8080", None, BOTH),  # @nodeport-ips
        ("udp 10.96.0.10:53", "10.244.0.2:53", None, BOTH),
    }
    nodeport = next(m for m in found if m.dport == 30080)
    assert nodeport.path == (
        "nat-prerouting",
        "services",
        "external-42NFTM6N-shop/web/tcp/http",
        "service-42NFTM6N-shop/web/tcp/http",
        "endpoint-UEIP74TE-shop/web/tcp/http__10.244.1.8/8080",
    )
    assert nodeport.text == "meta l4proto tcp dnat to 10.244.1.8:8080"
    assert not any(m.daddr == "10.96.7.7" for m in found)  # no endpoints: rejected


def test_kube_proxy_iptables_mode_says_the_same() -> None:
    def key(m: NatMapping) -> tuple[Any, ...]:
        return (m.protocol, m.dport, m.to_addr, m.to_port, m.daddr if m.dport != 30080 else "")

    nft = {key(m) for m in _nft("kube-proxy-nftables.json")}
    ipt = _save("kube-proxy-iptables.txt")
    assert {key(m) for m in ipt} == nft
    assert {m.comment for m in ipt} == {
        "shop/api:http",
        "shop/web:http",
        "kube-system/kube-dns:dns",
    }
    nodeport = next(m for m in ipt if m.dport == 30080)
    assert nodeport.daddr is None  # KUBE-NODEPORTS: any local address (addrtype LOCAL)


def test_netavark() -> None:
    found = _nft("netavark.json")
    assert _rows(found) == {
        ("tcp 127.0.0.1:8080", "10.88.0.2:80", None, BOTH),
        ("tcp 0.0.0.0:8443", "10.88.0.2:443", None, BOTH),
        ("udp 0.0.0.0:5353", "10.88.0.3:53", None, BOTH),
    }
    assert {m.family for m in found} == {4}  # "dnat ip to" in an inet table
    assert {m.table for m in found} == {"inet netavark"}


def test_hand_made_rules_of_every_form() -> None:
    found = _nft("hand-made.json")
    pre = ("prerouting",)
    assert _rows(found) == {
        ("tcp 0.0.0.0:8080", "10.231.0.2:80", None, pre),
        ("tcp 10.231.0.1:2200-2202", "10.231.0.2:22", None, pre),
        ("udp 0.0.0.0:5353", "10.231.0.2:53", None, pre),
        ("udp 0.0.0.0:5354", "10.231.0.2:53", None, pre),
        ("tcp 0.0.0.0:9001-9002", "10.231.0.3", "eth0", pre),  # a named interval set
        ("tcp 0.0.0.0:9010", "10.231.0.3", "eth0", pre),
        ("tcp 0.0.0.0:7300", "10.231.0.9:7300", None, pre),  # through a jump
        ("tcp 0.0.0.0:7001", "10.231.0.2:80", None, pre),  # a named dnat map
        ("tcp 0.0.0.0:7002", "10.231.0.3:81", None, pre),
        ("tcp 0.0.0.0:7100", "10.231.0.6", None, pre),  # an anonymous dnat map
        ("tcp 0.0.0.0:7200", "10.231.0.7", None, pre),  # numgen: both
        ("tcp 0.0.0.0:7200", "10.231.0.8", None, pre),
        ("tcp 0.0.0.0:80", ":8080", None, pre),  # redirect
        ("tcp [::]:8443", "[fd00:231::2]:443", "!lo", pre),
        ("tcp 0.0.0.0:8181", "10.231.0.11:80", None, pre),  # inet: one per family
        ("tcp [::]:8181", "[fd00:231::11]:80", None, pre),
    }
    web = next(m for m in found if m.dport == 8080 and m.family == 4)
    assert web.comment == "web"
    assert web.where == "nft ip lab prerouting handle 7"
    assert web.text == 'tcp dport 8080 dnat to 10.231.0.2:80 comment "web"'
    assert next(m for m in found if m.kind == "redirect").to_addr is None
    assert not any(m.dport == 6000 for m in found)  # a chain no hook reaches


# --- the ruleset model (what the packet evaluator will read) --------------------------------


def test_ruleset_model() -> None:
    rs = parse_ruleset(json.loads((DATA / "kube-proxy-nftables.json").read_text()))
    assert ("ip", "kube-proxy") in rs.tables
    nat = rs.base_chains(type="nat")
    assert [(c.name, c.hook, c.prio) for c in nat] == [
        ("nat-output", "output", -100),
        ("nat-postrouting", "postrouting", 100),
        ("nat-prerouting", "prerouting", -100),
    ]
    services = rs.chains["ip", "kube-proxy", "services"]
    assert services.hook is None
    assert len(services.rules) == 2
    assert rs.sets["ip", "kube-proxy", "service-ips"].kind == "map"
    assert rs.elements("ip", "kube-proxy", "@nodeport-ips") == ("192.168.56.10",)
    assert rs.elements("ip", "kube-proxy", {"set": [1, 2]}) == (1, 2)
    assert render_rule(services.rules[0]) == (
        "ip daddr . meta l4proto . th dport vmap @service-ips"
    )
    filt = rs.base_chains("input")
    assert [c.type for c in filt] == ["filter"]


def test_iptables_tables_model() -> None:
    tables = parse_save((DATA / "docker-iptables-save.txt").read_text())
    assert set(tables) == {"filter", "nat"}
    assert list(tables["nat"])[:4] == ["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"]
    assert tables["filter"]["FORWARD"][0] == ["-A", "FORWARD", "-j", "DOCKER-USER"]


# --- the carried match -----------------------------------------------------------------------


def test_match_narrowing() -> None:
    m = Match().with_ports([(8000, 8100)]).with_ports([(8050, 9000), (1, 2)])
    assert m.ports == ((8050, 8100),)
    assert Match().with_ports([(80, 80)]).with_ports([(81, 81)]).empty
    assert Match().with_protocol("tcp").with_protocol("udp").empty
    d = Match().with_daddrs(["10.0.0.0/8"]).with_daddrs(["10.1.2.3", "192.0.2.1"])
    assert d.daddrs == ("10.1.2.3",)
    assert Match().with_daddrs(["10.1.2.3"]).with_daddrs(["10.0.0.0/8"]).daddrs == ("10.1.2.3",)
    assert Match().without_daddrs(["127.0.0.0/8"]).with_daddrs(["127.0.0.1"]).empty
    assert Match().with_iifname("docker0", negated=True).iifname == "!docker0"


def test_mapping_helpers() -> None:
    m = NatMapping(6, "udp", "fd00::1", 5353, 5354, None, "dnat", "fd00::2", 53)
    assert m.published() == "udp [fd00::1]:5353-5354"
    assert m.destination() == "[fd00::2]:53"
    assert m.covers(5354, "udp", "fd00::1")
    assert not m.covers(5354, "tcp", "fd00::1")
    assert not m.covers(5355, "udp")
    keep = NatMapping(4, "all", None, 1, 65535, None, "dnat", "10.0.0.9", None)
    assert keep.covers(22, "tcp")
    assert keep.target(22) == ("10.0.0.9", 22)
    assert keep.destination() == "10.0.0.9"
    assert json.dumps(m.as_dict())  # JSON-ready


# --- anything else: mappings or a ParseError -------------------------------------------------


def test_not_a_ruleset() -> None:
    for doc in ([], {"nftables": {}}, "x", None):
        with pytest.raises(ParseError, match="not an nft -j ruleset"):
            parse_nft(doc)
    assert parse_nft({"nftables": []}).mappings == ()


def test_bad_dnat_ports_in_iptables_save_are_a_parse_error() -> None:
    with pytest.raises(ParseError, match="unreadable NAT rule"):
        parse_iptables_save(
            "*nat\n-A PREROUTING -p tcp --dport http -j DNAT --to-destination 1.2.3.4\n"
        )


_FIELDS = [
    {"payload": {"protocol": "tcp", "field": "dport"}},
    {"payload": {"protocol": "th", "field": "dport"}},
    {"payload": {"protocol": "ip", "field": "daddr"}},
    {"meta": {"key": "l4proto"}},
    {"meta": {"key": "iifname"}},
    {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, {"meta": {"key": "l4proto"}}]},
    {"fib": {"result": "type", "flags": ["daddr"]}},
]
_VALUES = st.recursive(
    st.integers(-2, 70000)
    | st.sampled_from(["tcp", "udp", "10.0.0.1", "fd00::1", "@s", "@m", "eth0", "c", "local"])
    | st.just({"prefix": {"addr": "10.0.0.0", "len": 8}}),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.builds(lambda x: {"set": x}, st.lists(inner, max_size=3))
        | st.builds(lambda a, b: {"range": [a, b]}, inner, inner)
        | st.builds(lambda x: {"concat": x}, st.lists(inner, max_size=3))
        | st.builds(lambda x: {"elem": {"val": x}}, inner)
    ),
    max_leaves=8,
)
_STMTS = st.one_of(
    st.builds(
        lambda left, op, right: {"match": {"left": left, "op": op, "right": right}},
        st.sampled_from(_FIELDS),
        st.sampled_from(["==", "!=", "in", "<"]),
        _VALUES,
    ),
    st.builds(lambda a, p: {"dnat": {"addr": a, "port": p}}, _VALUES, _VALUES),
    st.builds(
        lambda k, d: {"dnat": {"addr": {"map": {"key": k, "data": d}}}},
        st.sampled_from(_FIELDS),
        _VALUES,
    ),
    st.builds(lambda p: {"redirect": {"port": p}}, _VALUES),
    st.builds(lambda c: {"jump": {"target": c}}, st.sampled_from(["a", "b", "c", "x"])),
    st.builds(lambda c: {"goto": {"target": c}}, st.sampled_from(["a", "b", "c"])),
    st.builds(
        lambda k, d: {"vmap": {"key": k, "data": d}},
        st.sampled_from(_FIELDS),
        _VALUES | st.just("@m"),
    ),
    st.just({"xt": {"type": "target", "name": "DNAT"}}),
    st.just({"counter": None}),
    st.just({"return": None}),
)


def _doc(rules: list[tuple[str, list[Any]]], elements: list[Any]) -> dict[str, Any]:
    items: list[Any] = [{"table": {"family": "ip", "name": "t"}}]
    for name in ("a", "b", "c"):
        chain = {"family": "ip", "table": "t", "name": name}
        if name == "a":
            chain.update(type="nat", hook="prerouting", prio=-100)
        items.append({"chain": chain})
    items.append({"set": {"family": "ip", "table": "t", "name": "s", "elem": elements}})
    items.append({"map": {"family": "ip", "table": "t", "name": "m", "elem": elements}})
    for handle, (chain, expr) in enumerate(rules):
        items.append(
            {"rule": {"family": "ip", "table": "t", "chain": chain, "handle": handle, "expr": expr}}
        )
    return {"nftables": items}


@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.lists(_STMTS, max_size=4)), max_size=6),
    st.lists(_VALUES, max_size=4),
)
def test_any_nft_shaped_ruleset_gives_mappings(rules: list[Any], elements: list[Any]) -> None:
    for m in parse_nft(_doc(rules, elements)).mappings:
        assert 0 <= m.dport <= m.dport_end <= 65535
        m.published()
        m.destination()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "nftables",
                    "chain",
                    "rule",
                    "set",
                    "map",
                    "family",
                    "table",
                    "name",
                    "expr",
                    "hook",
                    "type",
                    "elem",
                    "match",
                    "dnat",
                    "left",
                    "right",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=25,
)


@given(json_values)
def test_any_json_is_mappings_or_a_parse_error(doc: Any) -> None:
    with contextlib.suppress(ParseError):
        parse_nft(doc)
    with contextlib.suppress(ParseError):
        parse_nft({"nftables": doc})


@given(
    st.lists(
        st.sampled_from(
            [
                "*nat",
                "*filter",
                ":DOCKER - [0:0]",
                "-A PREROUTING -j DOCKER",
                "-A DOCKER -j RETURN",
                "-A DOCKER ! -i docker0 -p tcp --dport 80 -j DNAT --to-destination 10.0.0.2:80",
                "-A DOCKER -d 10.0.0.1/32 -p udp -m multiport --dports 53,5353:5354 -j DNAT "
                "--to-destination [fd00::2]:53",
                "-A OUTPUT -j DOCKER",
                "-A DOCKER -j DOCKER",
                "-A PREROUTING -p tcp -j REDIRECT --to-ports 8080",
                '-A X -m comment --comment "a',
                "COMMIT",
            ]
        )
        | st.text(max_size=40),
        max_size=12,
    )
)
def test_any_iptables_save_text_is_mappings_or_a_parse_error(lines: list[str]) -> None:
    with contextlib.suppress(ParseError):
        for m in parse_iptables_save("\n".join(lines)):
            assert 0 <= m.dport <= m.dport_end <= 65535

"""The packet evaluator (portkit.netfilter.evaluate / traverse) on captured rulesets
(Docker, ufw, firewalld: tests/data/netfilter/eval), reconstructed ones (Docker 28's
nftables backend, kube-proxy, netavark: tests/data/netfilter), small hand-made ones
for each rule of the semantics, hostile ones for its bounds; and against the kernel:
the same rulesets loaded into a lab of network namespaces, the same packets sent."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portkit.errors import ParseError
from portkit.netfilter import (
    Decision,
    Packet,
    Ruleset,
    combine,
    evaluate,
    evaluate_save,
    parse_ruleset,
    ruleset_from_save,
    traverse,
)

DATA = Path(__file__).parent / "data" / "netfilter"
EVAL = DATA / "eval"

CLIENT, HOST = "10.246.0.1", "10.246.0.2"
CLIENT6, HOST6 = "fd00:246::1", "fd00:246::2"
TRUSTED = "10.99.0.7"  # a second client address, in the 10.99.0.0/24 the rules trust
NODE = "192.168.56.10"  # kube-proxy's node address (nodeport-ips)
#: The host's addresses (for fib daddr type local / -m addrtype) in the lab and here.
LOCAL = (HOST, HOST6, NODE, "172.17.0.1", "172.18.0.1", "10.244.0.1")
#: The interface the host reaches each network by (its routes, as ``ip route get``).
ROUTES = {
    "172.17.": "docker0",
    "172.18.": "br-059f5cb2d6f7",
    "10.244.": "cni0",
    "10.77.": "eth1",
    "10.246.": "eth1",
    "10.88.": "podman0",
    "10.96.": "cni0",
}


def route(addr: str) -> str | None:
    return next((dev for prefix, dev in ROUTES.items() if addr.startswith(prefix)), None)


def nft(name: str) -> Ruleset:
    return parse_ruleset(json.loads((DATA / name).read_text()))


def save(name: str, family: int = 4) -> Ruleset:
    return ruleset_from_save((DATA / name).read_text(), family)


def ufw() -> Ruleset:
    """ufw as a host reads it: nft's view, its iptables-nft tables from their dumps."""
    return combine(
        nft("eval/ufw.json"),
        save("eval/ufw-iptables-save.txt"),
        save("eval/ufw-ip6tables-save.txt", 6),
    )


def arriving(src: str, dst: str, port: int, proto: str = "tcp", iif: str = "eth1") -> Packet:
    return Packet(6 if ":" in dst else 4, proto, src, dst, None, port, iif=iif)


def fate(ruleset: Ruleset, packet: Packet, *, local: bool) -> tuple[Decision, ...]:
    return traverse(ruleset, packet, local=local, local_addresses=LOCAL, route=route)


def final(decisions: tuple[Decision, ...]) -> Decision:
    """The decision that says it: the one that stops the packet, else the filter
    hook's (input or forward) that lets it through."""
    if decisions[-1].verdict != "accept":
        return decisions[-1]
    return next(d for d in decisions if d.hook in ("input", "forward"))


# --- captured and reconstructed rulesets, chosen packets ----------------------------------

#: (ruleset, packet, local, verdict, the deciding rule's ``where`` or text (a part of it))
CASES: list[tuple[str, Callable[[], Ruleset], Packet, bool, str, str]] = [
    # Docker 20.10, iptables-nft, read from iptables-save: a published port goes
    # prerouting DNAT -> forward, accepted by the DOCKER chain
    ("docker published", lambda: save("docker-iptables-save.txt"),
     arriving(CLIENT, HOST, 18081), True, "accept", "iptables filter DOCKER rule 1"),
    ("docker published udp", lambda: save("docker-iptables-save.txt"),
     arriving(CLIENT, HOST, 5353, "udp"), True, "accept", "iptables filter DOCKER rule 2"),
    ("docker unpublished container port", lambda: save("docker-iptables-save.txt"),
     arriving(CLIENT, "172.17.0.2", 81), False, "drop", "iptables filter FORWARD policy"),
    ("docker routed to a published container port", lambda: save("docker-iptables-save.txt"),
     arriving(CLIENT, "172.17.0.2", 80), False, "accept", "iptables filter DOCKER rule 1"),
    ("docker inter-network isolation", lambda: save("docker-iptables-save.txt"),
     arriving("172.17.0.2", "172.18.0.2", 80, iif="docker0"), False, "drop",
     "iptables filter DOCKER-ISOLATION-STAGE-2 rule 1"),
    ("docker same network", lambda: save("docker-iptables-save.txt"),
     arriving("172.17.0.2", "172.17.0.3", 53, "udp", iif="docker0"), False, "accept",
     "iptables filter FORWARD rule 10"),
    ("docker 127.0.0.1-only port from outside", lambda: save("docker-iptables-save.txt"),
     arriving(CLIENT, HOST, 18080), True, "accept", "iptables filter INPUT policy"),
    ("DOCKER-USER drop", lambda: save("eval/docker-user-drop-iptables-save.txt"),
     arriving(CLIENT, HOST, 18081), True, "drop", "iptables filter DOCKER-USER rule 1"),
    ("DOCKER-USER drop, another source", lambda: save("eval/docker-user-drop-iptables-save.txt"),
     arriving("198.51.100.7", HOST, 18081), True, "accept", "iptables filter DOCKER rule 1"),
    ("DOCKER-USER drop, nft and iptables-save views", lambda: combine(
        nft("eval/docker-user-drop.json"), save("eval/docker-user-drop-iptables-save.txt")),
     arriving(CLIENT, HOST, 18081), True, "drop", "iptables filter DOCKER-USER rule 1"),
    # Docker 28's nftables backend (reconstructed): fib daddr type local -> DNAT
    ("docker nftables published", lambda: nft("docker-nftables.json"),
     arriving(CLIENT, HOST, 18081), True, "accept", "ip daddr 172.17.0.2 tcp dport 80"),
    ("docker nftables direct access", lambda: nft("docker-nftables.json"),
     arriving(CLIENT, "172.17.0.2", 80), False, "drop", 'comment "DROP DIRECT ACCESS"'),
    ("docker nftables unpublished", lambda: nft("docker-nftables.json"),
     arriving("172.17.0.9", "172.17.0.2", 81, iif="docker0"), False, "accept",
     'comment "ICC"'),
    # ufw: INPUT rules; a published Docker port bypasses them (FORWARD)
    ("ufw allow 22", ufw, arriving(CLIENT, HOST, 22), True, "accept",
     "iptables filter ufw-user-input rule 1"),
    ("ufw 5432 from a trusted net", ufw, arriving(TRUSTED, HOST, 5432), True, "accept",
     "-s 10.99.0.0/24"),
    ("ufw 5432 from elsewhere", ufw, arriving(CLIENT, HOST, 5432), True, "drop",
     "iptables filter INPUT policy"),
    ("ufw deny", ufw, arriving(CLIENT, HOST, 8080), True, "drop", "--dport 8080 -j DROP"),
    ("ufw reject", ufw, arriving(CLIENT, HOST, 9090), True, "reject", "tcp-reset"),
    ("ufw udp range", ufw, arriving(CLIENT, HOST, 60500, "udp"), True, "accept",
     "--dports 60000:61000"),
    ("ufw on eth1 only", ufw, arriving(CLIENT, HOST, 443), True, "accept", "-i eth1"),
    ("ufw on eth1 only, from eth0", ufw, arriving(CLIENT, HOST, 443, iif="eth0"), True,
     "drop", "iptables filter INPUT policy"),
    ("ufw default deny", ufw, arriving(CLIENT, HOST, 7777), True, "drop",
     "iptables filter INPUT policy"),
    ("ufw6 allow 22", ufw, arriving(CLIENT6, HOST6, 22), True, "accept",
     "ip6tables filter ufw6-user-input rule 1"),
    ("ufw6 deny", ufw, arriving(CLIENT6, HOST6, 8080), True, "drop", "--dport 8080 -j DROP"),
    ("ufw + docker: published port bypasses ufw",
     lambda: save("eval/ufw-docker-iptables-save.txt"),
     arriving(CLIENT, HOST, 18081), True, "accept", "iptables filter DOCKER rule 1"),
    ("ufw + docker: the host's own port is ufw's",
     lambda: save("eval/ufw-docker-iptables-save.txt"),
     arriving(CLIENT, HOST, 8080), True, "drop", "iptables filter INPUT policy"),
    # firewalld 1.3 (nftables)
    ("firewalld ssh", lambda: nft("eval/firewalld.json"), arriving(CLIENT, HOST, 22), True,
     "accept", "tcp dport 22 accept"),
    ("firewalld port", lambda: nft("eval/firewalld.json"), arriving(CLIENT, HOST, 5432), True,
     "accept", "tcp dport 5432 accept"),
    ("firewalld rich rule source", lambda: nft("eval/firewalld.json"),
     arriving(TRUSTED, HOST, 6379), True, "accept", "ip saddr 10.99.0.0/24 tcp dport 6379"),
    ("firewalld rich rule other source", lambda: nft("eval/firewalld.json"),
     arriving(CLIENT, HOST, 6379), True, "reject", "reject with icmpx admin-prohibited"),
    ("firewalld rich reject", lambda: nft("eval/firewalld.json"),
     arriving(CLIENT, HOST, 9090), True, "reject", "tcp dport 9090 reject"),
    ("firewalld rich drop", lambda: nft("eval/firewalld.json"),
     arriving(CLIENT, HOST, 8081), True, "drop", "tcp dport 8081 drop"),
    ("firewalld forward port", lambda: nft("eval/firewalld.json"),
     arriving(CLIENT, HOST, 8443), True, "accept", "ct status dnat accept"),
    # kube-proxy's nftables mode (reconstructed)
    ("kube NodePort", lambda: nft("kube-proxy-nftables.json"),
     arriving(CLIENT, NODE, 30080), True, "accept", "nft ip kube-proxy filter-forward policy"),
    ("kube ClusterIP", lambda: nft("kube-proxy-nftables.json"),
     arriving(CLIENT, "10.96.120.7", 80), False, "accept", "filter-forward policy"),
    ("kube service without endpoints", lambda: nft("kube-proxy-nftables.json"),
     arriving(CLIENT, "10.96.7.7", 80), False, "reject", "nft ip kube-proxy reject-chain"),
    ("kube unallocated ClusterIP", lambda: nft("kube-proxy-nftables.json"),
     arriving(CLIENT, "10.96.5.5", 80), False, "drop", "ip daddr 10.96.0.0/16 drop"),
    ("kube ClusterIP, wrong port", lambda: nft("kube-proxy-nftables.json"),
     arriving(CLIENT, "10.96.120.7", 81), False, "reject", "ip daddr @cluster-ips reject"),
    # Podman's netavark (reconstructed)
    ("netavark published", lambda: nft("netavark.json"), arriving(CLIENT, HOST, 8443),
     True, "accept", "nft inet netavark FORWARD policy"),
    ("netavark isolation", lambda: nft("netavark.json"),
     arriving("10.89.0.2", "10.88.0.2", 80, iif="podman1"), False, "accept",
     "nft inet netavark FORWARD policy"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("ruleset", "packet", "local", "verdict", "rule"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_captured_rulesets(
    ruleset: Callable[[], Ruleset], packet: Packet, local: bool, verdict: str, rule: str
) -> None:
    decisions = fate(ruleset(), packet, local=local)
    last = final(decisions)
    assert last.verdict == verdict, decisions
    assert last.rule is not None
    assert rule in last.rule.where or rule in last.rule.text, last.rule
    assert all(d.verdict == "accept" for d in decisions[:-1])
    assert last.verdict == "accept" or last is decisions[-1]


def test_docker_dnat_then_forward() -> None:
    pre, fwd, post = fate(save("docker-iptables-save.txt"), arriving(CLIENT, HOST, 18081),
                          local=True)  # fmt: skip
    assert (pre.hook, pre.dnat) == ("prerouting", ("172.17.0.2", 80))
    assert pre.rule is not None
    assert pre.rule.text.endswith("-j DNAT --to-destination 172.17.0.2:80")
    assert pre.path[:2] == (
        "ip nat PREROUTING",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
    )
    assert (fwd.hook, post.hook) == ("forward", "postrouting")
    assert "-A FORWARD -o docker0 -j DOCKER" in fwd.path


def test_iptables_nft_json_alone_cannot_decide_what_xt_hides() -> None:
    """iptables-nft's matches are opaque in nft's JSON: the published port's DNAT is
    an xt target, the addrtype match an xt match: undecided, and they are named."""
    pre = evaluate(nft("docker-iptables-nft.json"), arriving(CLIENT, HOST, 18081), "prerouting",
                   local_addresses=LOCAL)  # fmt: skip
    assert pre.verdict == "undecided"
    assert pre.reason is not None
    assert "xt match addrtype" in pre.reason
    assert "xt target DNAT" in pre.reason
    # where an opaque match cannot change the outcome, the verdict stands: FORWARD's
    # "-o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT" is an xt match,
    # but the DOCKER chain after it accepts the same packet anyway
    fwd = evaluate(
        nft("docker-iptables-nft.json"),
        Packet(4, "tcp", CLIENT, "172.17.0.2", None, 80, iif="eth1", oif="docker0"),
        "forward",
    )
    assert fwd.verdict == "accept"
    # and the same ruleset with iptables-nft's own dump decides everything
    combined = combine(nft("docker-iptables-nft.json"), save("docker-iptables-save.txt"))
    assert final(fate(combined, arriving(CLIENT, HOST, 18081), local=True)).verdict == "accept"


def test_ufw_json_alone_is_undecided_but_names_why() -> None:
    d = evaluate(nft("eval/ufw.json"), arriving(CLIENT, HOST, 22), "input", local_addresses=LOCAL)
    assert d.verdict == "undecided"
    assert d.reason is not None
    assert "xt match" in d.reason


def test_ufw_limit_depends_on_history() -> None:
    d = evaluate(ufw(), arriving(CLIENT, HOST, 2222), "input", local_addresses=LOCAL)
    assert (d.verdict, d.reason) == ("undecided", "xt match recent")
    assert d.rule is not None
    assert "--hitcount 6" in d.rule.text


def test_ufw_needs_the_hosts_addresses() -> None:
    """ufw-not-local drops what is not addressed to this host (-m addrtype)."""
    d = evaluate(ufw(), arriving(CLIENT, HOST, 22), "input")
    assert d.verdict == "undecided"
    assert d.reason is not None
    assert "the host's addresses are not given" in d.reason


def test_firewalld_ipv6_rpfilter_needs_the_routes() -> None:
    d = evaluate(nft("eval/firewalld.json"), arriving(CLIENT6, HOST6, 22), "prerouting",
                 local_addresses=LOCAL)  # fmt: skip
    assert d.verdict == "undecided"
    assert d.reason == "fib saddr . mark . iif oif (routes are not given)"


@pytest.mark.parametrize(
    ("back", "verdict", "reason"),
    [
        ("eth1", "accept", None),  # the route back leaves by the interface it came in on
        (None, "drop", None),  # no route back at all: "oif missing"
        ("eth0", "undecided", "fib saddr . mark . iif oif"),  # another route by eth1?
    ],
)
def test_firewalld_ipv6_rpfilter_with_the_routes(
    back: str | None, verdict: str, reason: str | None
) -> None:
    d = evaluate(nft("eval/firewalld.json"), arriving(CLIENT6, HOST6, 22), "prerouting",
                 local_addresses=LOCAL, route=lambda _addr: back)  # fmt: skip
    assert (d.verdict, d.reason) == (verdict, reason)
    if verdict == "drop":
        assert d.rule is not None and "fib saddr . mark . iif oif missing" in d.rule.text


def test_firewalld_forward_port_dnat() -> None:
    pre, fwd, _ = fate(nft("eval/firewalld.json"), arriving(CLIENT, HOST, 8443), local=True)
    assert pre.dnat == ("10.77.0.5", 443)
    assert fwd.rule is not None
    assert fwd.rule.text == "ct status dnat accept"


def test_kube_clusterip_endpoints_are_alternatives() -> None:
    """numgen random picks an endpoint: both are run, both accepted."""
    pre = fate(nft("kube-proxy-nftables.json"), arriving(CLIENT, "10.96.120.7", 80),
               local=False)[0]  # fmt: skip
    assert pre.verdict == "accept"
    assert pre.dnat == ("10.244.1.7", 8080)
    assert [a.dnat for a in pre.alternatives] == [("10.244.2.9", 8080)]
    assert any("numgen random mod 2" in p for p in pre.path)


def test_kube_nodeport_marks_for_masquerade() -> None:
    *_, post = fate(nft("kube-proxy-nftables.json"), arriving(CLIENT, NODE, 30080), local=True)
    assert post.hook == "postrouting"
    assert post.rule is not None
    assert post.rule.text == "masquerade"  # the mark set on the way in is read here
    assert post.path == ("ip kube-proxy nat-postrouting", "jump masquerading", "masquerade")
    # a pod's own packet to a ClusterIP is not marked (ip saddr != 10.244.0.0/16)
    *_, post = fate(
        nft("kube-proxy-nftables.json"),
        arriving("10.244.1.5", "10.96.0.10", 53, "udp", iif="cni0"),
        local=False,
    )
    assert post.rule is not None
    assert post.path[-2:] == ("meta mark & 16384 == 0 return", "policy accept")


def test_evaluate_save_is_evaluate_on_the_translation() -> None:
    text = (DATA / "docker-iptables-save.txt").read_text()
    p = Packet(4, "tcp", CLIENT, "172.17.0.2", None, 80, iif="eth1", oif="docker0")
    assert evaluate_save(text, 4, p, "forward") == evaluate(ruleset_from_save(text), p, "forward")


# --- the semantics, rule by rule, on small rulesets -------------------------------------------

ACCEPT: dict[str, Any] = {"accept": None}
DROP: dict[str, Any] = {"drop": None}
RETURN: dict[str, Any] = {"return": None}
DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}
TH_DPORT = {"payload": {"protocol": "th", "field": "dport"}}
SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
DADDR = {"payload": {"protocol": "ip", "field": "daddr"}}
L4PROTO = {"meta": {"key": "l4proto"}}
IIFNAME = {"meta": {"key": "iifname"}}
MARK = {"meta": {"key": "mark"}}
CT_STATE = {"ct": {"key": "state"}}
FIB_LOCAL = {"fib": {"result": "type", "flags": ["daddr"]}}


def m(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def jump(target: str, verb: str = "jump") -> dict[str, Any]:
    return {verb: {"target": target}}


def chain(
    name: str,
    *rules: list[dict[str, Any]],
    hook: str | None = None,
    prio: int = 0,
    policy: str = "accept",
    family: str = "inet",
    table: str = "t",
    type: str = "filter",
) -> list[dict[str, Any]]:
    head: dict[str, Any] = {"family": family, "table": table, "name": name, "handle": 1}
    if hook is not None:
        head.update(type=type, hook=hook, prio=prio, policy=policy)
    items: list[dict[str, Any]] = [{"chain": head}]
    for n, expr in enumerate(rules, 2):
        rule = {"family": family, "table": table, "chain": name, "handle": n, "expr": expr}
        items.append({"rule": rule})
    return items


def ruleset(*parts: list[dict[str, Any]], sets: tuple[dict[str, Any], ...] = ()) -> Ruleset:
    items = [item for part in parts for item in part]
    return parse_ruleset({"nftables": [*items, *({"set": s} for s in sets)]})


WEB = Packet(4, "tcp", "192.0.2.7", "198.51.100.1", 40000, 8080, iif="eth0")
DNS = Packet(4, "udp", "192.0.2.7", "198.51.100.1", 40000, 53, iif="eth0")
WEB6 = Packet(6, "tcp", "2001:db8::7", "2001:db8::1", 40000, 8080, iif="eth0")


def verdict(rs: Ruleset, packet: Packet = WEB, hook: str = "input", **kw: Any) -> str:
    return evaluate(rs, packet, hook, **kw).verdict


def test_no_chain_on_the_hook_accepts() -> None:
    d = evaluate(ruleset(chain("in", [DROP], hook="input")), WEB, "forward")
    assert (d.verdict, d.rule, d.path) == ("accept", None, ())
    assert evaluate(ruleset(), WEB6, "input").verdict == "accept"


def test_an_accept_goes_on_to_the_next_base_chain_a_drop_ends() -> None:
    rs = ruleset(
        chain("a", [ACCEPT], hook="input", prio=0, table="one"),
        chain("b", [m(DPORT, 8080), DROP], hook="input", prio=10, table="two"),
        chain("c", [ACCEPT], hook="input", prio=20, table="three"),
    )
    d = evaluate(rs, WEB, "input")
    assert d.verdict == "drop"
    assert d.rule is not None
    assert d.rule.where == "nft inet two b handle 2"
    assert d.path == ("inet one a", "accept", "inet two b", "tcp dport 8080 drop")
    ok = evaluate(rs, Packet(4, "tcp", "192.0.2.7", "198.51.100.1", 1, 22, iif="eth0"), "input")
    assert ok.verdict == "accept"
    assert ok.rule is not None
    assert ok.rule.where == "nft inet three c handle 2"  # the last base chain's accept


def test_priority_orders_the_chains_across_tables() -> None:
    rs = ruleset(
        chain("late", [ACCEPT], hook="input", prio=10, table="z"),
        chain("early", [DROP], hook="input", prio=-10, table="a"),
    )
    d = evaluate(rs, WEB, "input")
    assert d.rule is not None
    assert (d.verdict, d.rule.chain) == ("drop", "early")


def test_families_see_their_own_packets() -> None:
    rs = ruleset(chain("v6only", [DROP], hook="input", family="ip6"))
    assert verdict(rs, WEB) == "accept"
    assert verdict(rs, WEB6) == "drop"
    both = ruleset(chain("both", [DROP], hook="input", family="inet"))
    assert verdict(both, WEB) == verdict(both, WEB6) == "drop"
    ignored = ruleset(chain("ingress", [DROP], hook="input", family="netdev"))
    assert verdict(ignored, WEB) == "accept"
    # a match of the other family's header fails (nft's implicit dependency)
    inet = ruleset(chain("in", [m(SADDR, "192.0.2.7", "!="), DROP], hook="input"))
    assert verdict(inet, WEB6) == "accept"


def test_jump_return_goto() -> None:
    rs = ruleset(
        chain("in", [jump("sub")], [m(DPORT, 8080), DROP], hook="input"),
        chain("sub", [m(DPORT, 22), ACCEPT], [RETURN], [ACCEPT]),
    )
    assert verdict(rs) == "drop"  # sub returned, the next rule of "in" dropped
    # goto does not come back: the end of the goto'd chain returns to in's caller (the
    # base chain itself), so its policy decides
    rs = ruleset(
        chain("in", [jump("a")], [DROP], hook="input"),
        chain("a", [jump("b", "goto")], [DROP]),
        chain("b", [m(DPORT, 22), ACCEPT]),
    )
    assert verdict(rs) == "drop"  # b ends -> back to in (after "jump a") -> drop
    rs = ruleset(
        chain("in", [jump("b", "goto")], [DROP], hook="input", policy="accept"),
        chain("b", [m(DPORT, 22), ACCEPT]),
    )
    d = evaluate(rs, WEB, "input")
    assert (d.verdict, d.path[-1]) == ("accept", "policy accept")


def test_jumps_deeper_than_the_kernels_16_and_loops_are_too_complex() -> None:
    def ladder(n: int) -> Ruleset:
        parts = [chain("c0", [jump("c1")], hook="input")]
        parts += [chain(f"c{i}", [jump(f"c{i + 1}")]) for i in range(1, n)]
        parts.append(chain(f"c{n}", [DROP]))
        return ruleset(*parts)

    assert verdict(ladder(16)) == "drop"
    d = evaluate(ladder(17), WEB, "input")
    assert (d.verdict, d.reason) == ("undecided", "too complex (jumps deeper than 16)")
    loop = ruleset(
        chain("in", [jump("a", "goto")], hook="input"),
        chain("a", [jump("b", "goto")]),
        chain("b", [jump("a", "goto")]),
    )
    d = evaluate(loop, WEB, "input")
    assert (d.verdict, d.reason) == ("undecided", "too complex")
    missing = evaluate(ruleset(chain("in", [jump("nowhere")], hook="input")), WEB, "input")
    assert missing.verdict == "undecided"
    assert missing.reason == "jump to chain nowhere, which does not exist"


def test_sets_maps_prefixes_ranges_and_concatenations() -> None:
    services = {
        "family": "inet", "table": "t", "name": "services", "type": ["ipv4_addr", "inet_proto",
        "inet_service"], "flags": ["interval"], "map": "verdict",
        "elem": [
            [{"concat": [{"prefix": {"addr": "198.51.100.0", "len": 24}}, "tcp",
                         {"range": [8000, 8100]}]}, {"jump": {"target": "web"}}],
            [{"concat": ["198.51.100.1", "udp", 53]}, DROP],
        ],
    }  # fmt: skip
    blocked = {
        "family": "inet", "table": "t", "name": "blocked", "type": "ipv4_addr",
        "flags": ["interval"],
        "elem": [{"prefix": {"addr": "203.0.113.0", "len": 24}},
                 {"range": ["192.0.2.1", "192.0.2.5"]}, "10.1.2.3"],
    }  # fmt: skip
    concat = {"concat": [DADDR, L4PROTO, TH_DPORT]}
    rs = ruleset(
        chain("in", [m(SADDR, "@blocked"), DROP],
              [{"vmap": {"key": concat, "data": "@services"}}], [ACCEPT], hook="input"),
        chain("web", [m(DPORT, {"set": [8080, {"range": [9000, 9001]}]}), {"reject": None}]),
        sets=(services, blocked),
    )  # fmt: skip
    far = Packet(4, "tcp", "192.0.2.9", "198.51.100.1", 40000, 8080, iif="eth0")
    assert verdict(rs, far) == "reject"  # vmap -> web -> the anonymous set
    assert verdict(rs, Packet(4, "udp", "192.0.2.9", "198.51.100.1", 40000, 53)) == "drop"
    assert verdict(rs, Packet(4, "tcp", "192.0.2.9", "198.51.100.1", 40000, 7999)) == "accept"
    assert verdict(rs, Packet(4, "tcp", "192.0.2.3", "198.51.100.1", 1, 1)) == "drop"  # range
    assert verdict(rs, Packet(4, "tcp", "10.1.2.3", "198.51.100.1", 1, 1)) == "drop"
    assert verdict(rs, Packet(4, "tcp", "203.0.113.77", "198.51.100.1", 1, 1)) == "drop"


def test_interfaces_with_wildcards_and_unknown_interfaces() -> None:
    rs = ruleset(chain("in", [m(IIFNAME, "veth*"), DROP], [m(IIFNAME, "eth\\*"), DROP],
                       hook="input"))  # fmt: skip
    assert verdict(rs, Packet(4, "tcp", "192.0.2.7", "192.0.2.1", 1, 80, iif="veth12ab")) == "drop"
    assert verdict(rs, Packet(4, "tcp", "192.0.2.7", "192.0.2.1", 1, 80, iif="eth*")) == "drop"
    assert verdict(rs, Packet(4, "tcp", "192.0.2.7", "192.0.2.1", 1, 80, iif="eth0")) == "accept"
    d = evaluate(rs, Packet(4, "tcp", "192.0.2.7", "192.0.2.1", 1, 80), "input")
    assert (d.verdict, d.reason) == (
        "undecided",
        "meta iifname (the packet's interface is not given)",
    )
    # the output hook has no incoming device: its name reads empty
    out = ruleset(chain("out", [m(IIFNAME, "veth*"), DROP], hook="output"))
    assert verdict(out, Packet(4, "tcp", "192.0.2.7", "192.0.2.1", 1, 80), "output") == "accept"


def test_conntrack_state_and_status() -> None:
    rs = ruleset(chain("in", [m(CT_STATE, ["established", "related"], "in"), ACCEPT],
                       [m({"ct": {"key": "status"}}, "dnat", "in"), ACCEPT], [DROP],
                       hook="input"))  # fmt: skip
    assert verdict(rs, WEB) == "drop"
    est = Packet(4, "tcp", "192.0.2.7", "198.51.100.1", 1, 8080, iif="eth0", ct_state="established")
    assert verdict(rs, est) == "accept"
    d = evaluate(ruleset(chain("in", [m({"ct": {"key": "mark"}}, 1), DROP], hook="input")),
                 WEB, "input")  # fmt: skip
    assert (d.verdict, d.reason) == ("undecided", "ct mark")


def test_fib_daddr_type_needs_the_hosts_addresses() -> None:
    rs = ruleset(chain("in", [m(FIB_LOCAL, "local"), ACCEPT], [DROP], hook="input"))
    d = evaluate(rs, WEB, "input")
    assert d.verdict == "undecided"
    assert d.reason == "fib daddr type (the host's addresses are not given)"
    assert verdict(rs, WEB, local_addresses=["198.51.100.1"]) == "accept"
    assert verdict(rs, WEB, local_addresses=["198.51.100.2"]) == "drop"
    # "not local" is known without the routes; "unicast" of a foreign address is not
    uni = ruleset(chain("in", [m(FIB_LOCAL, "unicast"), DROP], hook="input"))
    assert evaluate(uni, WEB, "input", local_addresses=["10.0.0.1"]).verdict == "undecided"
    assert verdict(uni, WEB, local_addresses=["198.51.100.1"]) == "accept"


def test_what_the_packet_does_not_say_is_run_both_ways() -> None:
    skuid = m({"meta": {"key": "skuid"}}, 1000)
    agree = ruleset(chain("in", [skuid, ACCEPT], [ACCEPT], hook="input", policy="drop"))
    assert verdict(agree) == "accept"  # either way accepted
    differ = ruleset(chain("in", [skuid, DROP], [ACCEPT], hook="input"))
    d = evaluate(differ, WEB, "input")
    assert (d.verdict, d.reason) == ("undecided", "meta skuid")
    assert d.rule is not None
    assert d.rule.text == "meta skuid 1000 drop"
    # a definite mismatch later in the rule settles it without the unknown
    settled = ruleset(chain("in", [skuid, m(DPORT, 22), DROP], hook="input"))
    assert verdict(settled) == "accept"
    # the same unknown asked twice answers the same way
    twice = ruleset(chain("in", [skuid, DROP], [skuid, ACCEPT], [DROP], hook="input"))
    assert verdict(twice) == "drop"
    sport = ruleset(chain("in", [m({"payload": {"protocol": "tcp", "field": "sport"}}, 1), DROP],
                          hook="input"))  # fmt: skip
    d = evaluate(sport, Packet(4, "tcp", "192.0.2.7", "198.51.100.1", None, 80), "input")
    assert (d.verdict, d.reason) == ("undecided", "tcp sport (the client's port)")


def test_statements_that_decide_nothing_and_those_that_cannot_be_run() -> None:
    quiet = ruleset(chain("in", [{"counter": {"packets": 1, "bytes": 2}},
                                 {"log": {"prefix": "x"}}, m(DPORT, 8080), DROP],
                          hook="input"))  # fmt: skip
    assert verdict(quiet) == "drop"
    queue = evaluate(ruleset(chain("in", [{"queue": {"num": 1}}], hook="input")), WEB, "input")
    assert (queue.verdict, queue.reason) == ("undecided", "statement queue")
    limit = ruleset(chain("in", [{"limit": {"rate": 3, "per": "minute"}}, ACCEPT], [DROP],
                          hook="input"))  # fmt: skip
    d = evaluate(limit, WEB, "input")
    assert (d.verdict, d.reason) == ("undecided", "limit")
    for how in (None, {"type": "tcp reset"}, {"type": "icmpx", "expr": "admin-prohibited"}):
        rs = ruleset(chain("in", [{"reject": how}], hook="input"))
        assert verdict(rs) == "reject"


def test_marks_are_carried() -> None:
    set_mark = {"mangle": {"key": MARK, "value": {"|": [MARK, 0x4000]}}}
    rs = ruleset(
        chain("pre", [m(DPORT, 8080), set_mark], hook="prerouting", prio=-150),
        chain("in", [m({"&": [MARK, 0x4000]}, 0), ACCEPT], [DROP], hook="input"),
    )
    assert fate(rs, WEB, local=True)[-1].verdict == "drop"  # marked on the way in
    assert fate(rs, DNS, local=True)[-1].verdict == "accept"
    unknown = Packet(4, "tcp", "192.0.2.7", "198.51.100.1", 1, 22, iif="eth0", mark=None)
    assert evaluate(rs, unknown, "input").reason == "meta mark"


def test_dnat_and_redirect_rewrite_the_packet_for_the_hooks_after() -> None:
    rs = ruleset(
        chain("pre", [m(DPORT, 8080), {"dnat": {"addr": "10.9.0.2", "port": 80}}],
              [m(DPORT, 8081), {"redirect": {"port": 3000}}],
              hook="prerouting", prio=-100, type="nat", family="ip", table="nat"),
        chain("fwd", [m(DADDR, "10.9.0.2"), m(DPORT, 80), ACCEPT], hook="forward",
              policy="drop", family="ip", table="filter"),
        chain("in", [m(DPORT, 3000), DROP], hook="input", family="ip", table="filter"),
    )  # fmt: skip
    pre, fwd, post = traverse(rs, WEB, local=True, local_addresses=["198.51.100.1"])
    assert pre.dnat == ("10.9.0.2", 80)
    assert (fwd.hook, fwd.verdict, post.hook) == ("forward", "accept", "postrouting")
    redirected = Packet(4, "tcp", "192.0.2.7", "198.51.100.1", 1, 8081, iif="eth0")
    pre, inp = traverse(rs, redirected, local=True)
    assert (pre.dnat, inp.hook, inp.verdict) == ((None, 3000), "input", "drop")
    # a DNAT elsewhere without the host's addresses: is 10.9.0.2 local? input or forward
    pre, which = traverse(rs, WEB, local=True)
    assert which.verdict == "undecided"
    assert which.reason == "whether 10.9.0.2 is this host's (its addresses not given)"
    # established packets meet no nat chain (the kernel applies the connection's NAT)
    est = Packet(4, "tcp", "192.0.2.7", "198.51.100.1", 1, 8080, iif="eth0", ct_state="established")
    assert evaluate(rs, est, "prerouting").dnat is None


def test_a_dnat_map_and_a_random_choice() -> None:
    to = {"map": {"key": DPORT, "data": {"set": [[8080, "10.9.0.2"], [8443, "10.9.0.3"]]}}}
    pick = {
        "vmap": {
            "key": {"numgen": {"mode": "random", "mod": 2, "offset": 0}},
            "data": {"set": [[0, jump("a", "goto")], [1, jump("b", "goto")]]},
        }
    }
    rs = ruleset(
        chain("pre", [m(DPORT, 8080), {"dnat": {"addr": to, "port": 80}}], [pick],
              hook="prerouting", prio=-100, type="nat", family="ip"),
        chain("a", [{"dnat": {"addr": "10.9.0.7"}}], family="ip"),
        chain("b", [DROP], family="ip"),
    )  # fmt: skip
    assert evaluate(rs, WEB, "prerouting").dnat == ("10.9.0.2", 80)
    d = evaluate(rs, Packet(4, "tcp", "192.0.2.7", "198.51.100.1", 1, 9999), "prerouting")
    assert d.verdict == "undecided"
    assert d.reason == "a random choice (numgen random mod 2) leads to different verdicts"
    assert [a.verdict for a in d.alternatives] == ["drop"]


def test_the_hosts_own_packet() -> None:
    rs = ruleset(
        chain("out", [m(DPORT, 5432), DROP], hook="output", family="ip"),
        chain("in", [m(IIFNAME, "lo"), ACCEPT], [DROP], hook="input", family="ip"),
    )
    own = Packet(4, "tcp", "127.0.0.1", "127.0.0.1", None, 8080)
    hooks = traverse(rs, own, local=True, own=True)
    assert [(d.hook, d.verdict) for d in hooks] == [
        ("output", "accept"), ("postrouting", "accept"), ("prerouting", "accept"),
        ("input", "accept"),
    ]  # fmt: skip
    db = Packet(4, "tcp", "127.0.0.1", "127.0.0.1", None, 5432)
    assert [d.verdict for d in traverse(rs, db, local=True, own=True)] == ["drop"]


def test_bad_input_is_a_parse_error() -> None:
    for args in (
        (5, "tcp", "10.0.0.1", "10.0.0.2", 1, 2),
        (4, "icmp", "10.0.0.1", "10.0.0.2", 1, 2),
        (4, "tcp", "::1", "10.0.0.2", 1, 2),
        (4, "tcp", "10.0.0.1", "nowhere", 1, 2),
        (4, "tcp", "10.0.0.1", "10.0.0.2", 1, 70000),
    ):
        with pytest.raises(ParseError):
            Packet(*args)  # type: ignore[arg-type]
    with pytest.raises(ParseError):
        Packet(4, "tcp", "10.0.0.1", "10.0.0.2", 1, 2, ct_state="establishd")
    with pytest.raises(ParseError, match="hook"):
        evaluate(ruleset(), WEB, "ingress")
    with pytest.raises(ParseError):
        evaluate(ruleset(), WEB, "input", local_addresses=["not an address"])
    with pytest.raises(ParseError):
        ruleset_from_save("", 5)


def test_decisions_as_json() -> None:
    d = evaluate(ruleset(chain("in", [m(DPORT, 8080), DROP], hook="input")), WEB, "input")
    assert json.loads(json.dumps(d.as_dict())) == {
        "hook": "input",
        "verdict": "drop",
        "rule": {
            "origin": "nft", "family": "inet", "table": "t", "chain": "in", "handle": 2,
            "text": "tcp dport 8080 drop", "where": "nft inet t in handle 2",
        },
        "path": ["inet t in", "tcp dport 8080 drop"],
        "reason": None,
        "dnat": None,
        "alternatives": [],
    }  # fmt: skip


# --- iptables-save read into the same model ---------------------------------------------------

SAVE = """*filter
:INPUT DROP [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:svc - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT
-A INPUT ! -s 10.0.0.0/8 -p tcp -m tcp --dport 5432 -j REJECT --reject-with icmp-port-unreachable
-A INPUT -i veth+ -p udp -m multiport --dports 53,5353,6000:6010 -j ACCEPT
-A INPUT -p tcp -m comment --comment "web ports" -j svc
-A INPUT -m set --match-set blocklist src -j DROP
-A svc -p tcp -m tcp --dport 80:90 -j ACCEPT
-A svc -p tcp -m tcp ! --dport 443 -j RETURN
-A svc -j ACCEPT
COMMIT
"""


def save_verdict(packet: Packet, text: str = SAVE) -> Decision:
    return evaluate(ruleset_from_save(text), packet, "input")


def test_iptables_matches_targets_and_policies() -> None:
    def tcp(src: str, port: int, iif: str = "eth0", state: str = "new") -> Packet:
        return Packet(4, "tcp", src, "10.0.0.1", None, port, iif=iif, ct_state=state)

    d = save_verdict(tcp("192.0.2.1", 5432))
    assert (d.verdict, d.rule and d.rule.where) == ("reject", "iptables filter INPUT rule 3")
    assert save_verdict(tcp("10.1.1.1", 85)).verdict == "accept"  # -j svc, 80:90
    d = save_verdict(tcp("10.1.1.1", 443))
    assert (d.verdict, d.rule and d.rule.where) == ("accept", "iptables filter svc rule 3")
    assert save_verdict(tcp("10.1.1.1", 5432, iif="lo")).verdict == "accept"
    assert save_verdict(tcp("192.0.2.1", 5432, state="established")).verdict == "accept"
    udp = Packet(4, "udp", "10.1.1.1", "10.0.0.1", None, 6005, iif="veth9")
    assert save_verdict(udp).verdict == "accept"
    # ! --dport 443 returns from svc; the ipset match after it is an unknown, but the
    # policy drops what it would drop: decided either way
    d = save_verdict(tcp("10.1.1.1", 22))
    assert d.rule is not None
    assert (d.verdict, d.rule.text) == ("drop", "policy drop")
    opened = SAVE.replace(":INPUT DROP", ":INPUT ACCEPT")
    d = save_verdict(Packet(4, "udp", "10.1.1.1", "10.0.0.1", None, 7000, iif="eth0"), opened)
    assert (d.verdict, d.reason) == ("undecided", "xt match set")
    assert d.rule is not None
    assert d.rule.text == "-A INPUT -m set --match-set blocklist src -j DROP"


def test_iptables_translation_keeps_the_line_and_the_position() -> None:
    rs = ruleset_from_save(SAVE)
    chain_ = rs.chains["ip", "filter", "INPUT"]
    assert (chain_.hook, chain_.prio, chain_.policy, chain_.type) == ("input", 0, "drop", "filter")
    assert [r.handle for r in chain_.rules] == [1, 2, 3, 4, 5, 6]
    assert chain_.rules[4].comment == "web ports"
    assert rs.chains["ip", "filter", "svc"].hook is None
    legacy = ruleset_from_save(SAVE, prefix="legacy-")
    assert ("ip", "legacy-filter", "INPUT") in legacy.chains
    both = combine(rs, legacy)
    assert {t for _, t in both.tables} == {"filter", "legacy-filter"}


def test_ip6tables_and_unread_options() -> None:
    text = """*filter
:INPUT ACCEPT [0:0]
-A INPUT -m rt --rt-type 0 -j DROP
-A INPUT -s fd00::/8 -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -p tcp -m tcp --syn --dport 8080 -j DROP
-A INPUT -p tcp -m tcp --dport 22 -j REJECT --reject-with tcp-reset
COMMIT
"""
    rs = ruleset_from_save(text, 6)

    def v6(src: str, port: int) -> Decision:
        return evaluate(rs, Packet(6, "tcp", src, "fd00::1", None, port, iif="eth0"), "input")

    d = v6("fd00::9", 22)
    assert (d.verdict, d.rule and d.rule.where) == ("accept", "ip6tables filter INPUT rule 2")
    assert v6("2001:db8::9", 22).verdict == "reject"
    d = v6("2001:db8::9", 8080)
    assert (d.verdict, d.reason) == ("undecided", "xt match tcp --syn")
    policy = v6("2001:db8::9", 9)
    assert policy.rule is not None
    assert policy.rule.where == "ip6tables filter INPUT policy"


def test_iptables_nat_dnat_and_statistic() -> None:
    text = """*nat
:PREROUTING ACCEPT [0:0]
:SVC - [0:0]
-A PREROUTING -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -j SVC
-A SVC -m statistic --mode random --probability 0.50000000000 -j DNAT --to-destination 10.0.0.5:6443
-A SVC -j DNAT --to-destination 10.0.0.6:6443
-A PREROUTING -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 3000
COMMIT
"""
    p = Packet(4, "tcp", "192.0.2.9", "10.96.0.1", None, 443, iif="eth0")
    d = evaluate_save(text, 4, p, "prerouting")
    assert d.verdict == "accept"
    assert {d.dnat, *(a.dnat for a in d.alternatives)} == {
        ("10.0.0.5", 6443),
        ("10.0.0.6", 6443),
    }
    redirect = Packet(4, "tcp", "192.0.2.9", "10.0.0.1", None, 8080, iif="eth0")
    assert evaluate_save(text, 4, redirect, "prerouting").dnat == (None, 3000)


# --- bounds: hostile rulesets end in bounded time, as "too complex" ------------------------


def test_a_giant_set_is_indexed_once() -> None:
    big = {
        "family": "inet", "table": "t", "name": "big", "type": "ipv4_addr",
        "flags": ["interval"],
        "elem": [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(100_000)]
        + [{"prefix": {"addr": f"172.{16 + i // 256}.{i % 256}.0", "len": 24}}
           for i in range(2000)],
    }  # fmt: skip
    rs = ruleset(chain("in", *([m(SADDR, "@big"), DROP] for _ in range(3)), hook="input"),
                 sets=(big,))  # fmt: skip
    assert verdict(rs, Packet(4, "tcp", "10.1.2.3", "192.0.2.1", 1, 80)) == "drop"
    assert verdict(rs, Packet(4, "tcp", "172.20.3.9", "192.0.2.1", 1, 80)) == "drop"
    assert verdict(rs, Packet(4, "tcp", "192.0.2.9", "192.0.2.1", 1, 80)) == "accept"
    huge = {**big, "elem": [f"10.0.{i >> 8 & 255}.{i & 255}" for i in range(420_000)]}
    rs = ruleset(chain("in", [m(SADDR, "@big"), DROP], hook="input"), sets=(huge,))
    d = evaluate(rs, Packet(4, "tcp", "192.0.2.9", "192.0.2.1", 1, 80), "input")
    assert (d.verdict, d.reason) == ("undecided", "too complex")


def test_many_rules_and_many_unknowns_are_too_complex() -> None:
    many = ([{"counter": None}, m(DPORT, 1), DROP] for _ in range(140_000))
    rs = ruleset(chain("in", *many, hook="input"))
    assert evaluate(rs, WEB, "input").reason == "too complex"
    skuid = [m({"meta": {"key": f"skuid{i}"}}, 1) for i in range(40)]
    rs = ruleset(chain("in", *([s, {"counter": None}] for s in skuid), [DROP], hook="input"))
    assert verdict(rs) == "drop"  # each unknown decides nothing: one way suffices
    rs = ruleset(chain("in", *([s, jump("x")] for s in skuid), hook="input"),
                 chain("x", [{"mangle": {"key": MARK, "value": {"|": [MARK, 1]}}}]))  # fmt: skip
    assert evaluate(rs, WEB, "input").reason == "too complex"
    wide = {"vmap": {"key": {"meta": {"key": "skuid"}},
                     "data": {"set": [[i, ACCEPT] for i in range(1000)]}}}  # fmt: skip
    d = evaluate(ruleset(chain("in", [wide], [DROP], hook="input")), WEB, "input")
    assert (d.verdict, d.reason) == ("undecided", "meta skuid (1001 ways)")


def test_deeply_nested_expressions() -> None:
    deep: Any = MARK
    for _ in range(200):
        deep = {"&": [deep, 1]}
    d = evaluate(ruleset(chain("in", [m(deep, 0), DROP], hook="input")), WEB, "input")
    assert (d.verdict, d.reason) == ("undecided", "too complex (expressions nested too deep)")


# --- properties: any document gives a Decision or a ParseError, the same each time -----------

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 70000), st.sampled_from(
        ["tcp", "udp", "ip", "ip6", "inet", "@s", "accept", "drop", "eth*", "10.0.0.0",
         "input", "prerouting", "forward", "nat", "filter", "daddr", "dport", "saddr",
         "l4proto", "iifname", "state", "new", "established", "local", "type", "mark", "c",
         "t", "s"]),
)  # fmt: skip
_KEYS = st.sampled_from(
    ["match", "op", "left", "right", "payload", "protocol", "field", "meta", "key", "ct",
     "set", "concat", "prefix", "addr", "len", "range", "jump", "goto", "target", "vmap",
     "data", "accept", "drop", "reject", "return", "dnat", "redirect", "port", "fib",
     "flags", "result", "numgen", "mod", "mangle", "value", "&", "|", "xt", "name", "elem",
     "val", "map", "limit", "queue", "counter", "family"]
)  # fmt: skip
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=25,
)
_FAMILY = st.sampled_from(["ip", "ip6", "inet", "netdev"])
_CHAIN = st.fixed_dictionaries(
    {"family": _FAMILY, "table": st.sampled_from(["t", "u"]), "name": st.sampled_from(
        ["c", "d", "e"]), "handle": st.integers(0, 9)},
    optional={"type": st.sampled_from(["filter", "nat", "route"]),
              "hook": st.sampled_from(list(("prerouting", "input", "forward", "output",
                                             "postrouting"))),
              "prio": st.integers(-400, 400), "policy": st.sampled_from(["accept", "drop", "x"])},
)  # fmt: skip
_RULE = st.fixed_dictionaries(
    {"family": _FAMILY, "table": st.sampled_from(["t", "u"]),
     "chain": st.sampled_from(["c", "d", "e"]), "handle": st.integers(0, 99),
     "expr": st.lists(st.dictionaries(_KEYS, _JSON, min_size=1, max_size=1), max_size=5)},
)  # fmt: skip
_SET = st.fixed_dictionaries(
    {"family": _FAMILY, "table": st.sampled_from(["t", "u"]), "name": st.just("s"),
     "type": _JSON, "elem": st.lists(_JSON, max_size=6)},
    optional={"map": st.sampled_from(["verdict", "ipv4_addr"])},
)  # fmt: skip
_DOCS = st.fixed_dictionaries(
    {"nftables": st.lists(
        st.one_of(st.builds(lambda c: {"chain": c}, _CHAIN),
                  st.builds(lambda r: {"rule": r}, _RULE),
                  st.builds(lambda s: {"set": s}, _SET),
                  st.builds(lambda s: {"map": s}, _SET), _JSON),
        max_size=10)}
) | _JSON  # fmt: skip
_PACKETS = st.builds(
    Packet,
    st.just(4),
    st.sampled_from(["tcp", "udp"]),
    st.sampled_from(["10.0.0.1", "192.0.2.7"]),
    st.sampled_from(["10.0.0.2", "10.0.0.0"]),
    st.one_of(st.none(), st.integers(0, 65535)),
    st.integers(0, 65535),
    st.sampled_from([None, "eth0", "lo"]),
    st.sampled_from([None, "eth1"]),
    st.sampled_from(["new", "established"]),
)


def _judge(doc: Any, packet: Packet, hook: str) -> Decision | None:
    try:
        rs = parse_ruleset(doc)
    except ParseError:
        return None
    d = evaluate(rs, packet, hook, local_addresses=["10.0.0.2"])
    assert isinstance(d, Decision)
    assert d.verdict in ("accept", "drop", "reject", "undecided")
    assert (d.reason is not None) == (d.verdict == "undecided") or d.alternatives
    assert evaluate(rs, packet, hook, local_addresses=["10.0.0.2"]) == d  # deterministic
    for step in traverse(rs, packet, local=True, local_addresses=["10.0.0.2"]):
        assert step.verdict in ("accept", "drop", "reject", "undecided")
    return d


@settings(max_examples=300, deadline=None)
@given(doc=_DOCS, packet=_PACKETS, hook=st.sampled_from(["prerouting", "input", "forward"]))
def test_any_document_gives_a_decision_or_a_parse_error(
    doc: Any, packet: Packet, hook: str
) -> None:
    _judge(doc, packet, hook)


_CAPTURED = [
    json.loads((DATA / name).read_text())
    for name in ("docker-nftables.json", "kube-proxy-nftables.json", "eval/firewalld.json",
                 "netavark.json", "docker-iptables-nft.json")
]  # fmt: skip


def _mutate(doc: Any, path: list[int], value: Any) -> Any:
    """``doc`` with one node (found by walking ``path`` through lists and dicts)
    replaced by ``value``."""
    out = copy.deepcopy(doc)
    node, parent, key = out, None, None
    for step in path:
        if isinstance(node, list) and node:
            parent, key, node = node, step % len(node), node[step % len(node)]
        elif isinstance(node, dict) and node:
            k = sorted(node)[step % len(node)]
            parent, key, node = node, k, node[k]
        else:
            break
    if parent is None:
        return value
    parent[key] = value  # type: ignore[index]
    return out


@settings(max_examples=200, deadline=None)
@given(
    which=st.integers(0, len(_CAPTURED) - 1),
    path=st.lists(st.integers(0, 10_000), min_size=1, max_size=8),
    value=_JSON,
    packet=_PACKETS,
    hook=st.sampled_from(["prerouting", "input", "forward"]),
)
def test_mutated_captures_give_a_decision_or_a_parse_error(
    which: int, path: list[int], value: Any, packet: Packet, hook: str
) -> None:
    _judge(_mutate(_CAPTURED[which], path, value), packet, hook)


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(
        st.one_of(
            st.sampled_from(
                ["*filter", "*nat", "*mangle", "COMMIT", ":INPUT DROP [0:0]", ":X - [0:0]",
                 "-A INPUT -j X", "-A X -j RETURN", "-A INPUT -p tcp --dport 22 -j ACCEPT",
                 "-A PREROUTING -j DNAT --to-destination 10.0.0.9:80",
                 "-A INPUT -m conntrack --ctstate NEW,DNAT -j DROP"]),
            st.lists(st.sampled_from(
                ["-A", "INPUT", "X", "!", "-p", "tcp", "udp", "-s", "10.0.0.0/8", "-d",
                 "::1", "-i", "eth+", "-o", "-m", "tcp", "multiport", "--dports", "1:2,3",
                 "--dport", "x", "-j", "-g", "ACCEPT", "DROP", "REJECT", "MARK",
                 "--set-xmark", "0x1/0xf", "--ctstate", "state", "addrtype", "--dst-type",
                 "LOCAL", "DNAT", "--to-destination", "[::1]:x", "statistic", "--mode",
                 '"q', "CONNMARK", "--restore-mark"]),
                max_size=12).map(" ".join),
        ),
        max_size=15,
    ),
    family=st.sampled_from([4, 6]),
)  # fmt: skip
def test_any_iptables_save_text_gives_a_decision(lines: list[str], family: int) -> None:
    addr, dst = ("10.0.0.1", "10.0.0.2") if family == 4 else ("fd00::1", "fd00::2")
    packet = Packet(family, "tcp", addr, dst, None, 22, iif="eth0")
    for hook in ("prerouting", "input"):
        d = evaluate_save("\n".join(lines), family, packet, hook)
        assert d.verdict in ("accept", "drop", "reject", "undecided")


# --- against the kernel: the same rulesets and packets in a lab of namespaces -----------------
#
#   client (eth0: 10.246.0.1, 10.99.0.7, fd00:246::1)
#     |  veth
#   host (eth1: 10.246.0.2, 192.168.56.10, fd00:246::2; forwarding) -- the rules under test
#     |-- docker0 (172.17.0.1) ---------- c1 (172.17.0.2)
#     |-- br-059f5cb2d6f7 (172.18.0.1) -- c2 (172.18.0.2)
#     `-- cni0 (10.244.0.1) ------------- pods (10.244.1.7, 10.244.1.8, 10.244.2.9)
#
# Everything that can answer listens (the host on every port probed, the containers and
# pods on theirs), so a refused connection is the rules' reject, a silent one their drop.

HOST_PORTS = (22, 80, 443, 2222, 5432, 6379, 7777, 8080, 8081, 9090, 18080, 18081)
SERVER = """
import socket, sys, threading
socks = []
for port in map(int, sys.argv[1:]):
    for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        s = socket.socket(family)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind((addr, port))
        s.listen(64)
        socks.append(s)
def serve(s):
    while True:
        c, _ = s.accept()
        c.close()
for s in socks:
    threading.Thread(target=serve, args=(s,), daemon=True).start()
print("ready", flush=True)
sys.stdin.read()
"""
PROBE = """
import errno, json, socket, sys, threading
results = {}
def probe(key, src, dst, port):
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    s = socket.socket(family)
    s.settimeout(1.5)
    try:
        if src:
            s.bind((src, 0))
        s.connect((dst, port))
        results[key] = "accept"
    except TimeoutError:
        results[key] = "drop"
    except OSError as exc:
        refused = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EACCES)
        results[key] = "reject" if exc.errno in refused else f"error {exc.errno}"
    finally:
        s.close()
threads = [threading.Thread(target=probe, args=(k, *v)) for k, v in json.loads(sys.argv[1]).items()]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results))
"""


def _sh(*argv: str, check: bool = True, stdin: str | None = None) -> str:
    done = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, check=False, timeout=60
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {done.stderr.strip()}")
    return done.stdout


class Lab:
    """The namespaces above, their servers (stopped by pid), a ruleset loader for the
    host and a prober from any namespace."""

    def __init__(self) -> None:
        tag = os.getpid()
        self.ns = {n: f"pkev{n}{tag}" for n in ("client", "host", "c1", "c2", "pods")}
        self.servers: list[subprocess.Popen[str]] = []

    def ip(self, ns: str, *args: str) -> None:
        _sh("ip", "-n", self.ns[ns], *args)

    def link(self, a: str, a_dev: str, b: str, b_dev: str) -> None:
        _sh("ip", "-n", self.ns[a], "link", "add", a_dev, "type", "veth", "peer", b_dev,
            "netns", self.ns[b])  # fmt: skip
        self.ip(a, "link", "set", a_dev, "up")
        self.ip(b, "link", "set", b_dev, "up")

    def up(self) -> None:
        for name in self.ns.values():
            _sh("ip", "netns", "add", name)
            _sh("ip", "-n", name, "link", "set", "lo", "up")
        self.link("client", "eth0", "host", "eth1")
        self.link("host", "docker0", "c1", "eth0")
        self.link("host", "br-059f5cb2d6f7", "c2", "eth0")
        self.link("host", "cni0", "pods", "eth0")
        for ns, dev, addrs in (
            ("client", "eth0", (f"{CLIENT}/24", f"{TRUSTED}/32")),
            ("host", "eth1", (f"{HOST}/24", f"{NODE}/32")),
            ("host", "docker0", ("172.17.0.1/16",)),
            ("host", "br-059f5cb2d6f7", ("172.18.0.1/16",)),
            ("host", "cni0", ("10.244.0.1/16",)),
            ("c1", "eth0", ("172.17.0.2/16",)),
            ("c2", "eth0", ("172.18.0.2/16",)),
            ("pods", "eth0", ("10.244.1.7/16", "10.244.1.8/16", "10.244.2.9/16")),
        ):
            for addr in addrs:
                self.ip(ns, "addr", "add", addr, "dev", dev)
        self.ip("client", "-6", "addr", "add", f"{CLIENT6}/64", "dev", "eth0", "nodad")
        self.ip("host", "-6", "addr", "add", f"{HOST6}/64", "dev", "eth1", "nodad")
        for net in ("10.96.0.0/16", "172.16.0.0/12", "10.244.0.0/16", f"{NODE}/32"):
            self.ip("client", "route", "add", net, "via", HOST)
        self.ip("host", "route", "add", f"{TRUSTED}/32", "dev", "eth1")
        self.ip("c1", "route", "add", "default", "via", "172.17.0.1")
        self.ip("c2", "route", "add", "default", "via", "172.18.0.1")
        self.ip("pods", "route", "add", "default", "via", "10.244.0.1")
        # kube's ClusterIPs are routed somewhere (a node has a default route): the
        # packet must reach the forward hook to meet its rules
        self.ip("host", "route", "add", "10.96.0.0/16", "dev", "cni0")
        for knob in (
            "net.ipv4.ip_forward=1",
            "net.ipv4.icmp_ratelimit=0",
            "net.ipv6.icmp.ratelimit=0",
        ):
            # rejects answer with ICMP, which the kernel rate-limits per peer by default
            _sh("ip", "netns", "exec", self.ns["host"], "sysctl", "-qw", knob)  # fmt: skip
        self.serve("host", HOST_PORTS)
        self.serve("c1", (80, 53))
        self.serve("c2", (80,))
        self.serve("pods", (8080,))

    def serve(self, ns: str, ports: tuple[int, ...]) -> None:
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns[ns], sys.executable, "-c", SERVER,
             *map(str, ports)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.servers.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"

    def down(self) -> None:
        for proc in self.servers:
            proc.kill()
            proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        for name in self.ns.values():
            _sh("ip", "netns", "del", name, check=False)

    def load(self, path: Path) -> None:
        """A ruleset into the host, in place of the last one."""
        host = self.ns["host"]
        _sh("ip", "netns", "exec", host, "nft", "flush", "ruleset")
        if path.suffix == ".nft":
            _sh("ip", "netns", "exec", host, "nft", "-f", str(path))
        else:
            tool = "ip6tables-nft-restore" if "ip6tables" in path.name else "iptables-nft-restore"
            _sh("ip", "netns", "exec", host, tool, stdin=path.read_text())

    def probe(self, ns: str, probes: dict[str, tuple[str | None, str, int]]) -> dict[str, str]:
        out = _sh("ip", "netns", "exec", self.ns[ns], sys.executable, "-c", PROBE,
                  json.dumps(probes))  # fmt: skip
        return dict(json.loads(out))


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


#: (the ruleset as loaded into the host, the ruleset as the evaluator reads it, probes:
#: name -> (from namespace, source address or None, destination, port))
KERNEL: list[tuple[str, Callable[[], Ruleset], dict[str, tuple[str, str | None, str, int]]]] = [
    ("eval/firewalld.nft", lambda: nft("eval/firewalld.json"), {
        "ssh": ("client", None, HOST, 22),
        "http": ("client", None, HOST, 80),
        "postgres": ("client", None, HOST, 5432),
        "redis untrusted": ("client", None, HOST, 6379),
        "redis trusted": ("client", TRUSTED, HOST, 6379),
        "rich reject": ("client", None, HOST, 9090),
        "rich drop": ("client", None, HOST, 8081),
        "default reject": ("client", None, HOST, 7777),
    }),
    ("eval/ufw-iptables-save.txt", lambda: save("eval/ufw-iptables-save.txt"), {
        "ssh": ("client", None, HOST, 22),
        "postgres trusted": ("client", TRUSTED, HOST, 5432),
        "postgres untrusted": ("client", None, HOST, 5432),
        "deny": ("client", None, HOST, 8080),
        "reject": ("client", None, HOST, 9090),
        "default": ("client", None, HOST, 7777),
        "on eth1": ("client", None, HOST, 443),
    }),
    ("eval/ufw-ip6tables-save.txt", lambda: save("eval/ufw-ip6tables-save.txt", 6), {
        "ssh": ("client", None, HOST6, 22),
        "deny": ("client", None, HOST6, 8080),
        "reject": ("client", None, HOST6, 9090),
        "default": ("client", None, HOST6, 7777),
    }),
    ("docker-iptables-save.txt", lambda: save("docker-iptables-save.txt"), {
        "published": ("client", None, HOST, 18081),
        "routed published": ("client", None, "172.17.0.2", 80),
        "routed unpublished": ("client", None, "172.17.0.2", 81),
        "isolation": ("c1", None, "172.18.0.2", 80),
        "the host": ("client", None, HOST, 22),
    }),
    ("eval/docker-user-drop-iptables-save.txt",
     lambda: save("eval/docker-user-drop-iptables-save.txt"), {
        "published": ("client", None, HOST, 18081),
        "the host": ("client", None, HOST, 22),
    }),
    ("eval/ufw-docker-iptables-save.txt", lambda: save("eval/ufw-docker-iptables-save.txt"), {
        "published, past ufw": ("client", None, HOST, 18081),
        "ufw allows": ("client", None, HOST, 22),
        "ufw denies": ("client", None, HOST, 8080),
    }),
    ("docker-nftables.nft", lambda: nft("docker-nftables.json"), {
        "published": ("client", None, HOST, 18081),
        "direct access": ("client", None, "172.17.0.2", 80),
        "the host": ("client", None, HOST, 18080),
    }),
    ("kube-proxy-nftables.nft", lambda: nft("kube-proxy-nftables.json"), {
        "nodeport": ("client", None, NODE, 30080),
        "clusterip": ("client", None, "10.96.120.7", 80),
        "no endpoints": ("client", None, "10.96.7.7", 80),
        "unallocated": ("client", None, "10.96.5.5", 80),
        "wrong port": ("client", None, "10.96.120.7", 81),
    }),
]  # fmt: skip
#: Where each namespace's packets arrive at the host.
ARRIVES = {"client": "eth1", "c1": "docker0", "c2": "br-059f5cb2d6f7", "pods": "cni0"}
SOURCES = {"client": CLIENT, "c1": "172.17.0.2", "c2": "172.18.0.2", "pods": "10.244.1.7"}


@pytest.mark.netns
@pytest.mark.parametrize(("loaded", "read", "probes"), KERNEL, ids=[k[0] for k in KERNEL])
def test_the_kernel_agrees(
    lab: Lab,
    loaded: str,
    read: Callable[[], Ruleset],
    probes: dict[str, tuple[str, str | None, str, int]],
) -> None:
    lab.load(DATA / loaded)
    rules = read()
    predicted = {}
    for name, (ns, src, dst, port) in probes.items():
        source = src or (CLIENT6 if ":" in dst else SOURCES[ns])
        packet = Packet(6 if ":" in dst else 4, "tcp", source, dst, None, port, iif=ARRIVES[ns])
        local = dst in LOCAL
        predicted[name] = final(fate(rules, packet, local=local)).verdict
    assert "undecided" not in predicted.values(), predicted
    by_ns: dict[str, dict[str, tuple[str | None, str, int]]] = {}
    for name, (ns, src, dst, port) in probes.items():
        by_ns.setdefault(ns, {})[name] = (src, dst, port)
    seen: dict[str, str] = {}
    for ns, batch in by_ns.items():
        seen.update(lab.probe(ns, batch))
    assert seen == predicted

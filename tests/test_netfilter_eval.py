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
import time
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


def test_firewalld_ipv6_rpfilter_is_an_unknown() -> None:
    d = evaluate(nft("eval/firewalld.json"), arriving(CLIENT6, HOST6, 22), "prerouting",
                 local_addresses=LOCAL)  # fmt: skip
    assert d.verdict == "undecided"
    assert d.reason == "fib saddr . mark . iif oif"


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
    *_, post = fate(nft("kube-proxy-nftables.json"),
                    arriving("10.244.1.5", "10.96.0.10", 53, "udp", iif="cni0"), local=False)
    assert post.rule is not None
    assert post.path[-2:] == ("meta mark & 16384 == 0 return", "policy accept")


def test_evaluate_save_is_evaluate_on_the_translation() -> None:
    text = (DATA / "docker-iptables-save.txt").read_text()
    p = Packet(4, "tcp", CLIENT, "172.17.0.2", None, 80, iif="eth1", oif="docker0")
    assert evaluate_save(text, 4, p, "forward") == evaluate(ruleset_from_save(text), p, "forward")

"""The firewall and NAT layers of ``why``: the target host's netfilter rules for the one
packet the client would send.

What the packet is (:func:`packet_hook`: this host's own packet meets the ``output``
hooks, one from elsewhere ``prerouting``; the interface it arrives on) and which DNAT
takes it (:func:`pick_dnat`), and the firewall's verdict (:func:`judge_firewall`, over
``portkit.netfilter.traverse``, which says "could not decide" rather than guess) are
pure functions of data. The rules are read through :mod:`portkit.netfilter`'s public
functions (``read_nat``, ``read_rules``) in the target's namespace.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from portkit.errors import PermissionDenied, PortkitError
from portkit.why._layers import Check

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portkit.netfilter import NatMapping
    from portkit.why._context import Place

__all__ = [
    "iif_matches",
    "judge_firewall",
    "netfilter_layers",
    "pick_dnat",
    "transit_firewall",
]


def iif_matches(required: str | None, iif: str | None) -> bool:
    """Whether a packet arriving on ``iif`` (None: this host's own, on ``lo``) meets a
    rule's interface requirement: ``eth0``, ``veth*`` (a wildcard), ``!docker0``
    (anything but).

    >>> iif_matches("!docker0", "eth0"), iif_matches("!docker0", "docker0")
    (True, False)
    >>> iif_matches("veth*", "veth12ab"), iif_matches(None, "eth0")
    (True, True)
    """
    if required is None:
        return True
    here = iif or "lo"
    negate = required.startswith("!")
    pattern = required.removeprefix("!").strip()
    hit = fnmatchcase(here, pattern.replace("+", "*"))  # iptables writes veth+
    return hit != negate


def pick_dnat(
    mappings: tuple[NatMapping, ...] | list[NatMapping],
    protocol: str,
    address: str,
    port: int,
    hook: str,
    iif: str | None,
) -> NatMapping | None:
    """The first mapping that takes a packet to ``address:port/protocol`` on ``hook``
    (``prerouting`` or ``output``) arriving on ``iif``, or None (pure).

    Loopback destinations are never DNATed on ``output`` by Docker's rules (``! -d
    127.0.0.0/8``, which the mapping's ``daddr`` does not carry); a mapping without an
    address is not applied to them, so docker-proxy's socket answers as it does.
    """
    loopback = address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1")
    for m in mappings:
        if hook not in m.hooks or not m.covers(port, protocol, address):
            continue
        if m.daddr is None and loopback:
            continue
        if not iif_matches(m.iifname, iif if hook == "prerouting" else None):
            continue
        return m
    return None


def packet_hook(src: Place, there: Place) -> str:
    """``output`` for the host's own packet (client and target share the namespace),
    ``prerouting`` for one that arrives from another namespace."""
    return "output" if src.path == there.path else "prerouting"


def _arrives_on(there: Place, saddr: str) -> str | None:
    """The interface of ``there`` that a packet from ``saddr`` comes in by (the route
    back to it), or None when unknown."""
    if not saddr:
        return None
    from portkit.why._route import route_get

    try:
        back = route_get(saddr, there.path)
    except (PortkitError, OSError):
        return None
    return back.dev if back.reachable else None


def netfilter_layers(
    src: Place, there: Place, saddr: str, dest: tuple[str, int], proto: str
) -> tuple[Check, Check, Place, tuple[str, int], bool]:
    """The firewall and NAT checks on ``there`` for a packet ``saddr -> dest``; where
    the packet ends (the namespace a DNAT leads to, and the new destination); whether
    the rules could not be read for lack of privilege."""
    from portkit.netfilter import read_nat

    hook = packet_hook(src, there)
    iif = None if hook == "output" else _arrives_on(there, saddr)
    address, port = dest
    try:
        reading = read_nat(there.path)
    except PermissionDenied as exc:
        denied = Check("nat", None, f"the NAT rules {_on(there)} cannot be read ({exc})")
        return _unreadable(there), denied, there, dest, True
    except PortkitError as exc:
        unread = Check("nat", None, f"the NAT rules {_on(there)} could not be read: {exc}")
        return _firewall(there, saddr, dest, proto, iif, hook), unread, there, dest, False
    found = pick_dnat(reading.mappings, proto, address, port, hook, iif)
    final_place, final = there, dest
    if found is None:
        nat = Check(
            "nat",
            True,
            f"no DNAT rule {_on(there)} rewrites {_ep(address, port)}/{proto}",
            data={"dnat": None},
        )
    else:
        to_addr, to_port = found.target(port)
        final = (to_addr or address, to_port)
        if to_addr is not None:
            from portkit.why._context import place_of_address

            final_place = place_of_address(to_addr, near=there.path) or there
        nat = Check(
            "nat",
            True,
            f"{found.published()} is DNATed to {found.destination()} by {found.where}"
            + (f" ({found.comment})" if found.comment else ""),
            data={
                "dnat": {"to": _ep(*final), "rule": found.where, "text": found.text},
                "into": final_place.label,
            },
        )
    fw = _firewall(there, saddr, dest, proto, iif, hook)
    return fw, nat, final_place, final, False


def _firewall(
    there: Place,
    saddr: str,
    dest: tuple[str, int],
    proto: str,
    iif: str | None,
    hook: str,
    through: bool = False,
) -> Check:
    """The filter hooks' verdict for the packet on ``there`` (read, then judged)."""
    from portkit.netfilter import read_rules

    try:
        ruleset = read_rules(there.path)
    except PermissionDenied:
        return _unreadable(there)
    except PortkitError as exc:
        return Check("firewall", None, f"the firewall rules {_on(there)} could not be read: {exc}")
    if ruleset is None:
        return Check("firewall", None, f"nft is not installed {_on(there)}: rules not read")
    from portkit.see._addrs import addresses

    try:
        local = tuple(a for _, a, _ in addresses(there.path))
    except (PortkitError, OSError):
        local = ()

    def route(address: str) -> str | None:
        from portkit.why._route import route_get

        try:
            found = route_get(address, there.path)
        except (PortkitError, OSError):
            return None
        return found.dev if found.reachable else None

    return judge_firewall(
        ruleset, there.label, saddr, dest, proto, iif, hook, local, route, through
    )


def judge_firewall(
    ruleset: Any,
    where: str,
    saddr: str,
    dest: tuple[str, int],
    proto: str,
    iif: str | None,
    hook: str,
    local: tuple[str, ...],
    route: Any = None,
    through: bool = False,
) -> Check:
    """The firewall check of a ruleset for the client's packet (pure, given the
    ``route`` lookup): the evaluator's decisions along the hooks the packet meets on
    the target host (``through``: on a host that forwards it, going out where
    ``route`` says); the first that does not accept it decides. The client's own port
    is not known: rules on it are "could not decide" unless every port agrees."""
    from portkit.netfilter import Packet, traverse

    address, port = dest
    family = 6 if ":" in address else 4
    packet = Packet(
        family,
        proto,
        saddr or ("::1" if family == 6 else "127.0.0.1"),
        address,
        None,
        port,
        iif=iif,
        oif=route(address) if through and route is not None else None,
    )
    on = "here" if where == "host" else f"in {where}"
    decisions = traverse(
        ruleset,
        packet,
        local=not through,
        local_addresses=local,
        own=hook == "output",
        route=route,
    )
    blocking = next((d for d in decisions if d.verdict != "accept"), None)
    hooks = [d.hook for d in decisions]
    if blocking is None:
        return Check(
            "firewall",
            True,
            f"the rules {on} accept it ({', '.join(hooks) or 'no chain sees it'})",
            data={"hooks": hooks},
        )
    rule = blocking.rule
    text = f"{rule.text} ({rule.where})" if rule is not None else "no rule"
    if blocking.verdict == "undecided":
        return Check(
            "firewall",
            None,
            f"could not decide {on} on {blocking.hook}: {blocking.reason}"
            + (f", at {rule.where}" if rule is not None else ""),
            data={"hooks": hooks, "reason": blocking.reason},
        )
    fix = next(
        (f for chain, f in _CHAIN_FIXES if rule is not None and chain in rule.where), None
    ) or (
        f"allow it: accept {proto} dport {port} before that rule ("
        + (f"{rule.where}" if rule is not None else "the chain")
        + "), or remove the rule"
    )
    return Check(
        "firewall",
        False,
        f"{blocking.verdict} {on} on {blocking.hook} by {text}",
        fix,
        {
            "rule": rule.where if rule is not None else None,
            "text": rule.text if rule is not None else None,
            "verdict": blocking.verdict,
            "hook": blocking.hook,
        },
    )


#: Chains whose drop has a better fix than a rule of one's own: Docker's isolation of
#: its networks from each other (a container reaching into another network).
_CHAIN_FIXES = (
    (
        "DOCKER-ISOLATION",
        "Docker keeps its networks apart: put both containers on one network (docker "
        "network connect NETWORK CONTAINER; compose: a network both services list), or "
        "publish the port and reach it on the host's address",
    ),
)


def transit_firewall(
    hop: Place, saddr: str, dest: tuple[str, int], proto: str, bridged: bool
) -> Check:
    """The firewall check on a namespace that forwards the packet between client and
    target (a Docker bridge host): its prerouting, forward and postrouting hooks, the
    packet coming in by the route back to the client and going out by the route to the
    target. A bridged packet (``bridged``: two containers of one network) meets them
    only when the bridge passes its frames to netfilter (br_netfilter's
    ``bridge-nf-call-iptables``, which Docker turns on)."""
    address = dest[0]
    if bridged and not _bridge_calls_netfilter(hop, 6 if ":" in address else 4):
        return Check(
            "firewall",
            True,
            f"bridged {_on(hop)} without netfilter (bridge-nf-call-iptables is off)",
        )
    return _firewall(hop, saddr, dest, proto, _arrives_on(hop, saddr), "prerouting", True)


def _bridge_calls_netfilter(hop: Place, family: int) -> bool:
    name = "bridge-nf-call-ip6tables" if family == 6 else "bridge-nf-call-iptables"

    def read() -> bool:
        try:
            with open(f"/proc/sys/net/bridge/{name}") as f:
                return f.read().strip() == "1"
        except OSError:
            return False  # br_netfilter not loaded: bridged frames skip netfilter

    if hop.path is None:
        return read()
    from portkit.see import run_in_netns

    try:
        return bool(run_in_netns(hop.path, read))
    except (PortkitError, OSError):
        return True  # cannot tell: judge the rules


def _unreadable(there: Place) -> Check:
    return Check(
        "firewall",
        None,
        f"the firewall rules {_on(there)} cannot be read: needs privilege (CAP_NET_ADMIN)",
    )


def _on(place: Place) -> str:
    return "here" if place.label == "host" else f"in {place.label}"


def _ep(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"

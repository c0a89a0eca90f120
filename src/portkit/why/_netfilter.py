"""The firewall and NAT layers of ``why``: the target host's netfilter rules for the one
packet the client would send.

What the packet is (:func:`packet_hook`: this host's own packet meets the ``output``
hooks, one from elsewhere ``prerouting``; the interface it arrives on) and which DNAT
takes it (:func:`pick_dnat`) are pure functions of data. The rules are read through
:mod:`portkit.netfilter`'s public functions (``read_nat``, ``read_ruleset``) in the
target's namespace; the verdict of the filter hooks comes from its evaluator
(``portkit.netfilter.traverse``), which says "could not decide" rather than guess.
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

__all__ = ["iif_matches", "netfilter_layers", "pick_dnat"]


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
        return _firewall(there, saddr, dest, proto, iif, hook, None), unread, there, dest, False
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

            final_place = place_of_address(to_addr) or there
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
    fw = _firewall(there, saddr, dest, proto, iif, hook, found)
    return fw, nat, final_place, final, False


def _firewall(
    there: Place,
    saddr: str,
    dest: tuple[str, int],
    proto: str,
    iif: str | None,
    hook: str,
    dnat: NatMapping | None,
) -> Check:
    """The filter hooks' verdict for the packet, from the evaluator when this build
    has it."""
    import portkit.netfilter as nf

    traverse: Any = getattr(nf, "traverse", None)
    if traverse is None:
        return Check("firewall", None, "the firewall evaluator is not in this build")
    try:
        ruleset = nf.read_ruleset(there.path)
    except PermissionDenied:
        return _unreadable(there)
    except PortkitError as exc:
        return Check("firewall", None, f"the firewall rules {_on(there)} could not be read: {exc}")
    if ruleset is None:
        return Check("firewall", None, f"nft is not installed {_on(there)}: rules not read")
    return judge_firewall(traverse, ruleset, there, saddr, dest, proto, iif, hook)


def judge_firewall(
    traverse: Any,
    ruleset: Any,
    there: Place,
    saddr: str,
    dest: tuple[str, int],
    proto: str,
    iif: str | None,
    hook: str,
) -> Check:
    """The firewall check from the evaluator's decisions along the packet's hooks."""
    import portkit.netfilter as nf
    from portkit.see._addrs import addresses

    address, port = dest
    family = 6 if ":" in address else 4
    packet = nf.Packet(  # type: ignore[attr-defined,unused-ignore]
        family=family,
        protocol=proto,
        saddr=saddr or ("::1" if family == 6 else "127.0.0.1"),
        daddr=address,
        sport=40000,
        dport=port,
        iif=iif,
        oif=None,
    )
    try:
        local = tuple(a for _, a, _ in addresses(there.path))
    except (PortkitError, OSError):
        local = ()
    decisions = traverse(ruleset, packet, local=True, local_addresses=local)
    blocking = next((d for d in decisions if d.verdict != "accept"), None)
    if blocking is None:
        return Check("firewall", True, f"the rules {_on(there)} accept it", data={"hook": hook})
    rule = getattr(blocking, "rule", None)
    text = getattr(rule, "text", None) or str(rule) if rule is not None else "the chain policy"
    if blocking.verdict == "undecided":
        return Check(
            "firewall",
            None,
            f"could not decide {_on(there)}: {blocking.reason} ({text})",
        )
    return Check(
        "firewall",
        False,
        f"{blocking.verdict} {_on(there)} by {text}",
        f"allow it: a rule accepting {proto} dport {port} before that one (nft insert rule ...), "
        "or remove the rule",
        {"rule": text, "verdict": blocking.verdict},
    )


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

"""``portkit why HOST:PORT``: walk every layer between a client and a port, in the order
a packet meets them, and name the first one that breaks, with the fix.

    name -> route -> firewall -> nat -> listener -> source side -> probe

Each layer is a small function (``_layers``) returning evidence; this module puts them
in order, follows a DNAT into the namespace it leads to (a container's, say), and
compares what the layers predict with what a real connection from the client's
namespace sees. Where a layer cannot be seen from here (another machine's firewall,
a ruleset without privileges), it says so instead of guessing.
"""

from __future__ import annotations

from portkit.model import Endpoint, _Record
from portkit.why._context import Place, next_hop, parse_from, place_of_address
from portkit.why._layers import Check
from portkit.why._netfilter import netfilter_layers, transit_firewall
from portkit.why._targets import parse_target

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Any

__all__ = ["LAYERS", "Check", "Place", "WhyResult", "why"]

#: The layers, in the order a packet meets them.
LAYERS = ("name", "route", "firewall", "nat", "listener", "source", "probe")

#: The probe's reason -> what it means when portkit cannot look into the target host.
_REMOTE_REASONS = {
    "conn-refused": "the host is up and answered, but nothing listens on the port",
    "reset": "the host (or a firewall) reset the connection",
    "port-unreach": "the host is up, but nothing listens on the UDP port",
    "no-response": "nothing answered: dropped on the way (a firewall) or the host is down",
    "admin-prohibited": "a firewall on the way rejects it (ICMP administratively prohibited)",
    "host-prohibited": "a firewall rejects it (ICMP host prohibited)",
    "net-prohibited": "a firewall rejects it (ICMP network prohibited)",
    "host-unreach": "a router says the host is unreachable",
    "net-unreach": "a router says the network is unreachable",
}


class WhyResult(_Record):
    """The answer for one target: is it reachable from the source, and if not, which
    layer stops it (``failed_layer``), in one sentence (``verdict``) with the ``fix``.

    ``layers`` are the :class:`Check` of every layer looked at, in order; ``probe``
    the real connection's ``(state, reason)``; ``blind`` the layers portkit could not
    see for lack of privilege (the CLI's exit 3).
    """

    __slots__ = (
        "target",
        "source",
        "reachable",
        "failed_layer",
        "verdict",
        "fix",
        "layers",
        "probe",
        "blind",
    )
    target: str
    source: str
    reachable: bool
    failed_layer: str | None
    verdict: str
    fix: str | None
    layers: tuple[Check, ...]
    probe: tuple[str, str] | None
    blind: tuple[str, ...]

    def __init__(
        self,
        target: str,
        source: str,
        layers: tuple[Check, ...],
        probe: tuple[str, str] | None,
        blind: tuple[str, ...] = (),
    ) -> None:
        failed = next((c for c in layers if c.ok is False), None)
        reachable = failed is None and probe is not None and probe[0] in ("open",)
        if failed is not None:
            verdict = f"{target} is not reachable from {source}: {failed.evidence}"
            fix = failed.fix
        elif reachable:
            verdict = f"{target} is reachable from {source}"
            fix = None
        else:
            verdict = f"{target} is not reachable from {source}"
            fix = None
        self._init(
            target=target,
            source=source,
            reachable=reachable,
            failed_layer=failed.layer if failed is not None else None,
            verdict=verdict,
            fix=fix,
            layers=layers,
            probe=probe,
            blind=blind,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "source": self.source,
            "reachable": self.reachable,
            "failed_layer": self.failed_layer,
            "verdict": self.verdict,
            "fix": self.fix,
            "layers": [
                {"layer": c.layer, "ok": c.ok, "evidence": c.evidence, **c.data}
                for c in self.layers
            ],
            "probe": None
            if self.probe is None
            else {"state": self.probe[0], "reason": self.probe[1]},
            "not_visible": list(self.blind),
        }


def why(
    targets: Iterable[str] | str,
    *,
    source: str | None = None,
    udp: bool = False,
    timeout: float = 2.0,
    plan: Sequence[str] = (),
) -> list[WhyResult]:
    """Walk the layers for each target, from ``source`` (``--from``: ``container:NAME``,
    ``netns:NAME``, ``pid:PID``; None: this host); ``plan``: compose files or
    manifests whose ``service:port`` targets name (``--plan``).

    Raises:
        ParseError: a bad target or ``--from``. PermissionDenied: the source namespace
        cannot be entered.
    """
    from portkit.system import require_linux

    require_linux("why's route, firewall and namespace lookups")
    place = parse_from(source)
    texts = [targets] if isinstance(targets, str) else list(targets)
    mappings: tuple[Any, ...] = ()
    if plan:
        from portkit.plan import load_plan

        mappings = load_plan(list(plan)).mappings
    endpoints = [parse_target(t, udp, mappings) for t in texts]
    return [_walk(str(ep), ep, place, timeout) for ep in endpoints]


def _walk(label: str, ep: Endpoint, src: Place, timeout: float) -> WhyResult:
    from portkit.why import _layers, _names, _route

    proto = ep.protocol.value
    checks: list[Check] = []
    blind: list[str] = []

    # 1. name
    answer = _names.resolve_as(ep.host, src)
    if not answer.addresses:
        checks.append(
            Check(
                "name",
                False,
                f"{ep.host} does not resolve ({answer.detail})",
                f"fix the name: add it to {src.etc}/hosts or DNS, or use the address",
            )
        )
        return WhyResult(label, src.label, tuple(checks), None)
    addresses = answer.addresses
    address = addresses[0]
    order = ", ".join(addresses)
    name_check = Check(
        "name",
        True,
        f"{ep.host} is {order}"
        + (f" ({answer.source}: {answer.detail})" if answer.source != "literal" else ""),
        data={"addresses": list(addresses)},
    )

    # 2. route
    route = _route.route_get(address, src.path)
    if not route.reachable:
        checks += [name_check, Check("route", False, route.describe(), _ROUTE_FIX[route.kind])]
        return _finish(label, src, checks, blind, address, ep, timeout)
    checks.append(name_check)
    checks.append(Check("route", True, route.describe(), data={"dev": route.dev, "src": route.src}))

    # Where does the packet end up? This namespace (a local route), another namespace on
    # this machine, or a host portkit cannot look into.
    if route.kind == "local":
        there: Place | None = src
    else:
        there = place_of_address(address, exclude=src.path, near=src.path)
    if there is None:
        for layer in ("firewall", "nat", "listener"):
            checks.append(
                Check(layer, None, f"{address} is another machine: not visible from here")
            )
    else:
        # 3-4. firewall and NAT on the target host (and the container a DNAT leads to)
        dest = (address, ep.port)
        hop = next_hop(src, route.dev, route.gateway, there)
        fw, nat, final_place, dest, denied = netfilter_layers(
            src, there, route.src or "", dest, proto
        )
        if hop is not None:  # a bridge host forwards it first: its rules come first
            passing = transit_firewall(
                hop, route.src or "", (address, ep.port), proto, not route.gateway
            )
            fw = _through(hop, passing, fw)
        checks += [fw, nat]
        if denied:
            blind += ["firewall", "nat"]
        # 5. listener, where the packet ends
        rows = _layers.read_port(final_place, dest[1])
        rising = False
        if proto == "tcp" and any(r[1] == "LISTEN" and r[4] and r[3] >= r[4] for r in rows):
            before = _layers.listen_overflows(final_place)
            import time

            time.sleep(0.2)
            after = _layers.listen_overflows(final_place)
            rising = before is not None and after is not None and after > before
        where = "there" if final_place.label == src.label else f"in {final_place.label}"
        listener = _layers.judge_listener(dest[0], dest[1], proto, rows, rising, where)
        checks.append(_layers.container_fix(listener, final_place, dest[1], proto, rows))
        dnat = nat.data.get("dnat")
        if dnat and checks[-1].ok is False and not rows:
            # The rule sends the packet where nothing is: the NAT layer is what breaks.
            checks[-2] = Check(
                "nat",
                False,
                f"{nat.evidence}, where nothing listens",
                f"point the rule ({dnat['rule']}) at the port the service listens on, or "
                f"start the service at {dnat['to']}",
                nat.data,
            )
        # The classic: the first address has no listener, a later one has.
        if checks[-1].ok is False and len(addresses) > 1 and final_place is there:
            for other in addresses[1:]:
                if _layers.judge_listener(other, dest[1], proto, rows).ok:
                    checks[0] = Check(
                        "name",
                        False,
                        f"{ep.host} resolves to {address} first (then {', '.join(addresses[1:])}), "
                        f"but the server listens on {other} only",
                        f"ask for {other} explicitly, or make the server listen on {address} too",
                        {"addresses": list(addresses)},
                    )
                    break

    # 6. source side
    if proto == "tcp":
        size = _layers.ephemeral_size(src)
        held = _layers.connections_to(src, address, ep.port)
        checks.append(
            _layers.judge_source(f"{address}:{ep.port}", size, held, _layers.conntrack_fill(src))
        )

    return _finish(
        label,
        src,
        checks,
        blind,
        address,
        ep,
        timeout,
        stale=answer.source == "hosts" and there is None,
    )


def _through(hop: Place, passing: Check, there: Check) -> Check:
    """One firewall check for a packet that a host between forwards (``passing``: its
    rules) before the target's rules (``there``) see it: the first that does not
    accept it speaks; both accepting, both are said."""
    if passing.ok is not True:
        return passing
    if there.ok is not True:
        return Check(
            there.layer,
            there.ok,
            f"forwarded by {hop.label}; {there.evidence}",
            there.fix,
            {**there.data, "through": {"where": hop.label, **passing.data}},
        )
    return Check(
        "firewall",
        True,
        f"{passing.evidence.replace('accept it', 'forward it', 1)}; {there.evidence}",
        data={**there.data, "through": {"where": hop.label, **passing.data}},
    )


def _finish(
    label: str,
    src: Place,
    checks: list[Check],
    blind: list[str],
    address: str,
    ep: Endpoint,
    timeout: float,
    stale: bool = False,
) -> WhyResult:
    """7. The probe: a real connection from the client's side, held against what the
    layers predicted (a mismatch is said, never hidden). ``stale``: the address came
    from a hosts file, so an address nobody answers on is that entry's fault."""
    probe = _probe(src, address, ep, timeout)
    if stale and probe is not None and probe[1] in _NOBODY_THERE:
        checks[0] = Check(
            "name",
            False,
            f"{checks[0].evidence}, and nothing answers at {address} ({probe[1]}): a stale "
            "hosts entry?",
            f"correct or remove the entry for {ep.host} in {src.etc}/hosts",
            checks[0].data,
        )
    predicted = all(c.ok is not False for c in checks)
    opened = probe is not None and probe[0] == "open"
    if probe is not None:
        if predicted and not opened:
            meaning = _REMOTE_REASONS.get(probe[1], probe[1])
            seen = all(c.ok is not None for c in checks)
            checks.append(
                Check(
                    "probe",
                    False,
                    f"the connection from {src.label} was {probe[0]} ({probe[1]}): {meaning}"
                    + ("" if not seen else "; the layers above saw nothing wrong: a mismatch"),
                    "look at what portkit cannot see from here: firewalls on the way, the "
                    "peer's own rules"
                    if not seen
                    else "run it again; report the mismatch",
                )
            )
        elif not predicted and opened:
            checks.append(
                Check(
                    "probe",
                    True,
                    f"the connection from {src.label} succeeded although a layer above "
                    "predicted it would not: a mismatch",
                )
            )
        else:
            checks.append(Check("probe", opened, f"{probe[0]} ({probe[1]})"))
    return WhyResult(label, src.label, tuple(checks), probe, tuple(blind))


#: Probe reasons that say no host has the address at all.
_NOBODY_THERE = frozenset({"host-unreach", "no-response", "net-unreach"})

_ROUTE_FIX = {
    "none": "add a route (or a default route) towards it: ip route add ... via ...",
    "unreachable": "remove or change the 'unreachable' route that covers it (ip route show)",
    "prohibit": "remove or change the 'prohibit' route that covers it (ip route show)",
    "blackhole": "remove or change the 'blackhole' route that covers it (ip route show)",
    "error": "check the routing table (ip route show)",
}


def _probe(src: Place, address: str, ep: Endpoint, timeout: float) -> tuple[str, str] | None:
    import portkit

    target = Endpoint(address, ep.port, ep.protocol)

    def run() -> tuple[str, str]:
        from portkit.errors import ResourceExhausted

        try:
            result = portkit.check([target], timeout=timeout)[0]
        except ResourceExhausted:  # EADDRNOTAVAIL: no local port left towards it
            return ("error", "no-local-port")
        return (result.state.value, result.reason.value)

    found: tuple[str, str] = src.run(run)
    return found

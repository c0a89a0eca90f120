"""A listening baseline: what is allowed to listen on a host, and what listens beyond it.

``portkit plan snapshot`` writes today's listeners as a portkit plan marked
``baseline: true`` (:func:`snapshot_text`); ``portkit plan check`` of such a plan then
reports every listener the plan does not have, and ``portkit exporter --baseline``
exports them as ``portkit_unexpected_listener`` (:func:`unexpected_listeners`).

A listener is *allowed* when the baseline has its port and protocol on an address at
least as wide: its own address, a wildcard of its family (0.0.0.0 covers every IPv4
address, :: every IPv6 one), or any address when the plan names none (for its
exposure). A loopback listener is never wider than what was planned. Pure: listeners
in, words and records out.

    >>> from portkit.plan._yaml import load_documents
    >>> from portkit.plan._native import read_native
    >>> from portkit.plan._plan import build_plan
    >>> text = snapshot_text([Listener("tcp", "127.0.0.1", 5432, "postgres", None)], "db1")
    >>> plan = build_plan([read_native(load_documents(text)[0], "db1.plan.yaml")])
    >>> unexpected_listeners(plan, [("tcp", "0.0.0.0", 5432), ("tcp", "0.0.0.0", 22)])
    [('tcp', '0.0.0.0', 5432), ('tcp', '0.0.0.0', 22)]
    >>> unexpected_listeners(plan, [("tcp", "127.0.0.1", 5432)])
    []
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from portkit.model import BindScope, bind_scope
from portkit.plan._model import Exposure

if TYPE_CHECKING:
    from portkit.plan._model import PortMapping
    from portkit.plan._plan import Plan

__all__ = [
    "Listener",
    "allowed",
    "baseline_mappings",
    "is_baseline",
    "snapshot_text",
    "unexpected_listeners",
]


@dataclass(frozen=True, slots=True)
class Listener:
    """One listening socket as the snapshot keeps it."""

    protocol: str
    address: str
    port: int
    owner: str | None  # the process name
    container: str | None  # the container's label, where the owner is one


_WIDTH = {
    BindScope.LOOPBACK: 0,
    BindScope.LINK_LOCAL: 1,
    BindScope.SPECIFIC: 1,
    BindScope.WILDCARD: 2,
}


def _exposure_of(address: str) -> Exposure:
    import ipaddress

    scope = bind_scope(address)
    if scope is BindScope.WILDCARD:
        return Exposure.PUBLIC
    if scope is BindScope.LOOPBACK:
        return Exposure.LOOPBACK
    ip = ipaddress.ip_address(address)
    return Exposure.INTERNAL if ip.is_private or ip.is_link_local else Exposure.PUBLIC


def allowed(planned: str | None, exposure: Exposure, address: str) -> bool:
    """Whether a listener on ``address`` is within a planned port bound on ``planned``.

    >>> allowed("0.0.0.0", Exposure.PUBLIC, "10.0.0.5")
    True
    >>> allowed("127.0.0.1", Exposure.LOOPBACK, "0.0.0.0")
    False
    """
    scope = bind_scope(address)
    if planned is None:
        limit = {
            Exposure.PUBLIC: 2,
            Exposure.ADDRESS: 1,
            Exposure.INTERNAL: 1,
            Exposure.LOOPBACK: 0,
        }[exposure]
        return _WIDTH[scope] <= limit
    if planned == address or scope is BindScope.LOOPBACK:
        return True
    if bind_scope(planned) is BindScope.WILDCARD:
        return (":" in planned) == (":" in address)
    return False


def is_baseline(plan: Plan) -> bool:
    """Whether the plan has a portkit plan marked ``baseline: true``."""
    return any(f.native is not None and f.native.baseline for f in plan.files)


def baseline_mappings(plan: Plan) -> list[PortMapping]:
    """The ports of the baseline plans, for this host (no ``host`` given)."""
    files = {f.path for f in plan.files if f.native is not None and f.native.baseline}
    return [m for m in plan.mappings if m.file in files and m.scope is None]


def unexpected_listeners(
    plan: Plan, listeners: Iterable[tuple[str, str, int]]
) -> list[tuple[str, str, int]]:
    """The ``(protocol, address, port)`` listeners the baseline does not allow: a port it
    does not have, or one bound wider than it allows (127.0.0.1 became 0.0.0.0)."""
    planned: dict[tuple[str, int], list[PortMapping]] = {}
    for m in baseline_mappings(plan):
        for port in m.host_ports:
            planned.setdefault((m.protocol, port), []).append(m)
    out: list[tuple[str, str, int]] = []
    for protocol, address, port in dict.fromkeys(listeners):
        ms = planned.get((protocol, port), [])
        if not any(allowed(m.host_ip, m.exposure, address) for m in ms):
            out.append((protocol, address, port))
    return out


def _quote(text: str) -> str:
    """A YAML scalar that stays the text it is (JSON strings are YAML)."""
    return json.dumps(text, ensure_ascii=False)


def snapshot_text(
    listeners: Sequence[Listener], host: str, *, taken: str | None = None, notes: Sequence[str] = ()
) -> str:
    """Today's listeners as a portkit plan (``baseline: true``), one service per owner.

    Each listener becomes a port with its address and the exposure that address gives
    (0.0.0.0/:: public, loopback loopback, a private address internal); the owner and
    container are kept as ``x-owner``/``x-container`` notes. Listeners whose owner is
    unknown (not root) go to a service named ``unknown``.
    """
    groups: dict[str, list[Listener]] = {}
    for ls in sorted(
        set(listeners), key=lambda x: (x.container or x.owner or "~", x.port, x.protocol, x.address)
    ):
        name = f"container {ls.container}" if ls.container else (ls.owner or "unknown")
        groups.setdefault(name, []).append(ls)
    lines = [
        f"# What may listen on {host}: written by `portkit plan snapshot`"
        + (f" at {taken}" if taken else "")
        + ".",
        "# Edit it to what is allowed, then: portkit plan check THIS_FILE (exit 1 on an",
        "# unexpected or missing listener), or portkit exporter --baseline THIS_FILE.",
        *(f"# note: {n}" for n in notes),
        "portkit: plan/v1",
        f"name: {_quote(f'{host} baseline')}",
        "baseline: true",
        "services:" if groups else "services: {}",
    ]
    for name, items in groups.items():
        lines.append(f"  {_quote(name)}:")
        first = items[0]
        if first.owner and first.container:
            lines.append(f"    x-owner: {_quote(first.owner)}")
        lines.append("    ports:")
        for ls in items:
            exposure = _exposure_of(ls.address)
            lines.append(
                f"      - {{port: {ls.port}, protocol: {ls.protocol}, "
                f"address: {_quote(ls.address)}, exposure: {exposure.value}}}"
            )
    return "\n".join(lines) + "\n"

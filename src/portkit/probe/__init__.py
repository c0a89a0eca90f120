"""Reach a port: ``check``, ``wait`` and ``scan``, with nmap's port states.

Pure planning lives apart from the I/O (docs/architecture.md, "sans-I/O"):

* ``_targets``: target expansion (names, IPs, CIDRs, ranges, ``-iL`` lists)
* ``_ports``: nmap ``-p`` specs, ``--top N`` and service names from portkit's registry
* ``_states``: errno and ICMP (type, code) -> (state, reason) tables
* ``_timing``: adaptive timeout from RTTs, rate limiter, concurrency from RLIMIT_NOFILE
* ``_payloads``, ``_x509``: UDP payloads and banner probes; certificate fields
* ``_engine``: the I/O -- an epoll TCP connect engine and a UDP prober
* ``_check``, ``_scan``, ``_wait``, ``_session``: the public functions, built on the engine
* ``_ready``: readiness handshakes (``--proto``), one pure codec per protocol and a driver
* ``_origin``: ``--from netns:NAME|pid:PID``, a forked worker inside that namespace

Names resolve on first use (PEP 562), so importing this package costs little.

    >>> from portkit.probe import parse_port_spec
    >>> parse_port_spec("22,80").tcp
    (22, 80)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portkit.probe._check import check as check
    from portkit.probe._origin import Origin as Origin
    from portkit.probe._origin import locate as locate
    from portkit.probe._origin import parse_origin as parse_origin
    from portkit.probe._origin import run_from as run_from
    from portkit.probe._ports import PortPlan as PortPlan
    from portkit.probe._ports import parse_port_spec as parse_port_spec
    from portkit.probe._ready import ReadyState as ReadyState
    from portkit.probe._ready import Verdict as Verdict
    from portkit.probe._records import CheckResult as CheckResult
    from portkit.probe._records import PortResult as PortResult
    from portkit.probe._records import PortState as PortState
    from portkit.probe._records import Reason as Reason
    from portkit.probe._records import ScanReport as ScanReport
    from portkit.probe._records import TlsInfo as TlsInfo
    from portkit.probe._records import WaitResult as WaitResult
    from portkit.probe._scan import scan as scan
    from portkit.probe._targets import TargetSpec as TargetSpec
    from portkit.probe._targets import parse_target as parse_target
    from portkit.probe._targets import parse_target_list as parse_target_list
    from portkit.probe._wait import WaitTimeout as WaitTimeout
    from portkit.probe._wait import wait_for as wait_for
    from portkit.probe._wait import wait_for_sync as wait_for_sync

_EXPORTS: dict[str, str] = {
    "CheckResult": "portkit.probe._records",
    "Origin": "portkit.probe._origin",
    "PortPlan": "portkit.probe._ports",
    "PortResult": "portkit.probe._records",
    "PortState": "portkit.probe._records",
    "ReadyState": "portkit.probe._ready",
    "Reason": "portkit.probe._records",
    "ScanReport": "portkit.probe._records",
    "TargetSpec": "portkit.probe._targets",
    "TlsInfo": "portkit.probe._records",
    "Verdict": "portkit.probe._ready",
    "WaitResult": "portkit.probe._records",
    "WaitTimeout": "portkit.probe._wait",
    "check": "portkit.probe._check",
    "locate": "portkit.probe._origin",
    "parse_origin": "portkit.probe._origin",
    "parse_port_spec": "portkit.probe._ports",
    "parse_target": "portkit.probe._targets",
    "parse_target_list": "portkit.probe._targets",
    "run_from": "portkit.probe._origin",
    "scan": "portkit.probe._scan",
    "service_name": "portkit.registry",
    "top_ports": "portkit.registry",
    "wait_for": "portkit.probe._wait",
    "wait_for_sync": "portkit.probe._wait",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'portkit.probe' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

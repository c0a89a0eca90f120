"""portkit: everything a DevOps engineer does with ports and sockets.

The public API is declared here once; names are imported from their modules on
first use (PEP 562), so ``import portkit`` costs almost nothing and pulls in none of
click, rich, yaml or asyncio (a test guards this).

    >>> import portkit
    >>> portkit.Endpoint.parse("192.168.1.100:8080/TCP").port
    8080
"""

from __future__ import annotations

from portkit._version import __version__

# Not `from typing import TYPE_CHECKING`: importing typing costs ~9 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from portkit.errors import (
        ForwardError as ForwardError,
    )
    from portkit.errors import (
        ParseError as ParseError,
    )
    from portkit.errors import (
        PermissionDenied as PermissionDenied,
    )
    from portkit.errors import (
        PlanError as PlanError,
    )
    from portkit.errors import (
        PortkitError as PortkitError,
    )
    from portkit.errors import (
        ProbeError as ProbeError,
    )
    from portkit.errors import (
        ProbeTimeout as ProbeTimeout,
    )
    from portkit.errors import (
        ProtocolError as ProtocolError,
    )
    from portkit.errors import (
        RegistryError as RegistryError,
    )
    from portkit.errors import (
        ResourceExhausted as ResourceExhausted,
    )
    from portkit.errors import (
        UsageError as UsageError,
    )
    from portkit.forward import (
        Forwarder as Forwarder,
    )
    from portkit.forward import (
        serve as serve,
    )
    from portkit.free import (
        free_port as free_port,
    )
    from portkit.free import (
        free_ports as free_ports,
    )
    from portkit.model import (
        Connection as Connection,
    )
    from portkit.model import (
        Endpoint as Endpoint,
    )
    from portkit.model import (
        PortClass as PortClass,
    )
    from portkit.model import (
        PortRange as PortRange,
    )
    from portkit.model import (
        Protocol as Protocol,
    )
    from portkit.model import (
        RangeClass as RangeClass,
    )
    from portkit.model import (
        SocketRecord as SocketRecord,
    )
    from portkit.model import (
        TcpState as TcpState,
    )
    from portkit.model import (
        parse_ports as parse_ports,
    )
    from portkit.plan import (
        Plan as Plan,
    )
    from portkit.plan import (
        load_plan as load_plan,
    )
    from portkit.probe import (
        CheckResult as CheckResult,
    )
    from portkit.probe import (
        PortResult as PortResult,
    )
    from portkit.probe import (
        PortState as PortState,
    )
    from portkit.probe import (
        Reason as Reason,
    )
    from portkit.probe import (
        ScanReport as ScanReport,
    )
    from portkit.probe import (
        TlsInfo as TlsInfo,
    )
    from portkit.probe import (
        WaitResult as WaitResult,
    )
    from portkit.probe import (
        WaitTimeout as WaitTimeout,
    )
    from portkit.probe import (
        check as check,
    )
    from portkit.probe import (
        scan as scan,
    )
    from portkit.probe import (
        wait_for as wait_for,
    )
    from portkit.probe import (
        wait_for_sync as wait_for_sync,
    )
    from portkit.registry import (
        Answer as Answer,
    )
    from portkit.registry import (
        Entry as Entry,
    )
    from portkit.registry import (
        classify as classify,
    )
    from portkit.registry import (
        lookup as lookup,
    )
    from portkit.see import (
        socket_stats as socket_stats,
    )
    from portkit.see import (
        sockets as sockets,
    )
    from portkit.see._stats import (
        SocketStats as SocketStats,
    )
    from portkit.system import (
        ephemeral_range as ephemeral_range,
    )

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Answer": "portkit.registry",
    "CheckResult": "portkit.probe",
    "Connection": "portkit.model",
    "Endpoint": "portkit.model",
    "Entry": "portkit.registry",
    "ForwardError": "portkit.errors",
    "Forwarder": "portkit.forward",
    "ParseError": "portkit.errors",
    "PermissionDenied": "portkit.errors",
    "Plan": "portkit.plan",
    "PlanError": "portkit.errors",
    "PortClass": "portkit.model",
    "PortRange": "portkit.model",
    "PortResult": "portkit.probe",
    "PortState": "portkit.probe",
    "PortkitError": "portkit.errors",
    "ProbeError": "portkit.errors",
    "ProbeTimeout": "portkit.errors",
    "Protocol": "portkit.model",
    "ProtocolError": "portkit.errors",
    "RangeClass": "portkit.model",
    "Reason": "portkit.probe",
    "RegistryError": "portkit.errors",
    "ResourceExhausted": "portkit.errors",
    "ScanReport": "portkit.probe",
    "SocketRecord": "portkit.model",
    "SocketStats": "portkit.see._stats",
    "TcpState": "portkit.model",
    "TlsInfo": "portkit.probe",
    "UsageError": "portkit.errors",
    "WaitResult": "portkit.probe",
    "WaitTimeout": "portkit.probe",
    "check": "portkit.probe",
    "classify": "portkit.registry",
    "ephemeral_range": "portkit.system",
    "free_port": "portkit.free",
    "free_ports": "portkit.free",
    "load_plan": "portkit.plan",
    "lookup": "portkit.registry",
    "parse_ports": "portkit.model",
    "scan": "portkit.probe",
    "serve": "portkit.forward",
    "socket_stats": "portkit.see",
    "sockets": "portkit.see",
    "wait_for": "portkit.probe",
    "wait_for_sync": "portkit.probe",
}

__all__ = [
    "Answer",
    "CheckResult",
    "Connection",
    "Endpoint",
    "Entry",
    "ForwardError",
    "Forwarder",
    "ParseError",
    "PermissionDenied",
    "Plan",
    "PlanError",
    "PortClass",
    "PortRange",
    "PortResult",
    "PortState",
    "PortkitError",
    "ProbeError",
    "ProbeTimeout",
    "Protocol",
    "ProtocolError",
    "RangeClass",
    "Reason",
    "RegistryError",
    "ResourceExhausted",
    "ScanReport",
    "SocketRecord",
    "SocketStats",
    "TcpState",
    "TlsInfo",
    "UsageError",
    "WaitResult",
    "WaitTimeout",
    "__version__",
    "check",
    "classify",
    "ephemeral_range",
    "free_port",
    "free_ports",
    "load_plan",
    "lookup",
    "parse_ports",
    "scan",
    "serve",
    "socket_stats",
    "sockets",
    "wait_for",
    "wait_for_sync",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'portkit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__

"""Port forwarding: ``portkit forward``, ``serve`` and ``connect``.

Pure parts (no I/O): :mod:`.spec` (docker/ssh -L specs), :mod:`.access` (allow list,
descriptor budget), :mod:`.proxy` (PROXY protocol headers), :mod:`.records`.
I/O parts: :mod:`._engine` (the :class:`Forwarder`: accept, limits, timeouts, log) and
its data paths behind the interface :mod:`._path` declares (:mod:`._epoll` and
:mod:`._tcp` for TCP, :mod:`._udp`); :mod:`._listen` (descriptors, listening sockets),
:mod:`._resolve` (target names); :mod:`.serve` (test servers), :mod:`.connect` (a
netcat-like client), :mod:`.runner` (the command-line loop: uvloop, signals, counters).

Names are loaded on first use so that parsing a spec does not import asyncio.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from portkit.forward._engine import Forwarder as Forwarder
    from portkit.forward.records import ConnLog as ConnLog
    from portkit.forward.records import Stats as Stats
    from portkit.forward.serve import Server as Server
    from portkit.forward.serve import serve as serve
    from portkit.forward.spec import Mapping as Mapping
    from portkit.forward.spec import parse_spec as parse_spec
    from portkit.forward.spec import parse_specs as parse_specs

_EXPORTS: dict[str, str] = {
    "ConnLog": "portkit.forward.records",
    "Forwarder": "portkit.forward._engine",
    "Mapping": "portkit.forward.spec",
    "Server": "portkit.forward.serve",
    "Stats": "portkit.forward.records",
    "parse_spec": "portkit.forward.spec",
    "parse_specs": "portkit.forward.spec",
    "serve": "portkit.forward.serve",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'portkit.forward' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

"""Where a target is: IP literals and ``localhost`` at once, DNS names through the loop.

One :class:`Resolver` per Forwarder, shared by its TCP and UDP paths: a name is looked
up once every :data:`RESOLVE_TTL` seconds, not once per connection (a burst of clients
to ``db.internal:5432`` makes one getaddrinfo call).
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from portkit.forward.spec import LOCAL_TARGET
from portkit.model import _ip_literal

if TYPE_CHECKING:
    import asyncio

__all__ = ["LOCALHOST", "RESOLVE_TTL", "Resolver", "static_targets"]

#: How long a resolved target name is reused.
RESOLVE_TTL = 10.0
#: What ``localhost`` means, in the order tried: IPv4 first, as ``ssh -L`` does.
LOCALHOST = ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1"))

Targets = tuple[tuple[int, str], ...]


def static_targets(host: str) -> Targets:
    """(family, ip) pairs for an IP literal or ``localhost``; empty for a DNS name.

    >>> static_targets("::1") == ((socket.AF_INET6, "::1"),)
    True
    >>> static_targets("db.internal")
    ()
    """
    literal = _ip_literal(host)
    if literal is not None:
        return ((socket.AF_INET6 if ":" in literal else socket.AF_INET, literal),)
    return LOCALHOST if host == LOCAL_TARGET else ()


class Resolver:
    """Target addresses for one event loop, DNS answers cached for RESOLVE_TTL s."""

    __slots__ = ("_cache", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._cache: dict[str, tuple[float, Targets]] = {}

    def cached(self, host: str) -> Targets:
        """What is known without asking DNS now: a literal, ``localhost``, a fresh answer."""
        static = static_targets(host)
        if static:
            return static
        cached = self._cache.get(host)
        if cached is not None and cached[0] > self._loop.time():
            return cached[1]
        return ()

    async def targets(self, host: str, port: int) -> Targets:
        """(family, ip) pairs to try for ``host``, in the resolver's order.

        Raises:
            OSError: the name does not resolve (``socket.gaierror``).
        """
        known = self.cached(host)
        if known:
            return known
        now = self._loop.time()
        infos = await self._loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        found = tuple(dict.fromkeys((int(f), str(sa[0])) for f, _, _, _, sa in infos))
        self._cache[host] = (now + RESOLVE_TTL, found)
        return found

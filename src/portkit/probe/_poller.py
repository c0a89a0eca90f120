"""The readiness poller the reach engines run on, chosen once per engine run.

On Linux the engines use ``select.epoll`` itself (its API is this module's API).
Elsewhere (macOS and the BSDs: kqueue; the rest: poll or select) a
:class:`SelectorPoller` over :mod:`selectors` offers the same four calls with the same
event bits. The one difference the engines must know: epoll reports a failed connect
as an error event (``ERR``), a selector only as "writable", so with ``exact_errors``
False the engine reads ``SO_ERROR`` on every writable socket.

``PORTKIT_POLLER=epoll|poll|select|kqueue|default`` picks one by hand (the tests run
the portable ones on Linux on purpose).

    >>> p = make_poller("poll")
    >>> p.exact_errors, p.name
    (False, 'poll')
    >>> p.close()
"""

from __future__ import annotations

import os
import select
import selectors

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["ERR", "HUP", "IN", "KINDS", "OUT", "SelectorPoller", "make_poller"]

HAS_EPOLL = hasattr(select, "epoll")
#: Event bits: epoll's own where it exists (so epoll's answers need no translation).
IN, OUT, ERR, HUP = (
    (select.EPOLLIN, select.EPOLLOUT, select.EPOLLERR, select.EPOLLHUP)
    if HAS_EPOLL
    else (0x001, 0x004, 0x008, 0x010)
)

#: name -> the selector class behind it (``default``: the best this system has).
KINDS: dict[str, Any] = {
    "default": selectors.DefaultSelector,
    "poll": getattr(selectors, "PollSelector", None),
    "select": selectors.SelectSelector,
    "kqueue": getattr(selectors, "KqueueSelector", None),
    "epoll": getattr(selectors, "EpollSelector", None),
}

#: ``select()`` cannot watch a descriptor numbered FD_SETSIZE (1024) or above.
SELECT_FD_LIMIT = 1000


class SelectorPoller:
    """epoll's ``register``/``modify``/``unregister``/``poll`` over a selector."""

    exact_errors = False

    def __init__(self, selector: selectors.BaseSelector, name: str) -> None:
        self._sel = selector
        self.name = name

    @staticmethod
    def _events(mask: int) -> int:
        return (selectors.EVENT_READ if mask & IN else 0) | (
            selectors.EVENT_WRITE if mask & OUT else 0
        )

    def register(self, fd: int, mask: int) -> None:
        self._sel.register(fd, self._events(mask))

    def modify(self, fd: int, mask: int) -> None:
        self._sel.modify(fd, self._events(mask))

    def unregister(self, fd: int) -> None:
        self._sel.unregister(fd)

    def poll(self, timeout: float = -1, maxevents: int = -1) -> list[tuple[int, int]]:
        ready = self._sel.select(None if timeout is None or timeout < 0 else timeout)
        out = []
        for key, events in ready:
            fd = key.fd
            # A closed socket stays registered until unregistered; the engines forget
            # sockets by closing them, so drop keys whose descriptor is gone.
            mask = (IN if events & selectors.EVENT_READ else 0) | (
                OUT if events & selectors.EVENT_WRITE else 0
            )
            out.append((fd, mask))
            if 0 < maxevents <= len(out):
                break
        return out

    def close(self) -> None:
        self._sel.close()


class _Epoll:
    """``select.epoll`` with the flag the engines read (a thin wrapper would cost a call
    per event; only the attribute is added)."""

    exact_errors = True
    name = "epoll"


def make_poller(kind: str | None = None) -> Any:
    """A poller: ``select.epoll`` on Linux, else a :class:`SelectorPoller`; ``kind`` (or
    ``PORTKIT_POLLER``) picks one of :data:`KINDS` by hand."""
    kind = kind or os.environ.get("PORTKIT_POLLER") or ("epoll" if HAS_EPOLL else "default")
    if kind == "epoll" and HAS_EPOLL:
        return _EpollPoller()
    cls = KINDS.get(kind)
    if cls is None:
        raise ValueError(f"no {kind!r} poller on this system")
    return SelectorPoller(cls(), kind)


class _EpollPoller:
    """``select.epoll``'s methods bound straight through (no call per event added)."""

    exact_errors = True
    name = "epoll"

    def __init__(self) -> None:
        ep = select.epoll()
        self.register = ep.register
        self.modify = ep.modify
        self.unregister = ep.unregister
        self.poll = ep.poll
        self.close = ep.close

"""Running a forwarder or a test server until a signal: the command line's event loop.

uvloop when it is installed (the ``fast`` extra), the standard loop otherwise. SIGTERM
or SIGINT stops accepting and drains live connections for ``grace`` seconds; a second
signal cuts them at once. The handlers are in place before the first listener is
bound, so a signal during start-up stops gracefully too.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from typing import TYPE_CHECKING, Any

from portkit.forward._listen import (
    LOOP_DESCRIPTORS,
    descriptors_needed,
    ensure_descriptors,
    raise_nofile,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine

    from portkit.forward._engine import Forwarder
    from portkit.forward.serve import Server

__all__ = ["loop_name", "run", "run_forwarder", "run_server"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name() -> str:
    """``uvloop`` or ``asyncio``: the loop :func:`run` will use."""
    return "asyncio" if _loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` on uvloop when installed, else on the standard loop."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(main)


class _Signals:
    """SIGTERM/SIGINT on the running loop: the first sets :attr:`stop`, a second
    :attr:`again`. Installed before anything is bound, so that a signal during a long
    start-up (a thousand listeners, their lines on a slow stderr) is kept for the
    graceful stop instead of killing the process with connections already accepted."""

    def __init__(self) -> None:
        self.stop = asyncio.Event()
        self.again = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in _SIGNALS:
            loop.add_signal_handler(sig, self._on_signal)

    def _on_signal(self) -> None:
        (self.again if self.stop.is_set() else self.stop).set()


async def _forward(
    fwd: Forwarder,
    grace: float,
    stats_interval: float | None,
    on_stats: Callable[[dict[str, int]], None] | None,
    on_stop: Callable[[int, float], None] | None,
    on_ready: Callable[[Forwarder], None] | None,
) -> int:
    signals = _Signals()
    await fwd.start()
    # What exists now (modules, tables) lives as long as the process: keep it out of the
    # cyclic collector's way; connections free themselves by reference counting.
    gc.freeze()
    if on_ready is not None:
        on_ready(fwd)
    ticker: asyncio.Task[None] | None = None
    if stats_interval and on_stats is not None:

        async def tick() -> None:
            while True:
                await asyncio.sleep(stats_interval)
                on_stats(fwd.stats.snapshot())

        ticker = asyncio.get_running_loop().create_task(tick())
    await signals.stop.wait()
    # Listeners close first (what the kernel queued on them is accepted and counted),
    # then the drain is announced with the number it waits for.
    fwd.stop_accepting()
    if on_stop is not None:
        on_stop(fwd.stats.tcp_active, grace)
    closing = asyncio.get_running_loop().create_task(fwd.close(grace))
    waiter = asyncio.get_running_loop().create_task(signals.again.wait())
    await asyncio.wait({closing, waiter}, return_when=asyncio.FIRST_COMPLETED)
    if not closing.done():  # a second signal: no more grace
        closing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await closing
        await fwd.close(0)
    waiter.cancel()
    if ticker is not None:
        ticker.cancel()
    if on_stats is not None:
        on_stats(fwd.stats.snapshot())
    return 0


def run_forwarder(
    fwd: Forwarder,
    *,
    grace: float = 10.0,
    stats_interval: float | None = None,
    on_stats: Callable[[dict[str, int]], None] | None = None,
    on_stop: Callable[[int, float], None] | None = None,
    on_ready: Callable[[Forwarder], None] | None = None,
) -> int:
    """Start ``fwd``, report counters every ``stats_interval`` s, drain on SIGTERM.

    Raises:
        ResourceExhausted: too few file descriptors for the event loop, the listeners
            and one connection; checked before the loop is made, because an event
            loop that meets EMFILE while setting itself up fails in ways no caller can
            report in one line.
    """
    ensure_descriptors(descriptors_needed(fwd.mappings, loop=True), raise_nofile())
    return run(_forward(fwd, grace, stats_interval, on_stats, on_stop, on_ready))


async def _serve(server: Server, on_ready: Callable[[Server], None] | None) -> int:
    signals = _Signals()
    async with server:
        if on_ready is not None:
            on_ready(server)
        await signals.stop.wait()
    return 0


def run_server(server: Server, *, on_ready: Callable[[Server], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT (refused at once without the descriptors for the loop,
    the listeners and a client, as :func:`run_forwarder` is)."""
    listeners = (server.tcp is not None) + (server.udp is not None)
    ensure_descriptors(LOOP_DESCRIPTORS + listeners + 1, raise_nofile())
    return run(_serve(server, on_ready))

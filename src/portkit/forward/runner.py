"""Running a forwarder or a test server until a signal: the command line's event loop.

uvloop when it is installed (the ``fast`` extra), the standard loop otherwise. SIGTERM
or SIGINT stops accepting and drains live connections for ``grace`` seconds; a second
signal cuts them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from typing import TYPE_CHECKING, Any

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


async def _until_signal(first: Callable[[], None] | None = None) -> asyncio.Event:
    """Wait for SIGTERM/SIGINT; return an event that a *second* signal sets."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    again = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            again.set()
        else:
            stop.set()

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    await stop.wait()
    if first is not None:
        first()
    return again


async def _forward(
    fwd: Forwarder,
    grace: float,
    stats_interval: float | None,
    on_stats: Callable[[dict[str, int]], None] | None,
    on_stop: Callable[[int, float], None] | None,
    on_ready: Callable[[Forwarder], None] | None,
) -> int:
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
    again = await _until_signal()
    if on_stop is not None:
        on_stop(fwd.stats.tcp_active, grace)
    fwd.stop_accepting()
    closing = asyncio.get_running_loop().create_task(fwd.close(grace))
    waiter = asyncio.get_running_loop().create_task(again.wait())
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
    """Start ``fwd``, report counters every ``stats_interval`` s, drain on SIGTERM."""
    return run(_forward(fwd, grace, stats_interval, on_stats, on_stop, on_ready))


async def _serve(server: Server, on_ready: Callable[[Server], None] | None) -> int:
    async with server:
        if on_ready is not None:
            on_ready(server)
        await _until_signal()
    return 0


def run_server(server: Server, *, on_ready: Callable[[Server], None] | None = None) -> int:
    """Serve until SIGTERM/SIGINT."""
    return run(_serve(server, on_ready))

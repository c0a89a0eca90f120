"""``wait``: until targets accept connections (or are free), with a sync and an async face.

The waiting logic is one generator (:func:`_plan`) that yields what to do next --
``("check", targets, timeout)`` or ``("sleep", seconds)`` -- and receives the
results. :func:`wait_for_sync` runs it with threads and ``time.sleep``,
:func:`wait_for` with ``asyncio``; neither duplicates a decision. Every try goes
through :func:`~portkit.probe.check`, so names are resolved again each time and a
TCP self-connect on loopback never counts as open.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from portkit.errors import ProbeTimeout, UsageError
from portkit.model import Endpoint, Protocol
from portkit.probe._check import check_request_text, refuse_port_zero
from portkit.probe._records import CheckResult, PortState, Reason, WaitResult

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable

__all__ = ["WaitTimeout", "wait_for", "wait_for_sync"]

Action = tuple[Any, ...]


class WaitTimeout(ProbeTimeout):
    """A wait ran out of time; ``result`` holds the last answer of every target."""

    def __init__(self, message: str, result: WaitResult) -> None:
        super().__init__(message)
        self.result = result


def _endpoints(targets: Iterable[str | Endpoint] | str | Endpoint) -> list[Endpoint]:
    if isinstance(targets, str | Endpoint):
        targets = [targets]
    from portkit.registry import parse_endpoint

    eps = [t if isinstance(t, Endpoint) else parse_endpoint(t) for t in targets]
    if not eps:
        raise UsageError("wait needs at least one HOST:PORT target")
    for ep in eps:
        if ep.protocol is not Protocol.TCP:
            raise UsageError(f"wait checks TCP ports only, not {ep}")
    refuse_port_zero(eps)
    return eps


def _checker(
    endpoints: list[Endpoint], closed: bool, **options: Any
) -> Callable[[list[Endpoint], float], list[CheckResult]]:
    """``check`` with the wait's options, validated once before the first try."""
    from portkit.probe._check import check, handshake_plan

    proto = options.get("proto")
    if proto is not None and closed:
        raise UsageError("--closed waits for ports to stop accepting: --proto makes no sense")
    plan_options = {k: v for k, v in options.items() if k not in ("proto",)}
    for ep in endpoints:
        handshake_plan(ep, proto, **plan_options)

    def run(targets: list[Endpoint], timeout: float) -> list[CheckResult]:
        return check(targets, timeout=timeout, **options)

    return run


def _plan(
    endpoints: list[Endpoint],
    *,
    timeout: float | None,
    interval: float,
    mode: str,
    closed: bool,
    attempt_timeout: float,
    clock: Callable[[], float],
    on_attempt: Callable[[float, list[CheckResult]], None] | None,
) -> Generator[Action, Any, WaitResult]:
    if mode not in ("all", "any"):
        raise UsageError(f"mode must be 'all' or 'any', not {mode!r}")
    start = clock()
    deadline = None if timeout is None or timeout <= 0 else start + timeout
    last: list[CheckResult] = [
        CheckResult(ep, None, PortState.ERROR, Reason.NO_RESPONSE) for ep in endpoints
    ]
    pending = list(range(len(endpoints)))
    attempts = 0

    def met(res: CheckResult) -> bool:
        return res.state is not PortState.OPEN if closed else res.ok

    while True:
        now = clock()
        budget = attempt_timeout if deadline is None else min(attempt_timeout, deadline - now)
        answers: list[CheckResult] = yield (
            "check",
            [endpoints[i] for i in pending],
            max(budget, 0.05),
        )
        attempts += 1
        still = []
        for i, res in zip(pending, answers, strict=True):
            last[i] = res
            if not met(res):
                still.append(i)
        pending = still
        now = clock()
        if on_attempt is not None:
            on_attempt(now - start, list(last))
        ready = not pending if mode == "all" else len(pending) < len(endpoints)
        if ready or (deadline is not None and now >= deadline):
            return WaitResult(ready, now - start, attempts, tuple(last), mode, closed)
        pause = interval if deadline is None else min(interval, deadline - now)
        if pause > 0:
            yield ("sleep", pause)


def _finish(result: WaitResult, raise_on_timeout: bool) -> WaitResult:
    if not result.ready and raise_on_timeout:
        left = [
            r for r in result.results if (r.state is PortState.OPEN if result.closed else not r.ok)
        ]
        waiting = ", ".join(f"{r.target} ({r.state}, {r.reason})" for r in left)
        raise WaitTimeout(f"timed out after {result.elapsed_s:.1f} s waiting for {waiting}", result)
    return result


def wait_for_sync(
    targets: Iterable[str | Endpoint] | str | Endpoint,
    *,
    timeout: float | None = 30.0,
    interval: float = 0.5,
    mode: str = "all",
    closed: bool = False,
    attempt_timeout: float = 2.0,
    tls: bool = False,
    http: str | None = None,
    server_name: str | None = None,
    proto: str | None = None,
    expect_body: str | None = None,
    statuses: str | None = None,
    min_days: int | None = None,
    raise_on_timeout: bool = True,
    on_attempt: Callable[[float, list[CheckResult]], None] | None = None,
) -> WaitResult:
    """Block until the targets accept TCP connections (and, with ``proto``, answer its
    readiness handshake as ready); the twin of :func:`wait_for`.

    Meant for scripts and pytest fixtures::

        portkit.wait_for_sync("127.0.0.1:5432", timeout=10)

    Args:
        targets: ``HOST:PORT`` endpoints (TCP).
        timeout: give up after this many seconds (None or 0: never).
        interval: pause between tries.
        mode: ``all`` targets must be ready, or ``any`` one of them.
        closed: wait until the targets do *not* accept connections (a port freed).
        attempt_timeout: seconds one try may take (capped by what is left).
        tls, http, server_name: also require a TLS handshake / an HTTP status < 400.
        proto, expect_body, statuses, min_days: also require a readiness handshake's
            verdict ``ready`` (see :func:`~portkit.probe.check`).
        raise_on_timeout: raise :class:`WaitTimeout` instead of returning not ready.
        on_attempt: called after every try with (elapsed seconds, last results).

    Raises:
        WaitTimeout: time ran out (with ``raise_on_timeout``).
        ParseError, UsageError: bad targets or options.
    """
    endpoints = _endpoints(targets)
    check_request_text("--http", http)
    check_request_text("--sni", server_name)
    run = _checker(
        endpoints,
        closed,
        tls=tls,
        http=http,
        server_name=server_name,
        proto=proto,
        expect_body=expect_body,
        statuses=statuses,
        min_days=min_days,
    )
    gen = _plan(
        endpoints,
        timeout=timeout,
        interval=interval,
        mode=mode,
        closed=closed,
        attempt_timeout=attempt_timeout,
        clock=time.monotonic,
        on_attempt=on_attempt,
    )
    action = next(gen)
    while True:
        try:
            if action[0] == "check":
                action = gen.send(run(action[1], action[2]))
            else:
                time.sleep(action[1])
                action = gen.send(None)
        except StopIteration as stop:
            return _finish(stop.value, raise_on_timeout)


async def wait_for(
    targets: Iterable[str | Endpoint] | str | Endpoint,
    *,
    timeout: float | None = 30.0,  # noqa: ASYNC109 -- the same signature as the sync twin
    interval: float = 0.5,
    mode: str = "all",
    closed: bool = False,
    attempt_timeout: float = 2.0,
    tls: bool = False,
    http: str | None = None,
    server_name: str | None = None,
    proto: str | None = None,
    expect_body: str | None = None,
    statuses: str | None = None,
    min_days: int | None = None,
    raise_on_timeout: bool = True,
    on_attempt: Callable[[float, list[CheckResult]], None] | None = None,
) -> WaitResult:
    """``await`` until the targets accept TCP connections; see :func:`wait_for_sync`.

    Each try runs in the loop's default executor (the connect engine is a blocking
    epoll loop); the pauses are ``asyncio.sleep``, so cancelling the task stops the
    wait at once (a try already running finishes within ``attempt_timeout``).
    """
    import asyncio

    endpoints = _endpoints(targets)
    check_request_text("--http", http)
    check_request_text("--sni", server_name)
    run = _checker(
        endpoints,
        closed,
        tls=tls,
        http=http,
        server_name=server_name,
        proto=proto,
        expect_body=expect_body,
        statuses=statuses,
        min_days=min_days,
    )
    loop = asyncio.get_running_loop()
    gen = _plan(
        endpoints,
        timeout=timeout,
        interval=interval,
        mode=mode,
        closed=closed,
        attempt_timeout=attempt_timeout,
        clock=loop.time,
        on_attempt=on_attempt,
    )
    action = next(gen)
    while True:
        try:
            if action[0] == "check":
                answers = await loop.run_in_executor(None, run, action[1], action[2])
                action = gen.send(answers)
            else:
                await asyncio.sleep(action[1])
                action = gen.send(None)
        except StopIteration as stop:
            return _finish(stop.value, raise_on_timeout)

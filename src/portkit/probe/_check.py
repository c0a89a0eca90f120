"""``check``: is each target reachable from here, now? (I/O, built on the engines.)

Names are resolved on every call (so ``wait`` sees DNS records appear), every
address of a name is tried in the resolver's order until one is open, and the
extra checks (banner, TLS, HTTP) run on the connection the engine kept open.
"""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from portkit.errors import ParseError, UsageError
from portkit.model import Endpoint, Protocol
from portkit.probe._records import CheckResult, PortState, Reason

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import TypeAlias

    from portkit.probe._ready import Options, Spec

    #: Per target: the protocol to speak after the connect and its options, or None.
    Plan: TypeAlias = tuple[Spec, Options] | None

__all__ = ["check", "check_request_text", "handshake_plan", "refuse_port_zero", "resolve"]

#: Which result to report for a name with several addresses when none is open.
_RANK = {
    PortState.OPEN: 0,
    PortState.CLOSED: 1,
    PortState.OPEN_FILTERED: 2,
    PortState.FILTERED: 3,
    PortState.ERROR: 4,
}


def resolve(host: str, family: int = socket.AF_UNSPEC) -> list[str]:
    """The addresses of ``host`` in the resolver's order (an IP literal is itself).

    Raises:
        OSError (socket.gaierror): when the name does not resolve.
    """
    if ":" in host or host.replace(".", "").isdigit():
        return [host]
    infos = socket.getaddrinfo(host, None, family, socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def refuse_port_zero(endpoints: Iterable[Endpoint]) -> None:
    """Port 0 means "any port" to the OS: no service listens there, so a probe of it
    can only fail (and ``wait`` would wait for ever).

    Raises:
        ParseError: naming the first target with port 0.
    """
    for ep in endpoints:
        if ep.port == 0:
            raise ParseError(
                f"{ep}: port 0 cannot be probed (it means 'any port' to the OS)",
                text=str(ep),
                part="0",
                accepted="a port 1-65535",
            )


#: The transports check probes; the others parse as notation but are refused here.
_PROBED = frozenset({Protocol.TCP, Protocol.UDP})


def _endpoints(targets: Iterable[str | Endpoint]) -> list[Endpoint]:
    from portkit.registry import parse_endpoint

    eps = [t if isinstance(t, Endpoint) else parse_endpoint(t) for t in targets]
    for ep in eps:
        if ep.protocol not in _PROBED:
            raise ParseError(
                f"{ep}: check probes TCP and UDP, not {ep.protocol.value.upper()}",
                text=str(ep),
                part=ep.protocol.value,
                accepted="HOST:PORT/tcp or HOST:PORT/udp",
            )
    refuse_port_zero(eps)
    return eps


def check_request_text(flag: str, value: str | None) -> None:
    """Text that goes into a request line, a header or the TLS handshake (``--http``
    PATH, ``--sni``) carries no control character, space or non-ASCII byte: a CR/LF
    would end the line and start a header (or a second request) of the caller's
    choosing (pure).

    Raises:
        ParseError: naming the flag and the first such character.
    """
    if value is None:
        return
    for ch in value:
        if not "!" <= ch <= "~":
            raise ParseError(
                f"{flag} {value!r}: {ch!r} cannot go into a request",
                text=value,
                part=ch,
                accepted="printable ASCII without spaces (percent-encode the rest)",
            )
    if len(value) > 8192:
        raise ParseError(f"{flag}: longer than 8192 characters", text=value[:64])


#: Protocols whose handshake is HTTP: the ones --http PATH, --status and --expect-body
#: shape.
_HTTP_PROTOCOLS = frozenset({"http", "https"})


def handshake_plan(
    ep: Endpoint,
    proto: str | None,
    *,
    tls: bool = False,
    http: str | None = None,
    expect_body: str | None = None,
    statuses: str | None = None,
    min_days: int | None = None,
    server_name: str | None = None,
) -> Plan:
    """Which readiness handshake ``ep`` gets, and with what options (pure).

    ``proto`` ``auto`` picks the protocol of the port's everyday service; a port
    it knows none for gets no handshake (None: a TCP connect is the whole check).

    Raises:
        ParseError: an unknown protocol, a bad status set or body pattern.
        UsageError: options that do not apply to the protocol.
    """
    from portkit.probe._ready import Options, auto_protocol, parse_statuses, protocol
    from portkit.probe._ready._base import DEFAULT_STATUSES

    if proto is None:
        return None
    udp = ep.protocol is Protocol.UDP
    if proto.strip().lower() == "auto":
        found = auto_protocol(ep.port, ep.protocol.value)
        if found is None:
            return None
        spec = protocol(found.name, tls=tls, udp=udp)
        explicit = False
    else:
        spec = protocol(proto, tls=tls, udp=udp)
        explicit = True
    is_http = spec.name in _HTTP_PROTOCOLS
    if explicit and not is_http:
        for flag, value in (
            ("--http", http),
            ("--status", statuses),
            ("--expect-body", expect_body),
        ):
            if value is not None:
                raise UsageError(f"{flag} shapes an HTTP handshake, not --proto {spec.name}")
    if expect_body is not None:
        try:
            re.compile(expect_body)
        except re.error as exc:
            raise ParseError(
                f"bad --expect-body pattern {expect_body!r}: {exc}",
                text=expect_body,
                accepted="a Python regular expression",
            ) from None
    host = ep.address if ep.is_ip else f"{ep.host}:{ep.port}"
    opts = Options(
        host,
        path=http or "/",
        statuses=parse_statuses(statuses) if statuses is not None else DEFAULT_STATUSES,
        expect_body=expect_body if is_http else None,
        min_days=min_days,
        tcp=not udp,
    )
    return spec, opts


def check(
    targets: Iterable[str | Endpoint] | str | Endpoint,
    *,
    timeout: float = 3.0,
    retries: int = 0,
    tls: bool = False,
    http: str | None = None,
    banner: bool = False,
    server_name: str | None = None,
    proto: str | None = None,
    expect_body: str | None = None,
    statuses: str | None = None,
    min_days: int | None = None,
) -> list[CheckResult]:
    """Probe each target (``HOST:PORT[/proto]``), all in parallel.

    Args:
        targets: endpoints in the guide's notation, or :class:`~portkit.Endpoint`.
        timeout: seconds per try (a filtered TCP port costs ``timeout * (retries+1)``);
            a readiness handshake gets as long again after the connect.
        retries: extra tries before a silent port is filtered.
        tls: do a TLS handshake on open TCP ports and report the certificate (with
            ``proto``: speak that protocol's TLS variant, https for http).
        http: GET this path on open TCP ports (over TLS with ``tls``), report the status
            (with ``proto="http"``: the path the handshake asks for).
        banner: report what the service says first, or answers to a probe (UDP: the
            reply to the port's payload).
        server_name: TLS SNI and name to verify (default: the target's host name).
        proto: a readiness handshake after the connect (``postgres``, ``redis``,
            ``http``, ... or ``auto``: the port's everyday service); its verdict is
            ``result.handshake`` and must be ``ready`` for ``result.ok``.
        expect_body: with an HTTP handshake, a regular expression the body must match.
        statuses: with an HTTP handshake, the accepted statuses (``200-299,304``;
            default 200-399).
        min_days: the fewest days the TLS certificate may have left.

    Returns:
        One :class:`CheckResult` per target, in order. ``result.ok`` is True when the
        port is open and every extra check passed.

    Raises:
        ParseError: a target that is not ``HOST:PORT[/proto]``, port 0, an unknown
            protocol, a bad status set or body pattern.
        UsageError: options that do not go together.

    >>> import portkit
    >>> portkit.check(["127.0.0.1:1"])[0].state.value
    'closed'
    """
    if isinstance(targets, str | Endpoint):
        targets = [targets]
    endpoints = _endpoints(targets)
    check_request_text("--http", http)
    check_request_text("--sni", server_name)
    if proto is not None and banner:
        raise UsageError("--banner and --proto both talk to the service: choose one")
    plans = [
        handshake_plan(
            ep,
            proto,
            tls=tls,
            http=http,
            expect_body=expect_body,
            statuses=statuses,
            min_days=min_days,
            server_name=server_name,
        )
        for ep in endpoints
    ]
    addresses = _resolve_all(endpoints)
    results: list[CheckResult | None] = [None] * len(endpoints)
    sockets: dict[int, Any] = {}  # target index -> the open connection kept for extras
    checked: set[int] = set()
    cursor = [0] * len(endpoints)
    extras = tls or http is not None or banner or any(p is not None for p in plans)
    try:
        # Round k probes the k-th address of every target not open yet.
        while True:
            todo = []
            for i in range(len(endpoints)):
                addrs, res = addresses[i], results[i]
                if (
                    isinstance(addrs, list)
                    and cursor[i] < len(addrs)
                    and (res is None or res.state is not PortState.OPEN)
                ):
                    todo.append((i, endpoints[i], addrs[cursor[i]]))
            if not todo:
                break
            found = _probe_round(
                todo, timeout=timeout, retries=retries, keep_open=extras, plans=plans
            )
            for i, _, _ in todo:
                cursor[i] += 1
                new, sock = found[i]
                old = results[i]
                if old is None or _RANK[new.state] < _RANK[old.state]:
                    results[i] = new
                    if sock is not None:
                        sockets[i] = sock
                elif sock is not None:
                    sock.close()
        checked.update(sockets)
        if sockets:

            def run(i: int) -> CheckResult:
                res = results[i]
                assert res is not None
                return _extras(
                    res,
                    sockets.pop(i),
                    tls=tls,
                    http=http,
                    banner=banner,
                    server_name=server_name,
                    timeout=timeout,
                    plan=plans[i],
                    min_days=min_days,
                )

            with ThreadPoolExecutor(max_workers=min(64, len(sockets))) as pool:
                for i, res in zip(list(sockets), pool.map(run, list(sockets)), strict=True):
                    results[i] = res
    finally:
        for sock in sockets.values():
            sock.close()
    out: list[CheckResult] = []
    for i, ep in enumerate(endpoints):
        res = results[i]
        if (
            extras
            and res is not None
            and res.state is PortState.OPEN
            and ep.protocol is not Protocol.UDP
            and i not in checked
        ):
            # Accepted, then reset before the checks could run: not a pass.
            res = CheckResult(
                ep,
                res.address,
                res.state,
                res.reason,
                res.rtt_ms,
                error="connection reset before the banner/TLS/HTTP checks",
            )
        if res is None:
            error = addresses[i] if isinstance(addresses[i], str) else "no address"
            res = CheckResult(ep, None, PortState.ERROR, Reason.UNRESOLVED, error=str(error))
        out.append(res)
    return out


def _resolve_all(endpoints: list[Endpoint]) -> list[list[str] | str]:
    """Per endpoint: its addresses, or the resolver's error message."""

    def one(ep: Endpoint) -> list[str] | str:
        try:
            found = resolve(ep.host)
        except OSError as exc:
            return f"cannot resolve {ep.host}: {exc.strerror or exc}"
        return found or f"no address for {ep.host}"

    names = [ep for ep in endpoints if not ep.is_ip]
    if len(names) <= 1:
        return [one(ep) for ep in endpoints]
    with ThreadPoolExecutor(max_workers=min(16, len(names))) as pool:
        return list(pool.map(one, endpoints))


def _probe_round(
    items: list[tuple[int, Endpoint, str]],
    *,
    timeout: float,
    retries: int,
    keep_open: bool,
    plans: list[Plan],
) -> dict[int, tuple[CheckResult, Any]]:
    from portkit.probe._engine import connect_scan
    from portkit.probe._payloads import summarize_banner, udp_payload_for
    from portkit.probe._udp_engine import udp_scan

    out: dict[int, tuple[CheckResult, Any]] = {}
    by_key = {i: ep for i, ep, _ in items}

    def on_tcp(
        key: Any, ip: str, port: int, state: PortState, reason: Reason, rtt: float | None, sock: Any
    ) -> None:
        out[key] = (CheckResult(by_key[key], ip, state, reason, _ms(rtt)), sock)

    def on_udp(
        key: Any,
        ip: str,
        port: int,
        state: PortState,
        reason: Reason,
        rtt: float | None,
        data: bytes | None,
    ) -> None:
        plan = plans[key]
        verdict = None
        if plan is not None and data is not None:
            from portkit.probe._ready import judge_datagram

            verdict = judge_datagram(plan[0], plan[1], data).timed(_ms(rtt))
        text = summarize_banner(data) if keep_open and data is not None else None
        if plan is not None:
            text = None
        result = CheckResult(
            by_key[key], ip, state, reason, _ms(rtt), banner=text, handshake=verdict
        )
        out[key] = (result, None)

    def payload(i: int, port: int) -> bytes:
        plan = plans[i]
        codec = plan[0].codec(plan[1]) if plan is not None else None
        return codec.start() if codec is not None else udp_payload_for(port)

    tcp = [(i, ip, ep.port) for i, ep, ip in items if ep.protocol is not Protocol.UDP]
    udp = [
        (i, ip, ep.port, payload(i, ep.port)) for i, ep, ip in items if ep.protocol is Protocol.UDP
    ]
    if tcp:
        connect_scan(
            tcp,
            on_tcp,
            timeout=timeout,
            retries=retries,
            keep_open=keep_open,
            refine_refused=True,
            concurrency=min(len(tcp), 512),
        )
    if udp:
        udp_scan(udp, on_udp, timeout=timeout, retries=retries, concurrency=min(len(udp), 256))
    return out


def _ms(rtt: float | None) -> float | None:
    return None if rtt is None else round(rtt * 1000, 3)


def _extras(
    res: CheckResult,
    sock: socket.socket,
    *,
    tls: bool,
    http: str | None,
    banner: bool,
    server_name: str | None,
    timeout: float,
    plan: Plan = None,
    min_days: int | None = None,
) -> CheckResult:
    """Banner, TLS and HTTP, or the readiness handshake, on the open connection ``sock``
    (closed afterwards)."""
    from portkit.errors import ParseError
    from portkit.probe import _session

    ep, ip = res.target, res.address
    assert ip is not None
    if plan is not None:
        return _handshake(res, sock, plan, server_name=server_name, timeout=timeout)
    tls_info = None
    status = None
    text = None
    error = ""
    conn: Any = sock
    try:
        if banner and not tls:
            text = _session.grab_banner(conn, ep.port, min(timeout, _session.BANNER_WAIT))
            if http is not None:  # the banner probe used this connection up
                conn.close()
                conn = socket.create_connection((ip, ep.port), timeout=timeout)
        if tls:
            name = server_name or (None if ep.is_ip else ep.host)
            conn, tls_info = _session.tls_handshake(
                conn, name, timeout, lambda: socket.create_connection((ip, ep.port), timeout)
            )
            days = tls_info.days_left
            if min_days is not None and (days is None or days < min_days):
                error = f"the certificate has {days} days left (--min-days {min_days})"
            if banner and http is None:
                text = _session.grab_banner(conn, ep.port, min(timeout, _session.BANNER_WAIT))
        if http is not None:
            host = ep.address if ep.is_ip else f"{ep.host}:{ep.port}"
            status = _session.http_status(conn, host, http, timeout)
    except ParseError as exc:
        error = str(exc)
    except OSError as exc:  # ssl.SSLError is an OSError too
        what = "TLS handshake" if tls and tls_info is None else "HTTP request" if http else "read"
        error = f"{what} failed: {getattr(exc, 'reason', None) or exc.strerror or exc}"
    finally:
        conn.close()
    return CheckResult(
        ep,
        ip,
        res.state,
        res.reason,
        res.rtt_ms,
        tls=tls_info,
        http_status=status,
        banner=text,
        error=error,
    )


def _handshake(
    res: CheckResult,
    sock: socket.socket,
    plan: tuple[Spec, Options],
    *,
    server_name: str | None,
    timeout: float,
) -> CheckResult:
    """The readiness handshake of ``plan`` on the open connection ``sock``."""
    from portkit.probe._ready._driver import handshake

    ep, ip = res.target, res.address
    assert ip is not None
    spec, opts = plan
    try:
        verdict, tls_info = handshake(
            sock,
            spec,
            opts,
            timeout=timeout,
            server_name=server_name or (None if ep.is_ip else ep.host),
            reconnect=lambda: socket.create_connection((ip, ep.port), timeout),
        )
    finally:
        sock.close()
    status = (
        verdict.code if spec.name in _HTTP_PROTOCOLS and isinstance(verdict.code, int) else None
    )
    return CheckResult(
        ep,
        ip,
        res.state,
        res.reason,
        res.rtt_ms,
        tls=tls_info,
        http_status=status,
        handshake=verdict,
    )

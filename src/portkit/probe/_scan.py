"""``scan``: many ports of many hosts, with nmap's verdicts (I/O, built on the engines).

Planning is pure (``_targets``, ``_ports``); this module resolves names once,
orders the probes (hosts in groups of 256, ports in the order given within a
group, so no single host is hammered while others wait), runs the engines, counts
every verdict, keeps the results asked for, and grabs banners of open ports.
"""

from __future__ import annotations

import socket
import time
from concurrent.futures import ThreadPoolExecutor
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from portkit.errors import ProbeError, UsageError
from portkit.probe._ports import PortPlan, parse_port_spec
from portkit.probe._records import PortResult, PortState, Reason, ScanReport
from portkit.probe._targets import TargetSpec, parse_targets
from portkit.registry import service_names, top_ports

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Iterator

__all__ = ["DEFAULT_TOP", "plan_ports", "scan"]

#: Ports scanned when none are given (nmap scans its top 1000 too).
DEFAULT_TOP = 1000
_HOST_GROUP = 256
_BANNER_WORKERS = 32


def plan_ports(
    ports: str | Iterable[int] | None, *, udp: bool = False, top: int | None = None
) -> PortPlan:
    """The ports to scan: a ``-p`` spec, a list, ``--top N``, or the top 1000.

    >>> plan_ports("22,80").tcp
    (22, 80)
    >>> plan_ports([53], udp=True).udp
    (53,)
    """
    default = "udp" if udp else "tcp"
    if ports is not None and top is not None:
        raise UsageError("give ports (-p) or --top, not both")
    if isinstance(ports, str):
        return parse_port_spec(ports, default=default)
    if ports is not None:
        from portkit.model import parse_port

        listed = tuple(dict.fromkeys(parse_port(p) for p in ports))
        return PortPlan(udp=listed) if udp else PortPlan(tcp=listed)
    chosen = top_ports(top if top is not None else DEFAULT_TOP, default)
    return PortPlan(udp=chosen) if udp else PortPlan(tcp=chosen)


def _resolve(
    specs: Iterable[TargetSpec], ipv6: bool
) -> tuple[list[str], dict[str, str], list[str]]:
    """Addresses to scan (no repeats), address -> name given, and resolver notes."""
    seen: dict[str, None] = {}
    names: dict[str, str] = {}
    notes: list[str] = []
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    for spec in specs:
        name = spec.hostname
        if name is None:
            seen.update(dict.fromkeys(spec.addresses()))
            continue
        try:
            infos = socket.getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
        except OSError as exc:
            notes.append(f"cannot resolve {name}: {exc.strerror or exc}")
            continue
        addrs = [str(i[4][0]) for i in infos]
        preferred = [str(i[4][0]) for i in infos if i[0] == family]
        addr = (preferred or addrs)[0]
        seen[addr] = None
        names.setdefault(addr, name)
        if len(set(addrs)) > 1:
            others = ", ".join(sorted(set(addrs) - {addr}))
            notes.append(f"{name} has other addresses, not scanned: {others}")
    return list(seen), names, notes


def _groups(hosts: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(hosts), _HOST_GROUP):
        yield hosts[i : i + _HOST_GROUP]


def _jobs(hosts: list[str], ports: tuple[int, ...]) -> Iterator[tuple[None, str, int]]:
    for group in _groups(hosts):
        for port in ports:
            for host in group:
                yield None, host, port


def scan(
    targets: str | Iterable[str],
    ports: str | Iterable[int] | None = None,
    *,
    udp: bool = False,
    top: int | None = None,
    concurrency: int | None = None,
    rate: float | None = None,
    timeout: float | None = None,
    retries: int = 1,
    banner: bool = False,
    keep: Collection[str] | None = None,
    ipv6: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> ScanReport:
    """Scan ports of hosts with a TCP connect scan (or UDP with ``udp``).

    Args:
        targets: host names, IPs, CIDRs, ranges (``_targets``); a string is one target.
        ports: a ``-p`` spec (``"22,80,8000-8100"``, ``"-"``, ``"U:53,T:22"``) or ports.
        udp: scan UDP instead of TCP (ports with ``T:``/``U:`` prefixes choose for
            themselves).
        top: the ``top`` most common ports of portkit's registry (default: 1000).
        concurrency: probes in flight (default 1000 TCP / 256 UDP, under RLIMIT_NOFILE).
        rate: at most this many probes per second.
        timeout: seconds per try; None adapts it per host from measured RTTs.
        retries: extra tries before a silent port is called filtered / open|filtered.
        banner: grab a banner from open TCP ports; keep the reply of open UDP ports.
        keep: states whose per-port results to keep (default: all). Counts cover all.
        ipv6: scan a name's IPv6 address (default: its IPv4 one).
        progress: called with (probes done, probes planned) a few times a second.

    Returns:
        A :class:`ScanReport` with results sorted by host, protocol and port.

    Raises:
        ParseError: bad targets or ports. ProbeError: no target resolved.
    """
    specs = parse_targets([targets] if isinstance(targets, str) else targets)
    plan = plan_ports(ports, udp=udp, top=top)
    hosts, names, notes = _resolve(specs, ipv6)
    if not hosts:
        raise ProbeError("nothing to scan: " + "; ".join(notes or ["no targets"]))
    keep_states = None if keep is None else frozenset(PortState(k) for k in keep)
    counts: dict[tuple[str, str, PortState, Reason], int] = {}
    kept: list[PortResult] = []
    replies: dict[tuple[str, int], bytes] = {}
    udp_closed: dict[str, list[int]] = {}  # a few ICMP-closed ports per host: canaries
    total = len(hosts) * len(plan)
    done_before = 0
    started = time.monotonic()

    def make_cb(proto: str) -> Callable[..., None]:
        # Every port kept: name them as they come (the whole registry is needed anyway).
        # A few kept: name them at the end, looking up only those ports.
        keep_all = keep_states is None
        names = service_names(getattr(plan, proto), proto) if keep_all else {}
        udp = proto == "udp"

        # Called once per port (65,535 times for -p-): kept lean on purpose.
        def cb(
            key: Any,
            ip: str,
            port: int,
            state: PortState,
            reason: Reason,
            rtt: float | None,
            extra: Any,
        ) -> None:
            k = (ip, proto, state, reason)
            counts[k] = counts.get(k, 0) + 1
            if udp and reason is Reason.PORT_UNREACH:
                seen = udp_closed.setdefault(ip, [])
                if len(seen) < 3:
                    seen.append(port)
            if keep_all or state in keep_states:  # type: ignore[operator]
                ms = None if rtt is None else int(rtt * 1e6 + 0.5) / 1000
                kept.append(
                    PortResult(ip, port, proto, state, reason, names.get(port, ""), None, ms)
                )
                if udp and extra:
                    replies[(ip, port)] = extra

        return cb

    def prog(done: int) -> None:
        if progress is not None:
            progress(done_before + done, total)

    from portkit.probe._engine import connect_scan
    from portkit.probe._udp_engine import udp_scan

    if plan.tcp:
        connect_scan(
            _jobs(hosts, plan.tcp),
            make_cb("tcp"),
            concurrency=concurrency,
            rate=rate,
            timeout=timeout,
            retries=retries,
            progress=prog,
        )
        done_before += len(hosts) * len(plan.tcp)
    if plan.udp:
        from portkit.probe._payloads import udp_payload_for

        payloads = {p: udp_payload_for(p) for p in plan.udp}
        udp_jobs = ((k, h, p, payloads[p]) for k, h, p in _jobs(hosts, plan.udp))
        udp_scan(
            udp_jobs,
            make_cb("udp"),
            concurrency=concurrency,
            rate=rate,
            timeout=timeout,
            retries=retries,
            progress=prog,
        )
        notes.extend(_icmp_ratelimit_notes(counts, udp_closed, timeout))
    if keep_states is not None:
        kept = _named(kept)
    if len(hosts) == 1 and len(plan.items()) == 1:
        kept.sort(key=attrgetter("port"))
    else:
        order = {h: i for i, h in enumerate(hosts)}
        kept.sort(key=lambda r: (order[r.host], r.protocol, r.port))
    if banner:
        kept = _with_banners(kept, replies, timeout)
    return ScanReport(
        tuple(kept), dict(counts), names, tuple(notes), time.monotonic() - started, total
    )


def _named(results: list[PortResult]) -> list[PortResult]:
    """``results`` with their service names (looked up for these ports only)."""
    out: list[PortResult] = []
    for proto in ("tcp", "udp"):
        mine = [r for r in results if r.protocol == proto]
        if not mine:
            continue
        names = service_names({r.port for r in mine}, proto)
        out.extend(
            PortResult(
                r.host,
                r.port,
                r.protocol,
                r.state,
                r.reason,
                names.get(r.port, ""),
                r.banner,
                r.rtt_ms,
            )
            for r in mine
        )
    return out


def _with_banners(
    results: list[PortResult], replies: dict[tuple[str, int], bytes], timeout: float | None
) -> list[PortResult]:
    from portkit.probe._payloads import summarize_banner
    from portkit.probe._session import BANNER_WAIT, banner_of

    wait = min(timeout or BANNER_WAIT, BANNER_WAIT)
    todo = [i for i, r in enumerate(results) if r.state is PortState.OPEN]
    out = list(results)
    tcp = [i for i in todo if results[i].protocol == "tcp"]
    for i in todo:
        r = results[i]
        if r.protocol == "udp" and (r.host, r.port) in replies:
            out[i] = r.with_banner(summarize_banner(replies[(r.host, r.port)]))
    if tcp:
        with ThreadPoolExecutor(max_workers=min(_BANNER_WORKERS, len(tcp))) as pool:
            texts = pool.map(lambda i: banner_of(results[i].host, results[i].port, wait), tcp)
            for i, text in zip(tcp, texts, strict=True):
                out[i] = results[i].with_banner(text or None)
    return out


def _icmp_ratelimit_notes(
    counts: dict[tuple[str, str, PortState, Reason], int],
    udp_closed: dict[str, list[int]],
    timeout: float | None,
) -> list[str]:
    """Say so when a host's ICMP rate limit may have turned closed ports open|filtered.

    Linux answers at most a burst of 6 ICMP errors, then about 1 a second, per peer
    (net.ipv4.icmp_ratelimit). For each host that left UDP ports silent *and*
    answered others with port-unreachable, probe known-closed ports up to seven times
    in a row: if one of them now stays silent, the host is rationing its ICMP errors
    and the silent ports may well be closed.
    """
    from portkit.probe._udp_engine import udp_scan

    notes: list[str] = []
    hosts = dict.fromkeys(h for h, p, _, _ in counts if p == "udp")
    for host in hosts:
        silent = counts.get((host, "udp", PortState.OPEN_FILTERED, Reason.NO_RESPONSE), 0)
        closed = udp_closed.get(host, [])
        if not silent or not closed:
            continue
        answered: list[bool] = []
        # Linux's per-peer bucket holds at most 6 tokens: 7 answers in a row cannot
        # all come from a rationing host.
        for i in range(7):
            # One at a time: the same port twice in one run would be probed once.
            udp_scan(
                [(None, host, closed[i % len(closed)], b"")],
                lambda *r, out=answered: out.append(r[4] is Reason.PORT_UNREACH),
                timeout=max(timeout or 0.0, 0.5),
                retries=0,
            )
            if not answered[-1]:
                break
        if not all(answered):
            notes.append(
                f"{host}: ICMP port-unreachable answers are rate limited (Linux sends a "
                f"burst of 6, then about 1 a second): {silent} UDP ports reported "
                "open|filtered may be closed; scan fewer ports or lower --rate"
            )
    return notes

"""check, scan and wait results as tables, JSON objects and nmap's grepable lines.

JSON keys (documented in docs/reach.md):

* check: ``target host port protocol address state reason rtt_ms ok tls http_status
  banner error handshake`` (``tls`` is null or an object, see :meth:`TlsInfo.as_dict`;
  ``handshake`` null or ``proto verdict reason code detail rtt_ms``).
* scan: a list of ``host port protocol state reason service banner rtt_ms``.
* wait: ``ready elapsed_s attempts mode closed targets`` (``targets``: check objects).
"""

from __future__ import annotations

from portkit.probe._records import PortState
from portkit.render import Style, safe, table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from typing import Any

    from portkit.probe._ready import Verdict
    from portkit.probe._records import CheckResult, PortResult, ScanReport, TlsInfo, WaitResult

__all__ = [
    "check_json",
    "check_table",
    "progress_line",
    "scan_grepable",
    "scan_json",
    "scan_json_text",
    "scan_summary",
    "scan_table",
    "wait_json",
    "wait_lines",
]

_STATE_STYLE = {
    PortState.OPEN: "green",
    PortState.CLOSED: "red",
    PortState.FILTERED: "yellow",
    PortState.OPEN_FILTERED: "yellow",
    PortState.ERROR: "red",
}


def _state(style: Style, state: PortState) -> str:
    return str(getattr(style, _STATE_STYLE[state])(state.value))


def _ms(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def _tls_cell(t: TlsInfo | None) -> str | None:
    if t is None:
        return None
    parts = [t.version]
    if t.subject:
        parts.append(t.subject)
    if t.not_after:
        left = f", {t.days_left} days left" if t.days_left is not None else ""
        parts.append(f"expires {t.not_after[:10]}{left}")
    parts.append("verified" if t.verified else f"not verified ({t.verify_error or 'unknown'})")
    return safe("; ".join(parts))  # the subject is the server's text


#: Readiness verdict -> the style it is shown in.
_VERDICT_STYLE = {"ready": "green", "not-ready": "red", "not-this-protocol": "yellow"}


def _verdict_cell(style: Style, v: Verdict | None) -> str | None:
    if v is None:
        return None
    return str(getattr(style, _VERDICT_STYLE[v.state.value])(f"{v.proto} {v.state.value}"))


def _says(v: Verdict | None) -> str | None:
    """What the server said, and what else is worth knowing, on one line."""
    if v is None:
        return None
    parts = [p for p in (v.reason, v.detail) if p]
    if v.rtt_ms is not None:
        parts.append(f"{v.rtt_ms:.1f} ms")
    return safe("; ".join(parts)) or None  # the reason and detail quote the server


def check_table(results: Sequence[CheckResult], style: Style, width: int | None = None) -> str:
    """TARGET ADDRESS STATE REASON MS, plus READY (the handshake's verdict) and SAYS,
    HTTP, TLS, BANNER and NOTE when present."""
    headers = ["TARGET", "ADDRESS", "STATE", "REASON", "MS"]
    extra: list[tuple[str, Any]] = [
        ("READY", lambda r: _verdict_cell(style, r.handshake)),
        ("SAYS", lambda r: _says(r.handshake)),
        ("HTTP", lambda r: r.http_status if r.handshake is None else None),
        ("TLS", lambda r: _tls_cell(r.tls)),
        ("BANNER", lambda r: None if r.banner is None else safe(r.banner)),
        ("NOTE", lambda r: safe(r.error) if r.error else None),
    ]
    shown = [(h, get) for h, get in extra if any(get(r) not in (None, "") for r in results)]
    headers += [h for h, _ in shown]
    rows = []
    for r in results:
        row: list[object] = [
            str(r.target),
            r.address,
            _state(style, r.state),
            r.reason.value,
            _ms(r.rtt_ms),
        ]
        row += [get(r) for _, get in shown]
        rows.append(row)
    return table(rows, headers, style=style, width=width, right=[4])


def _check_obj(r: CheckResult) -> dict[str, Any]:
    return {
        "target": str(r.target),
        "host": r.target.host,
        "port": r.target.port,
        "protocol": r.target.protocol.value,
        "address": r.address,
        "state": r.state.value,
        "reason": r.reason.value,
        "rtt_ms": r.rtt_ms,
        "ok": r.ok,
        "tls": r.tls.as_dict() if r.tls is not None else None,
        "http_status": r.http_status,
        "banner": r.banner,
        "error": r.error or None,
        "handshake": r.handshake.as_dict() if r.handshake is not None else None,
    }


def check_json(results: Sequence[CheckResult]) -> list[dict[str, Any]]:
    return [_check_obj(r) for r in results]


# --- scan ---------------------------------------------------------------------------------


def _shown(report: ScanReport, states: Collection[PortState] | None) -> list[PortResult]:
    return [r for r in report.results if states is None or r.state in states]


def scan_table(
    report: ScanReport,
    style: Style,
    *,
    states: Collection[PortState] | None = None,
    banner: bool = False,
    width: int | None = None,
) -> str:
    """One row per shown port: HOST PORT STATE SERVICE REASON RTT_MS [BANNER]."""
    rows: list[list[object]] = []
    for r in _shown(report, states):
        name = report.hostnames.get(r.host)
        host = f"{r.host} ({safe(name)})" if name else r.host  # a PTR record's text
        row: list[object] = [
            host,
            f"{r.port}/{r.protocol}",
            _state(style, r.state),
            r.service or None,
            r.reason.value,
            _ms(r.rtt_ms),
        ]
        if banner:
            row.append(None if r.banner is None else safe(r.banner))
        rows.append(row)
    headers = ["HOST", "PORT", "STATE", "SERVICE", "REASON", "RTT_MS"]
    if banner:
        headers.append("BANNER")
    if not rows:
        return ""
    return table(rows, headers, style=style, width=width, right=[5])


def scan_summary(report: ScanReport, states: Collection[PortState] | None = None) -> str:
    """Per host, the count of every state (and the reasons of the ones not shown)."""
    lines = []
    for host in report.hosts:
        per: dict[tuple[str, PortState], dict[str, int]] = {}
        total = 0
        for (h, proto, state, reason), n in report.counts.items():
            if h != host:
                continue
            total += n
            per.setdefault((proto, state), {})
            per[(proto, state)][reason.value] = per[(proto, state)].get(reason.value, 0) + n
        parts = []
        for (proto, state), reasons in sorted(per.items(), key=lambda kv: (kv[0][0], kv[0][1])):
            n = sum(reasons.values())
            why = ", ".join(f"{k} {v}" if len(reasons) > 1 else k for k, v in reasons.items())
            hidden = states is not None and state not in states
            parts.append(f"{n} {state.value} {proto}" + (f" ({why})" if hidden else ""))
        name = report.hostnames.get(host)
        label = f"{host} ({name})" if name else host
        lines.append(f"{label}: {total} ports: " + "; ".join(parts))
    lines.append(
        f"scanned {len(report.hosts)} host(s), {report.probes} ports in {report.elapsed_s:.2f} s"
    )
    return "\n".join(lines)


def scan_json(
    report: ScanReport, states: Collection[PortState] | None = None
) -> list[dict[str, Any]]:
    return [
        {
            "host": r.host,
            "port": r.port,
            "protocol": r.protocol,
            "state": r.state.value,
            "reason": r.reason.value,
            "service": r.service or None,
            "banner": r.banner,
            "rtt_ms": r.rtt_ms,
        }
        for r in _shown(report, states)
    ]


def scan_json_text(report: ScanReport, states: Collection[PortState] | None = None) -> str:
    """:func:`scan_json` as one JSON document, one object per line.

    Written out by hand because a full range is 65,535 objects: ``json.dumps(...,
    indent=2)`` takes the pure-Python encoder (0.8 s here); this takes about 0.1 s.
    Every string goes through ``json.dumps``, so the text is valid JSON.
    """
    import json

    enc = json.dumps
    hosts: dict[str, str] = {}
    middles: dict[tuple[str, PortState, object, str], str] = {}
    lines = []
    for r in _shown(report, states):
        host = hosts.get(r.host)
        if host is None:
            host = hosts[r.host] = enc(r.host)
        key = (r.protocol, r.state, r.reason, r.service)
        middle = middles.get(key)
        if middle is None:
            middle = middles[key] = (
                f'"protocol": {enc(r.protocol)}, "state": {enc(r.state.value)}, '
                f'"reason": {enc(r.reason.value)}, "service": {enc(r.service or None)}'
            )
        banner = "null" if r.banner is None else enc(r.banner, ensure_ascii=False)
        rtt = "null" if r.rtt_ms is None else repr(float(r.rtt_ms))
        lines.append(
            f'{{"host": {host}, "port": {r.port}, {middle}, "banner": {banner}, "rtt_ms": {rtt}}}'
        )
    return "[\n  " + ",\n  ".join(lines) + "\n]" if lines else "[]"


def _grep_field(text: str | None) -> str:
    # nmap's grepable format separates fields with '/' and ports with ','.
    return (text or "").replace("/", "|").replace(",", ";").replace("\t", " ")


def scan_grepable(report: ScanReport, states: Collection[PortState] | None = None) -> str:
    """nmap's ``-oG`` lines: ``Host: IP (name)<TAB>Ports: p/state/proto//service//banner/``."""
    by_host: dict[str, list[PortResult]] = {h: [] for h in report.hosts}
    for r in _shown(report, states):
        by_host.setdefault(r.host, []).append(r)
    lines = [f"# portkit scan: {len(report.hosts)} host(s), {report.probes} ports"]
    for host, ports in by_host.items():
        name = report.hostnames.get(host, "")
        fields = [f"Host: {host} ({name})"]
        if ports:
            fields.append(
                "Ports: "
                + ", ".join(
                    f"{r.port}/{r.state.value}/{r.protocol}//{_grep_field(r.service)}//"
                    f"{_grep_field(r.banner)}/"
                    for r in ports
                )
            )
        hidden: dict[PortState, int] = {}
        for (h, _, state, _), n in report.counts.items():
            if h == host and states is not None and state not in states:
                hidden[state] = hidden.get(state, 0) + n
        if hidden:
            state, n = max(hidden.items(), key=lambda kv: kv[1])
            fields.append(f"Ignored State: {state.value} ({n})")
        lines.append("\t".join(fields))
    return "\n".join(lines)


def progress_line(done: int, total: int, elapsed: float) -> str:
    """``scanned 12000/65535 (18%), 24,000 ports/s, 0.5 s``"""
    pct = 100.0 * done / total if total else 100.0
    rate = done / elapsed if elapsed > 0 else 0.0
    return f"scanned {done}/{total} ({pct:.0f}%), {rate:,.0f} ports/s, {elapsed:.1f} s"


# --- wait ---------------------------------------------------------------------------------


def wait_json(result: WaitResult) -> dict[str, Any]:
    return {
        "ready": result.ready,
        "elapsed_s": round(result.elapsed_s, 3),
        "attempts": result.attempts,
        "mode": result.mode,
        "closed": result.closed,
        "targets": check_json(result.results),
    }


def wait_lines(result: WaitResult) -> list[str]:
    """One line per target: ready or what it said last (the server's words escaped)."""
    want = "closed" if result.closed else "open"
    out: list[str] = []
    for r in result.results:
        met = r.state is not PortState.OPEN if result.closed else r.ok
        hs = r.handshake
        if met:
            what = want if not result.closed else r.state.value
            if hs is not None:
                what = f"ready ({hs.proto}{': ' + hs.detail if hs.detail else ''})"
            out.append(f"{r.target} is {what} after {result.elapsed_s:.1f} s")
        elif hs is not None and r.state is PortState.OPEN:
            out.append(f"{r.target} is open but {hs.state.value} ({hs.proto}: {_says(hs)})")
        else:
            why = f"{r.state.value}, {r.reason.value}" + (f", {r.error}" if r.error else "")
            out.append(f"{r.target} is not {want} ({why})")
    return [safe(line) for line in out]

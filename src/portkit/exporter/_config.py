"""What the exporter serves and watches, parsed from its flags. Pure: no I/O.

>>> parse_listen("127.0.0.1:9636")
('127.0.0.1', 9636)
>>> parse_listen("9700"), parse_listen("[::1]:9636")
(('127.0.0.1', 9700), ('::1', 9636))
>>> [str(d) for d in parse_destinations("10.0.0.5:5432, [fd00::7]:443")]
['10.0.0.5:5432/tcp', '[fd00::7]:443/tcp']
"""

from __future__ import annotations

from portkit.errors import ParseError
from portkit.model import BindScope, Endpoint, Protocol, bind_scope, parse_port

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "LISTEN_FORMS",
    "is_loopback",
    "parse_destinations",
    "parse_listen",
]

#: The exporter's fixed default port. 9636 is marked FREE in the Prometheus wiki's
#: "Default port allocations" (our copy: data/prometheus-exporter-ports.csv), lies in an
#: unassigned IANA block (9633-9639) and is no everyday default in the curated DevOps
#: list; the two lower FREE slots (9612, 9632) are IANA-assigned. A fixed port keeps the
#: ``instance`` label, and so the series, stable across restarts.
DEFAULT_PORT = 9636
#: Loopback unless told otherwise (DESIGN: "safe defaults").
DEFAULT_HOST = "127.0.0.1"
LISTEN_FORMS = "PORT, IP:PORT or [IPv6]:PORT, e.g. 127.0.0.1:9636"


def parse_listen(text: str) -> tuple[str, int]:
    """Parse ``--listen``: ``PORT``, ``IP:PORT``, ``[IPv6]:PORT`` or ``:PORT`` (all IPv4).

    ``0.0.0.0`` and ``::`` (all interfaces) are accepted but the caller says so aloud.

    >>> parse_listen(":9636"), parse_listen("0.0.0.0:80")
    (('0.0.0.0', 9636), ('0.0.0.0', 80))

    Raises:
        ParseError: not an IP literal and a port.
    """
    raw = text.strip()
    if raw.isdigit():
        return DEFAULT_HOST, parse_port(raw)
    if raw.startswith(":") and raw[1:].isdigit():
        return "0.0.0.0", parse_port(raw[1:])
    try:
        ep = Endpoint.parse(raw)
    except ParseError as exc:
        raise ParseError(
            f"bad --listen address {text!r}: {exc.message}", text=text, accepted=LISTEN_FORMS
        ) from None
    if ep.protocol.value != "tcp":
        raise ParseError(
            f"--listen {text!r}: the exporter serves HTTP, over TCP only",
            text=text,
            accepted=LISTEN_FORMS,
        )
    if not ep.is_ip:
        raise ParseError(
            f"--listen needs an IP address, not the name {ep.host!r}",
            text=text,
            part=ep.host,
            accepted=LISTEN_FORMS,
        )
    return ep.host, ep.port


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP literal) reaches only this machine.

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    return bind_scope(host) is BindScope.LOOPBACK


def parse_destinations(text: str) -> tuple[Endpoint, ...]:
    """Parse ``--dest``: a comma-separated list of ``IP:PORT`` destinations.

    Each one becomes a ``destination`` label value, so only IP literals are taken
    (a name could resolve differently between scrapes) and duplicates are dropped.

    Raises:
        ParseError: an item that is not ``IP:PORT`` (TCP only).
    """
    out: dict[Endpoint, None] = {}
    accepted = "IP:PORT[,IP:PORT...], e.g. 10.0.0.5:5432,[fd00::7]:443"
    for item in text.split(","):
        item = item.strip()
        if not item:
            raise ParseError(f"empty item in --dest {text!r}", text=text, accepted=accepted)
        try:
            ep = Endpoint.parse(item)
        except ParseError as exc:
            raise ParseError(
                f"bad --dest {item!r}: {exc.message}", text=text, part=item, accepted=accepted
            ) from None
        if not ep.is_ip:
            raise ParseError(
                f"--dest needs an IP address, not the name {ep.host!r}",
                text=text,
                part=item,
                accepted=accepted,
            )
        if ep.protocol is not Protocol.TCP:
            raise ParseError(
                f"--dest {item!r}: ephemeral port use is counted for TCP only",
                text=text,
                part=item,
                accepted=accepted,
            )
        out[ep] = None
    return tuple(out)

"""Layer 1 of ``why``: what a name resolves to, from where the client stands.

A name is looked up the way the client would: first its hosts file (the one in its
mount namespace: ``/proc/PID/root/etc/hosts`` for a process or container,
``/etc/netns/NAME/hosts`` for an ``ip netns`` namespace, which ``ip netns exec``
mounts over ``/etc/hosts``), then the resolver. The order of the answers matters as
much as the answers: clients try the first address first, and the default address
selection (RFC 6724) puts ``::1`` before ``127.0.0.1``, the classic "localhost
resolves to ::1 first but the server listens on 127.0.0.1 only".

:func:`parse_hosts` and :func:`rfc6724_order` are pure.
"""

from __future__ import annotations

import ipaddress

from portkit.errors import PortkitError
from portkit.model import _Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from portkit.why._context import Place

__all__ = ["Answer", "parse_hosts", "resolve_as", "rfc6724_order"]

#: The RFC 6724 section 2.1 default policy table: (prefix, precedence), longest first.
_POLICY = [
    (ipaddress.ip_network("::1/128"), 50),
    (ipaddress.ip_network("::ffff:0:0/96"), 35),
    (ipaddress.ip_network("2002::/16"), 30),
    (ipaddress.ip_network("2001::/32"), 5),
    (ipaddress.ip_network("fc00::/7"), 3),
    (ipaddress.ip_network("::/96"), 1),
    (ipaddress.ip_network("fec0::/10"), 1),
    (ipaddress.ip_network("3ffe::/16"), 1),
    (ipaddress.ip_network("::/0"), 40),
]
#: hosts files larger than this are read only this far (a hosts file is a few KB).
MAX_HOSTS_FILE = 4 * 1024 * 1024


class Answer(_Record):
    """The addresses of a name in the order a client tries them, and where they came
    from: ``literal`` (an IP), ``hosts`` (which file) or ``resolver``."""

    __slots__ = ("name", "addresses", "source", "detail")
    name: str
    addresses: tuple[str, ...]
    source: str
    detail: str

    def __init__(self, name: str, addresses: tuple[str, ...], source: str, detail: str) -> None:
        self._init(name=name, addresses=addresses, source=source, detail=detail)


def parse_hosts(text: str) -> dict[str, list[str]]:
    """A hosts file: ``{lower-case name: [address, ...]}`` in file order.

    >>> parse_hosts("127.0.0.1 localhost\\n::1 localhost ip6-localhost # v6\\n")["localhost"]
    ['127.0.0.1', '::1']
    """
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.partition("#")[0].split()
        if len(fields) < 2:
            continue
        try:
            address = str(ipaddress.ip_address(fields[0].split("%", 1)[0]))
        except ValueError:
            continue
        for name in fields[1:]:
            found = out.setdefault(name.lower(), [])
            if address not in found:
                found.append(address)
    return out


def _precedence(address: str) -> int:
    ip = ipaddress.ip_address(address)
    v6 = ipaddress.IPv6Address(f"::ffff:{ip}") if ip.version == 4 else ip
    for net, precedence in _POLICY:
        if v6 in net:
            return precedence
    return 40


def rfc6724_order(addresses: Iterable[str], usable: Iterable[str] = ()) -> list[str]:
    """Destination addresses in the default selection order (the rules that matter
    without source-address knowledge: usable first, then precedence; stable).

    >>> rfc6724_order(["127.0.0.1", "::1"])
    ['::1', '127.0.0.1']
    """
    ok = set(usable)
    items = list(dict.fromkeys(addresses))
    return sorted(items, key=lambda a: (bool(ok) and a not in ok, -_precedence(a)))


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_HOSTS_FILE).decode("utf-8", "replace")
    except OSError:
        return None


def resolve_as(name: str, place: Place) -> Answer:
    """Resolve ``name`` as a client at ``place`` would (see the module docstring)."""
    try:
        ipaddress.ip_address(name.strip("[]").split("%", 1)[0])
        literal = name.strip("[]")
        return Answer(name, (literal,), "literal", f"{literal} is an address")
    except ValueError:
        pass
    hosts = f"{place.etc}/hosts"
    text = _read(hosts)
    in_hosts = text is not None and name.lower() in parse_hosts(text)

    def lookup() -> list[str]:
        import socket

        infos = socket.getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
        return list(dict.fromkeys(str(i[4][0]) for i in infos))

    try:
        addresses: list[str] = place.run(lookup)
    except OSError as exc:
        return Answer(name, (), "resolver", f"the resolver says: {exc.strerror or exc}")
    except PortkitError as exc:
        return Answer(name, (), "resolver", str(exc))
    if in_hosts:
        return Answer(name, tuple(addresses), "hosts", hosts)
    return Answer(name, tuple(addresses), "resolver", f"the resolver of {place.label}")

"""Who publishes a port for a container: publisher processes and docker-proxy's
command line (pure).

A port published with ``docker run -p 127.0.0.1:8080:80`` is held on the host by
``docker-proxy`` (one per host address and protocol) unless the daemon runs with
``--userland-proxy=false``; its argv says everything::

    docker-proxy -proto tcp -host-ip 127.0.0.1 -host-port 8080
                 -container-ip 172.17.0.2 -container-port 80 [-use-listen-fd]

Other processes hold ports for containers too (:data:`PUBLISHERS`, a table of process
name -> how the traffic gets there): rootless Docker's ``rootlesskit`` and Podman's
``rootlessport``, ``slirp4netns`` and ``pasta`` relay it (``proxy``); ``dockerd``
without the userland proxy and Podman's ``conmon`` only hold the port so that nobody
else takes it while NAT rules carry the traffic (``nat``). A socket they hold belongs
to a container, never to them, and ``who --kill`` must not signal them.

    >>> p = parse_proxy_argv(["/usr/bin/docker-proxy", "-proto", "tcp", "-host-ip",
    ...     "0.0.0.0", "-host-port", "18081", "-container-ip", "172.17.0.2",
    ...     "-container-port", "80"])
    >>> p.host_port, p.container_ip, p.container_port, p.target
    (18081, '172.17.0.2', 80, '172.17.0.2:80')
    >>> publisher_kind("docker-proxy"), publisher_kind("dockerd"), publisher_kind("nginx")
    ('proxy', 'nat', None)
"""

from __future__ import annotations

from portkit.errors import ParseError
from portkit.model import _Record, parse_port

__all__ = [
    "PUBLISHERS",
    "ProxyMapping",
    "is_publisher",
    "parse_proxy_argv",
    "publisher_kind",
]

#: Process name -> how a port it holds reaches the container: ``proxy`` (the process
#: relays the bytes) or ``nat`` (it only reserves the port; NAT rules carry them).
PUBLISHERS: dict[str, str] = {
    "docker-proxy": "proxy",
    "rootlesskit": "proxy",  # rootless Docker's builtin port driver
    "rootlessport": "proxy",  # rootless Podman
    "rootlessport-child": "proxy",
    "slirp4netns": "proxy",
    "pasta": "proxy",
    "pasta.avx2": "proxy",
    "vpnkit": "proxy",  # Docker Desktop
    "dockerd": "nat",  # --userland-proxy=false: a listener that never accepts
    "conmon": "nat",  # Podman (rootful): holds the host ports of its container
}
# The kernel keeps 15 characters of a process name (comm): "rootlessport-ch".
_BY_COMM = {name[:15]: kind for name, kind in PUBLISHERS.items()}

_FLAGS = {
    "-proto": "proto",
    "-host-ip": "host_ip",
    "-host-port": "host_port",
    "-container-ip": "container_ip",
    "-container-port": "container_port",
}
_PROTOCOLS = ("tcp", "udp", "sctp")


def _base(name: str) -> str:
    return name.rpartition("/")[2]


def publisher_kind(name: str | None) -> str | None:
    """``proxy`` or ``nat`` for a process (comm or argv[0]) that publishes ports for
    containers, None for any other."""
    if not name:
        return None
    base = _base(name)
    return PUBLISHERS.get(base) or _BY_COMM.get(base[:15])


def is_publisher(name: str | None) -> bool:
    """True for a process whose sockets belong to the containers it publishes for."""
    return publisher_kind(name) is not None


class ProxyMapping(_Record):
    """What one docker-proxy process forwards: host ip:port -> container ip:port."""

    __slots__ = ("proto", "host_ip", "host_port", "container_ip", "container_port")
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int

    def __init__(
        self, proto: str, host_ip: str, host_port: int, container_ip: str, container_port: int
    ) -> None:
        self._init(
            proto=proto,
            host_ip=host_ip,
            host_port=host_port,
            container_ip=container_ip,
            container_port=container_port,
        )

    @property
    def target(self) -> str:
        """``172.17.0.2:80`` (``[fd00::2]:80``)."""
        ip = self.container_ip
        return f"[{ip}]:{self.container_port}" if ":" in ip else f"{ip}:{self.container_port}"


def _address(value: str, flag: str, argv: str) -> str:
    import ipaddress  # here: naming a publisher needs no address parsing

    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ParseError(
            f"docker-proxy {flag} {value[:60]!r} is not an IP address",
            text=argv,
            part=value[:60],
            accepted="an IPv4 or IPv6 address",
        ) from None


def parse_proxy_argv(argv: list[str] | tuple[str, ...]) -> ProxyMapping:
    """A ``docker-proxy`` command line (flags as ``-flag value``, ``-flag=value`` or
    with two dashes) -> the mapping it forwards.

    Raises:
        ParseError: not a docker-proxy command line, or one missing a part.
    """
    shown = " ".join(argv)[:200]
    if not argv or _base(argv[0]) != "docker-proxy":
        raise ParseError(
            "not a docker-proxy command line", text=shown, accepted="docker-proxy -proto ..."
        )
    found: dict[str, str] = {}
    items = argv[1:]
    i = 0
    while i < len(items):
        flag, eq, value = items[i].partition("=")
        key = _FLAGS.get(flag[1:] if flag.startswith("--") else flag)
        if key is not None:
            if not eq:
                if i + 1 >= len(items):
                    raise ParseError(f"docker-proxy {flag} has no value", text=shown, part=flag)
                value = items[i + 1]
                i += 1
            found[key] = value
        i += 1
    missing = [k for k in ("host_port", "container_ip", "container_port") if k not in found]
    if missing:
        flags = ", ".join("-" + m.replace("_", "-") for m in missing)
        raise ParseError(
            f"docker-proxy command line without {flags}",
            text=shown,
            accepted="-host-port, -container-ip and -container-port",
        )
    proto = found.get("proto", "tcp").lower()
    if proto not in _PROTOCOLS:
        raise ParseError(
            f"docker-proxy -proto {proto[:20]!r}", text=shown, accepted=", ".join(_PROTOCOLS)
        )
    return ProxyMapping(
        proto,
        _address(found.get("host_ip", "0.0.0.0"), "-host-ip", shown),
        parse_port(found["host_port"], what="-host-port"),
        _address(found["container_ip"], "-container-ip", shown),
        parse_port(found["container_port"], what="-container-port"),
    )

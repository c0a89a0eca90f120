"""Who may connect and how many: the allow list and the file-descriptor budget. Pure.

>>> allow = AllowList.parse(["10.0.0.0/8", "::1"])
>>> allow.permits("10.1.2.3"), allow.permits("192.168.1.5"), allow.permits("::ffff:10.0.0.7")
(True, False, True)
>>> connection_budget(20000)
9936
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from portkit.errors import ParseError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["FD_RESERVE", "AllowList", "connection_budget"]

#: Descriptors kept back for the listeners, the event loop, logs and spare pipes.
FD_RESERVE = 128
_CIDR_FORMS = "an address or CIDR, e.g. 10.0.0.0/8, 192.168.1.5, ::1 or 2001:db8::/32"

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AllowList:
    """Source networks allowed to connect; an empty list allows everyone.

    IPv4-mapped IPv6 clients (``::ffff:10.0.0.7``, seen on dual-stack listeners) are
    checked as the IPv4 address they are.
    """

    __slots__ = ("_v4", "_v6", "networks")

    def __init__(self, networks: Iterable[_Network] = ()) -> None:
        self.networks: tuple[_Network, ...] = tuple(networks)
        # (network int, mask int) pairs: one AND and one compare per rule per client.
        self._v4 = tuple(
            (int(n.network_address), int(n.netmask)) for n in self.networks if n.version == 4
        )
        self._v6 = tuple(
            (int(n.network_address), int(n.netmask)) for n in self.networks if n.version == 6
        )

    @classmethod
    def parse(cls, texts: Iterable[str]) -> AllowList:
        """Parse ``--allow`` values (host bits set are tolerated: 10.1.2.3/8 = 10.0.0.0/8).

        >>> AllowList.parse(["192.168.1.0/24"]).networks
        (IPv4Network('192.168.1.0/24'),)
        """
        networks: list[_Network] = []
        for text in texts:
            raw = text.strip()
            try:
                networks.append(ipaddress.ip_network(raw.strip("[]"), strict=False))
            except ValueError:
                raise ParseError(
                    f"bad --allow value {text!r}", text=text, accepted=_CIDR_FORMS
                ) from None
        return cls(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def permits(self, host: str) -> bool:
        """Whether a client at ``host`` (an IP literal, as accept() reports it) may connect."""
        if not self.networks:
            return True
        try:
            ip = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        value = int(ip)
        rules = self._v4 if ip.version == 4 else self._v6
        return any(value & mask == net for net, mask in rules)

    def __str__(self) -> str:
        return ",".join(str(n) for n in self.networks) or "any"


def connection_budget(nofile: int, *, fds_per_connection: int = 2) -> int:
    """How many relayed connections ``nofile`` descriptors can hold.

    Each TCP connection holds two sockets (client and target); a UDP session holds one.
    A reserve stays free so that listeners, logs and the loop itself never hit EMFILE.

    >>> connection_budget(1024)
    448
    >>> connection_budget(100)
    1
    """
    return max(1, (nofile - FD_RESERVE) // fds_per_connection)

"""Raw rows into :class:`~portkit.model.SocketRecord` rows: pure, no I/O.

This is the hot loop of ``portkit ls`` (100,000 rows in a few tens of ms): one list
comprehension per (family, protocol) batch, address text cached per distinct
address (a listing has few), states looked up in a list by kernel number.

    >>> from portkit.see._netlink import htons
    >>> raw = [(2, 10, htons(22), 0, bytes(16), bytes(16), 0, 128, 0, 99)]
    >>> row = decode(raw, 2, 6, {htons(22)})[0]
    >>> row[:7], row[11]
    ((<Protocol.TCP: 'tcp'>, 4, <TcpState.LISTEN: 'LISTEN'>, '0.0.0.0', 22, None, None), 'server')
"""

from __future__ import annotations

from portkit._sockrow import CGROUP, INODE
from portkit.model import Protocol, TcpState
from portkit.see._netlink import AF_INET, IP_TEXT, PORTS, ip_text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Iterable
    from typing import Any

    from portkit.see._netlink import RawRow
    from portkit.see._owners import Owners

__all__ = ["attach_owners", "decode", "ip_text"]

_PROTOS = {6: Protocol.TCP, 17: Protocol.UDP}

# Kernel state numbers 0..255 -> TcpState; numbers this version does not know (13 is
# TCP_BOUND_INACTIVE since Linux 6.7) read as CLOSE rather than failing the listing.
_STATES: list[TcpState] = [TcpState.CLOSE] * 256
for _state in TcpState:
    _STATES[_state.code] = _state
del _state


def decode(
    raw: Iterable[RawRow], family: int, proto: int, listen_ports: Collection[int]
) -> list[tuple[Any, ...]]:
    """Rows in :data:`~portkit.model.SOCKET_FIELDS` order for one (family, protocol) batch.

    A socket whose remote port is 0 is a listener (or an unconnected UDP socket): its
    remote is None and its role ``server``; otherwise the role is ``server`` when its
    local port is one of ``listen_ports`` (raw, network-order values as in the rows),
    else ``client``.
    """
    p = _PROTOS[proto]
    fam = 4 if family == AF_INET else 6
    ip = IP_TEXT[family]
    st = _STATES
    lp = listen_ports
    pt = PORTS
    return [
        (
            p,
            fam,
            st[t[1]],
            ip[t[4]],
            pt[t[2]],
            ip[t[5]] if t[3] else None,
            pt[t[3]] if t[3] else None,
            t[6],
            t[7],
            t[8],
            t[9],
            "server" if not t[3] or t[2] in lp else "client",
            None,
            None,
            None,
            (),
            None,
        )
        for t in raw
    ]


def attach_owners(
    rows: list[tuple[Any, ...]],
    owners: Owners,
    names: dict[int, tuple[str | None, str | None]],
) -> list[tuple[Any, ...]]:
    """Fill pid, process, user and pids from ``{inode: (pid, ...)}`` and
    ``{pid: (name, user)}``; rows without a known owner are kept as they are."""
    out = []
    get = owners.get
    for r in rows:
        pids = get(r[INODE]) if r[INODE] else None
        if pids:
            first = pids[0]
            name, user = names.get(first, (None, None))
            r = (*r[:12], first, name, user, tuple(pids), r[CGROUP])
        out.append(r)
    return out


def with_cgroups(rows: list[tuple[Any, ...]], cgroups: dict[int, str]) -> list[tuple[Any, ...]]:
    """Fill the cgroup field from ``{inode: path}``."""
    return [(*r[:16], cgroups.get(r[INODE])) if r[INODE] in cgroups else r for r in rows]


def container_id(cgroup: str | None) -> str | None:
    """The short (12-character) container id in a cgroup path, or None (the container
    layer's parser: :func:`portkit.containers.ref_of_path`).

    >>> container_id("/system.slice/docker-" + "ab12" * 16 + ".scope")
    'ab12ab12ab12'
    >>> container_id("/user.slice/user-1000.slice/session-2.scope") is None
    True
    """
    if not cgroup:
        return None
    from portkit.containers import ref_of_path

    ref = ref_of_path(cgroup)
    return ref.short_id if ref is not None else None

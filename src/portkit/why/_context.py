"""Where ``why`` stands and where it looks: the client's namespace (``--from``) and the
namespace on this machine that holds a target address.

``--from`` is parsed by the reach capability (:func:`portkit.probe.parse_origin`, one
parser for ``check``, ``wait``, ``scan`` and ``why``), and work that must happen on the
client's side (resolving a name with its resolver files, the probe) runs through
:func:`portkit.probe.run_from`. A :class:`Place` adds what the see capability needs to
look there (an ``ip netns`` name or a pid). :func:`place_of_address` finds the
namespace that owns an address, so that the target's firewall, NAT rules and
listeners can be read there.
"""

from __future__ import annotations

from portkit.errors import PortkitError
from portkit.model import _Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from portkit.probe import Origin

__all__ = ["HOST", "Place", "next_hop", "parse_from", "place_of_address"]


class Place(_Record):
    """A network namespace to look from or into.

    ``label`` is how it is shown (``host``, ``netns:lab``, ``pid:4242``); ``netns`` and
    ``pid_netns`` are what the see capability takes (both None: the caller's own);
    ``origin`` is the reach capability's handle on it (None: here); ``path`` the file
    to enter it by; ``etc`` the directory of its resolver files.
    """

    __slots__ = ("label", "netns", "pid_netns", "origin", "path", "etc")
    label: str
    netns: str | None
    pid_netns: int | None
    origin: Origin | None
    path: str | None
    etc: str

    def __init__(
        self,
        label: str,
        netns: str | None = None,
        pid_netns: int | None = None,
        origin: Origin | None = None,
    ) -> None:
        self._init(
            label=label,
            netns=netns,
            pid_netns=pid_netns,
            origin=origin,
            path=None if origin is None else origin.ns_path,
            etc="/etc" if origin is None else origin.etc_dir,
        )

    def run(self, work: Callable[[], Any]) -> Any:
        """``work()`` on this side (a forked worker in its namespace, with its resolver
        files); records and portkit errors come back as they were."""
        from portkit.probe import run_from

        return run_from(self.origin, work)


HOST = Place("host")


def _of_origin(origin: Origin) -> Place:
    value = origin.text.partition(":")[2]
    if origin.kind == "netns":
        return Place(origin.text, netns=value, origin=origin)
    from portkit.probe import locate

    origin = locate(origin)  # a container: its runtime names its main process
    pid = int(origin.ns_path.split("/")[2])
    return Place(origin.text, pid_netns=pid, origin=origin)


def parse_from(text: str | None) -> Place:
    """``--from``: ``container:NAME|ID``, ``netns:NAME``, ``pid:PID`` (None: this host).

    Raises:
        ParseError: another form, a bad pid, an unknown container.
    """
    if text is None or text in ("", "host"):
        return HOST
    from portkit.probe import parse_origin

    return _of_origin(parse_origin(text))


def place_of_address(
    address: str, exclude: str | None = None, near: str | None = None
) -> Place | None:
    """The namespace on this machine whose interfaces carry ``address`` (not the one at
    path ``exclude``), or None: the address belongs to another machine.

    Several namespaces may carry the same address (two Docker daemons' bridges, lab
    namespaces, a stopped daemon's namespace left behind). The packet goes where the
    links of the namespace it leaves (``near``: a path, None for the caller's) lead:
    that namespace itself wins, then one at the other end of one of its veth pairs,
    then one that shares such a neighbour with it (two containers on one bridge); then
    one whose container a runtime names over one known by its cgroup only; then the
    first found.
    """
    import ipaddress

    from portkit.see import namespaces
    from portkit.see._addrs import addresses

    want = ipaddress.ip_address(address)
    every = namespaces()
    found: list[tuple[int, int, Place]] = []
    for ns in every:
        if ns.own or ns.path == exclude:
            continue
        try:
            held = addresses(ns.path)
        except (PortkitError, OSError):  # gone meanwhile, or cannot be entered: skip it
            continue
        if not any(ipaddress.ip_address(a) == want for _, a, _ in held):
            continue
        place, named = _place_of(ns)
        found.append((ns.inode, {None: 1, True: 0, False: 2}[named], place))
    if len(found) > 1:
        hops = _hops({ns.inode: ns.path for ns in every}, near, [f[0] for f in found])
        hops.update((ns.inode, -1) for ns in every if near is not None and ns.path == near)
        found.sort(key=lambda f: (hops.get(f[0], 2), f[1]))
    else:
        found.sort(key=lambda f: f[1])
    return found[0][2] if found else None


def _place_of(ns: Any) -> tuple[Place, bool | None]:
    """A namespace as a Place (``container:NAME`` when it is a container's), and
    whether a runtime named that container (None: not a container)."""
    from portkit.probe import parse_origin

    text = f"netns:{ns.names[0]}" if ns.names else f"pid:{ns.pids[0]}"
    place = _of_origin(parse_origin(text))
    box = _container_of(ns.pids)
    if box is None:
        return place, None
    name, named = box
    return Place(f"container:{name}", place.netns, place.pid_netns, place.origin), named


def next_hop(src: Place, dev: str | None, gateway: str | None, there: Place) -> Place | None:
    """The namespace on this machine that forwards the client's packet to ``there``
    when it is neither of them: the one holding the ``gateway`` (a container's packet
    to another network goes through the bridge host), or, on-link, the one at the
    other end of the client's interface ``dev`` that ``there`` is joined to as well (a
    bridge host between two containers of one network). None: the packet goes
    straight there, or leaves this machine."""
    target = _inode(there.path)
    if target == _inode(src.path):
        return None  # the client's own namespace: nothing between
    if gateway:
        hop = place_of_address(gateway, exclude=src.path, near=src.path)
        return None if hop is None or _inode(hop.path) == target else hop
    if src.path is None or there.path is None or dev is None:
        return None  # the host's own packet: its output path, not a forward one
    from portkit.see import namespaces
    from portkit.see._addrs import neighbours

    every = [ns for ns in namespaces() if ns.inode != target]
    try:
        ends = neighbours({ns.inode: ns.path for ns in every}, src.path, dev)
        joined = neighbours({ns.inode: ns.path for ns in every if ns.inode in ends}, there.path)
    except (PortkitError, OSError):
        return None
    bridge = next((ns for ns in every if ns.inode in joined), None)
    return None if bridge is None else _place_of(bridge)[0]


def _inode(path: str | None) -> int | None:
    import os

    try:
        return os.stat(path or "/proc/thread-self/ns/net").st_ino
    except OSError:
        return None


def _hops(paths: dict[int, str], near: str | None, inodes: list[int]) -> dict[int, int]:
    """For each namespace inode of ``inodes``: 0 when a veth pair joins it to the
    namespace at ``near``, 1 when both have a neighbour in common (absent otherwise)."""
    from portkit.see._addrs import neighbours

    try:
        first = neighbours(paths, near)
    except (PortkitError, OSError):
        return {}
    out = {inode: 0 for inode in inodes if inode in first}
    for inode in inodes:
        if inode in out:
            continue
        try:
            if neighbours(paths, paths[inode]) & first:
                out[inode] = 1
        except (PortkitError, OSError):
            continue
    return out


def _container_of(pids: tuple[int, ...] | list[int]) -> tuple[str, bool] | None:
    """The name of the container whose processes ``pids`` are, and whether a runtime
    named it (else it is its short id), or None."""
    from portkit.containers import container_of

    for pid in pids[:3]:
        try:
            found = container_of(pid)
        except (PortkitError, OSError):
            return None
        if found is not None:
            return str(found.name), found.api is not None
    return None

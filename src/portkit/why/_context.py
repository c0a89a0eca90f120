"""Where ``why`` stands and where it looks: the client's namespace (``--from``) and the
namespace on this machine that holds a target address.

A :class:`Place` is a network namespace portkit can enter: the caller's own, an
``ip netns`` name, a process's (``pid:PID``) or a container's (``container:NAME``,
through the container layer). :func:`place_of_address` finds the namespace that owns
an address, so that the target's firewall, NAT rules and listeners can be read there.
"""

from __future__ import annotations

from portkit.errors import ParseError, PortkitError
from portkit.model import _Record

__all__ = ["FROM_FORMS", "Place", "parse_from", "place_of_address"]

FROM_FORMS = "container:NAME|ID, netns:NAME or pid:PID"


class Place(_Record):
    """A network namespace to look from or into.

    ``label`` is how it is shown (``host``, ``netns:lab``, ``pid:4242``,
    ``container:web``); ``netns`` and ``pid_netns`` are what the see capability takes
    (an ``ip netns`` name, a pid; both None: the caller's own); ``path`` is the file to
    enter it by; ``root`` is the root directory of its files (hosts, resolv.conf), None
    for the host's own.
    """

    __slots__ = ("label", "netns", "pid_netns", "path", "root")
    label: str
    netns: str | None
    pid_netns: int | None
    path: str | None
    root: str | None

    def __init__(
        self,
        label: str,
        netns: str | None = None,
        pid_netns: int | None = None,
        path: str | None = None,
        root: str | None = None,
    ) -> None:
        self._init(label=label, netns=netns, pid_netns=pid_netns, path=path, root=root)

    @property
    def own(self) -> bool:
        return self.path is None


HOST = Place("host")


def parse_from(text: str | None, procfs: str = "/proc") -> Place:
    """``--from``: ``container:NAME|ID``, ``netns:NAME``, ``pid:PID`` (None: this host).

    Raises:
        ParseError: another form, a bad pid, an unknown container.
    """
    if text is None or text in ("", "host"):
        return HOST
    kind, sep, value = text.partition(":")
    if not sep or not value:
        raise ParseError(f"bad --from {text!r}", text=text, accepted=FROM_FORMS)
    if kind == "netns":
        from portkit.see import netns_path

        return Place(text, netns=value, path=netns_path(value, None, procfs))
    if kind == "pid":
        from portkit.model import parse_int

        return _of_pid(text, parse_int(value, what="pid", low=1, high=4_194_304), procfs)
    if kind == "container":
        import importlib

        containers = importlib.import_module("portkit.containers")
        pid: int = containers.container_pid(value)
        return _of_pid(text, pid, procfs)
    raise ParseError(f"bad --from {text!r}", text=text, accepted=FROM_FORMS)


def _of_pid(label: str, pid: int, procfs: str) -> Place:
    return Place(label, pid_netns=pid, path=f"{procfs}/{pid}/ns/net", root=f"{procfs}/{pid}/root")


def place_of_address(address: str, exclude: str | None = None) -> Place | None:
    """The namespace on this machine whose interfaces carry ``address`` (not the one at
    path ``exclude``), or None: the address belongs to another machine."""
    import ipaddress

    from portkit.see import namespaces
    from portkit.why._addrs import addresses

    want = ipaddress.ip_address(address)
    for ns in namespaces():
        if ns.own or ns.path == exclude:
            continue
        try:
            found = addresses(ns.path)
        except (PortkitError, OSError):  # gone meanwhile, or cannot be entered: skip it
            continue
        if any(ipaddress.ip_address(a) == want for _, a, _ in found):
            if ns.names:
                return Place(f"netns:{ns.names[0]}", netns=ns.names[0], path=ns.path)
            pid = ns.pids[0]
            return Place(
                f"pid:{pid}", pid_netns=pid, path=f"/proc/{pid}/ns/net", root=f"/proc/{pid}/root"
            )
    return None

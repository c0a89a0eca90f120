"""Facts read from the running system: the ephemeral port range.

The only I/O of the port-knowledge layer lives here, so that ``model`` stays pure.
"""

from __future__ import annotations

import os
import sys

from portkit.errors import ParseError
from portkit.model import PortRange

__all__ = ["WINDOWS_EPHEMERAL", "ephemeral_range", "parse_ip_local_port_range", "require_linux"]

#: Windows Vista / Server 2008 and later (Microsoft KB 929851); also the IANA dynamic range.
WINDOWS_EPHEMERAL = PortRange(49152, 65535)

_cache: dict[str, PortRange] = {}


def require_linux(feature: str) -> None:
    """Refuse a Linux-only feature elsewhere, in one line (exit 3).

    Raises:
        Unsupported: naming the feature and this system.
    """
    if not sys.platform.startswith("linux"):
        from portkit.errors import Unsupported

        raise Unsupported(feature, sys.platform)


def parse_ip_local_port_range(text: str) -> PortRange:
    """Parse ``/proc/sys/net/ipv4/ip_local_port_range``.

    >>> parse_ip_local_port_range("32768\\t60999\\n")
    PortRange(start=32768, end=60999)
    """
    fields = text.split()
    if len(fields) != 2 or not all(f.isascii() and f.isdigit() for f in fields):
        raise ParseError(
            f"bad port range {text!r}", text=text, accepted="two numbers, e.g. 32768 60999"
        )
    return PortRange(int(fields[0]), int(fields[1]))


def _read_sysctl_bsd() -> PortRange:
    import subprocess

    try:
        out = subprocess.run(
            ["sysctl", "-n", "net.inet.ip.portrange.first", "net.inet.ip.portrange.last"],
            capture_output=True,
            text=True,
            check=True,
            timeout=5,
        ).stdout
        return parse_ip_local_port_range(out)
    except (OSError, ParseError, subprocess.SubprocessError):
        return WINDOWS_EPHEMERAL  # 49152-65535 is also the macOS and FreeBSD default


def ephemeral_range(procfs: str = "/proc") -> PortRange:
    """This OS's ephemeral (local, dynamic) port range for outgoing connections.

    Linux reads ``net.ipv4.ip_local_port_range`` (it applies to IPv6 too); macOS and
    the BSDs ask ``sysctl net.inet.ip.portrange``; Windows uses its documented default.
    The answer is cached per ``procfs`` root.
    """
    cached = _cache.get(procfs)
    if cached is not None:
        return cached
    if sys.platform.startswith("linux"):
        with open(os.path.join(procfs, "sys/net/ipv4/ip_local_port_range")) as f:
            found = parse_ip_local_port_range(f.read())
    elif sys.platform == "win32":
        found = WINDOWS_EPHEMERAL
    else:
        found = _read_sysctl_bsd()
    _cache[procfs] = found
    return found

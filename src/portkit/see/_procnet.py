"""``/proc/net/{tcp,tcp6,udp,udp6}`` lines into raw rows: pure, no I/O.

The fallback where NETLINK_SOCK_DIAG is missing (old or locked-down kernels). Rows
have the netlink parser's layout, so everything after parsing is shared::

    (family, state, sport_n, dport_n, src16, dst16, recv_q, send_q, uid, inode)

(ports in network byte order as the kernel keeps them: ``_netlink.ntohs`` undoes it).

Addresses in these files are the kernel's 32-bit words printed in host order
(``0100007F`` is 127.0.0.1 on a little-endian machine), so each word is reversed.

    >>> line = ("   0: 0100007F:0CEA 00000000:0000 0A 00000000:00000002 00:00000000 "
    ...         "00000000  1000        0 4242 1")
    >>> row = parse_lines([line], 2)[0]
    >>> row[:2], ntohs(row[2]), row[4][:4], row[6:]
    ((2, 10), 3306, b'\\x7f\\x00\\x00\\x01', (2, 0, 1000, 4242))
"""

from __future__ import annotations

import sys

from portkit.errors import ParseError
from portkit.see._netlink import htons, ntohs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable

    from portkit.see._netlink import RawRow

__all__ = ["decode_address", "ntohs", "parse_lines"]

_LITTLE = sys.byteorder == "little"


def _addr(hexaddr: str) -> bytes:
    raw = bytes.fromhex(hexaddr)
    if _LITTLE:
        raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return raw.ljust(16, b"\0")


def decode_address(field: str) -> tuple[bytes, int]:
    """``"0100007F:0016"`` -> 16 address bytes (IPv4 in the first 4) and the port.

    >>> decode_address("0100007F:0016")
    (b'\\x7f\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00', 22)
    """
    host, _, port = field.partition(":")
    if len(host) not in (8, 32) or len(port) != 4:
        raise ParseError(f"bad /proc/net address {field!r}", text=field, accepted="HEXADDR:PORT")
    try:
        return _addr(host), int(port, 16)
    except ValueError:
        raise ParseError(
            f"bad /proc/net address {field!r}", text=field, accepted="HEXADDR:PORT"
        ) from None


def parse_lines(lines: Iterable[str], family: int) -> list[RawRow]:
    """Parse the lines of one file (the header line is skipped).

    Args:
        lines: the file's lines.
        family: 2 (``tcp``, ``udp``) or 10 (``tcp6``, ``udp6``).

    Raises:
        ParseError: a line that is not a socket line.
    """
    rows: list[RawRow] = []
    for line in lines:
        fields = line.split()
        if not fields or fields[0] == "sl":
            continue
        if len(fields) < 10 or not fields[0].endswith(":"):
            raise ParseError(f"bad /proc/net line {line.strip()[:60]!r}", text=line)
        src, sport = decode_address(fields[1])
        dst, dport = decode_address(fields[2])
        try:
            state = int(fields[3], 16)
            tx, _, rx = fields[4].partition(":")
            rows.append(
                (
                    family,
                    state,
                    htons(sport),
                    htons(dport),
                    src,
                    dst,
                    int(rx, 16),
                    int(tx, 16),
                    int(fields[7]),
                    int(fields[9]),
                )
            )
        except ValueError:
            raise ParseError(f"bad /proc/net line {line.strip()[:60]!r}", text=line) from None
    return rows

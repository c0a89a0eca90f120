"""NETLINK_SOCK_DIAG (inet_diag) requests and replies as bytes: no I/O here.

The kernel side is ``net/ipv4/inet_diag.c``; the layouts are ``linux/inet_diag.h`` and
``linux/netlink.h``. This module builds the request (a ``SOCK_DIAG_BY_FAMILY`` dump
with the state bitmask and the filter compiled to inet_diag bytecode, as ``ss`` does)
and turns reply bytes into raw rows::

    (family, state, sport_n, dport_n, src16, dst16, recv_q, send_q, uid, inode)

``src16``/``dst16`` are the 16 address bytes as the kernel sends them (an IPv4
address in the first 4). ``sport_n``/``dport_n`` are the ports as the kernel stores
them, in network byte order read as a native u16: :func:`ntohs` (or the cached
:data:`PORTS` table) gives the port. Rows are exactly what ``struct.iter_unpack``
yields, so a 100,000-socket reply is parsed without a Python loop; turning ports
and addresses into numbers and text is the caller's job, with caches, because most
rows share few addresses and ports.

    >>> req = build_request(2, 6, 1 << 10)           # AF_INET, TCP, LISTEN only
    >>> len(req), req[4:6]
    (72, b'\\x14\\x00')
    >>> rows, done = parse_chunk(build_request(2, 6, 0)[:0])
    >>> rows, done
    ([], False)

It must stay cheap to import (the ``ls -tln`` shortcut loads it): ``_struct`` and
``_socket`` (for ``inet_ntop``; the listing opens its socket with it anyway) only.
"""

from __future__ import annotations

from _operator import itemgetter  # built in; ``operator`` itself is a .py to load
from _socket import inet_ntop
from _struct import Struct

TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Sequence
    from typing import Any

__all__ = [
    "AF_INET",
    "AF_INET6",
    "IPPROTO_TCP",
    "IPPROTO_UDP",
    "NETLINK_SOCK_DIAG",
    "PORTS",
    "Alt",
    "Columns",
    "NetlinkError",
    "RawRow",
    "RawRows",
    "build_request",
    "chunk_part",
    "compile_filter",
    "htons",
    "ip4_key_bytes",
    "ip_text",
    "ntohs",
    "parse_attrs",
    "parse_chunk",
    "strided",
]

AF_INET = 2
AF_INET6 = 10
IPPROTO_TCP = 6
IPPROTO_UDP = 17
NETLINK_SOCK_DIAG = 4

#: Kernel TCP state numbers (include/net/tcp_states.h) a row's ``state`` holds; UDP
#: sockets are ESTABLISHED (connected) or CLOSE. ``TCP_STATES[n]`` is state n's name.
TCP_STATES = (
    "",
    "ESTABLISHED",
    "SYN_SENT",
    "SYN_RECV",
    "FIN_WAIT1",
    "FIN_WAIT2",
    "TIME_WAIT",
    "CLOSE",
    "CLOSE_WAIT",
    "LAST_ACK",
    "LISTEN",
    "CLOSING",
    "NEW_SYN_RECV",
)
TCP_CLOSE, TCP_LISTEN = 7, 10

SOCK_DIAG_BY_FAMILY = 20
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300  # NLM_F_ROOT | NLM_F_MATCH
INET_DIAG_REQ_BYTECODE = 1

# inet_diag bytecode operations (linux/inet_diag.h, enum INET_DIAG_BC_*).
BC_JMP = 1
BC_S_GE, BC_S_LE, BC_D_GE, BC_D_LE = 2, 3, 4, 5
BC_S_COND, BC_D_COND = 7, 8
BC_S_EQ, BC_D_EQ = 11, 12

# Reply attributes we read (enum INET_DIAG_*).
ATTR_CGROUP_ID = 21

_HDR = Struct("=IHHII")  # struct nlmsghdr: len, type, flags, seq, pid
_REQ = Struct("=BBBxI")  # struct inet_diag_req_v2 before the 48-byte sockid
_NLA = Struct("=HH")  # struct nlattr: len, type
_OP = Struct("=BBH")  # struct inet_diag_bc_op: code, yes, no
_HOSTCOND = Struct("=BBxxi")  # struct inet_diag_hostcond: family, prefix_len, port
# struct inet_diag_msg after the header: family, state, timer, retrans, sport (be),
# dport (be), src[16], dst[16], if, cookie[2], expires, rqueue, wqueue, uid, inode.
_MSG_FMT = "BB2xHH16s16s12x4xIIII"
_MSG = Struct("=" + _MSG_FMT)
_MSG_OFF = _HDR.size
_U32 = Struct("=I")
_ERRNO = Struct("=i")

RawRow = tuple[int, int, int, int, bytes, bytes, int, int, int, int]


class _Ports(dict[int, int]):
    """Network-order u16 -> port, filled on first use (a dict hit beats ``ntohs``)."""

    def __missing__(self, raw: int) -> int:
        port = self[raw] = ntohs(raw)
        return port


#: ``PORTS[sport_n]`` is the port number of a raw row's ``sport_n``.
PORTS = _Ports()


def ntohs(raw: int) -> int:
    """The port for a raw row's network-order value.

    >>> ntohs(htons(8080))
    8080
    """
    return raw if _BIG_ENDIAN else ((raw & 0xFF) << 8) | (raw >> 8)


def htons(port: int) -> int:
    """A port as raw rows hold it (what :func:`ntohs` undoes)."""
    return ntohs(port)


_BIG_ENDIAN = Struct("=H").pack(1) == b"\x00\x01"


class NetlinkError(Exception):
    """An NLMSG_ERROR reply; ``errno`` is the positive error number."""

    def __init__(self, errno: int) -> None:
        self.errno = errno
        super().__init__(f"netlink error {errno}")


def build_request(
    family: int, protocol: int, states: int, bytecode: bytes = b"", seq: int = 1, ext: int = 0
) -> bytes:
    """One ``SOCK_DIAG_BY_FAMILY`` dump request.

    Args:
        family: ``AF_INET`` (2) or ``AF_INET6`` (10).
        protocol: ``IPPROTO_TCP`` (6) or ``IPPROTO_UDP`` (17).
        states: bitmask of kernel state numbers (bit 10 = LISTEN, ...).
        bytecode: a program from :func:`compile_filter`, or empty for none.
        seq: the netlink sequence number.
        ext: ``idiag_ext``, the extensions to add to each reply (tcp_info, skmeminfo:
            ``_tcpinfo.ext_bits``); 0 for none.
    """
    body = _REQ.pack(family, protocol, ext, states) + bytes(48)
    if bytecode:
        body += _NLA.pack(4 + len(bytecode), INET_DIAG_REQ_BYTECODE) + bytecode
    return _HDR.pack(16 + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _error(data: bytes | memoryview, off: int, length: int) -> None:
    errno = -_ERRNO.unpack_from(data, off + 16)[0] if length >= 20 else 0
    if errno:
        raise NetlinkError(errno)


def _walk(data: bytes | memoryview, rows: list[RawRow]) -> bool:
    """Parse message by message; True when NLMSG_DONE was seen."""
    hdr = _HDR.unpack_from
    msg = _MSG.unpack_from
    off, end = 0, len(data)
    while off + 16 <= end:
        length, mtype = hdr(data, off)[:2]
        if length < 16 or off + length > end:
            break  # a truncated message: nothing sane follows
        if mtype == SOCK_DIAG_BY_FAMILY and length >= 16 + _MSG.size:
            rows.append(msg(data, off + _MSG_OFF))
        elif mtype == NLMSG_DONE:
            return True
        elif mtype == NLMSG_ERROR:
            _error(data, off, length)
        off += (length + 3) & ~3
    return False


_uniform: dict[int, Struct] = {}


def _uniform_struct(size: int) -> Struct:
    """A struct covering a whole message of ``size`` bytes (header, msg, attributes)."""
    s = _uniform.get(size)
    if s is None:
        s = _uniform[size] = Struct(f"=16x{_MSG_FMT}{size - 16 - _MSG.size}x")
    return s


def parse_chunk(
    data: bytes | memoryview, rows: list[RawRow] | None = None
) -> tuple[list[RawRow], bool]:
    """Parse one ``recv`` of a dump; return the rows and whether the dump is done.

    Most replies hold messages of one size (the same attributes for every socket of
    a family). Those are unpacked with one ``iter_unpack``, after checking, with a
    few strided byte slices rather than a loop, that every message has the first
    one's length and type; anything else is walked message by message.

    Raises:
        NetlinkError: the kernel answered with an error (e.g. EINVAL for bad bytecode).

    >>> import struct
    >>> hdr = struct.pack("=IHHII", 88, 20, 2, 1, 0)
    >>> msg = struct.pack("=BBBB", 2, 10, 0, 0) + (8080).to_bytes(2, "big") + bytes(2)
    >>> msg += bytes([127, 0, 0, 1]) + bytes(12 + 16 + 12)
    >>> msg += struct.pack("=IIIIII", 0, 0, 128, 0, 7, 99)
    >>> row = parse_chunk(hdr + msg)[0][0]
    >>> row[:2], PORTS[row[2]], row[7:]
    ((2, 10), 8080, (128, 0, 7))
    """
    out: list[RawRow] = [] if rows is None else rows
    n = len(data)
    if n < 16:
        return out, False
    size, mtype = _HDR.unpack_from(data, 0)[:2]
    done = False
    body = n
    if n >= 20 and _HDR.unpack_from(data, n - 20)[:2] == (20, NLMSG_DONE):
        body, done = n - 20, True
    if mtype == SOCK_DIAG_BY_FAMILY and size >= 16 + _MSG.size and size % 4 == 0 and body:
        count, extra = divmod(body, size)
        if not extra:
            view = memoryview(data)
            head = bytes(view[:6])
            if all(view[i:body:size].tobytes() == head[i : i + 1] * count for i in range(6)):
                out.extend(_uniform_struct(size).iter_unpack(view[:body]))
                return out, done
    return out, _walk(data, out)


# Offsets inside a whole message (16-byte netlink header first) of the fields the
# renderers read column-wise.
_OFF_STATE = 16 + 1
_OFF_SPORT = 16 + 4
_OFF_DPORT = 16 + 6
_OFF_SRC = 16 + 8
_OFF_DST = 16 + 24
_OFF_RQ = 16 + 56
_OFF_SQ = 16 + 60
_OFF_INODE = 16 + 68


class RawRows:
    """The raw rows of one dump, kept as the kernel sent them.

    A 100,000-socket dump is about 12 MB of replies but 35 MB of row tuples; keeping
    the replies and unpacking them when iterated (``iter_unpack``, the tuples freed as
    they are used) halves a listing's memory and page faults. Chunks whose messages
    differ in size are kept as parsed lists. Iterating yields :data:`RawRow` tuples;
    :meth:`parts` yields one iterator per chunk (for comprehensions that run at C
    speed); the column helpers read one field of every row without building rows.

    >>> rows = RawRows([[(2, 10, htons(22), 0, bytes(16), bytes(16), 0, 128, 0, 7)]])
    >>> len(rows), [PORTS[r[2]] for r in rows], rows.states(), rows.queue_max()
    (1, [22], {10}, 128)
    """

    __slots__ = ("_parts", "_count")

    def __init__(self, parts: list[Any] | None = None) -> None:
        # each part: a list of rows, or (memoryview of whole messages, message size)
        self._parts: list[Any] = []
        self._count = 0
        for part in parts or ():
            self.add(part)

    def add(self, part: Any) -> None:
        if isinstance(part, list):
            if part:
                self._parts.append(part)
                self._count += len(part)
        else:
            view, size = part
            if len(view):
                self._parts.append((view, size))
                self._count += len(view) // size

    def __len__(self) -> int:
        return self._count

    def parts(self) -> Iterator[Iterable[RawRow]]:
        for part in self._parts:
            if isinstance(part, list):
                yield part
            else:
                view, size = part
                yield _uniform_struct(size).iter_unpack(view)

    def __iter__(self) -> Iterator[RawRow]:
        from itertools import chain

        return chain.from_iterable(self.parts())

    def __bool__(self) -> bool:
        return self._count > 0

    def chunks(self) -> list[Any]:
        """The parts as kept: lists of rows, or ``(view, message size)`` of uniform
        replies, for :func:`columns`."""
        return self._parts

    def _column(self, offset: int, fmt: str, index: int) -> Iterator[Iterable[Any]]:
        """One field of every row: strided views of uniform chunks, else from tuples."""
        width = {"B": 1, "H": 2, "I": 4}[fmt]
        for part in self._parts:
            if isinstance(part, list):
                yield map(itemgetter(index), part)
            else:
                view, size = part
                if size % width or offset % width:
                    yield map(itemgetter(index), _uniform_struct(size).iter_unpack(view))
                else:
                    yield view.cast(fmt)[offset // width :: size // width]

    def states(self) -> set[int]:
        out: set[int] = set()
        for col in self._column(_OFF_STATE, "B", 1):
            out.update(col)
        return out

    def queue_max(self) -> int:
        top = 0
        for off, index in ((_OFF_RQ, 6), (_OFF_SQ, 7)):
            for col in self._column(off, "I", index):
                top = max(top, max(col, default=0))
        return top

    def inode_columns(self) -> Iterator[Iterable[int]]:
        """The inode of every row, a column per reply chunk (0 for TIME-WAIT)."""
        return self._column(_OFF_INODE, "I", 9)

    def ports(self) -> set[int]:
        """Every raw (network-order) port, local and remote."""
        out: set[int] = set()
        for off, index in ((_OFF_SPORT, 2), (_OFF_DPORT, 3)):
            for col in self._column(off, "H", index):
                out.update(col)
        return out

    def addresses(self, remote: bool = False) -> set[bytes]:
        """The distinct 16-byte addresses of one side."""
        off, index = (_OFF_DST, 5) if remote else (_OFF_SRC, 4)
        out: set[bytes] = set()
        v4: set[int] = set()
        for part in self._parts:
            if isinstance(part, list):
                out.update(map(itemgetter(index), part))
            else:
                view, size = part
                if view[16] == AF_INET:  # the family byte of the first message
                    v4.update(view.cast("I")[off // 4 :: size // 4])
                else:
                    pick = Struct(f"={off}x16s{size - off - 16}x")
                    out.update(map(itemgetter(0), pick.iter_unpack(view)))
        out.update(ip4_key_bytes(k) for k in v4)
        return out


_WIDTHS = {"B": 1, "H": 2, "I": 4, "Q": 8}


def strided(view: memoryview, size: int, offset: int, code: str) -> memoryview | None:
    """One field of every message of a uniform reply (``view``: whole messages of
    ``size`` bytes) as a strided view, no object per message: the field at
    ``offset`` in each message, read as struct ``code`` (``B``, ``H``, ``I``, ``Q``,
    native order). A field whose offset is not a multiple of its width is read
    through a view shifted to its alignment. None when ``size`` is not a multiple of
    the width (no stride reaches every message).

    >>> msgs = memoryview(bytes(range(8)) * 3)
    >>> list(strided(msgs, 8, 2, "B")), len(strided(msgs, 8, 0, "Q"))
    ([2, 2, 2], 3)
    """
    width = _WIDTHS[code]
    if size % width or offset + width > size:
        return None
    shift = offset % width
    usable = (len(view) - shift) // width * width
    count = len(view) // size
    cast: Any = view[shift : shift + usable].cast
    col: memoryview = cast(code)[(offset - shift) // width :: size // width]
    return col if len(col) == count else None


class Columns:
    """Strided views of one uniform reply: one field of every message, no row tuples.

    ``src``/``dst`` are u32 values (the 4 address bytes read natively) for IPv4 and
    16-byte ``bytes`` for IPv6; ports are raw network-order u16 as in :data:`RawRow`.
    """

    __slots__ = ("states", "sports", "dports", "src", "dst", "recv_q", "send_q", "inodes")

    def __init__(self, view: memoryview, size: int, family: int) -> None:
        u16 = view.cast("H")
        u32 = view.cast("I")
        n2, n4 = size // 2, size // 4
        self.states: Iterable[int] = view[_OFF_STATE::size]
        self.sports: Iterable[int] = u16[_OFF_SPORT // 2 :: n2]
        self.dports: Iterable[int] = u16[_OFF_DPORT // 2 :: n2]
        self.recv_q: Iterable[int] = u32[_OFF_RQ // 4 :: n4]
        self.send_q: Iterable[int] = u32[_OFF_SQ // 4 :: n4]
        self.inodes: Iterable[int] = u32[_OFF_INODE // 4 :: n4]
        self.src: Iterable[Any]
        self.dst: Iterable[Any]
        if family == AF_INET:
            self.src = u32[_OFF_SRC // 4 :: n4]
            self.dst = u32[_OFF_DST // 4 :: n4]
        else:
            pick = itemgetter(0)
            self.src = map(
                pick, Struct(f"={_OFF_SRC}x16s{size - _OFF_SRC - 16}x").iter_unpack(view)
            )
            self.dst = map(
                pick, Struct(f"={_OFF_DST}x16s{size - _OFF_DST - 16}x").iter_unpack(view)
            )


class _Ip4(dict[bytes, str]):
    def __missing__(self, raw: bytes) -> str:
        text = self[raw] = inet_ntop(AF_INET, raw[:4])
        return text


class _Ip6(dict[bytes, str]):
    def __missing__(self, raw: bytes) -> str:
        text = self[raw] = inet_ntop(AF_INET6, raw)
        return text


#: ``IP_TEXT[family][src16]``: the text of a row's address, cached per distinct one.
IP_TEXT = {AF_INET: _Ip4(), AF_INET6: _Ip6()}


def ip_text(family: int, raw: bytes) -> str:
    """Address text for the kernel's 16 address bytes (cached).

    >>> ip_text(2, bytes([127, 0, 0, 1]) + bytes(12)), ip_text(10, bytes(15) + b"\\x01")
    ('127.0.0.1', '::1')
    """
    return IP_TEXT[family][raw]


def ip4_key_bytes(key: int) -> bytes:
    """The 16 address bytes of a :class:`Columns` IPv4 key (``ip_text`` input).

    >>> ip4_key_bytes(Struct("=I").unpack(bytes([127, 0, 0, 1]))[0])[:4]
    b'\\x7f\\x00\\x00\\x01'
    """
    return _U32.pack(key) + bytes(12)


def chunk_part(data: bytes | memoryview) -> tuple[Any, bool]:
    """One ``recv`` of a dump as a :class:`RawRows` part, and whether the dump is done.

    Uniform messages (checked as in :func:`parse_chunk`) stay bytes; anything else is
    walked into a list.

    Raises:
        NetlinkError: the kernel answered with an error.
    """
    n = len(data)
    if n < 16:
        return [], False
    size, mtype = _HDR.unpack_from(data, 0)[:2]
    done = False
    body = n
    if n >= 20 and _HDR.unpack_from(data, n - 20)[:2] == (20, NLMSG_DONE):
        body, done = n - 20, True
    if mtype == SOCK_DIAG_BY_FAMILY and size >= 16 + _MSG.size and size % 4 == 0 and body:
        count, extra = divmod(body, size)
        view = memoryview(data)
        if not extra and _uniform_headers(view, size, body, count):
            return (view[:body], size), done
    rows: list[RawRow] = []
    return rows, _walk(data, rows)


def _uniform_headers(view: memoryview, size: int, body: int, count: int) -> bool:
    """Every message in ``view[:body]`` has the first one's length and type."""
    head = bytes(view[:6])
    return all(view[i:body:size].tobytes() == head[i : i + 1] * count for i in range(6))


def parse_attrs(data: bytes | memoryview, offset: int, end: int) -> dict[int, bytes]:
    """The netlink attributes between ``offset`` and ``end``: ``{type: payload}``.

    >>> parse_attrs(b"\\x08\\x00\\x15\\x00\\x2a\\x00\\x00\\x00", 0, 8)
    {21: b'*\\x00\\x00\\x00'}
    """
    attrs: dict[int, bytes] = {}
    while offset + 4 <= end:
        length, atype = _NLA.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            break
        attrs[atype & 0x3FFF] = bytes(data[offset + 4 : offset + length])
        offset += (length + 3) & ~3
    return attrs


def walk_with_attrs(data: bytes | memoryview) -> tuple[list[tuple[RawRow, dict[int, bytes]]], bool]:
    """Like :func:`parse_chunk`, keeping each message's attributes (for ``-e``)."""
    out: list[tuple[RawRow, dict[int, bytes]]] = []
    off, end = 0, len(data)
    while off + 16 <= end:
        length, mtype = _HDR.unpack_from(data, off)[:2]
        if length < 16 or off + length > end:
            break
        if mtype == SOCK_DIAG_BY_FAMILY and length >= 16 + _MSG.size:
            row: RawRow = _MSG.unpack_from(data, off + _MSG_OFF)
            out.append((row, parse_attrs(data, off + 16 + _MSG.size, off + length)))
        elif mtype == NLMSG_DONE:
            return out, True
        elif mtype == NLMSG_ERROR:
            _error(data, off, length)
        off += (length + 3) & ~3
    return out, False


# --- bytecode -------------------------------------------------------------------------

#: One alternative of a clause: a conjunction of conditions, each ``(op, operand)``.
#: ``op`` is ``"sport>="``-style text for ports and ``"src"``/``"dst"`` for addresses;
#: the operand is a port number, or ``(family, prefix_len, packed_address)``.
Alt = tuple[tuple[str, object], ...]

_PORT_OPS = {
    "sport==": BC_S_EQ,
    "sport>=": BC_S_GE,
    "sport<=": BC_S_LE,
    "dport==": BC_D_EQ,
    "dport>=": BC_D_GE,
    "dport<=": BC_D_LE,
}
_ADDR_OPS = {"src": BC_S_COND, "dst": BC_D_COND}


def _op_body(cond: tuple[str, object]) -> tuple[int, bytes]:
    """The opcode and the bytes after the 4-byte op header for one condition."""
    name, operand = cond
    code = _PORT_OPS.get(name)
    if code is not None:
        assert isinstance(operand, int)
        # The port travels in the ``no`` field of a second op (inet_diag_bc_run: op[1].no).
        return code, _OP.pack(0, 0, operand)
    assert isinstance(operand, tuple)
    family: int = operand[0]
    prefix: int = operand[1]
    packed: bytes = operand[2]
    return _ADDR_OPS[name], _HOSTCOND.pack(family, prefix, -1) + packed


def compile_filter(clauses: Sequence[Sequence[Alt]]) -> bytes:
    """Compile an AND of ORs of ANDs of conditions into inet_diag bytecode.

    The kernel runs the program per socket: each op moves ``yes`` bytes forward when
    its condition holds and ``no`` bytes when not; a socket matches when the program
    ends exactly at its last byte, so "reject" is a jump 4 bytes past the end (the
    most ``inet_diag_bc_audit`` allows). ``yes`` is a u8, so, as ``ss`` does, every
    condition falls through on success and an alternative that held leaves its
    clause with a ``JMP`` op (whose ``no``, a u16, is taken always). An empty clause
    list compiles to nothing.

    >>> compile_filter([[(("sport==", 22),)]]).hex()
    '0b080c0000001600'
    """
    layout = [[[_op_body(c) for c in alt] for alt in clause] for clause in clauses]

    def alt_len(alt: list[tuple[int, bytes]]) -> int:
        return sum(4 + len(b) for _, b in alt)

    # Every non-last alternative is followed by a 4-byte JMP to its clause's end.
    total = sum(alt_len(a) + 4 for clause in layout for a in clause) - 4 * len(layout)
    out = bytearray()
    for clause in layout:
        starts = []
        pos = len(out)
        for ai, alt in enumerate(clause):
            starts.append(pos)
            pos += alt_len(alt) + (4 if ai < len(clause) - 1 else 0)
        clause_end = pos
        for ai, alt in enumerate(clause):
            last_alt = ai == len(clause) - 1
            for code, body in alt:
                here = len(out)
                no = (total - here + 4) if last_alt else (starts[ai + 1] - here)
                out += _OP.pack(code, 4 + len(body), no) + body
            if not last_alt:
                out += _OP.pack(BC_JMP, 4, clause_end - len(out))
    return bytes(out)

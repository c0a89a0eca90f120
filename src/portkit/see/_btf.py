"""PURE: the kernel facts and the program behind the BPF owner pass (bytes in, bytes out).

``portkit ls -p`` needs, for every socket, the processes that hold it. Reading
``/proc/PID/fd/*`` costs a ``readlinkat`` per descriptor (about 5 us each: half a
second at 100,000 sockets). Linux can walk every process's open files in the
kernel instead: a BPF ``task_file`` iterator runs a small program once per open file
and writes what it returns into a file we read (``_bpfiter`` does that I/O). This
module holds the three pure pieces:

- :func:`layout`: what the program needs to know of this kernel, read from its BTF
  (``/sys/kernel/btf/vmlinux``): the type id of the iterator's target function and
  the byte offsets of the few struct members the program reads;
- :func:`program`: the program itself, assembled from those offsets (it needs Linux
  5.11+: the ``task_file`` iterator is 5.8, ``bpf_sock_from_file`` and
  ``bpf_get_current_task_btf`` are 5.11; an older verifier refuses it);
- :func:`holders` and :func:`pids`: the records the program wrote, as each
  socket's holders and as the set of processes seen.

What the program writes per open file, 16 bytes: the holder's pid as the reader's
PID namespace numbers it (``task->group_leader->thread_pid->numbers[level].nr``,
``level`` being the reader's own), the fd, and the socket inode (0 for a file that is
an IPv4 or IPv6 socket, so that the reader learns which processes the kernel
showed it).
"""

from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from array import array

__all__ = ["RECORD", "Layout", "holders", "layout", "pids", "program"]

#: Bytes per record the program writes: pid (u32), fd (u32), socket inode (u64).
RECORD = 16

_MAGIC = 0xEB9F
_HEADER = struct.Struct("<HBBIIIII")
# BTF kinds (include/uapi/linux/btf.h) -> u32 words that follow the 3-word btf_type:
# a fixed count, or a count per vlen item (True).
_EXTRA: dict[int, tuple[int, bool]] = {
    0: (0, False),  # UNKN
    1: (1, False),  # INT
    2: (0, False),  # PTR
    3: (3, False),  # ARRAY
    4: (3, True),  # STRUCT: name_off, type, offset per member
    5: (3, True),  # UNION
    6: (2, True),  # ENUM
    7: (0, False),  # FWD
    8: (0, False),  # TYPEDEF
    9: (0, False),  # VOLATILE
    10: (0, False),  # CONST
    11: (0, False),  # RESTRICT
    12: (0, False),  # FUNC
    13: (2, True),  # FUNC_PROTO
    14: (1, False),  # VAR
    15: (3, True),  # DATASEC
    16: (0, False),  # FLOAT
    17: (1, False),  # DECL_TAG
    18: (0, False),  # TYPE_TAG
    19: (3, True),  # ENUM64
}
_STRUCT, _UNION, _FUNC = 4, 5, 12
_MODIFIERS = (8, 9, 10, 11, 18)  # typedef, volatile, const, restrict, type tag

#: The iterator target's function (``bpf_iter_`` + the target name ``task_file``).
TARGET = "bpf_iter_task_file"
#: struct -> the members the program reads.
_MEMBERS = {
    "task_struct": ("group_leader", "thread_pid"),
    "pid": ("level", "numbers"),
    "file": ("f_inode",),
    "inode": ("i_ino",),
    "socket": ("sk",),
    "sock": ("__sk_common",),
    "sock_common": ("skc_family",),
}


class Layout:
    """What the program needs of one kernel build: ``func_id`` (BTF type id of
    :data:`TARGET`), ``upid_size`` and ``offsets`` (``"struct.member"`` -> bytes)."""

    __slots__ = ("func_id", "offsets", "upid_size")

    def __init__(self, func_id: int, offsets: dict[str, int], upid_size: int) -> None:
        self.func_id = func_id
        self.offsets = offsets
        self.upid_size = upid_size

    def __repr__(self) -> str:
        return f"Layout(func_id={self.func_id}, upid_size={self.upid_size}, {self.offsets})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layout) and (
            self.func_id,
            self.upid_size,
            self.offsets,
        ) == (other.func_id, other.upid_size, other.offsets)

    def to_text(self, key: str) -> str:
        """The layout as lines of text under ``key`` (which kernel it describes)."""
        lines = [key, f"func_id {self.func_id}", f"upid_size {self.upid_size}"]
        lines += [f"{name} {off}" for name, off in sorted(self.offsets.items())]
        return "\n".join(lines) + "\n"

    @classmethod
    def from_text(cls, text: str, key: str) -> Layout | None:
        """:meth:`to_text`'s layout back, or None when the text is of another
        kernel, damaged, or lacks a member."""
        lines = text.split("\n")
        if len(lines) < 3 or lines[0] != key or lines[-1] != "":
            return None
        values: dict[str, int] = {}
        for line in lines[1:-1]:
            name, _, number = line.partition(" ")
            if not number.isdigit():
                return None
            values[name] = int(number)
        func_id, upid_size = values.pop("func_id", 0), values.pop("upid_size", 0)
        wanted = {f"{s}.{m}" for s, members in _MEMBERS.items() for m in members}
        if not func_id or not upid_size or set(values) != wanted:
            return None
        return cls(func_id, values, upid_size)


def layout(data: bytes) -> Layout:
    """Read :class:`Layout` from the raw BTF of ``vmlinux``.

    Raises:
        ValueError: not BTF, damaged, or a kernel without the types or members needed.
    """
    from array import array

    if len(data) < _HEADER.size:
        raise ValueError("BTF: too short")
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = _HEADER.unpack_from(
        data
    )
    if magic != _MAGIC:
        raise ValueError("BTF: bad magic (a big-endian or non-BTF file)")
    types = data[hdr_len + type_off : hdr_len + type_off + type_len]
    strings = data[hdr_len + str_off : hdr_len + str_off + str_len]
    if len(types) != type_len or len(strings) != str_len or type_len % 4:
        raise ValueError("BTF: sections out of bounds")
    words = array("I")
    words.frombytes(types)

    wanted = {name: _string_offset(strings, name) for name in (TARGET, "upid", *_MEMBERS)}
    by_offset = {off: name for name, off in wanted.items() if off is not None}
    # type id -> word index of the types we want (ids count from 1, in file order)
    found: dict[tuple[str, int], list[tuple[int, int]]] = {}
    i, type_id, n = 0, 1, len(words)
    extra = _EXTRA
    while i + 2 < n:
        info = words[i + 1]
        kind = (info >> 24) & 0x1F
        name = by_offset.get(words[i])
        if name is not None:
            found.setdefault((name, kind), []).append((type_id, i))
        per = extra.get(kind)
        if per is None:
            raise ValueError(f"BTF: unknown kind {kind} at type {type_id}")
        i += 3 + (per[0] * (info & 0xFFFF) if per[1] else per[0])
        type_id += 1
    if i != n:
        raise ValueError("BTF: the type section ends inside a type")

    funcs = found.get((TARGET, _FUNC))
    if not funcs:
        raise ValueError(f"BTF: no function {TARGET} (a kernel before 5.8 or without iterators)")
    upids = found.get(("upid", _STRUCT))
    if not upids:
        raise ValueError("BTF: no struct upid")
    offsets: dict[str, int] = {}
    for struct_name, members in _MEMBERS.items():
        candidates = found.get((struct_name, _STRUCT), [])
        got = None
        for _, at in candidates:
            have = _members(words, strings, at, None)
            if all(m in have for m in members):
                got = have
                break
        if got is None:
            got = _members_deep(words, strings, candidates, members)
        for m in members:
            offsets[f"{struct_name}.{m}"] = got[m]
    return Layout(funcs[0][0], offsets, words[upids[0][1] + 2])


def _string_offset(strings: bytes, name: str) -> int | None:
    """Offset of ``name`` in the string section (it starts with the empty string, so
    every other string follows a NUL)."""
    at = strings.find(b"\0" + name.encode() + b"\0")
    return None if at < 0 else at + 1


def _members(
    words: array[int], strings: bytes, at: int, types_at: list[int] | None, depth: int = 0
) -> dict[str, int]:
    """``{member name: byte offset}`` of the struct or union whose btf_type starts at
    word ``at``; with ``types_at`` (word index per type id), anonymous struct and union
    members are opened too (8 levels at most: damaged BTF may nest without end)."""
    if depth > 8:
        raise ValueError("BTF: anonymous members nested too deep")
    w = words
    info = w[at + 1]
    vlen, bitfield = info & 0xFFFF, info >> 31
    out: dict[str, int] = {}
    for k in range(vlen):
        name_off, mtype, off = w[at + 3 + 3 * k : at + 6 + 3 * k]
        bits = off & 0xFFFFFF if bitfield else off
        if name_off:
            end = strings.find(b"\0", name_off)
            out[strings[name_off:end].decode("ascii", "replace")] = bits // 8
        elif types_at is not None:
            inner = _resolve(w, types_at, mtype)
            if inner is not None:
                for sub, sub_off in _members(w, strings, inner, types_at, depth + 1).items():
                    out.setdefault(sub, bits // 8 + sub_off)
    return out


def _resolve(words: array[int], types_at: list[int], type_id: int) -> int | None:
    """Word index of the struct or union behind ``type_id`` (through typedefs and
    qualifiers), or None."""
    w = words
    for _ in range(16):
        if not 0 < type_id < len(types_at):
            return None
        at = types_at[type_id]
        kind = (w[at + 1] >> 24) & 0x1F
        if kind in (_STRUCT, _UNION):
            return at
        if kind not in _MODIFIERS:
            return None
        type_id = w[at + 2]
    return None


def _members_deep(
    words: array[int], strings: bytes, candidates: list[tuple[int, int]], members: tuple[str, ...]
) -> dict[str, int]:
    """The slow path: members that sit in anonymous unions (a second walk numbers
    every type)."""
    w = words
    types_at = [0]
    i, n = 0, len(w)
    while i + 2 < n:
        types_at.append(i)
        info = w[i + 1]
        per = _EXTRA[(info >> 24) & 0x1F]
        i += 3 + (per[0] * (info & 0xFFFF) if per[1] else per[0])
    for _, at in candidates:
        have = _members(w, strings, at, types_at)
        if all(m in have for m in members):
            return have
    raise ValueError(f"BTF: no struct with members {', '.join(members)}")


# --- the program ---------------------------------------------------------------------
# eBPF instructions: opcode, dst | src << 4, 16-bit offset, 32-bit immediate.
_INSN = struct.Struct("<BBhi")
_LDX = {8: 0x79, 4: 0x61, 2: 0x69}  # BPF_LDX | BPF_MEM | size
_STX = {8: 0x7B, 4: 0x63}
_MOV_IMM, _MOV_REG, _ADD_IMM, _ADD_REG, _MUL_IMM = 0xB7, 0xBF, 0x07, 0x0F, 0x27
_JEQ_IMM, _JNE_IMM, _CALL, _EXIT = 0x15, 0x55, 0x85, 0x95
# Helper ids (enum bpf_func_id).
_PROBE_READ_KERNEL, _SEQ_WRITE, _GET_CURRENT_TASK_BTF, _SOCK_FROM_FILE = 113, 127, 158, 162
_AF_INET, _AF_INET6 = 2, 10
# struct bpf_iter__task_file: meta, task, fd (u32), file: one u64 slot each.
_CTX_META, _CTX_TASK, _CTX_FD, _CTX_FILE = 0, 8, 16, 24


def program(lay: Layout) -> bytes:
    """The iterator program for :func:`layout`'s kernel, as eBPF bytecode.

    Per (task, file) it writes one :data:`RECORD` (pid, fd, inode) with
    ``bpf_seq_write``; the inode is 0 unless the file is an IPv4 or IPv6 socket
    (``bpf_sock_from_file``, then the socket's family), so the map stays the size
    of what ``ls`` can show. The pid is read with ``bpf_probe_read_kernel`` from the
    ``upid`` of the reader's PID namespace level, so it is the pid the reader's
    ``/proc`` shows.
    """
    o = lay.offsets
    family = o["sock.__sk_common"] + o["sock_common.skc_family"]
    code: list[tuple[int, int, int, int | str, int] | str] = [
        (_LDX[8], 6, 1, _CTX_META, 0),  # r6 = ctx->meta
        (_LDX[8], 7, 1, _CTX_TASK, 0),  # r7 = ctx->task
        (_LDX[4], 9, 1, _CTX_FD, 0),  # r9 = ctx->fd
        (_LDX[8], 8, 1, _CTX_FILE, 0),  # r8 = ctx->file
        (_JEQ_IMM, 7, 0, "out", 0),  # the end-of-iteration call has no task
        (_JEQ_IMM, 8, 0, "out", 0),
        (_MOV_REG, 1, 8, 0, 0),
        (_CALL, 0, 0, 0, _SOCK_FROM_FILE),  # r0 = struct socket *, or NULL
        (_MOV_IMM, 4, 0, 0, 0),  # r4 = 0: not an inet socket
        (_JEQ_IMM, 0, 0, "store", 0),
        (_LDX[8], 0, 0, o["socket.sk"], 0),
        (_LDX[2], 3, 0, family, 0),  # r3 = sk->__sk_common.skc_family
        (_JEQ_IMM, 3, 0, "inet", _AF_INET),
        (_JNE_IMM, 3, 0, "store", _AF_INET6),
        "inet",
        (_LDX[8], 2, 8, o["file.f_inode"], 0),
        (_LDX[8], 4, 2, o["inode.i_ino"], 0),  # r4 = file->f_inode->i_ino
        "store",
        (_STX[8], 10, 4, -8, 0),  # record[8:16] = inode
        (_STX[4], 10, 9, -12, 0),  # record[4:8] = fd
        (_CALL, 0, 0, 0, _GET_CURRENT_TASK_BTF),  # r0 = the reading task
        (_LDX[8], 0, 0, o["task_struct.thread_pid"], 0),
        (_LDX[4], 8, 0, o["pid.level"], 0),  # r8 = the reader's PID namespace level
        (_MUL_IMM, 8, 0, 0, lay.upid_size),
        (_LDX[8], 3, 7, o["task_struct.group_leader"], 0),
        (_LDX[8], 3, 3, o["task_struct.thread_pid"], 0),
        (_ADD_IMM, 3, 0, 0, o["pid.numbers"]),
        (_ADD_REG, 3, 8, 0, 0),  # r3 = &pid->numbers[level] (upid.nr comes first)
        (_MOV_REG, 1, 10, 0, 0),
        (_ADD_IMM, 1, 0, 0, -RECORD),
        (_MOV_IMM, 2, 0, 0, 4),
        (_CALL, 0, 0, 0, _PROBE_READ_KERNEL),  # record[0:4] = pid
        (_LDX[8], 1, 6, 0, 0),  # r1 = meta->seq
        (_MOV_REG, 2, 10, 0, 0),
        (_ADD_IMM, 2, 0, 0, -RECORD),
        (_MOV_IMM, 3, 0, 0, RECORD),
        (_CALL, 0, 0, 0, _SEQ_WRITE),
        "out",
        (_MOV_IMM, 0, 0, 0, 0),
        (_EXIT, 0, 0, 0, 0),
    ]
    labels: dict[str, int] = {}
    pc = 0
    for item in code:
        if isinstance(item, str):
            labels[item] = pc
        else:
            pc += 1
    out = []
    pc = 0
    for item in code:
        if isinstance(item, str):
            continue
        op, dst, src, off, imm = item
        if isinstance(off, str):
            off = labels[off] - pc - 1
        out.append(_INSN.pack(op, dst | src << 4, off, imm))
        pc += 1
    return b"".join(out)


def holders(raw: bytes) -> tuple[array[int], array[int], dict[int, tuple[int, ...]]]:
    """The program's records as ``(inodes, pids, several)``: each socket's one holder
    in two columns, and ``{inode: (pid, ...)}`` for the sockets held by several
    processes (left out of the columns).

    Raises:
        ValueError: a torn record.
    """
    from array import array
    from itertools import compress

    pid_col, inode_col = _columns(raw)
    inodes = array("Q", compress(inode_col, inode_col))  # inet sockets only (inode != 0)
    pids = array("q", compress(pid_col, inode_col))
    if len(set(inodes)) == len(inodes):
        return inodes, pids, {}
    # A socket in several descriptors: dup()ed, or inherited by a forked process.
    found: dict[int, tuple[int, ...]] = {}
    get = found.get
    for inode, pid in zip(inodes, pids, strict=True):
        have = get(inode)
        if have is None:
            found[inode] = (pid,)
        elif pid not in have:
            found[inode] = (*have, pid)
    single = [ino for ino, held in found.items() if len(held) == 1]
    return (
        array("Q", single),
        array("q", [found[ino][0] for ino in single]),
        {ino: held for ino, held in found.items() if len(held) > 1},
    )


def pids(raw: bytes) -> set[int]:
    """Every pid the records show (a process with any open file)."""
    return set(_columns(raw)[0])


def _columns(raw: bytes) -> tuple[array[int], array[int]]:
    """The pid and inode columns of the records."""
    from array import array

    if len(raw) % RECORD:
        raise ValueError("BPF iterator: torn record")
    halves = array("I")
    halves.frombytes(raw)
    wide = array("Q")
    wide.frombytes(raw)
    return halves[0::4], wide[1::2]

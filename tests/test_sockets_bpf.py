"""The BPF owner pass: BTF layout, the program, its records, and the pass itself.

The pure parts (``portkit.see._btf``) are tested on BTF and records built here;
the live parts load the program into this machine's kernel (CI runs as root on a
kernel with BTF, like every machine of this project) and compare what it finds with
the ``/proc/*/fd`` pass on the same sockets.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.see import _bpfiter, _btf

# --- BTF built here ----------------------------------------------------------------------


class _Btf:
    """A little BTF writer: types in order (ids from 1) and their strings."""

    def __init__(self) -> None:
        self.strings = b"\0"
        self.words: list[int] = []
        self.count = 0

    def name(self, text: str) -> int:
        if not text:
            return 0
        key = text.encode() + b"\0"
        at = self.strings.find(b"\0" + key)
        if at >= 0:
            return at + 1
        self.strings += key
        return len(self.strings) - len(key)

    def add(
        self, name: str, kind: int, vlen: int, size: int, extra: list[int], flag: int = 0
    ) -> int:
        self.words += [self.name(name), flag << 31 | kind << 24 | vlen, size, *extra]
        self.count += 1
        return self.count

    def struct(
        self, name: str, members: list[tuple[str, int, int]], kind: int = 4, flag: int = 0
    ) -> int:
        """``members``: (name, type id, offset in bits, or the kind_flag encoding)."""
        extra = [w for m, t, off in members for w in (self.name(m), t, off)]
        return self.add(name, kind, len(members), 64, extra, flag)

    def build(self) -> bytes:
        types = struct.pack(f"<{len(self.words)}I", *self.words)
        header = struct.pack(
            "<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(self.strings)
        )
        return header + types + self.strings


def _kernel_like(*, anonymous: bool = False, target: str = _btf.TARGET) -> bytes:
    b = _Btf()
    i32 = b.add("int", 1, 0, 4, [32])
    b.struct("upid", [("nr", i32, 0), ("ns", i32, 64)])
    b.struct(
        "task_struct",
        [("pid", i32, 8 * 100), ("group_leader", i32, 8 * 1328), ("thread_pid", i32, 8 * 1368)],
    )
    b.struct("pid", [("count", i32, 0), ("level", i32, 32), ("numbers", i32, 8 * 144)])
    if anonymous:  # f_inode inside an anonymous union at byte 16 of struct file
        union = b.struct("", [("f_llist", i32, 0), ("f_inode", i32, 8 * 16)], kind=5)
        b.struct("file", [("f_mode", i32, 0), ("", union, 8 * 16)])
    else:
        b.struct("file", [("f_mode", i32, 0), ("f_inode", i32, 8 * 32)])
    b.struct("inode", [("i_mode", i32, 0), ("i_ino", i32, 8 * 64)])
    b.struct("socket", [("state", i32, 0), ("sk", i32, 8 * 24)])
    b.struct("sock", [("__sk_common", i32, 0)])
    # skc_family as the kind_flag encoding: bitfield size 0 in the top 8 bits
    b.struct("sock_common", [("skc_daddr", i32, 0), ("skc_family", i32, 8 * 16)], flag=1)
    proto = b.add("", 13, 0, 0, [])
    b.add(target, 12, 0, proto, [])
    return b.build()


def test_layout_reads_offsets_and_the_target_function() -> None:
    lay = _btf.layout(_kernel_like())
    assert lay.func_id == 11  # the 11th type: ids count from 1 in file order
    assert lay.upid_size == 64
    assert lay.offsets == {
        "task_struct.group_leader": 1328,
        "task_struct.thread_pid": 1368,
        "pid.level": 4,
        "pid.numbers": 144,
        "file.f_inode": 32,
        "inode.i_ino": 64,
        "socket.sk": 24,
        "sock.__sk_common": 0,
        "sock_common.skc_family": 16,
    }


def test_layout_opens_anonymous_unions() -> None:
    assert _btf.layout(_kernel_like(anonymous=True)).offsets["file.f_inode"] == 32


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "too short"),
        (b"\xeb\x9f" + bytes(30), "bad magic"),
        (_kernel_like()[:200], "out of bounds"),
        (_kernel_like(target="bpf_iter_task"), "no function bpf_iter_task_file"),
    ],
)
def test_layout_refuses_what_it_cannot_use(data: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        _btf.layout(data)


@given(st.binary(max_size=600), st.binary(max_size=80))
def test_layout_of_any_types_is_a_layout_or_a_value_error(types: bytes, strings: bytes) -> None:
    types = types[: len(types) // 4 * 4]
    strings = b"\0" + _btf.TARGET.encode() + b"\0upid\0file\0" + strings
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    with contextlib.suppress(ValueError):
        _btf.layout(header + types + strings)


def test_layout_text_round_trip_and_refusals() -> None:
    lay = _btf.layout(_kernel_like())
    text = lay.to_text("6.18 #1 5515852 1")
    assert _btf.Layout.from_text(text, "6.18 #1 5515852 1") == lay
    assert _btf.Layout.from_text(text, "6.19 #1 5515852 1") is None  # another kernel
    assert _btf.Layout.from_text(text.replace("pid.level 4\n", ""), "6.18 #1 5515852 1") is None
    assert _btf.Layout.from_text(text.replace(" 1368", " x"), "6.18 #1 5515852 1") is None
    assert _btf.Layout.from_text(text[:-1], "6.18 #1 5515852 1") is None  # cut short


def test_program_jumps_land_inside_it_and_it_ends_with_exit() -> None:
    code = _btf.program(_btf.layout(_kernel_like()))
    insns = [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]
    assert insns[-1][0] == 0x95  # exit
    for pc, (op, _, off, _) in enumerate(insns):
        if op & 0x07 == 0x05 and op not in (0x85, 0x95):  # a jump
            assert 0 <= pc + 1 + off < len(insns)


# --- the records -------------------------------------------------------------------------


def _records(*rows: tuple[int, int, int]) -> bytes:
    return b"".join(struct.pack("<IIQ", pid, fd, ino) for pid, fd, ino in rows)


def test_holders_one_column_per_field_and_shared_sockets_apart() -> None:
    raw = _records((7, 3, 1000), (7, 4, 0), (7, 5, 1001), (9, 3, 1001), (9, 4, 1001), (9, 5, 2**40))
    inodes, pids, several = _btf.holders(raw)
    assert dict(zip(inodes, pids, strict=True)) == {1000: 7, 2**40: 9}
    assert several == {1001: (7, 9)}
    assert _btf.pids(raw) == {7, 9}


def test_holders_refuse_a_torn_record() -> None:
    with pytest.raises(ValueError, match="torn"):
        _btf.holders(_records((7, 3, 1000))[:-1])


@given(st.lists(st.tuples(st.integers(1, 50), st.integers(0, 9), st.integers(0, 30)), max_size=60))
def test_holders_agree_with_a_plain_fold(rows: list[tuple[int, int, int]]) -> None:
    inodes, pids, several = _btf.holders(_records(*rows))
    got = {ino: (pid,) for ino, pid in zip(inodes, pids, strict=True)} | several
    want: dict[int, tuple[int, ...]] = {}
    for pid, _, ino in rows:
        if ino and pid not in want.get(ino, ()):
            want[ino] = (*want.get(ino, ()), pid)
    assert got == want


# --- this kernel -------------------------------------------------------------------------


def test_this_kernels_btf_has_what_the_program_needs() -> None:
    lay = _btf.layout(Path(_bpfiter.BTF_PATH).read_bytes())
    assert lay.func_id > 0 and lay.upid_size >= 8
    assert lay.offsets["pid.level"] < lay.offsets["pid.numbers"]


def test_layout_cache_is_written_whole_and_distrusted_when_others_may_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setattr(_bpfiter, "CACHE_DIR", str(cache))
    fresh = _bpfiter._layout()
    kept = cache / "btf-layout"
    assert kept.read_text().splitlines()[1] == f"func_id {fresh.func_id}"
    assert [p.name for p in cache.iterdir()] == ["btf-layout"]  # no temporary left
    kept.write_text(kept.read_text().replace(f"func_id {fresh.func_id}", "func_id 1"))
    kept.chmod(0o666)  # writable by anyone: not trusted, read from the BTF again
    assert _bpfiter._layout() == fresh
    assert kept.stat().st_mode & 0o777 == 0o644  # and kept anew
    kept.write_text("damaged\n")
    assert _bpfiter._layout() == fresh


HOLD = r"""
import json, os, socket, sys
from portkit.see._owners import OwnerScan, scan_owners
held = [socket.socket(), socket.socket(socket.AF_INET6), socket.socket(type=socket.SOCK_DGRAM),
        socket.socket(socket.AF_UNIX)]
held[0].bind(("127.0.0.1", 0)); held[0].listen()
inodes = [os.fstat(s.fileno()).st_ino for s in held]
scan = OwnerScan(min_fds=0)
source = scan.source
found, hidden = scan.result(None)
alone, _ = scan_owners(inodes)
print(json.dumps({"source": source, "me": os.getpid(),
                  "bpf": [found.get(i) for i in inodes], "proc": [alone.get(i) for i in inodes]}))
"""


def _hold(*prefix: str, env: dict[str, str] | None = None) -> dict[str, object]:
    r = subprocess.run(
        [*prefix, sys.executable, "-c", HOLD],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout.splitlines()[-1]))


def test_bpf_pass_finds_inet_sockets_as_proc_does() -> None:
    got = _hold()
    me = got["me"]
    assert got["source"] == "bpf"
    assert got["bpf"] == [[me], [me], [me], None]  # a Unix socket is not ls's business
    assert got["proc"] == [[me], [me], [me], [me]]


def test_bpf_pass_numbers_pids_as_the_readers_pid_namespace_does() -> None:
    # Inside a new PID namespace (a container's view) the holder is pid 1 there,
    # not its pid on the host.
    got = _hold("unshare", "--pid", "--fork", "--mount-proc")
    assert got["source"] == "bpf"
    assert got["me"] == 1
    assert got["bpf"][:3] == [[1], [1], [1]]
    assert got["bpf"][:3] == got["proc"][:3]


def test_without_cap_bpf_the_pass_is_the_proc_one() -> None:
    got = _hold("setpriv", "--inh-caps=-all", "--bounding-set=-all", "--")
    assert got["source"] == "proc"
    assert got["proc"][:3] == [[got["me"]]] * 3


def test_portkit_no_bpf_keeps_the_program_out() -> None:
    got = _hold(env={"PORTKIT_NO_BPF": "1"})
    assert got["source"] == "proc"
    assert got["bpf"][:3] == [[got["me"]]] * 3  # the same owners, from /proc


def test_a_loaded_program_is_reused() -> None:
    s = socket.socket()
    try:
        first = _bpfiter.task_files()
        assert first is not None and _bpfiter.loaded()
        again = _bpfiter.task_files()
        ino = os.fstat(s.fileno()).st_ino
        inodes, pids, _ = _btf.holders(again or b"")
        assert dict(zip(inodes, pids, strict=True)).get(ino) == os.getpid()
    finally:
        s.close()

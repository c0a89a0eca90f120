"""Interfaces, their veth peers and namespace ids (see._addrs): the pure readers of the
kernel's RTM_NEWLINK and RTM_NEWNSID replies, and the real kernel's answers for a veth
pair between two namespaces made for the test."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
from collections.abc import Iterator

import pytest

from portkit.errors import ParseError
from portkit.see._addrs import (
    build_link_request,
    build_nsid_request,
    links,
    neighbours,
    nsid,
    parse_links,
    parse_nsid,
)

_NLMSG = struct.Struct("=IHHII")


def _attr(kind: int, value: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(value), kind) + value
    return raw + b"\0" * (-len(raw) % 4)


def _msg(kind: int, body: bytes) -> bytes:
    return _NLMSG.pack(_NLMSG.size + len(body), kind, 2, 1, 0) + body


def _link(index: int, name: str, peer: int | None = None, peer_ns: int | None = None) -> bytes:
    body = struct.pack("=BxHiII", socket.AF_UNSPEC, 1, index, 0, 0)
    body += _attr(3, name.encode() + b"\0")
    if peer is not None:
        body += _attr(5, struct.pack("=I", peer))
    if peer_ns is not None:
        body += _attr(37, struct.pack("=i", peer_ns))
    return _msg(16, body)


DONE = _msg(3, struct.pack("=i", 0))


def test_links_name_each_interface_its_peer_and_the_peer_namespace() -> None:
    data = _link(1, "lo") + _link(4, "veth1a2b", peer=3, peer_ns=0) + _link(5, "br0", peer=5)
    found, done = parse_links(data)
    assert found == [(1, "lo", 0, -1), (4, "veth1a2b", 3, 0), (5, "br0", 5, -1)]
    assert not done
    assert parse_links(DONE) == ([], True)


def test_other_messages_in_a_link_dump_are_skipped() -> None:
    other = _msg(20, b"\0" * 8)
    assert parse_links(other + _link(2, "eth0") + DONE) == ([(2, "eth0", 0, -1)], True)


@pytest.mark.parametrize(
    "data",
    [
        _link(2, "eth0")[:-3],  # cut short
        _NLMSG.pack(4, 16, 0, 0, 0),  # a length shorter than its own header
        _msg(16, struct.pack("=BxHiII", 0, 1, 2, 0, 0) + struct.pack("=HH", 64, 3)),
    ],
)
def test_broken_link_replies_are_parse_errors(data: bytes) -> None:
    with pytest.raises(ParseError):
        parse_links(data)


def test_a_refused_dump_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="refused"):
        parse_links(_msg(2, struct.pack("=i", -1)))


def test_nsid_replies() -> None:
    reply = _msg(88, struct.pack("=Bxxx", 0) + _attr(1, struct.pack("=i", 7)))
    assert parse_nsid(reply) == 7
    unassigned = _msg(88, struct.pack("=Bxxx", 0) + _attr(1, struct.pack("=i", -1)))
    assert parse_nsid(unassigned) == -1
    with pytest.raises(ParseError):
        parse_nsid(_msg(88, struct.pack("=Bxxx", 0)))


def test_requests_are_what_the_kernel_reads() -> None:
    length, kind, flags, _seq, _pid = _NLMSG.unpack_from(build_link_request())
    assert (length, kind, flags) == (32, 18, 0x301)
    request = build_nsid_request(9)
    length, kind, flags, _seq, _pid = _NLMSG.unpack_from(request)
    assert (length, kind, flags) == (28, 90, 1)
    assert struct.unpack_from("=HHI", request, 20) == (8, 3, 9)


# --- the real kernel ------------------------------------------------------------------


@pytest.fixture
def pair() -> Iterator[tuple[str, str, str]]:
    """Namespaces a and b joined by a veth pair, and c joined to nothing."""
    names = [f"pklink{os.getpid()}{x}" for x in "abc"]
    for name in names:
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(
            ["ip", "-n", names[0], "link", "add", "va", "type", "veth",
             "peer", "name", "vb", "netns", names[1]],
            check=True,
        )  # fmt: skip
        yield tuple(f"/run/netns/{n}" for n in names)  # type: ignore[misc]
    finally:
        for name in names:
            subprocess.run(["ip", "netns", "del", name], check=False)


def _inode(path: str) -> int:
    return os.stat(path).st_ino


@pytest.mark.netns
def test_a_veth_pair_leads_from_one_namespace_into_the_other(pair: tuple[str, str, str]) -> None:
    a, b, c = pair
    (va,) = [row for row in links(a) if row[1] == "va"]
    (vb,) = [row for row in links(b) if row[1] == "vb"]
    assert va[2] == vb[0] and vb[2] == va[0]  # each names the other's index
    assert va[3] == nsid(b, a) >= 0  # and the other's namespace, by the id a gives b
    assert nsid(c, a) == -1  # a gives no id to a namespace it has no link into
    every = {_inode(p): p for p in pair}
    assert neighbours(every, a) == {_inode(b)}
    assert neighbours(every, b) == {_inode(a)}
    assert neighbours(every, c) == set()

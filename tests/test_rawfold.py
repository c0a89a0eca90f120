"""The column-wise fold of the kernel's raw rows (see._rawfold) against the row one.

``stats``, ``top`` and the exporter fold a dump straight from the kernel's replies
(strided columns, masks, counters) instead of decoding every row first; the answer
must be what ``compute_stats`` and the exporter's row folds give for the same rows:

- in a network namespace of this module's own (``pk12f-<pid>``) with known sockets:
  TCP listeners (wildcard, one address, IPv6 only, dual-stack, one inside the
  ephemeral range, one whose queue is never accepted), established pairs, TIME-WAIT
  on the client and on the server side, CLOSE-WAIT, a client bound to a port outside
  the ephemeral range, UDP bound and connected. Every way the sockets are read
  (with tcp_info, timers only, plain, the /proc fallback), every reply kept as the
  kernel sent it and re-packed as uniform replies, folds to the same stats; the
  exporter's /metrics text is the same from the fold and from rows; the traffic
  columns are the entries' values;
- on made-up dumps (hypothesis): any rows, in list parts and uniform replies.
"""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portkit.model import Endpoint, PortRange, parse_ports
from portkit.see import Query, compute_stats, scan
from portkit.see import _netlink as nl
from portkit.see._forecast import time_wait_ages
from portkit.see._rawfold import fold
from portkit.see._rows import decode

from .test_tcpinfo import _info, _message, infos, message_args

pytestmark = [pytest.mark.netns]

NS = f"pk12f-{os.getpid()}"
EPH = PortRange(40000, 40999)

#: The workload, run inside the namespace; prints "ready" and holds every socket until
#: stdin closes.
WORKLOAD = r"""
import socket, sys, time
keep = []
def listen(family, addr, port, v6only=None, backlog=64):
    s = socket.socket(family)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if v6only is not None:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
    s.bind((addr, port)); s.listen(backlog); keep.append(s); return s
def pairs(lst, family, addr, port, n, bind=None):
    out = []
    for _ in range(n):
        c = socket.socket(family)
        if bind is not None:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); c.bind(bind)
        c.connect((addr, port)); a = lst.accept()[0]
        keep.extend((c, a)); out.append((c, a))
    return out
wild = listen(socket.AF_INET, "0.0.0.0", 8080)
one = listen(socket.AF_INET, "127.0.0.1", 8081)
v6 = listen(socket.AF_INET6, "::", 8082, v6only=1)
dual = listen(socket.AF_INET6, "::", 8083, v6only=0)
inside = listen(socket.AF_INET, "127.0.0.1", 40005)
queued = listen(socket.AF_INET, "127.0.0.1", 8084)
pairs(wild, socket.AF_INET, "127.0.0.1", 8080, 300)
pairs(wild, socket.AF_INET, "127.0.0.1", 8080, 20, bind=("127.0.0.2", 0))
pairs(one, socket.AF_INET, "127.0.0.1", 8081, 40)
pairs(v6, socket.AF_INET6, "::1", 8082, 30)
pairs(dual, socket.AF_INET, "127.0.0.1", 8083, 20)
pairs(inside, socket.AF_INET, "127.0.0.1", 40005, 15)
pairs(wild, socket.AF_INET, "127.0.0.1", 8080, 1, bind=("127.0.0.1", 1000))
for c, a in pairs(wild, socket.AF_INET, "127.0.0.1", 8080, 8):
    c.close(); a.close()           # the client closes first: TIME-WAIT on its side
for c, a in pairs(one, socket.AF_INET, "127.0.0.1", 8081, 4):
    a.close(); time.sleep(0.01); c.close()  # the server first: TIME-WAIT on 8081
for c, a in pairs(wild, socket.AF_INET, "127.0.0.1", 8080, 5):
    a.close()                      # CLOSE-WAIT on the client, FIN-WAIT-2 on the server
for _ in range(5):                 # never accepted: in the accept queue
    c = socket.socket(); c.connect(("127.0.0.1", 8084)); keep.append(c)
for port, family, addr in ((5353, socket.AF_INET, "0.0.0.0"), (5354, socket.AF_INET6, "::")):
    u = socket.socket(family, socket.SOCK_DGRAM); u.bind((addr, port)); keep.append(u)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.connect(("127.0.0.1", 5353)); keep.append(u)
time.sleep(0.2)
print("ready", flush=True)
sys.stdin.read()
"""


def _ns(*args: str) -> None:
    subprocess.run(["ip", "netns", "exec", NS, *args], check=True, capture_output=True)


class Workload:
    def __init__(self, name: str, pid: int) -> None:
        self.name = name
        self.pid = pid


@pytest.fixture(scope="module")
def lab() -> Iterator[Workload]:
    subprocess.run(["ip", "netns", "add", NS], check=True, capture_output=True)
    proc = None
    try:
        _ns("ip", "link", "set", "lo", "up")
        _ns("ip", "addr", "add", "127.0.0.2/8", "dev", "lo")
        _ns("sysctl", "-q", "-w", f"net.ipv4.ip_local_port_range={EPH.start} {EPH.end}")
        proc = subprocess.Popen(
            ["ip", "netns", "exec", NS, sys.executable, "-c", WORKLOAD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        yield Workload(NS, proc.pid)  # ip netns exec execs python: the holder's pid
    finally:
        if proc is not None:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                proc.wait(timeout=20)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        subprocess.run(["ip", "netns", "del", NS], check=False)


# --- re-packing rows as uniform replies ------------------------------------------------

_PACK = struct.Struct("=IHHII" + nl._MSG_FMT.replace("12x4x", "4xII4x"))


def uniform(rows: list[nl.RawRow]) -> tuple[memoryview, int]:
    """Rows as one uniform reply: whole messages of 88 bytes (a header and the
    inet_diag_msg, no attribute), as ``RawRows`` keeps the kernel's."""
    data = b"".join(
        _PACK.pack(_PACK.size, nl.SOCK_DIAG_BY_FAMILY, 2, 1, 0, *t[:6], 7, 9, *t[6:]) for t in rows
    )
    return memoryview(data), _PACK.size


def repacked(batches: list[tuple[int, int, nl.RawRows]]) -> list[tuple[int, int, nl.RawRows]]:
    """The same rows, each reply turned into a uniform one (and every list part too)."""
    return [(family, proto, nl.RawRows([uniform(list(raw))])) for family, proto, raw in batches]


def _by_rows(found: Any, eph: PortRange, ages: Any) -> Any:
    rows = [
        r
        for family, proto, raw in found.batches
        for r in decode(raw, family, proto, found.listen_ports.get(proto, ()))
    ]
    return compute_stats(rows, eph, time_wait=ages)


def _any_order(query: Query) -> Query:
    from portkit.see._tcpinfo import WANT_ANY_ORDER

    query.health |= WANT_ANY_ORDER
    return query


QUERIES = {
    "tcp_info": Query(all=True, timers=True, info=True),
    "tcp_info, any order": _any_order(Query(all=True, timers=True, info=True)),
    "timers": Query(all=True, timers=True),
    "timers, any order": _any_order(Query(all=True, timers=True)),
    "plain": Query(all=True),
}


@pytest.mark.parametrize("how", sorted(QUERIES))
def test_fold_is_compute_stats_of_the_decoded_rows(lab: Workload, how: str) -> None:
    found = scan(QUERIES[how], netns=lab.name)
    assert found.batches is not None
    ages = time_wait_ages(found.batches, found.listen_ports, EPH)
    want = _by_rows(found, EPH, ages)
    for batches in (found.batches, repacked(found.batches)):
        got = fold(batches, found.listen_ports, EPH, time_wait=ages)
        assert got.stats == want
        assert list(got.stats.counts.items()) == list(want.counts.items())  # same order
    # what the workload holds, so that the equality above is about something
    by_port = {(ls.ip, ls.port): ls.connections for ls in want.listeners}
    assert by_port[("0.0.0.0", 8080)] == 300 + 20 + 1 + 5  # TIME-WAIT not counted
    assert by_port[("127.0.0.1", 8081)] == 40
    assert by_port[("::", 8082)] == 30
    assert by_port[("::", 8083)] == 20
    assert by_port[("127.0.0.1", 40005)] == 15
    assert want.time_wait == 8 + 4
    assert {(d.source_ip, d.ip, d.port) for d in want.destinations} >= {
        ("127.0.0.2", "127.0.0.1", 8080),
        ("::1", "::1", 8082),
        ("127.0.0.1", "127.0.0.1", 40005),
    }


def test_fold_of_the_proc_fallback(lab: Workload) -> None:
    from portkit.see._linux import proc_dump
    from portkit.see._netns import run_in_netns

    def read() -> Any:
        return proc_dump((nl.AF_INET, nl.AF_INET6), (nl.IPPROTO_TCP, nl.IPPROTO_UDP))

    found = run_in_netns(f"/run/netns/{lab.name}", read)
    assert all(isinstance(p, list) for _, _, raw in found.batches for p in raw.chunks())
    want = _by_rows(found, EPH, None)
    assert fold(found.batches, found.listen_ports, EPH).stats == want
    assert want.total > 800


def test_top_snapshot_names_the_listeners_owners(lab: Workload) -> None:
    from portkit.exporter.snapshot import take_snapshot

    snap = take_snapshot(owners=True, netns=lab.name)
    assert snap.fold is not None
    want = compute_stats(snap.rows, snap.stats.ephemeral, time_wait=snap.time_wait)
    assert snap.stats == want  # the rows decoded on first use, owners attached
    assert {ls.pid for ls in snap.stats.listeners} == {lab.pid}
    assert snap.listening == [r for r in snap.rows if r[5] is None]


def _text(fams: list[Any]) -> bytes:
    from prometheus_client.exposition import generate_latest

    from portkit.exporter import _to_prometheus

    class Fixed:
        def collect(self) -> list[Any]:
            return [_to_prometheus(f) for f in fams]

    return bytes(generate_latest(Fixed()))  # type: ignore[arg-type]


def test_metrics_text_from_the_fold_is_the_one_from_rows(lab: Workload, tmp_path: Any) -> None:
    from portkit.exporter import unexpected_family
    from portkit.exporter.metrics import families
    from portkit.exporter.snapshot import Snapshot, provider
    from portkit.plan import Listener, load_plan, snapshot_text

    snap = provider(traffic=True, containers=False, netns=lab.name)()
    assert snap.fold is not None and snap.traffic
    rows = Snapshot(
        snap.taken,
        list(snap.rows),
        compute_stats(snap.rows, snap.stats.ephemeral, time_wait=snap.time_wait),
        time_wait=snap.time_wait,
    )
    assert rows.fold is None
    rows.traffic = snap.traffic
    dests = tuple(
        Endpoint.parse(d)
        for d in ("127.0.0.1:8080", "[::1]:8082", "127.0.0.1:8083", "127.0.0.1:40005")
    )
    # 1000: a client's local port, nothing listens there; 40005 listens in the range
    ports = parse_ports("1000,8080,8081,8084,9999,40000-40010")
    assert _text(families(snap)) == _text(families(rows))
    assert _text(families(snap, destinations=dests)) == _text(families(rows, destinations=dests))
    both: dict[str, Any] = {"ports": ports, "destinations": dests}
    assert _text(families(snap, **both)) == _text(families(rows, **both))
    by_fold = _text(families(snap, ports=ports))
    assert b'portkit_port_connections{port="1000",protocol="tcp",state="established"} 1.0' in (
        by_fold
    )
    path = tmp_path / "baseline.yaml"
    path.write_text(snapshot_text([Listener("tcp", "0.0.0.0", 8080, "python3", None)], "lab"))
    plan = load_plan([str(path)], environ={})
    unexpected = _text([unexpected_family(snap, plan)])
    assert unexpected == _text([unexpected_family(rows, plan)])
    assert b'port="8081"' in unexpected and b'port="8080"' not in unexpected


def test_traffic_columns_are_the_entries_values(lab: Workload) -> None:
    from portkit._sockrow import LOCAL_PORT, PROTOCOL, REMOTE_IP
    from portkit.see._tcpinfo import (
        BYTES_ACKED,
        BYTES_RECEIVED,
        E_COOKIE,
        E_INFO,
        RTT,
        SEGS_OUT,
        STATE,
        TOTAL_RETRANS,
        scan_entries,
    )
    from portkit.see._traffic import server_side

    found = scan(QUERIES["tcp_info"], netns=lab.name)
    current, rtts = server_side(found.batches, found.listen_ports)
    listening = {nl.ntohs(p) for p in found.listen_ports[nl.IPPROTO_TCP]}
    want: dict[int, tuple[int, ...]] = {}
    want_rtts: dict[int, list[float]] = {}
    for row, entry in zip(found.rows, scan_entries(found), strict=True):
        if row[PROTOCOL].value != "tcp" or row[LOCAL_PORT] not in listening:
            continue
        if entry is None or entry[E_INFO] is None:
            continue
        info = entry[E_INFO]
        port = row[LOCAL_PORT]
        raw = nl.htons(port)
        counts = (info[BYTES_ACKED], info[BYTES_RECEIVED], info[TOTAL_RETRANS], info[SEGS_OUT])
        want[entry[E_COOKIE]] = (raw, *counts)
        if row[REMOTE_IP] is not None and info[STATE] == 1 and info[RTT]:
            want_rtts.setdefault(port, []).append(info[RTT] / 1e6)
    assert current == want
    assert {p: sorted(v) for p, v in rtts.items()} == {p: sorted(v) for p, v in want_rtts.items()}
    assert len(rtts[8080]) == 300 + 20 + 1


# --- made-up dumps -----------------------------------------------------------------------

_ADDRS4 = [bytes([127, 0, 0, 1]) + bytes(12), bytes([10, 0, 0, 5]) + bytes(12), bytes(16)]
_ADDRS6 = [bytes(15) + b"\x01", bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 5]), bytes(16)]
_PORTS = [0, 22, 80, 1000, 40000, 40005, 40009, 40010, 50000]


def _rows(family: int) -> Any:
    addrs = _ADDRS4 if family == nl.AF_INET else _ADDRS6
    row = st.tuples(
        st.just(family),
        st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]),
        st.sampled_from(_PORTS).map(nl.htons),
        st.sampled_from(_PORTS).map(nl.htons),
        st.sampled_from(addrs),
        st.sampled_from(addrs),
        st.integers(0, 9),
        st.integers(0, 9),
        st.just(0),
        st.integers(0, 3),
    )
    return st.lists(row, max_size=40)


@st.composite
def dumps(draw: Any) -> tuple[list[tuple[int, int, nl.RawRows]], dict[int, set[int]]]:
    batches = []
    for family in (nl.AF_INET, nl.AF_INET6):
        for proto in (nl.IPPROTO_TCP, nl.IPPROTO_UDP):
            chunks = draw(st.lists(_rows(family), max_size=3))
            parts = [
                uniform(c) if c and draw(st.booleans()) else c  # list parts and replies
                for c in chunks
            ]
            batches.append((family, proto, nl.RawRows(parts)))
    listening = {
        proto: set(map(nl.htons, draw(st.sets(st.sampled_from(_PORTS[1:])))))
        for proto in (nl.IPPROTO_TCP, nl.IPPROTO_UDP)
    }
    return batches, listening


@settings(max_examples=300)
@given(dumps(), st.sampled_from([PortRange(40000, 40009), PortRange(1000, 50000)]))
def test_fold_of_any_dump_is_compute_stats(
    dump: tuple[list[tuple[int, int, nl.RawRows]], dict[int, set[int]]], eph: PortRange
) -> None:
    from portkit.exporter.metrics import _destination_held, _port_states
    from portkit.exporter.snapshot import Snapshot

    batches, listening = dump
    rows = [
        r
        for family, proto, raw in batches
        for r in decode(raw, family, proto, listening.get(proto, ()))
    ]
    got = fold(batches, listening, eph)
    want = compute_stats(rows, eph)
    assert got.stats == want
    assert list(got.stats.counts.items()) == list(want.counts.items())
    assert got.listening == [r for r in rows if r[5] is None]
    by_rows = Snapshot(0.0, rows, want)
    ports = {22, 80, 1000, 40000, 40005, 50000}
    assert got.port_states(ports) == _port_states(by_rows, ports)
    wanted = {("127.0.0.1", 80), ("10.0.0.5", 40005), ("::1", 22), ("10.0.0.5", 1000)}
    assert got.destination_held(wanted) == _destination_held(by_rows, wanted, eph)


# --- replies mixing sizes (TIME-WAIT among full sockets) ---------------------------------


@settings(max_examples=200)
@given(
    st.lists(st.tuples(message_args, infos, st.booleans()), min_size=1, max_size=40),
    st.sampled_from([1, 3, 4, 7]),
    st.booleans(),
)
def test_mixed_replies_decode_like_message_by_message(
    messages: list[tuple[dict[str, Any], list[int], bool]], want: int, done: bool
) -> None:
    """A reply mixing full sockets and TIME-WAIT ones: the commonest size decoded
    together (``_walk_grouped``) gives exactly what the message walk gives."""
    from portkit.see import _tcpinfo as ti

    data = b"".join(
        _message(**args, info=_info(values), skmem=bytes(36), cong=b"cubic\x00")
        if full
        else _message(**{**args, "state": 6, "inode": 0})
        for args, values, full in messages
    )
    if done:
        data += struct.pack("=IHHIIi", 20, nl.NLMSG_DONE, 2, 1, 0, 0)
    rows, slow, walked_done = ti.walk_entries(data, want)
    assert ti._walk_grouped(data, want) == (rows, slow, walked_done)
    part, entries, chunk_done = ti.chunk_entries(data, want)
    assert chunk_done == walked_done == done
    got = list(entries) if isinstance(entries, list) else list(entries[0].entries(entries[1]))
    assert got == slow
    assert list(nl.RawRows([part])) == rows
    # regrouped (WANT_ANY_ORDER): the same rows with the same entries, in some order
    health = ti.HealthRows(want | ti.WANT_ANY_ORDER)
    assert health.add_chunk(data) == done
    assert Counter(zip(health, health.entries(), strict=True)) == Counter(
        zip(rows, slow, strict=True)
    )

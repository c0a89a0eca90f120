"""``portkit.sockets()`` and ``socket_stats()`` on real sockets, checked against ``ss``.

The sockets live in a network namespace made for this module (``pk3<pid>``), held by
a helper process started inside it, so that nothing else on the machine changes
what ``ss`` and portkit see between the two calls. A few tests use this process's
own loopback sockets in the root namespace, filtered by their ports.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

import portkit
from portkit.errors import ParseError
from portkit.model import Protocol, SocketRecord, TcpState
from portkit.see import _linux
from portkit.see._netns import run_in_netns
from portkit.see._rows import decode

pytestmark = [pytest.mark.netns, pytest.mark.peer]

NS = f"pk3s{os.getpid()}"

# Runs inside the namespace: opens a known set of sockets, prints their ports as JSON,
# then holds them until stdin closes.
HELPER = r"""
import json, socket, sys, time
keep, info = [], {}
def pair(fam, host, key):
    srv = socket.socket(fam); srv.bind((host, 0)); srv.listen(16)
    cli = socket.create_connection(srv.getsockname()[:2]); acc, _ = srv.accept()
    keep.extend([srv, cli, acc]); info[key] = srv.getsockname()[1]
    info[key + "_client"] = cli.getsockname()[1]
    c2 = socket.create_connection(srv.getsockname()[:2]); a2, _ = srv.accept()
    c2.close(); time.sleep(0.05); a2.close()   # the client side keeps TIME-WAIT
pair(socket.AF_INET, "127.0.0.1", "v4")
pair(socket.AF_INET6, "::1", "v6")
wild = socket.socket(); wild.bind(("0.0.0.0", 0)); wild.listen(); keep.append(wild)
info["wild"] = wild.getsockname()[1]
for fam, host, key in ((socket.AF_INET, "127.0.0.1", "udp4"), (socket.AF_INET6, "::1", "udp6")):
    u = socket.socket(fam, socket.SOCK_DGRAM); u.bind((host, 0))
    c = socket.socket(fam, socket.SOCK_DGRAM); c.connect(u.getsockname()[:2])
    keep.extend([u, c]); info[key] = u.getsockname()[1]
# Many listeners and connections, so replies span several netlink messages.
for _ in range(40):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); keep.append(s)
    c = socket.create_connection(s.getsockname()); a, _ = s.accept(); keep.extend([c, a])
time.sleep(0.1)
print(json.dumps(info), flush=True)
sys.stdin.read()
"""


@contextlib.contextmanager
def namespace_workload(ns: str, code: str) -> Iterator[dict[str, Any]]:
    """Run ``code`` (which prints one JSON line, then waits on stdin) in a fresh network
    namespace ``ns``; yield that JSON plus ``ns`` and the process' ``pid``; remove it all."""
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        info["ns"] = ns
        info["pid"] = proc.pid
        yield info
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        subprocess.run(["ip", "netns", "del", ns], check=False)


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    """A namespace with the HELPER's sockets: ``{"ns": name, "pid": pid, ports...}``."""
    with namespace_workload(NS, HELPER) as info:
        yield info


Key = tuple[str, str, str, str]
_SS_STATES = {
    "LISTEN": "LISTEN",
    "ESTAB": "ESTABLISHED",
    "TIME-WAIT": "TIME_WAIT",
    "ESTABLISHED": "ESTABLISHED",
    "UNCONN": "CLOSE",
    "SYN-SENT": "SYN_SENT",
    "SYN-RECV": "SYN_RECV",
    "FIN-WAIT-1": "FIN_WAIT1",
    "FIN-WAIT-2": "FIN_WAIT2",
    "CLOSE-WAIT": "CLOSE_WAIT",
    "LAST-ACK": "LAST_ACK",
    "CLOSING": "CLOSING",
}


def ss(ns: str, *args: str) -> set[Key]:
    """``ss -H -n --netid`` in the namespace, as (proto, state, local, remote)."""
    out = subprocess.run(
        ["ip", "netns", "exec", ns, "ss", "-Hn", *args],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    flags = "".join(a[1:] for a in args if a.startswith("-") and not a.startswith("--"))
    only = "udp" if "u" in flags and "t" not in flags else "tcp"
    named = [args[i + 1] for i, a in enumerate(args) if a == "state"]
    single = (
        _SS_STATES[named[0].upper()] if len(named) == 1 and named[0].upper() in _SS_STATES else None
    )
    keys = set()
    for line in out.splitlines():
        # ss leaves out the Netid column for one protocol, the State one for one state
        *head, _, _, local, remote = line.split()
        proto = head.pop(0) if head and head[0] in ("tcp", "udp") else only
        state = _SS_STATES[head[0]] if head else single
        assert state is not None, line
        local = local.replace("*:", "[::]:", 1) if local.startswith("*:") else local
        local = local.replace("0.0.0.0%lo", "0.0.0.0")
        remote = "*" if remote.endswith(":*") else remote
        keys.add((proto, state, local, remote))
    return keys


def keys(records: list[SocketRecord]) -> set[Key]:
    return {(r.protocol.value, r.state.value, r.local, r.remote or "*") for r in records}


# (portkit.see keyword arguments, ss arguments): the same question asked twice.
CASES: list[tuple[dict[str, Any], list[str]]] = [
    ({"tcp": True, "states": "all"}, ["-ta"]),
    ({"tcp": True, "listening": True}, ["-tl"]),
    ({"tcp": True, "states": "connected"}, ["-t", "state", "connected"]),
    ({"tcp": True, "states": "time-wait"}, ["-t", "state", "time-wait"]),
    (
        {"tcp": True, "states": ["established", "listening"]},
        ["-t", "state", "established", "state", "listening"],
    ),
    ({"udp": True, "states": "all"}, ["-ua"]),
    ({"udp": True, "listening": True}, ["-ul"]),
    ({"tcp": True, "udp": True, "states": "all", "families": [6]}, ["-tua6"]),
    ({"tcp": True, "udp": True, "states": "all", "families": [4]}, ["-tua4"]),
    ({"tcp": True, "states": "all", "src": "::1"}, ["-ta", "src", "[::1]"]),
    ({"tcp": True, "states": "all", "dst": "127.0.0.0/8"}, ["-ta", "dst", "127.0.0.0/8"]),
]


@pytest.mark.parametrize(("kwargs", "ss_args"), CASES, ids=[" ".join(c[1]) for c in CASES])
def test_same_sockets_as_ss(
    lab: dict[str, Any], kwargs: dict[str, Any], ss_args: list[str]
) -> None:
    got = portkit.sockets(netns=lab["ns"], **kwargs)
    assert got.source == "netlink"
    expected = ss(lab["ns"], *ss_args)
    assert expected  # the question has an answer in the lab
    assert keys(got) == expected


def test_port_filters_match_ss(lab: dict[str, Any]) -> None:
    p4, p6 = lab["v4"], lab["v6"]
    got = portkit.sockets(netns=lab["ns"], sports=p4)
    assert keys(got) == ss(lab["ns"], "-tuan", "sport", "=", f":{p4}")
    got = portkit.sockets(netns=lab["ns"], dports=f"{p4},{p6}")
    assert keys(got) == ss(
        lab["ns"], "-tuan", "(", "dport", "=", f":{p4}", "or", "dport", "=", f":{p6}", ")"
    )
    got = portkit.sockets(netns=lab["ns"], ports=p6)
    assert keys(got) == ss(
        lab["ns"], "-tuan", "(", "sport", "=", f":{p6}", "or", "dport", "=", f":{p6}", ")"
    )
    lo, hi = sorted((p4, p6))
    got = portkit.sockets(netns=lab["ns"], tcp=True, sports=f"{lo}-{hi}", states="listening")
    assert keys(got) == ss(
        lab["ns"], "-tln", "sport", ">=", f":{lo}", "and", "sport", "<=", f":{hi}"
    )


def test_roles_queues_and_families(lab: dict[str, Any]) -> None:
    recs = portkit.sockets(netns=lab["ns"], tcp=True)
    by_local = {(r.local_port, r.state, r.family): r for r in recs}
    listener = by_local[lab["v4"], TcpState.LISTEN, 4]
    assert listener.role == "server"
    assert listener.remote_ip is None and listener.remote_port is None
    assert listener.send_q == 16  # listen(16): the accept queue's maximum
    client = by_local[lab["v4_client"], TcpState.ESTABLISHED, 4]
    assert client.role == "client"
    assert client.remote_port == lab["v4"]
    served = [r for r in recs if r.local_port == lab["v6"] and r.state is TcpState.ESTABLISHED]
    assert served and all(r.role == "server" and r.family == 6 for r in served)
    tw = [r for r in recs if r.state is TcpState.TIME_WAIT]
    assert tw and all(r.inode == 0 and r.role == "client" for r in tw)
    udp = portkit.sockets(netns=lab["ns"], udp=True)
    bound = [r for r in udp if r.local_port == lab["udp6"]]
    assert bound[0].state is TcpState.CLOSE and bound[0].role == "server"
    assert all(r.protocol is Protocol.UDP for r in udp)


def test_owners_are_the_helper(lab: dict[str, Any]) -> None:
    recs = portkit.sockets(netns=lab["ns"], tcp=True, listening=True, owners=True)
    helpers = {r.pid for r in recs}
    # `ip netns exec` execs python, so the helper is the process we started
    assert helpers == {lab["pid"]}
    assert all(r.process and r.user == "root" and r.pids == (lab["pid"],) for r in recs)
    only = portkit.sockets(netns=lab["ns"], pids=lab["pid"], tcp=True)
    assert keys(only) == keys([r for r in portkit.sockets(netns=lab["ns"], tcp=True) if r.inode])
    assert not portkit.sockets(netns=lab["ns"], pids=os.getpid())
    assert portkit.sockets(netns=lab["ns"], process="pyth", listening=True, tcp=True)


def test_pid_netns_sees_the_same_namespace(lab: dict[str, Any]) -> None:
    by_name = portkit.sockets(netns=lab["ns"], tcp=True, udp=True, states="all")
    by_pid = portkit.sockets(pid_netns=lab["pid"], tcp=True, udp=True, states="all")
    assert keys(by_pid) == keys(by_name)


def test_proc_fallback_matches_netlink(lab: dict[str, Any]) -> None:
    fams, protos = (2, 10), (6, 17)
    via_proc = run_in_netns(f"/run/netns/{lab['ns']}", lambda: _linux.proc_dump(fams, protos))
    via_pid = _linux.proc_dump(fams, protos, lab["pid"])
    assert via_proc.source == "proc"

    def rows(dump: _linux.Dump) -> set[Key]:
        out = []
        for family, proto, raw in dump.batches:
            out += decode(raw, family, proto, set())
        return keys([SocketRecord.from_row(r) for r in out])

    netlink = keys(portkit.sockets(netns=lab["ns"], tcp=True, udp=True))
    assert rows(via_proc) == netlink
    assert rows(via_pid) == netlink


def test_extended_fills_cgroup(lab: dict[str, Any]) -> None:
    recs = portkit.sockets(netns=lab["ns"], tcp=True, listening=True, extended=True)
    assert recs and all(r.cgroup and r.cgroup.startswith("/") for r in recs)


def test_stats_in_the_lab(lab: dict[str, Any]) -> None:
    stats = portkit.socket_stats(netns=lab["ns"], owners=True)
    assert stats.total == len(portkit.sockets(netns=lab["ns"]))
    assert stats.time_wait == 2
    ls = {(x.ip, x.port): x for x in stats.listeners}
    v4 = ls["127.0.0.1", lab["v4"]]
    assert (v4.connections, v4.accept_queue, v4.accept_max) == (1, 0, 16)
    assert v4.pid == lab["pid"]
    assert ls["::1", lab["udp6"]].protocol is Protocol.UDP
    assert stats.ephemeral_in_use >= 42  # 40 + 2 clients, + 2 TIME-WAIT
    top = stats.destinations[0]
    assert top.in_use >= 2 and top.capacity == len(stats.ephemeral)
    assert stats.counts[Protocol.TCP, TcpState.LISTEN] == 43
    assert not stats.warnings


def test_root_namespace_own_sockets_with_owner() -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    acc, _ = srv.accept()
    try:
        got = portkit.sockets(ports=port, owners=True)
        assert {(r.state, r.role) for r in got} == {
            (TcpState.LISTEN, "server"),
            (TcpState.ESTABLISHED, "server"),
            (TcpState.ESTABLISHED, "client"),
        }
        assert all(r.pid == os.getpid() for r in got)
        # importing the package (portkit.see) never shadows the function
        see = importlib.import_module("portkit.see")
        assert callable(portkit.sockets) and portkit.sockets is see.sockets
        assert len(portkit.sockets(ports=port)) == 3
    finally:
        for s in (cli, acc, srv):
            s.close()


def test_unknown_namespace_and_bad_filters() -> None:
    with pytest.raises(ParseError, match="no network namespace"):
        portkit.sockets(netns="pk3-no-such-namespace")
    with pytest.raises(ParseError):
        portkit.sockets(netns="../etc")
    with pytest.raises(ParseError):
        portkit.sockets(states="nonsense")


def test_ss_is_available() -> None:
    assert shutil.which("ss"), "ss (iproute2) is in scripts/system-packages.txt"


def test_psutil_backend_agrees_with_netlink(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("psutil")  # the `psutil` extra: installed by scripts/test
    import portkit.see._backend as mod

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    cli = socket.create_connection(("127.0.0.1", port))
    acc, _ = srv.accept()
    try:
        netlink = portkit.sockets(ports=port, owners=True)
        monkeypatch.setattr(mod, "BACKEND", "psutil")
        via_psutil = portkit.sockets(ports=port, owners=True)
        assert via_psutil.source == "psutil"
        assert keys(via_psutil) == keys(netlink)
        assert {(r.local, r.role, r.pid) for r in via_psutil} == {
            (r.local, r.role, r.pid) for r in netlink
        }
        assert len(portkit.sockets(ports=port, states="listening")) == 1
    finally:
        for s in (cli, acc, srv):
            s.close()


def test_sockets_vanishing_mid_listing_never_break_it() -> None:
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(512)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            pairs = []
            for _ in range(20):
                c = socket.create_connection(("127.0.0.1", port))
                a, _ = srv.accept()
                pairs += [c, a]
            for s in pairs:
                s.close()

    worker = threading.Thread(target=churn)
    worker.start()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", "import socket, time; s = socket.socket(); time.sleep(0.05)"]
        )
        for _ in range(5)
    ]
    try:
        for _ in range(15):
            got = portkit.sockets(ports=port, owners=True, states="all")
            assert all(r.local_port == port or r.remote_port == port for r in got)
            portkit.socket_stats(owners=True)
    finally:
        stop.set()
        worker.join(timeout=10)
        for p in procs:
            p.wait(timeout=10)
        srv.close()


def test_dual_stack_wildcard_listeners_count_each_connection_once() -> None:
    """0.0.0.0:P and [::]:P (v6only) both listening: a connection belongs to one of them."""
    import portkit

    with socket.socket() as v4, socket.socket(socket.AF_INET6) as v6:
        v4.bind(("0.0.0.0", 0))
        v4.listen()
        port = v4.getsockname()[1]
        v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        v6.bind(("::", port))
        v6.listen()
        clients = [socket.create_connection(("127.0.0.1", port))]
        clients += [socket.create_connection(("::1", port)) for _ in range(2)]
        accepted = [v4.accept()[0], v6.accept()[0], v6.accept()[0]]
        try:
            stats = portkit.socket_stats(tcp=True)
            mine = {ls.ip: ls.connections for ls in stats.listeners if ls.port == port}
            assert mine == {"0.0.0.0": 1, "::": 2}
        finally:
            for s in clients + accepted:
                s.close()


PARALLEL_SCAN = r"""
import json, os, socket, sys
from portkit.see._owners import OwnerScan, scan_owners
held = [socket.socket() for _ in range(40)]
held.append(socket.socket(fileno=os.dup(held[0].fileno())))  # one socket, two fds
inodes = {os.fstat(s.fileno()).st_ino for s in held}
shared = os.fork()  # a child holding the same sockets: one socket, two owners
if shared == 0:
    os.read(os.open(os.devnull, os.O_RDONLY), 1)
    import time; time.sleep(30); os._exit(0)
try:
    scan = OwnerScan(min_fds=0, bpf=sys.argv[1] == "bpf")
    workers, source = len(scan.workers), scan.source
    found, hidden = scan.result(inodes)
    alone, _ = scan_owners(inodes)
finally:
    os.kill(shared, 9); os.waitpid(shared, 0)
print(json.dumps({
    "workers": workers,
    "source": source,
    "same": found == alone,
    "owners": sorted({tuple(p) for p in found.values()}),
    "all": set(found) == inodes,
    "me": os.getpid(), "child": shared,
}))
"""


@pytest.mark.parametrize("source", ["proc", "bpf"])
def test_owner_scan_in_worker_processes_matches_the_single_pass(source: str) -> None:
    # With more than one CPU the owner pass runs in forked workers while the dump
    # runs: one BPF worker (root, with the kernel's BTF: as CI runs) or /proc groups
    # split over the CPUs; their maps, merged, must be what one /proc pass finds.
    r = subprocess.run(
        [sys.executable, "-c", PARALLEL_SCAN, source],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["source"] == source
    if source == "bpf":
        assert got["workers"] == 1
    else:
        assert got["workers"] == min(os.cpu_count() or 1, 4) or (os.cpu_count() or 1) < 2
    assert got["same"] and got["all"]
    assert got["owners"] == [[got["me"], got["child"]]]

"""``portkit ls``, ``who``, ``stats`` and the overview through the real entry point.

Listings are checked in a namespace made for this module (``pk3c<pid>``), where
nothing but the helper's sockets exists; the helper of tests/test_sockets.py is
reused, with a Redis-like listener on all interfaces and a PostgreSQL-like one on
loopback added for the service names and the overview's warnings.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from portkit.free import free_port
from tests.conftest import Runner
from tests.test_sockets import HELPER, Key, namespace_workload, ss

pytestmark = [pytest.mark.netns, pytest.mark.peer]

NS = f"pk3c{os.getpid()}"
EXTRA = r"""
import socket as _s
_hold = []
for _host, _port in (("0.0.0.0", 6379), ("127.0.0.1", 5432)):
    _x = _s.socket(); _x.bind((_host, _port)); _x.listen(); _hold.append(_x)
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[dict[str, Any]]:
    with namespace_workload(NS, EXTRA + HELPER) as info:
        yield info


def in_ns(
    ns: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run portkit itself inside the namespace (so the fast path sees only the lab)."""
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "portkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def json_keys(objs: list[dict[str, Any]]) -> set[Key]:
    def addr(side: dict[str, Any] | None) -> str:
        if side is None:
            return "*"
        ip = side["ip"]
        return f"[{ip}]:{side['port']}" if ":" in ip else f"{ip}:{side['port']}"

    return {(o["proto"], o["state"], addr(o["local"]), addr(o["remote"])) for o in objs}


LS_KEYS = {
    "proto",
    "state",
    "local",
    "remote",
    "recv_q",
    "send_q",
    "pid",
    "process",
    "user",
    "uid",
    "inode",
    "service",
    "role",
}


@pytest.mark.parametrize(
    ("args", "ss_args"),
    [
        (["-tan"], ["-ta"]),
        (["-tln"], ["-tl"]),
        (["-uan"], ["-ua"]),
        (["-tn"], ["-t"]),
        (["-t", "--state", "time-wait"], ["-t", "state", "time-wait"]),
        (["-tan6"], ["-ta6"]),
    ],
)
def test_ls_json_matches_ss(
    cli: Runner, lab: dict[str, Any], args: list[str], ss_args: list[str]
) -> None:
    r = cli("ls", *args, "--json", "--netns", lab["ns"])
    assert r.returncode == 0, r.stderr
    objs = json.loads(r.stdout)
    assert objs and all(LS_KEYS <= o.keys() for o in objs)
    assert json_keys(objs) == ss(lab["ns"], *ss_args)


def test_ls_table_names_roles_and_owners(cli: Runner, lab: dict[str, Any]) -> None:
    r = cli("ls", "-tlp", "--netns", lab["ns"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == [
        "PROTO",
        "STATE",
        "RECV-Q",
        "SEND-Q",
        "LOCAL:PORT",
        "REMOTE:PORT",
        "ROLE",
        "PID",
        "PROCESS",
        "USER",
    ]
    redis = next(line for line in lines if "0.0.0.0:redis" in line)
    assert redis.split()[6:8] == ["server", str(lab["pid"])]
    assert any("127.0.0.1:postgresql" in line for line in lines)
    numeric = cli("ls", "-tln", "--netns", lab["ns"])
    assert "0.0.0.0:6379" in numeric.stdout and "redis" not in numeric.stdout


def test_ls_json_service_and_role(cli: Runner, lab: dict[str, Any]) -> None:
    r = cli("ls", "-ta", "--json", "--netns", lab["ns"], "--port", "6379,5432")
    objs = json.loads(r.stdout)
    assert {(o["local"]["port"], o["service"], o["role"]) for o in objs} == {
        (6379, "redis", "server"),
        (5432, "postgresql", "server"),
    }
    r = cli("ls", "-ta", "--json", "--netns", lab["ns"], "--sport", str(lab["v4_client"]))
    (client,) = json.loads(r.stdout)
    assert client["role"] == "client" and client["remote"]["port"] == lab["v4"]


def test_ls_csv(cli: Runner, lab: dict[str, Any]) -> None:
    r = cli("ls", "-tl", "--csv", "--netns", lab["ns"], "--sport", "6379")
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()
    assert header.startswith("proto,family,state,local_ip,local_port,remote_ip,remote_port")
    assert row.startswith("tcp,4,LISTEN,0.0.0.0,6379,,,")


def test_ls_sort_and_filters(cli: Runner, lab: dict[str, Any]) -> None:
    r = cli("ls", "-tln", "--json", "--sort", "-sport", "--netns", lab["ns"])
    ports = [o["local"]["port"] for o in json.loads(r.stdout)]
    assert ports == sorted(ports, reverse=True)
    r = cli("ls", "-ta", "--json", "--dst", "::1", "--netns", lab["ns"])
    assert {o["remote"]["ip"] for o in json.loads(r.stdout)} == {"::1"}
    r = cli(
        "ls", "-tl", "--json", "--src", "127.0.0.1", "--process", "python", "--netns", lab["ns"]
    )
    objs = json.loads(r.stdout)
    assert objs and {o["pid"] for o in objs} == {lab["pid"]}


def test_nothing_matching_a_filter_exits_1(cli: Runner, lab: dict[str, Any]) -> None:
    r = cli("ls", "-ta", "--sport", "1", "--netns", lab["ns"])
    assert r.returncode == 1
    assert r.stdout.splitlines()[0].startswith("PROTO")


def test_fast_path_and_click_path_agree(lab: dict[str, Any]) -> None:
    for args in (["ls", "-tln"], ["ls", "-tuan"], ["ls", "-tlnp"], ["ls", "-tan", "--json"]):
        fast = in_ns(lab["ns"], *args)
        slow = in_ns(lab["ns"], *args, env={"PORTKIT_NO_FAST": "1"})
        assert fast.returncode == slow.returncode == 0, fast.stderr + slow.stderr
        assert fast.stdout == slow.stdout
        assert fast.stdout.count("\n") > 5


def test_fast_path_imports_no_click() -> None:
    code = (
        "import sys; from portkit.cli import main; main(['ls', '-tln']); "
        "print(sorted(m for m in ('click', 'typing', 'dataclasses', 'ipaddress', 'socket', "
        "'portkit.model', 'portkit.errors', 'portkit.see._query', 'portkit.render.sockets', "
        "'operator', 'types', 'enum') if m in sys.modules), file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stderr.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    "args",
    [
        ["ls", "--state", "establishd"],
        ["ls", "--sport", "99999"],
        ["ls", "--dport", "80-"],
        ["ls", "--src", "10.0.0.300"],
        ["ls", "--sort", "colour"],
        ["ls", "--json", "--csv"],
        ["ls", "--netns", "../etc"],
        ["ls", "--netns", "pk3-no-such-netns"],
        ["ls", "-z"],
        ["who", "http"],
        ["who", "80/xyz"],
        ["who", "80", "--signal", "NOPE"],
        ["stats", "--pid-netns", "0"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli: Runner, args: list[str]) -> None:
    r = cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_who_nobody_exits_1(cli: Runner) -> None:
    port = free_port()
    r = cli("who", str(port))
    assert r.returncode == 1
    assert "nothing uses this port" in r.stdout


def test_who_names_the_owner(cli: Runner) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    port = srv.getsockname()[1]
    try:
        r = cli("who", f"{port}/tcp", "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        (owner,) = doc["owners"]
        assert owner["pid"] == os.getpid()
        assert owner["user"] == "root" and owner["started"]
        assert owner["cmdline"] and owner["process"]
        assert [s["state"] for s in doc["sockets"]] == ["LISTEN"]
        text = cli("who", str(port))
        assert str(os.getpid()) in text.stdout and "STARTED" in text.stdout
    finally:
        srv.close()


def test_who_kill_signals_only_the_owner(cli: Runner) -> None:
    code = (
        "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
        "print(s.getsockname()[1], flush=True); time.sleep(120)"
    )
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        assert owner.stdout is not None
        port = int(owner.stdout.readline())
        r = cli("who", str(port), "--kill", "--yes")
        assert r.returncode == 0, r.stderr
        assert f"sent SIGTERM to {owner.pid}" in r.stderr
        assert owner.wait(timeout=10) == -signal.SIGTERM
        time.sleep(0.1)
        assert bystander.poll() is None
        # asking without --yes and answering no signals nothing
        again = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert again.stdout is not None
            port2 = int(again.stdout.readline())
            # on a terminal (a pty here) the question is asked; "n" signals nothing
            assert _on_a_terminal(["who", str(port2), "--kill"], answer=b"n\n") == 1
            assert again.poll() is None
            # without a terminal there is nobody to ask: --yes is needed (exit 2)
            assert cli("who", str(port2), "--kill", input="y\n").returncode == 2
            assert again.poll() is None
        finally:
            again.kill()
            again.wait()
            assert again.stdout is not None
            again.stdout.close()
    finally:
        for p in (owner, bystander):
            p.kill()
            p.wait()
        assert owner.stdout is not None
        owner.stdout.close()


def test_stats_json(cli: Runner, lab: dict[str, Any]) -> None:
    r = cli("stats", "--json", "--netns", lab["ns"], "-p")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) >= {
        "total",
        "counts",
        "time_wait",
        "listeners",
        "ephemeral",
        "destinations",
        "warnings",
    }
    assert doc["time_wait"] == 2
    redis = next(x for x in doc["listeners"] if x["port"] == 6379)
    assert redis["service"] == "redis" and redis["pid"] == lab["pid"]
    assert doc["ephemeral"]["size"] > 0
    text = cli("stats", "--netns", lab["ns"])
    assert "TIME-WAIT" in text.stdout and "ephemeral ports" in text.stdout


def test_overview_is_the_default_command(lab: dict[str, Any]) -> None:
    r = in_ns(lab["ns"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Listening on this machine")
    assert "redis" in r.stdout and "all interfaces" in r.stdout
    assert "warning: redis (6379/tcp, cache) listens on all interfaces" in r.stdout
    pg = next(line for line in r.stdout.splitlines() if "postgresql" in line)
    assert "loopback only" in pg
    doc = json.loads(in_ns(lab["ns"], "overview", "--json").stdout)
    assert json.loads(in_ns(lab["ns"], "--json").stdout)["listening"] == doc["listening"]
    misplaced = in_ns(lab["ns"], "--json", "ls")
    assert misplaced.returncode == 2 and "portkit ls --json" in misplaced.stderr
    redis = next(g for g in doc["listening"] if g["port"] == 6379)
    assert redis["exposed"] and redis["scope"] == "all interfaces"
    assert redis["bind_scope"] == "wildcard" and redis["role"] == "cache"
    assert any(f"/{lab['pid']}" in p for p in redis["processes"])


def test_help_has_examples(cli: Runner) -> None:
    for cmd in ("ls", "who", "stats"):
        r = cli(cmd, "--help")
        assert r.returncode == 0 and "Examples:" in r.stdout


@pytest.mark.parametrize("args", [["-tuanp", "--json"], ["-tuan", "--json"], ["-tuanp"], ["-tua"]])
def test_raw_rendering_matches_decoded_rendering(lab: dict[str, Any], args: list[str]) -> None:
    # --sort makes ls decode every row first; without it, text and JSON are written
    # straight from the kernel's rows. Both must say the same thing.
    raw = in_ns(lab["ns"], "ls", *args)
    decoded = in_ns(lab["ns"], "ls", *args, "--sort", "proto")
    assert raw.returncode == decoded.returncode == 0, raw.stderr + decoded.stderr
    if "--json" in args:
        assert sorted(raw.stdout.splitlines()) == sorted(decoded.stdout.splitlines())
    else:

        def cells(text: str) -> list[list[str]]:
            return sorted(line.split() for line in text.splitlines()[1:])

        assert cells(raw.stdout) == cells(decoded.stdout)


PRESSURE = r"""
import json, socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(10)  # never accepts
clients = [socket.create_connection(srv.getsockname()) for _ in range(8)]
print(json.dumps({"port": srv.getsockname()[1]}), flush=True)
sys.stdin.read()
"""


def test_stats_warns_above_70_percent() -> None:
    # A namespace whose ephemeral range has 10 ports, 8 of them used towards one
    # listener that never accepts: ephemeral use overall and per destination, and the
    # accept queue, are all above 70%.
    ns = f"pk3w{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    proc = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv4.ip_local_port_range=40000 40009",
            ],
            check=True,
        )
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", PRESSURE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        port = json.loads(proc.stdout.readline())["port"]
        r = subprocess.run(
            [sys.executable, "-m", "portkit", "stats", "--json", "--netns", ns],
            capture_output=True,
            text=True,
            check=True,
        )
        doc = json.loads(r.stdout)
        assert doc["ephemeral"]["range"] == {"start": 40000, "end": 40009}
        assert doc["ephemeral"]["in_use"] == 8
        (dest,) = doc["destinations"]
        assert (dest["port"], dest["in_use"], dest["capacity"]) == (port, 8, 10)
        text = " | ".join(doc["warnings"])
        assert "8 of 10 ephemeral ports (80%) are in use" in text
        assert f"-> 127.0.0.1:{port}" in text
        assert f"accept queue of 127.0.0.1:{port}" in text
        overview = in_ns(ns)
        assert overview.stdout.count("warning:") >= 3
    finally:
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_without_root_owners_are_hidden_not_fatal(lab: dict[str, Any]) -> None:
    # As `nobody`, every socket is still listed (sock_diag needs no privilege), but
    # root's processes cannot be inspected: no owners, and a note says so. portkit and
    # click are copied where `nobody` can read them, whatever the checkout's modes.
    import shutil
    import tempfile

    import click

    import portkit

    tree = tempfile.mkdtemp(prefix="pk3-nobody-")
    try:
        for mod in (portkit, click):
            assert mod.__file__ is not None
            shutil.copytree(os.path.dirname(mod.__file__), os.path.join(tree, mod.__name__))
        for root, dirs, files in os.walk(tree):
            for name in dirs + files:
                os.chmod(os.path.join(root, name), 0o755)
        os.chmod(tree, 0o755)
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": tree}
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        python = [
            os.path.realpath(sys.executable),
            "-I",
            "-c",
            "import sys; sys.path.insert(0, "
            f"{tree!r}); from portkit.cli import main; sys.exit(main())",
        ]
        r = subprocess.run(
            [*nobody, *python, "ls", "-tlnp"], capture_output=True, text=True, env=env, timeout=60
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith("PROTO")
        assert "could not be inspected" in r.stderr
        r = subprocess.run(
            [*nobody, *python, "ls", "--netns", lab["ns"]],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert r.returncode == 3, r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "root" in r.stderr
    finally:
        shutil.rmtree(tree, ignore_errors=True)


def test_owners_denied_even_to_root_are_named_as_such() -> None:
    # A non-dumpable process's descriptors are closed to a root without CAP_SYS_PTRACE:
    # /proc/PID/fd lists, but its links do not read (what some sandboxes do to root
    # itself). Its socket is shown without an owner, and the note says why.
    code = (
        "import ctypes, socket, sys; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0); "
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
        "print(s.getsockname()[1], flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        port = int(holder.stdout.readline())
        nocaps = ["setpriv", "--inh-caps=-all", "--bounding-set=-all", "--"]
        portkit = [sys.executable, "-m", "portkit"]
        r = subprocess.run(
            [*nocaps, *portkit, "ls", "-tlnp", "--sport", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        (row,) = [line for line in r.stdout.splitlines() if f":{port} " in line]
        assert row.split()[-3:] == ["-", "-", "-"]  # pid, process, user
        assert "could not be inspected even as root" in r.stderr
        notes = r.stderr.strip().splitlines()
        assert len(notes) == 2
        assert "NAT rules not read (reading them needs CAP_NET_ADMIN" in notes[0]
        r = subprocess.run(
            [*nocaps, *portkit, "who", str(port)], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 1
        assert "no owner visible" in r.stdout and "even as root" in r.stderr
        # With its capabilities, root sees the owner: the note is about the denial only.
        r = subprocess.run([*portkit, "who", str(port)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and str(holder.pid) in r.stdout, r.stdout
        assert "could not be inspected" not in r.stderr
    finally:
        holder.communicate("")


def _on_a_terminal(args: list[str], answer: bytes) -> int:
    """Run portkit with a pseudo-terminal as stdin/stdout/stderr, type ``answer``."""
    import pty

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "portkit", *args], stdin=slave, stdout=slave, stderr=slave
        )
        os.write(master, answer)
        code = proc.wait(timeout=30)
    finally:
        os.close(slave)
        os.close(master)
    return code


def test_ls_all_netns_names_every_namespace(cli: Runner, lab: dict[str, Any]) -> None:
    """The lab namespace's listeners show up beside the host's, each under its
    namespace, in the table, JSON and CSV; the ss loop agrees on the lab's listeners."""
    r = cli("ls", "--all-netns", "-tlnp")
    assert r.returncode == 0, r.stderr
    assert f"netns:{lab['ns']}" in r.stdout and r.stdout.startswith("host")
    block = r.stdout.split(f"netns:{lab['ns']}", 1)[1].split("\n\n", 1)[0]
    assert "0.0.0.0:6379" in block and "127.0.0.1:5432" in block
    assert f"{lab['pid']}" in block  # owners across namespaces, one pass
    doc = json.loads(cli("ls", "--all-netns", "-tln", "--json").stdout)
    mine = [o for o in doc if o["netns"] == f"netns:{lab['ns']}"]
    expected = {k for k in ss(lab["ns"], "-tln")}
    assert json_keys(mine) == expected
    assert {o["netns"] for o in doc} >= {"host", f"netns:{lab['ns']}"}
    rows = cli("ls", "--all-netns", "-tln", "--csv").stdout.splitlines()
    assert rows[0].startswith("netns,proto,") and any(
        line.startswith(f"netns:{lab['ns']},tcp,") for line in rows[1:]
    )
    both = cli("ls", "--all-netns", "--netns", lab["ns"])
    assert both.returncode == 2 and "--all-netns" in both.stderr
    # without owners, each block is the namespace's own plain listing (from raw rows)
    plain = cli("ls", "--all-netns", "-tln")
    block = plain.stdout.split(f"netns:{lab['ns']}", 1)[1].split("\n\n", 1)[0]
    alone = cli("ls", "--netns", lab["ns"], "-tln").stdout
    assert block.split("\n", 1)[1].rstrip("\n") == alone.rstrip("\n")

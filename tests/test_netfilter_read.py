"""Reading a namespace's NAT rules for real: a NAT-only published port made by hand with
``nft add rule ... dnat to`` (what kube-proxy and netavark do) in a namespace of our
own, reaching a server in a second namespace over a veth pair; a legacy iptables nat
table; no permission; no nft; bounded tools."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from portkit.errors import PortkitError
from portkit.netfilter import nat_mappings, read_nat, read_ruleset
from portkit.netfilter._read import run_tool

pytestmark = pytest.mark.netns

NAT_IP, SVC_IP = "10.241.0.1", "10.241.0.2"
#: The hand-made NAT-only publication, as ``nft`` commands (kube-proxy's shape, small).
RULES = [
    ["add", "table", "ip", "kp"],
    ["add", "chain", "ip", "kp", "pre",
     "{ type nat hook prerouting priority dstnat; policy accept; }"],
    ["add", "chain", "ip", "kp", "out", "{ type nat hook output priority -100; policy accept; }"],
    ["add", "chain", "ip", "kp", "services"],
    ["add", "rule", "ip", "kp", "pre", "jump", "services"],
    ["add", "rule", "ip", "kp", "out", "jump", "services"],
    ["add", "rule", "ip", "kp", "services", "tcp", "dport", "18099",
     "dnat", "to", f"{SVC_IP}:80", "comment", '"svc/web"'],
]  # fmt: skip
SERVER = """
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.241.0.2", 80))
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    c.sendall(b"hello from svc\\n")
    c.close()
"""


def _sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


@pytest.fixture(scope="module")
def nat_netns() -> Iterator[tuple[str, str]]:
    """``(nat, svc)``: two namespaces over a veth pair; a DNAT rule in ``nat`` publishes
    18099 for the server on svc's port 80; no socket listens on 18099 anywhere."""
    nat, svc = f"pknat{os.getpid()}", f"pksvc{os.getpid()}"
    server = None
    try:
        for ns in (nat, svc):
            _sh("ip", "netns", "add", ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "-n", nat, "link", "add", "v0", "type", "veth", "peer", "v1", "netns", svc)
        _sh("ip", "-n", nat, "addr", "add", f"{NAT_IP}/24", "dev", "v0")
        _sh("ip", "-n", svc, "addr", "add", f"{SVC_IP}/24", "dev", "v1")
        _sh("ip", "-n", nat, "link", "set", "v0", "up")
        _sh("ip", "-n", svc, "link", "set", "v1", "up")
        for command in RULES:
            _sh("ip", "netns", "exec", nat, "nft", *command)
        server = subprocess.Popen(
            ["ip", "netns", "exec", svc, sys.executable, "-c", SERVER],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        assert server.stdout.readline() == "ready\n"
        yield nat, svc
    finally:
        if server is not None:
            server.kill()
            server.wait()
            if server.stdout is not None:
                server.stdout.close()
        for ns in (nat, svc):
            _sh("ip", "netns", "del", ns, check=False)


def test_a_nat_only_port_made_by_hand(nat_netns: tuple[str, str]) -> None:
    nat, _ = nat_netns
    reading = read_nat(nat)
    assert reading.sources == ("nft",)
    assert reading.notes == ()
    (m,) = reading.mappings
    assert (m.published(), m.destination(), m.hooks, m.comment) == (
        "tcp 0.0.0.0:18099",
        "10.241.0.2:80",
        ("prerouting", "output"),
        "svc/web",
    )
    assert m.path == ("pre", "services")
    assert m.where.startswith("nft ip kp services handle ")
    assert nat_mappings(f"/run/netns/{nat}") == [m]  # by path or by name alike
    # no socket holds the port: it is the rule alone that publishes it
    assert _sh("ip", "netns", "exec", nat, "ss", "-ltnH", "sport = :18099").stdout == ""
    # and the rule is real: a client in that namespace reaches the server behind it
    hello = _sh(
        "ip", "netns", "exec", nat, sys.executable, "-c",
        "import socket; print(socket.create_connection(('10.241.0.1', 18099), 5).recv(64))",
    )  # fmt: skip
    assert "hello from svc" in hello.stdout


def test_the_ruleset_model_of_a_namespace(nat_netns: tuple[str, str]) -> None:
    ruleset = read_ruleset(nat_netns[0])
    assert ruleset is not None
    assert [c.name for c in ruleset.base_chains(type="nat")] == ["out", "pre"]
    empty = read_ruleset(nat_netns[1])
    assert empty is not None
    assert empty.chains == {}


def test_a_legacy_nat_table_is_read_too(nat_netns: tuple[str, str]) -> None:
    _, svc = nat_netns
    _sh(
        "ip", "netns", "exec", svc, "iptables-legacy", "-t", "nat", "-A", "PREROUTING",
        "-p", "udp", "--dport", "18097", "-j", "DNAT", "--to-destination", "10.241.0.1:53",
    )  # fmt: skip
    try:
        reading = read_nat(svc)
        assert reading.sources == ("nft", "iptables-legacy")
        (m,) = reading.mappings
        assert (m.published(), m.destination(), m.origin) == (
            "udp 0.0.0.0:18097",
            "10.241.0.1:53",
            "iptables-legacy",
        )
        assert m.where == "iptables-legacy nat PREROUTING rule 1"
    finally:
        _sh("ip", "netns", "exec", svc, "iptables-legacy", "-t", "nat", "-F", check=False)


def test_no_legacy_table_is_created_by_looking(nat_netns: tuple[str, str]) -> None:
    nat, _ = nat_netns
    read_nat(nat)
    names = _sh("ip", "netns", "exec", nat, "cat", "/proc/self/net/ip_tables_names").stdout
    assert "nat" not in names.split()


def _unprivileged(code: str, drop: str) -> dict[str, str]:
    """Run ``code`` as root without the capabilities ``drop``; its error as JSON."""
    script = (
        "import json\n"
        "from portkit.netfilter import read_nat\n"
        "try:\n"
        f"    {code}\n"
        "    print(json.dumps({'ok': 'no error'}))\n"
        "except Exception as exc:\n"
        "    print(json.dumps({'type': type(exc).__name__, 'text': str(exc)}))\n"
    )
    done = subprocess.run(
        ["setpriv", "--inh-caps=-all", f"--bounding-set={drop}", sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    found: dict[str, str] = json.loads(done.stdout)
    return found


def test_without_cap_net_admin_it_says_what_is_missing() -> None:
    got = _unprivileged("read_nat()", "-net_admin")
    assert got["type"] == "PermissionDenied"
    assert got["text"].startswith("cannot read the NAT rules (run nft: ")
    assert got["text"].endswith("needs root or CAP_NET_ADMIN")


def test_without_cap_sys_admin_another_namespace_cannot_be_entered(
    nat_netns: tuple[str, str],
) -> None:
    got = _unprivileged(f"read_nat({nat_netns[0]!r})", "-sys_admin")
    assert got["type"] == "PermissionDenied"
    assert f"cannot read the NAT rules of {nat_netns[0]} (enter the namespace" in got["text"]
    assert got["text"].endswith("needs root or CAP_NET_ADMIN and CAP_SYS_ADMIN")


def test_no_such_namespace() -> None:
    with pytest.raises(PortkitError, match="no network namespace at /run/netns/pk-nowhere"):
        read_nat("pk-nowhere")


def test_without_nft_it_says_so(tmp_path: os.PathLike[str]) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from portkit.netfilter import read_nat; r = read_nat(); "
            "print(json.dumps([r.sources, r.notes]))",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": str(tmp_path)},
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    sources, notes = json.loads(done.stdout)
    assert sources == []
    assert notes[0] == "nft is not installed: nftables rules not read"


def test_tools_are_bounded_in_output_and_time() -> None:
    with pytest.raises(PortkitError, match="yes wrote more than 10000 bytes"):
        run_tool(["yes"], limit=10_000)
    with pytest.raises(PortkitError, match=r"sleep did not finish within 0\.2 s"):
        run_tool(["sleep", "10"], timeout=0.2)
    with pytest.raises(PortkitError, match="false failed: exit 1"):
        run_tool(["false"])
    assert run_tool(["pk-no-such-tool"]) is None

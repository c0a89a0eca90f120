"""``portkit why``: each layer broken on purpose in a lab of two network namespaces
(and in the real Docker daemon of tests/_docker.py), named by ``failed_layer``, with
the probe agreeing; every layer passing on a healthy path; the pure judgements.

The client namespace has no default route and resolves names with its own hosts file
(``/etc/netns/NAME/hosts``) and a resolver on its own loopback where nothing answers:
nothing a test asks can leave the machine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from portkit.netfilter import NatMapping, parse_iptables_save, ruleset_from_save
from portkit.why._layers import judge_listener, judge_source
from portkit.why._netfilter import iif_matches, judge_firewall, pick_dnat
from tests.conftest import run_portkit

DATA = os.path.join(os.path.dirname(__file__), "data", "netfilter")
CLIENT, TARGET = "10.205.0.1", "10.205.0.2"

#: A TCP or UDP server for the target namespace: ``python3 -c SERVER host port proto
#: backlog accept``.
SERVER = """
import socket, sys, threading
host, port, proto = sys.argv[1], int(sys.argv[2]), sys.argv[3]
backlog, accept = int(sys.argv[4]), sys.argv[5] == "1"
kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, port))
print("ready", flush=True)
if proto == "udp":
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)
s.listen(backlog)
held = []
while accept:
    c, _ = s.accept()
    held.append(c)
threading.Event().wait()
"""


class WhyLab:
    """client (10.205.0.1) <-> veth <-> target (10.205.0.2), both namespaces ours."""

    def __init__(self) -> None:
        tag = os.getpid()
        self.client, self.target = f"pkwc{tag}", f"pkwt{tag}"
        self.etc = f"/etc/netns/{self.client}"
        self.procs: list[subprocess.Popen[str]] = []

    def sh(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)

    def start(self) -> WhyLab:
        for ns in (self.client, self.target):
            self.sh("ip", "netns", "add", ns)
            self.sh("ip", "-n", ns, "link", "set", "lo", "up")
        self.sh(
            "ip", "link", "add", "pkwv0", "netns", self.client, "type", "veth",
            "peer", "name", "pkwv1", "netns", self.target,
        )  # fmt: skip
        self.sh("ip", "-n", self.client, "addr", "add", f"{CLIENT}/24", "dev", "pkwv0")
        self.sh("ip", "-n", self.target, "addr", "add", f"{TARGET}/24", "dev", "pkwv1")
        self.sh("ip", "-n", self.client, "link", "set", "pkwv0", "up")
        self.sh("ip", "-n", self.target, "link", "set", "pkwv1", "up")
        os.makedirs(self.etc, exist_ok=True)
        with open(f"{self.etc}/hosts", "w") as f:
            f.write(f"127.0.0.1 localhost\n{TARGET} db.why.test\n10.205.0.9 stale.why.test\n")
        with open(f"{self.etc}/resolv.conf", "w") as f:
            f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
        return self

    def serve(
        self, port: int, host: str = "0.0.0.0", proto: str = "tcp", backlog: int = 128,
        accept: bool = True,
    ) -> subprocess.Popen[str]:  # fmt: skip
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.target, sys.executable, "-c", SERVER,
             host, str(port), proto, str(backlog), "1" if accept else "0"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        self.procs.append(proc)
        return proc

    def nft(self, text: str) -> None:
        done = subprocess.run(
            ["ip", "netns", "exec", self.target, "nft", "-f", "-"],
            input=text, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def why(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = run_portkit("why", *args, "--from", f"netns:{self.client}", "--json")
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode in (0, 1), (done.returncode, done.stderr)
        (doc,) = json.loads(done.stdout)
        return done.returncode, doc

    def stop(self) -> None:
        for proc in self.procs:
            _end(proc)
        for ns in (self.client, self.target):
            self.sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.etc, ignore_errors=True)


def _end(proc: subprocess.Popen[str]) -> None:
    proc.kill()
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


@pytest.fixture(scope="module")
def lab() -> Iterator[WhyLab]:
    built = WhyLab()
    try:
        yield built.start()
    finally:
        built.stop()


def _layer(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(layer for layer in doc["layers"] if layer["layer"] == name)


def _broken(doc: dict[str, Any], layer: str) -> None:
    """``layer`` is the one named, and the real connection failed too."""
    assert doc["failed_layer"] == layer, json.dumps(doc, indent=1)
    assert doc["reachable"] is False
    assert doc["probe"] is None or doc["probe"]["state"] != "open", doc["probe"]
    assert doc["fix"], doc


# --- the lab, one layer at a time ----------------------------------------------------


@pytest.mark.netns
def test_a_healthy_path_passes_every_layer(lab: WhyLab) -> None:
    lab.serve(7001)
    code, doc = lab.why("db.why.test:7001")
    assert code == 0 and doc["reachable"] and doc["failed_layer"] is None, doc
    assert [layer["layer"] for layer in doc["layers"]] == [
        "name", "route", "firewall", "nat", "listener", "source", "probe",
    ]  # fmt: skip
    assert all(layer["ok"] is not False for layer in doc["layers"]), doc
    assert _layer(doc, "name")["addresses"] == [TARGET]
    assert doc["probe"] == {"state": "open", "reason": "syn-ack"}


@pytest.mark.netns
def test_name_that_does_not_resolve(lab: WhyLab) -> None:
    code, doc = lab.why("nosuch.why.test:7001")
    assert code == 1
    _broken(doc, "name")


@pytest.mark.netns
def test_name_from_a_stale_hosts_entry(lab: WhyLab) -> None:
    code, doc = lab.why("stale.why.test:7001")
    assert code == 1
    _broken(doc, "name")
    assert "stale hosts entry" in doc["verdict"]


@pytest.mark.netns
def test_no_route(lab: WhyLab) -> None:
    # 192.0.2.0/24 (TEST-NET-1): the client has no route there, so nothing is sent.
    code, doc = lab.why("192.0.2.10:80")
    assert code == 1
    _broken(doc, "route")


@pytest.mark.netns
@pytest.mark.parametrize(
    ("port", "statement", "verdict", "probe"),
    [
        (7010, "drop", "drop", "no-response"),
        (7011, "reject with tcp reset", "reject", "conn-refused"),
    ],
)
def test_a_firewall_rule_on_the_target(
    lab: WhyLab, port: int, statement: str, verdict: str, probe: str
) -> None:
    lab.serve(port)
    lab.nft(
        "table inet pkwfw {\n"
        "  chain input { type filter hook input priority filter; policy accept;\n"
        f"    tcp dport {port} {statement}\n"
        "  }\n"
        "}\n"
    )
    try:
        code, doc = lab.why(f"db.why.test:{port}")  # a name from hosts, not "stale"
        assert code == 1
        _broken(doc, "firewall")
        fw = _layer(doc, "firewall")
        assert fw["verdict"] == verdict and str(port) in fw["text"], fw
        assert fw["rule"] == "nft inet pkwfw input handle 2"
        assert doc["probe"]["reason"] == probe, doc["probe"]
        assert _layer(doc, "listener")["ok"] is True  # the service is there, behind it
    finally:
        lab.nft("delete table inet pkwfw\n")
    code, doc = lab.why(f"{TARGET}:{port}")
    assert code == 0 and _layer(doc, "firewall")["ok"] is True, doc


@pytest.mark.netns
def test_a_dnat_to_a_port_nothing_listens_on(lab: WhyLab) -> None:
    lab.nft(
        "table ip pkwhy {\n"
        "  chain pre { type nat hook prerouting priority dstnat; policy accept;\n"
        f"    tcp dport 7002 dnat to {TARGET}:7999\n"
        f"    tcp dport 7003 dnat to {TARGET}:7001\n"
        "  }\n"
        "}\n"
    )
    try:
        code, doc = lab.why(f"{TARGET}:7002")
        assert code == 1
        _broken(doc, "nat")
        assert "7999" in doc["verdict"]
        code, doc = lab.why(f"{TARGET}:7003")  # the same rule form, to a live port
        assert code == 0, doc
        assert _layer(doc, "nat")["dnat"]["to"] == f"{TARGET}:7001"
    finally:
        lab.nft("delete table ip pkwhy\n")


@pytest.mark.netns
def test_a_listener_on_loopback_only(lab: WhyLab) -> None:
    lab.serve(7004, host="127.0.0.1")
    code, doc = lab.why(f"{TARGET}:7004")
    assert code == 1
    _broken(doc, "listener")
    assert "127.0.0.1 only" in doc["verdict"]


@pytest.mark.netns
def test_tcp_asked_only_udp_listens(lab: WhyLab) -> None:
    lab.serve(7005, proto="udp")
    code, doc = lab.why(f"{TARGET}:7005")
    assert code == 1
    _broken(doc, "listener")
    assert "only UDP" in doc["verdict"]


@pytest.mark.netns
def test_a_full_accept_queue(lab: WhyLab) -> None:
    lab.serve(7006, backlog=1, accept=False)
    flood = subprocess.Popen(
        ["ip", "netns", "exec", lab.client, sys.executable, "-c",
         "import socket, time\n"
         "held = []\n"
         "for _ in range(8):\n"
         "    s = socket.socket(); s.setblocking(False)\n"
         f"    s.connect_ex(('{TARGET}', 7006)); held.append(s)\n"
         "print('ready', flush=True); time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert flood.stdout is not None and flood.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # the handshakes complete into the queue (or are dropped)
        code, doc = lab.why(f"{TARGET}:7006")
        assert code == 1
        _broken(doc, "listener")
        assert "accept queue is full" in doc["verdict"]
    finally:
        _end(flood)


@pytest.mark.netns
def test_ephemeral_ports_to_the_destination_used_up(lab: WhyLab) -> None:
    lab.serve(7007)
    lab.sh("ip", "netns", "exec", lab.client, "sysctl", "-qw",
           "net.ipv4.ip_local_port_range=40000 40009")  # fmt: skip
    hold = subprocess.Popen(
        ["ip", "netns", "exec", lab.client, sys.executable, "-c",
         "import socket, time\n"
         f"held = [socket.create_connection(('{TARGET}', 7007)) for _ in range(10)]\n"
         "print('ready', flush=True); time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert hold.stdout is not None and hold.stdout.readline().strip() == "ready"
        code, doc = lab.why(f"{TARGET}:7007")
        assert code == 1
        _broken(doc, "source")
        assert "EADDRNOTAVAIL" in doc["verdict"]
    finally:
        _end(hold)
        lab.sh("ip", "netns", "exec", lab.client, "sysctl", "-qw",
               "net.ipv4.ip_local_port_range=32768 60999")  # fmt: skip


@pytest.mark.netns
def test_text_output_is_a_checklist_with_the_fix(lab: WhyLab) -> None:
    lab.serve(7008, host="127.0.0.1")
    done = run_portkit("why", f"{TARGET}:7008", "--from", f"netns:{lab.client}")
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{TARGET}:7008/tcp from netns:{lab.client}"
    assert any(line.lstrip().startswith("✗ listener") for line in lines)
    assert lines[-1].startswith("fix: ")


# --- containers (the real daemon) ----------------------------------------------------


@pytest.mark.netns
def test_a_port_published_on_loopback_only_asked_from_another_container(
    docker_lab: Any,
) -> None:
    # A decoy namespace carrying the bridge's address too (a stopped daemon's namespace
    # left behind, another daemon): the packet goes where the container's veth leads.
    gateway = docker_lab.inspect("hidden")["NetworkSettings"]["Gateway"]
    decoy = f"pkdecoy{os.getpid()}"
    subprocess.run(["ip", "netns", "add", decoy], check=True)
    try:
        for cmd in (
            ("link", "add", "d0", "type", "veth", "peer", "name", "d1"),
            ("addr", "add", f"{gateway}/16", "dev", "d0"),
            ("link", "set", "d0", "up"),
        ):
            subprocess.run(["ip", "-n", decoy, *cmd], check=True)
        done = run_portkit(
            "why", f"{gateway}:18080", "--from", "container:hidden", "--json",
            env={"DOCKER_HOST": f"unix://{docker_lab.sock}"},
        )  # fmt: skip
    finally:
        subprocess.run(["ip", "netns", "del", decoy], check=True)
    assert done.returncode == 1, done.stderr
    (doc,) = json.loads(done.stdout)
    _broken(doc, "listener")
    assert f"netns:{docker_lab.ns}" in _layer(doc, "nat")["evidence"]
    assert "container web's port, published on 127.0.0.1 only" in doc["verdict"]
    assert "-p 18080:80" in doc["fix"]


@pytest.mark.netns
def test_containers_on_two_networks_are_kept_apart(docker_lab: Any) -> None:
    """From the default bridge to a compose network's container: the packet goes via
    the bridge host, whose forward path drops it (Docker's isolation chains); the
    target's own rules accept it, and the probe agrees."""
    (net,) = docker_lab.inspect("shop_web_1")["NetworkSettings"]["Networks"].values()
    done = run_portkit(
        "why", f"{net['IPAddress']}:80", "--from", "container:hidden", "--json",
        env={"DOCKER_HOST": f"unix://{docker_lab.sock}"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    (doc,) = json.loads(done.stdout)
    _broken(doc, "firewall")
    firewall = _layer(doc, "firewall")
    assert firewall["hook"] == "forward" and "DOCKER-ISOLATION-STAGE-2" in firewall["rule"]
    assert f"in netns:{docker_lab.ns}" in firewall["evidence"]
    assert "docker network connect" in doc["fix"]
    assert _layer(doc, "probe")["ok"] is False


@pytest.mark.netns
def test_containers_on_one_bridge_pass_its_forward_path(docker_lab: Any) -> None:
    address = docker_lab.inspect("web")["NetworkSettings"]["IPAddress"]
    done = run_portkit(
        "why", f"{address}:80", "--from", "container:hidden", "--json",
        env={"DOCKER_HOST": f"unix://{docker_lab.sock}"},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    (doc,) = json.loads(done.stdout)
    firewall = _layer(doc, "firewall")
    assert firewall["ok"] and firewall["through"]["where"] == f"netns:{docker_lab.ns}"
    assert f"the rules in netns:{docker_lab.ns} forward it" in firewall["evidence"]
    assert "forward" in firewall["through"]["hooks"]


def test_a_forwarded_packet_meets_the_forward_hook() -> None:
    """Judged on a host that forwards it (pure, over the captured Docker ruleset): from
    docker0 into another network is dropped by isolation, within docker0 accepted."""
    with open(os.path.join(DATA, "docker-iptables-save.txt")) as f:
        ruleset = ruleset_from_save(f.read())
    local = ("172.17.0.1", "172.18.0.1")

    def judge(oif: str) -> Any:
        return judge_firewall(
            ruleset, "netns:docker", "172.17.0.4", ("172.18.0.3", 80), "tcp",
            "docker0", "prerouting", local, lambda _a: oif, through=True,
        )  # fmt: skip

    apart = judge("br-059f5cb2d6f7")
    assert apart.ok is False and apart.data["hook"] == "forward"
    assert "DOCKER-ISOLATION-STAGE-2" in apart.data["rule"]
    assert "docker network connect" in (apart.fix or "")
    together = judge("docker0")
    assert together.ok is True and "forward" in together.data["hooks"]


@pytest.mark.netns
def test_a_container_port_never_published(docker_lab: Any) -> None:
    done = run_portkit(
        "why", "127.0.0.1:5432", "--from", f"netns:{docker_lab.ns}", "--json",
        env={"DOCKER_HOST": f"unix://{docker_lab.sock}"},
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    (doc,) = json.loads(done.stdout)
    _broken(doc, "listener")
    assert "listens on 5432/tcp inside, but does not publish it" in doc["verdict"]


# --- pure judgements -------------------------------------------------------------------


def test_interface_requirements() -> None:
    assert iif_matches("!docker0", "eth0") and not iif_matches("!docker0", "docker0")
    assert iif_matches("veth+", "veth9") and iif_matches("br-*", "br-1a2b")
    assert not iif_matches("eth0", None) and iif_matches("lo", None)


def test_the_dnat_docker_publishes_is_picked_for_outside_packets_only() -> None:
    with open(os.path.join(DATA, "docker-iptables-save.txt")) as f:
        mappings = parse_iptables_save(f.read())
    outside = pick_dnat(mappings, "tcp", "10.0.0.5", 18081, "prerouting", "eth0")
    assert outside is not None and outside.to_port == 80
    assert pick_dnat(mappings, "tcp", "10.0.0.5", 18081, "prerouting", "docker0") is None
    assert pick_dnat(mappings, "tcp", "127.0.0.1", 18081, "output", None) is None
    assert pick_dnat(mappings, "udp", "10.0.0.5", 18081, "prerouting", "eth0") is None


def test_pick_dnat_takes_the_first_rule_in_order() -> None:
    first = NatMapping(
        4, "tcp", None, 80, 80, None, "dnat", "10.0.0.2", 8080, hooks=("prerouting",)
    )
    second = NatMapping(
        4, "all", None, 1, 65535, None, "dnat", "10.0.0.3", None, hooks=("prerouting",)
    )
    assert pick_dnat([first, second], "tcp", "192.0.2.1", 80, "prerouting", "eth0") is first
    assert pick_dnat([first, second], "tcp", "192.0.2.1", 81, "prerouting", "eth0") is second
    assert pick_dnat([first, second], "tcp", "192.0.2.1", 80, "output", None) is None


@pytest.mark.parametrize(
    ("rows", "ok", "says"),
    [
        ([("tcp", "LISTEN", "0.0.0.0", 0, 128, "pg/1")], True, "listens on 0.0.0.0"),
        ([("tcp", "LISTEN", "127.0.0.1", 0, 128, "")], False, "127.0.0.1 only"),
        ([("udp", "UNCONN", "0.0.0.0", 0, 0, "")], False, "only UDP"),
        ([("tcp", "TIME-WAIT", "10.0.0.2", 0, 0, "")], False, "TIME-WAIT"),
        ([("tcp", "LISTEN", "::", 129, 128, "")], False, "accept queue is full"),
        ([], False, "nothing listens"),
    ],
)
def test_listener_judgements(rows: list[Any], ok: bool, says: str) -> None:
    check = judge_listener("10.0.0.2", 5432, "tcp", rows)
    assert check.ok is ok and says in check.evidence, check
    assert (check.fix is None) is ok


def test_source_judgements() -> None:
    assert judge_source("10.0.0.5:5432", 28232, 10, (5, 1000)).ok
    assert not judge_source("10.0.0.5:5432", 10, 9, None).ok
    full = judge_source("10.0.0.5:5432", 28232, 0, (999, 1000))
    assert not full.ok and "conntrack" in full.evidence


def test_a_plan_service_port_is_asked_where_the_plan_publishes_it(tmp_path: Any) -> None:
    import socket

    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    compose = tmp_path / "compose.yaml"
    compose.write_text(f'services:\n  web:\n    image: nginx\n    ports: ["127.0.0.1:{port}:80"]\n')
    try:
        done = run_portkit("why", "--plan", str(compose), "web:80", "--json")
        assert done.returncode == 0, done.stderr
        (doc,) = json.loads(done.stdout)
        assert doc["target"] == f"127.0.0.1:{port}/tcp" and doc["reachable"]
        other = run_portkit("why", "--plan", str(compose), "web:81")
        assert other.returncode == 2 and "does not publish 81/tcp" in other.stderr
    finally:
        srv.close()


@pytest.mark.netns
def test_docker_user_drops_a_published_port_from_outside(docker_lab_noproxy: Any) -> None:
    """A client namespace wired to the daemon's host namespace asks for a port that
    NAT publishes (no userland proxy): DNAT into the container, then the forward path,
    where a DOCKER-USER rule drops it; the host's INPUT never sees the packet."""
    lab = docker_lab_noproxy
    client = f"pkwd{os.getpid()}"

    def in_lab(*argv: str) -> None:
        done = lab.in_ns(*argv)
        assert done.returncode == 0, done.stderr

    subprocess.run(["ip", "netns", "add", client], check=True)
    try:
        subprocess.run(
            ["ip", "link", "add", "pkdu0", "netns", client, "type", "veth",
             "peer", "name", "pkdu1", "netns", lab.ns],
            check=True,
        )  # fmt: skip
        subprocess.run(
            ["ip", "-n", client, "addr", "add", "10.206.0.1/24", "dev", "pkdu0"], check=True
        )
        subprocess.run(["ip", "-n", client, "link", "set", "pkdu0", "up"], check=True)
        in_lab("ip", "addr", "add", "10.206.0.2/24", "dev", "pkdu1")
        in_lab("ip", "link", "set", "pkdu1", "up")
        env = {"DOCKER_HOST": f"unix://{lab.sock}"}

        def why() -> dict[str, Any]:
            done = run_portkit(
                "why", "10.206.0.2:18090", "--from", f"netns:{client}", "--json", env=env
            )
            assert done.returncode in (0, 1), done.stderr
            (doc,) = json.loads(done.stdout)
            return dict(doc)

        healthy = why()
        assert healthy["reachable"], json.dumps(healthy, indent=1)
        nat = _layer(healthy, "nat")
        assert nat["dnat"]["to"].endswith(":80") and nat["into"] == "container:pub"
        assert "forward" in _layer(healthy, "firewall")["hooks"]
        in_lab("iptables", "-I", "DOCKER-USER", "-p", "tcp", "--dport", "80", "-j", "DROP")
        try:
            doc = why()
            _broken(doc, "firewall")
            fw = _layer(doc, "firewall")
            assert fw["hook"] == "forward" and "DOCKER-USER" in fw["rule"], fw
        finally:
            in_lab("iptables", "-D", "DOCKER-USER", "-p", "tcp", "--dport", "80", "-j", "DROP")
    finally:
        subprocess.run(["ip", "netns", "del", client], check=False)

"""A two-namespace network lab with a known port plan (the scan's ground truth).

``client`` (10.204.0.1, fd00:204::1) ⇄ veth ⇄ ``target`` (10.204.0.2, fd00:204::2).
The target runs this file as a server (``python _lab.py serve PLAN.json``) and an
nftables ruleset that drops, rejects with ICMP (port-unreachable, admin-prohibited,
host-unreachable, no-route) or resets the planned ports. Every other port is closed
(the kernel answers RST, or ICMP port-unreachable for UDP). The client namespace has
no default route, so nothing run inside it can reach anything but the target.

Used by the tests (a session fixture in the test modules) and by ``bench/scan``.
Needs root, iproute2 (``ip``), nftables (``nft``) and openssl (the TLS port's cert).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

CLIENT_V4, TARGET_V4 = "10.204.0.1", "10.204.0.2"
CLIENT_V6, TARGET_V6 = "fd00:204::1", "fd00:204::2"

BANNERS = {22: b"SSH-2.0-OpenSSH_9.6 portkit-lab\r\n", 25: b"220 lab.portkit.test ESMTP\r\n"}
HTTP_PORT, TLS_PORT, REDIS_PORT = 80, 443, 6379


def make_plan(seed: int = 4) -> dict[str, Any]:
    """A seeded port plan: which port gets which treatment (JSON-friendly)."""
    rng = random.Random(seed)
    fixed = {22, 25, HTTP_PORT, TLS_PORT, REDIS_PORT}
    taken = set(fixed)

    def pick(n: int, low: int = 1, high: int = 65535) -> list[int]:
        out: list[int] = []
        while len(out) < n:
            p = rng.randint(low, high)
            if p not in taken:
                taken.add(p)
                out.append(p)
        return sorted(out)

    tcp = {
        "open": sorted(fixed | set(pick(35))),
        "drop": pick(20),
        "reject_port": pick(10),
        "reject_admin": pick(10),
        "reject_reset": pick(5),
        "reject_host": pick(2),
        "reject_net": pick(2),
    }
    utaken: set[int] = {53, 123, 161, 7}
    taken = utaken

    udp = {
        "dns": 53,
        "ntp": 123,
        "snmp": 161,
        "echo": [7, *pick(1, 20000, 60000)],
        "silent": pick(2, 1024, 60000),
        "drop": pick(3, 1024, 60000),
        "reject_admin": pick(2, 1024, 60000),
        "closed": pick(6, 1024, 60000),  # a few known-closed ports to probe explicitly
    }
    return {"seed": seed, "tcp": tcp, "udp": udp}


# What a connect scan (nmap -sT) and a UDP scan (nmap -sU) must say, per treatment.
# IPv4 and IPv6 differ only in the errno for admin-prohibited (EHOSTUNREACH vs EACCES):
# the state is "filtered" either way.
TCP_TRUTH = {
    "open": "open",
    "drop": "filtered",
    "reject_port": "closed",
    "reject_admin": "filtered",
    "reject_reset": "closed",
    "reject_host": "filtered",
    "reject_net": "filtered",
}
TCP_REASONS = {
    "open": {"syn-ack"},
    "drop": {"no-response"},
    "reject_port": {"port-unreach", "conn-refused"},
    "reject_admin": {"admin-prohibited"},
    "reject_reset": {"conn-refused"},
    "reject_host": {"host-unreach"},
    "reject_net": {"net-unreach"},
}


def tcp_truth(plan: dict[str, Any]) -> dict[int, str]:
    """Expected state of every TCP port 1-65535 (closed unless the plan says otherwise)."""
    truth = dict.fromkeys(range(1, 65536), "closed")
    for kind, ports in plan["tcp"].items():
        for p in ports:
            truth[p] = TCP_TRUTH[kind]
    return truth


def tcp_kind(plan: dict[str, Any], port: int) -> str:
    for kind, ports in plan["tcp"].items():
        if port in ports:
            return str(kind)
    return "closed"


def udp_truth(plan: dict[str, Any]) -> dict[int, str]:
    """Expected UDP states of the planned ports (others are closed)."""
    u = plan["udp"]
    truth: dict[int, str] = {}
    for p in (u["dns"], u["ntp"], u["snmp"], *u["echo"]):
        truth[p] = "open"
    for p in (*u["silent"], *u["drop"]):
        truth[p] = "open|filtered"
    for p in u["reject_admin"]:
        truth[p] = "filtered"
    for p in u["closed"]:
        truth[p] = "closed"
    return truth


def _nft_ruleset(plan: dict[str, Any]) -> str:
    t, u = plan["tcp"], plan["udp"]

    def s(ports: list[int]) -> str:
        return "{ " + ", ".join(str(p) for p in ports) + " }"

    return f"""
table inet pk4lab {{
  chain input {{
    type filter hook input priority 0; policy accept;
    iifname "lo" accept
    tcp dport {s(t["drop"])} drop
    tcp dport {s(t["reject_port"])} reject with icmpx type port-unreachable
    tcp dport {s(t["reject_admin"])} reject with icmpx type admin-prohibited
    tcp dport {s(t["reject_host"])} reject with icmpx type host-unreachable
    tcp dport {s(t["reject_net"])} reject with icmpx type no-route
    tcp dport {s(t["reject_reset"])} reject with tcp reset
    udp dport {s(u["drop"])} drop
    udp dport {s(u["reject_admin"])} reject with icmpx type admin-prohibited
  }}
}}
"""


def _sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def tools_missing() -> list[str]:
    return [t for t in ("ip", "nft", "openssl") if shutil.which(t) is None]


@contextlib.contextmanager
def required_lab(**kwargs: Any) -> Iterator[Lab]:
    """A lab for a test module; fails loudly (never skips) without root or the tools."""
    assert os.geteuid() == 0, "the lab builds network namespaces: needs root"
    missing = tools_missing()
    assert not missing, f"the lab needs {', '.join(missing)} (scripts/system-packages.txt)"
    with Lab(**kwargs) as built:
        yield built


class Lab:
    """Build the lab on enter, remove it on exit (also after a failure)."""

    def __init__(self, seed: int = 4, prefix: str = "pk4") -> None:
        pid = os.getpid()
        self.plan = make_plan(seed)
        self.client = f"{prefix}c{pid}"
        self.target = f"{prefix}t{pid}"
        self.tmp = tempfile.mkdtemp(prefix=f"{prefix}lab")
        self.server: subprocess.Popen[str] | None = None
        self.v4, self.v6 = TARGET_V4, TARGET_V6
        self.etc = f"/etc/netns/{self.client}"
        self.hosts_file = os.path.join(self.etc, "hosts")

    # --- building ----------------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ns(self, ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return _sh("ip", "netns", "exec", ns, *args, check=check)

    def _build(self) -> None:
        c, t = self.client, self.target
        # `ip netns exec` bind-mounts /etc/netns/NAME/hosts over /etc/hosts: names that
        # only the client namespace resolves (see add_host).
        os.makedirs(self.etc, exist_ok=True)
        with open(self.hosts_file, "w") as f:
            f.write("127.0.0.1 localhost\n::1 localhost\n")
        _sh("ip", "netns", "add", c)
        _sh("ip", "netns", "add", t)
        _sh(
            "ip",
            "link",
            "add",
            f"{c}",
            "netns",
            c,
            "type",
            "veth",
            "peer",
            "name",
            f"{t}",
            "netns",
            t,
        )
        for ns, dev, v4, v6 in ((c, c, CLIENT_V4, CLIENT_V6), (t, t, TARGET_V4, TARGET_V6)):
            self._ns(ns, "ip", "link", "set", "lo", "up")
            self._ns(ns, "ip", "addr", "add", f"{v4}/24", "dev", dev)
            self._ns(ns, "ip", "-6", "addr", "add", f"{v6}/64", "dev", dev, "nodad")
            self._ns(ns, "ip", "link", "set", dev, "up")
        # Deterministic REJECT answers: no per-peer ICMP rate limit, a large global budget.
        self.set_icmp_ratelimit(0)
        for key, value in (
            ("net.ipv4.icmp_msgs_per_sec", "100000"),
            ("net.ipv4.icmp_msgs_burst", "100000"),
        ):
            self._ns(t, "sysctl", "-qw", f"{key}={value}", check=False)
        rules = os.path.join(self.tmp, "rules.nft")
        with open(rules, "w") as f:
            f.write(_nft_ruleset(self.plan))
        self._ns(t, "nft", "-f", rules)
        cert, key = os.path.join(self.tmp, "cert.pem"), os.path.join(self.tmp, "key.pem")
        _sh(
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "30",
            "-subj",
            "/CN=lab.portkit.test/O=portkit lab",
        )
        self.cert = cert
        conf = os.path.join(self.tmp, "plan.json")
        with open(conf, "w") as f:
            json.dump({"plan": self.plan, "cert": cert, "key": key}, f)
        self.server = subprocess.Popen(
            ["ip", "netns", "exec", t, sys.executable, os.path.abspath(__file__), "serve", conf],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.server.stdout is not None
        line = self.server.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"lab server did not start: {line}{self.server.stderr.read()}")
        # Prime the neighbour caches both ways so the first probes see no ARP/ND delay.
        prime = (
            "import socket\n"
            f"for host in ({TARGET_V4!r}, {TARGET_V6!r}):\n"
            "    socket.create_connection((host, 22), timeout=5).close()\n"
        )
        done = self.python(prime, timeout=30)
        if done.returncode:
            raise RuntimeError(f"lab: cannot reach the target: {done.stderr}")

    def set_icmp_ratelimit(self, ms: int) -> None:
        """Per-peer ICMP error rate limit in the target (0: off; Linux default 1000)."""
        self._ns(self.target, "sysctl", "-qw", f"net.ipv4.icmp_ratelimit={ms}")
        self._ns(self.target, "sysctl", "-qw", f"net.ipv6.icmp.ratelimit={ms}")

    def add_host(self, name: str, address: str) -> None:
        """Make ``name`` resolve to ``address`` inside the client namespace, from now on."""
        with open(self.hosts_file, "a") as f:  # in place: the bind mount keeps the inode
            f.write(f"{address} {name}\n")

    def close(self) -> None:
        if self.server is not None and self.server.poll() is None:
            # ip netns exec execs the python server, so this pid is the server itself.
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(5)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        if self.server is not None:
            for stream in (self.server.stdout, self.server.stderr):
                if stream is not None:
                    stream.close()
        for ns in (self.client, self.target):
            _sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.etc, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir("/etc/netns")  # only when no one else keeps a namespace config there

    # --- running things in the client namespace ---------------------------------------
    def argv(self, *args: str) -> list[str]:
        """``args`` run inside the client namespace."""
        return ["ip", "netns", "exec", self.client, *args]

    def run(self, *args: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, timeout=timeout, **kw
        )

    def portkit(
        self, *args: str, timeout: float = 120, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {} if env is None else {"env": {**os.environ, **env}}
        return self.run(sys.executable, "-m", "portkit", *args, timeout=timeout, **extra)

    def python(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run(sys.executable, "-c", code, timeout=timeout)

    def target_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self._ns(self.target, *args)


# --- the target's server ---------------------------------------------------------------


def _dns_answer(data: bytes) -> bytes | None:
    # Answer only well-formed queries (QR=0, one question): an empty datagram stays silent,
    # so "open" here needs the scanner's DNS payload.
    if len(data) < 12 or data[2] & 0x80 or data[4:6] != b"\x00\x01":
        return None
    return data[:2] + b"\x81\x80" + data[4:6] + b"\x00\x00\x00\x00\x00\x00" + data[12:]


def _ntp_answer(data: bytes) -> bytes | None:
    if len(data) < 48 or data[0] & 0x07 != 3:  # mode 3 = client
        return None
    return bytes([0x24, 2, 6, 0xEC]) + bytes(44)


def _snmp_answer(data: bytes) -> bytes | None:
    if not data or data[0] != 0x30:  # an ASN.1 SEQUENCE: an SNMP message
        return None
    return b"\x30\x0c\x02\x01\x00\x04\x06public\xa2\x00"


def _echo(data: bytes) -> bytes | None:
    return data


def _serve_conn(conn: socket.socket, port: int, tls: Any) -> None:
    conn.settimeout(5)
    try:
        if port in BANNERS:
            conn.sendall(BANNERS[port])
            conn.recv(1024)
        elif port == REDIS_PORT:
            if conn.recv(1024).startswith(b"PING"):
                conn.sendall(b"+PONG\r\n")
        elif port in (HTTP_PORT, TLS_PORT):
            if port == TLS_PORT:
                conn = tls.wrap_socket(conn, server_side=True)
            req = b""
            while b"\r\n\r\n" not in req and len(req) < 8192:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                req += chunk
            path = req.split(b" ")[1] if req.count(b" ") >= 2 else b"/"
            status = b"200 OK" if path in (b"/", b"/health") else b"404 Not Found"
            conn.sendall(
                b"HTTP/1.1 " + status + b"\r\nContent-Length: 0\r\nServer: lab\r\n"
                b"Connection: close\r\n\r\n"
            )
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            conn.close()


def serve(conf_path: str) -> None:
    import selectors
    import ssl

    with open(conf_path) as f:
        conf = json.load(f)
    plan = conf["plan"]
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(conf["cert"], conf["key"])
    sel = selectors.DefaultSelector()
    for port in plan["tcp"]["open"]:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
        s.listen(4096)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("tcp", port))
    u = plan["udp"]
    handlers = {u["dns"]: _dns_answer, u["ntp"]: _ntp_answer, u["snmp"]: _snmp_answer}
    handlers.update(dict.fromkeys(u["echo"], _echo))
    for port in (*handlers, *u["silent"]):
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.bind(("::", port))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, ("udp", port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    special = {*BANNERS, HTTP_PORT, TLS_PORT, REDIS_PORT}
    while not stop.is_set():
        for key, _ in sel.select(0.2):
            proto, port = key.data
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            if proto == "tcp":
                try:
                    conn, _ = sock.accept()
                except OSError:
                    continue
                if port in special:
                    conn.setblocking(True)
                    threading.Thread(
                        target=_serve_conn, args=(conn, port, tls), daemon=True
                    ).start()
                else:
                    conn.close()
            else:
                try:
                    data, peer = sock.recvfrom(65535)
                except OSError:
                    continue
                handler = handlers.get(port)
                answer = handler(data) if handler else None
                if answer is not None:
                    with contextlib.suppress(OSError):
                        sock.sendto(answer, peer)


def wait_until(pred: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        print(json.dumps(make_plan(), indent=1))


def self_signed_cert(directory: str, *, cn: str, org: str, san: str, days: int) -> tuple[str, str]:
    """A P-256 self-signed certificate made with the openssl CLI: ``(cert.pem, key.pem)``."""
    key, crt = f"{directory}/key.pem", f"{directory}/cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            crt,
            "-days",
            str(days),
            "-subj",
            f"/CN={cn}/O={org}",
            "-addext",
            f"subjectAltName={san}",
        ],
        check=True,
        capture_output=True,
    )
    return crt, key

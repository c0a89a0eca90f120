"""The runtimes' API client and the Resolver, against real unix sockets: servers of our
own that answer well, slowly, never, with garbage or with too much; a socket nobody
serves; one this process may not open (its capabilities dropped); and a /proc of our
own making for the Resolver's cgroup and command-line reads. The real daemon is
tests/test_containers_live.py's."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from portkit.containers import Container, Publication, Resolver, container_pid
from portkit.containers._api import engine_sockets, fetch, inspect_pids, request, stop
from portkit.errors import ParseError, PortkitError

DATA = Path(__file__).parent / "data" / "containers"
LISTED = (DATA / "docker-containers.json").read_bytes()
INSPECT = json.loads((DATA / "docker-inspect-web.json").read_text())
WEB = next(c for c in json.loads(LISTED) if c["Names"] == ["/web"])
SHOP = next(c for c in json.loads(LISTED) if c["Names"] == ["/shop_web_1"])

Handler = Callable[[socket.socket, bytes], None]


def _http(status: str, body: bytes, extra: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{extra}"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


class UnixServer:
    """A unix socket server on a thread: ``handler(conn, request)`` answers each
    connection; every request line is kept in ``seen``."""

    def __init__(self, path: str, handler: Handler) -> None:
        self.path = path
        self.handler = handler
        self.seen: list[str] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.done = threading.Event()
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.done.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.conns.append(conn)
            conn.settimeout(5)
            data = b""
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            self.seen.append(data.split(b"\r\n", 1)[0].decode())
            with contextlib.suppress(OSError):
                self.handler(conn, data)

    def close(self) -> None:
        self.done.set()
        self.thread.join(5)
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[[Handler], UnixServer]]:
    servers: list[UnixServer] = []

    def start(handler: Handler) -> UnixServer:
        server = UnixServer(str(tmp_path / f"api{len(servers)}.sock"), handler)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def hold(conn: socket.socket, req: bytes = b"") -> None:
    """Say nothing until the client hangs up."""
    conn.settimeout(30)
    with contextlib.suppress(OSError):
        while conn.recv(4096):
            pass


def engine(conn: socket.socket, req: bytes) -> None:
    """A Docker Engine of canned answers (the captured ones)."""
    line = req.split(b"\r\n", 1)[0].decode()
    if line.startswith("GET /containers/json "):
        conn.sendall(_http("200 OK", LISTED))
    elif line.startswith(f"GET /containers/{WEB['Id']}/json "):
        conn.sendall(_http("200 OK", json.dumps(INSPECT).encode()))
    elif line.startswith("GET /containers/"):
        body = json.dumps({"State": {"Pid": 4242}}).encode()
        conn.sendall(_http("200 OK", body))
    elif line.startswith(f"POST /containers/{WEB['Id']}/stop"):
        conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
    else:
        conn.sendall(_http("404 Not Found", b'{"message": "No such container: x"}'))
    conn.close()


# --- one request ------------------------------------------------------------------------------


def test_the_real_shape_of_an_exchange(serve: Callable[[Handler], UnixServer]) -> None:
    server = serve(engine)
    status, body = request(server.path, "GET", "/containers/json", time.monotonic() + 5)
    assert status == 200
    assert json.loads(body) == json.loads(LISTED)
    assert server.seen == ["GET /containers/json HTTP/1.1"]


def test_chunked_and_kept_open_answers(serve: Callable[[Handler], UnixServer]) -> None:
    def chunked(conn: socket.socket, req: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"[", b"1, 2", b"]"):
            conn.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        conn.sendall(b"0\r\n\r\n")
        hold(conn)  # and keeps the connection open: the client must not wait for it

    server = serve(chunked)
    began = time.monotonic()
    assert request(server.path, "GET", "/x", time.monotonic() + 2) == (200, b"[1, 2]")
    assert time.monotonic() - began < 2  # not a timing assertion: the deadline would raise


def test_a_server_that_never_answers_times_out(serve: Callable[[Handler], UnixServer]) -> None:
    server = serve(hold)
    listing = fetch([("docker", server.path, False)], budget=0.3)
    assert listing.containers == ()
    (answer,) = listing.answers
    assert answer.status == "timeout"
    assert answer.note == (
        f"docker API at {server.path}: no answer in time: containers shown by their short ids"
    )


def test_a_dripping_server_is_held_to_the_one_deadline(
    serve: Callable[[Handler], UnixServer],
) -> None:
    def drip(conn: socket.socket, req: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        for _ in range(30):
            conn.sendall(b" ")
            time.sleep(0.1)

    server = serve(drip)
    assert fetch([("docker", server.path, False)], budget=0.5).answers[0].status == "timeout"


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n", "not an HTTP answer"),
        (_http("200 OK", b"<html>hello</html>"), "the answer is not JSON"),
        (_http("200 OK", b'{"not": "a list"}'), "not a JSON array"),
        (_http("500 Internal Server Error", b'{"message": "boom"}'), "HTTP 500: boom"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n[", "not an HTTP answer"),
        (b"", "not an HTTP answer"),
    ],
)
def test_garbage_is_a_note(
    serve: Callable[[Handler], UnixServer], answer: bytes, says: str
) -> None:
    def handler(conn: socket.socket, req: bytes) -> None:
        conn.sendall(answer)
        conn.close()

    server = serve(handler)
    listing = fetch([("docker", server.path, False)], budget=2)
    (got,) = listing.answers
    assert got.status == "garbage"
    assert says in (got.note or "")
    assert got.note is not None
    assert got.note.endswith("containers shown by their short ids")
    assert "\n" not in got.note


def test_too_much_is_a_note(serve: Callable[[Handler], UnixServer]) -> None:
    def flood(conn: socket.socket, req: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n[")
        with contextlib.suppress(OSError):
            for _ in range(2000):
                conn.sendall(b"1," * 8192)

    server = serve(flood)
    with pytest.raises(ParseError, match="larger than 100000 bytes"):
        request(server.path, "GET", "/containers/json", time.monotonic() + 5, limit=100_000)


def test_an_authorization_plugin_saying_no_is_denied(
    serve: Callable[[Handler], UnixServer],
) -> None:
    def authz(conn: socket.socket, req: bytes) -> None:
        conn.sendall(_http("403 Forbidden", b'{"message": "authorization denied by plugin"}'))
        conn.close()

    server = serve(authz)
    (got,) = fetch([("docker", server.path, False)]).answers
    assert got.status == "denied"
    assert "authorization denied by plugin" in (got.note or "")


def test_no_socket_and_nobody_serving(tmp_path: Path) -> None:
    dead = str(tmp_path / "dead.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(dead)
    s.close()  # the file stays, nobody listens
    listing = fetch(
        [
            ("docker", str(tmp_path / "none.sock"), False),
            ("podman", str(tmp_path / "named.sock"), True),
            ("docker", dead, False),
        ]
    )
    assert [(a.status, a.note is None) for a in listing.answers] == [
        ("absent", True),  # a usual place with no daemon: nothing to say
        ("absent", False),  # DOCKER_HOST names it: worth a note
        ("refused", False),
    ]
    assert listing.notes[0] == f"podman API at {tmp_path}/named.sock: no such socket"


def test_a_socket_this_process_may_not_open(serve: Callable[[Handler], UnixServer]) -> None:
    """Root without CAP_DAC_OVERRIDE is held to the file's mode like anyone else."""
    server = serve(engine)
    os.chmod(server.path, 0o000)
    script = (
        "import json; from portkit.containers._api import fetch; "
        f"answers = fetch([('docker', {server.path!r}, True)]).answers; "
        "print(json.dumps([a.as_dict() for a in answers]))"
    )
    done = subprocess.run(
        [
            "setpriv",
            "--inh-caps=-all",
            "--bounding-set=-dac_override,-dac_read_search",
            sys.executable,
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    (answer,) = json.loads(done.stdout)
    assert answer["status"] == "denied"
    assert answer["note"] == (
        f"docker API at {server.path}: permission denied (root or the docker group): "
        "containers shown by their short ids"
    )
    assert server.seen == []


def test_a_remote_docker_host_is_never_contacted() -> None:
    sockets = engine_sockets({"DOCKER_HOST": "tcp://192.0.2.1:2375"})
    assert sockets == [("docker", "tcp://192.0.2.1:2375", True)]
    (answer,) = fetch(sockets).answers
    assert answer.status == "remote"
    assert answer.note == "docker API at tcp://192.0.2.1:2375: not a local unix socket, not asked"


def test_where_the_runtimes_are_looked_for(tmp_path: Path) -> None:
    assert engine_sockets({"DOCKER_HOST": "unix:///run/x.sock"}) == [
        ("docker", "/run/x.sock", True)
    ]
    assert engine_sockets({"CONTAINER_HOST": "unix:///run/p.sock"}) == [
        ("podman", "/run/p.sock", True)
    ]
    assert [p for _, p, _ in engine_sockets({})][:2] == [
        "/var/run/docker.sock",
        "/run/podman/podman.sock",
    ]
    # podman-docker: docker.sock is podman's, asked once, as podman
    real = tmp_path / "podman.sock"
    real.touch()
    link = tmp_path / "docker.sock"
    link.symlink_to(real)
    both = engine_sockets({"DOCKER_HOST": f"unix://{link}", "CONTAINER_HOST": f"unix://{real}"})
    assert both == [("podman", str(link), True)]


# --- the listing and the pids -------------------------------------------------------------------


def test_fetch_and_pids(serve: Callable[[Handler], UnixServer]) -> None:
    server = serve(engine)
    listing = fetch([("docker", server.path, False)])
    assert listing.notes == ()
    names = {c.name for c in listing.containers}
    assert {"web", "shop_web_1", "hidden"} <= names
    assert all(c.api == server.path for c in listing.containers)
    pids, notes = inspect_pids(listing.containers)
    assert pids[WEB["Id"]] == INSPECT["State"]["Pid"]
    assert notes == []
    assert len(server.seen) == 1 + len(listing.containers)


def test_pids_beyond_the_budget_are_a_note(serve: Callable[[Handler], UnixServer]) -> None:
    server = serve(hold)
    c = Container("a" * 64, "web", "docker", api=server.path)
    pids, notes = inspect_pids([c, c.replace(id="b" * 64)], budget=0.2)
    assert pids == {}
    assert notes == ["the main process of 2 container(s) was not learnt in time"]


def test_stop(serve: Callable[[Handler], UnixServer]) -> None:
    server = serve(engine)
    web = Container(WEB["Id"], "web", "docker", api=server.path)
    stop(web, grace=3)
    assert server.seen[-1] == f"POST /containers/{WEB['Id']}/stop?t=3 HTTP/1.1"
    with pytest.raises(PortkitError, match="did not stop gone: HTTP 404: No such container"):
        stop(Container("f" * 64, "gone", "docker", api=server.path))
    with pytest.raises(PortkitError, match="known from its cgroup only"):
        stop(Container("f" * 64, "f" * 12, "docker"))


# --- the resolver over a /proc of our own ------------------------------------------------------


def _proc(root: Path, pid: int, cgroup: str, argv: list[str], comm: str) -> None:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "cgroup").write_text(cgroup)
    (d / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (d / "comm").write_text(comm + "\n")


@pytest.fixture
def procfs(tmp_path: Path) -> Path:
    root = tmp_path / "proc"
    web_ip = WEB["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
    _proc(root, 10, f"0::/docker/{WEB['Id']}\n", ["httpd", "-f"], "httpd")
    _proc(root, 11, "0::/init.scope\n", ["sshd"], "sshd")
    proxy = ["/usr/sbin/docker-proxy", "-proto", "tcp", "-host-ip", "127.0.0.1", "-host-port",
             "18080", "-container-ip", web_ip, "-container-port", "80"]  # fmt: skip
    _proc(root, 12, "0::/system.slice/docker.service\n", proxy, "docker-proxy")
    _proc(root, 13, "0::/system.slice/docker.service\n", ["/usr/sbin/dockerd"], "dockerd")
    other = "9" * 64
    _proc(root, 14, f"0::/machine.slice/libpod-conmon-{other}.scope\n", ["conmon"], "conmon")
    pod = (
        "kubepods.slice/kubepods-besteffort.slice/"
        "kubepods-besteffort-pod2c1b8d0e_5a7f_4e51_9f0a_1f6a2b3c4d5e.slice"
    )
    _proc(root, 15, f"0::/{pod}/cri-containerd-{'7' * 64}.scope\n", ["coredns"], "coredns")
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / f"coredns-5d78c9869d-x2x7q_kube-system_coredns-{'7' * 64}.log").touch()
    return root


def test_resolver_names_owners_and_publishers(
    serve: Callable[[Handler], UnixServer], procfs: Path
) -> None:
    server = serve(engine)
    r = Resolver(str(procfs), sockets=[("docker", server.path, False)])
    web = r.of_pid(10)
    assert web is not None
    assert (web.name, web.image, web.from_api) == ("web", "portkit-busybox:test", True)
    assert r.of_pid(11) is None
    assert r.of_pid(99) is None  # gone
    # docker-proxy's argv names the container's address
    assert r.publication(12, "docker-proxy", 18080, "tcp", "127.0.0.1") == Publication(
        web, "proxy", "docker-proxy", "tcp", "127.0.0.1", 18080, web.addresses[0], 80
    )
    # dockerd holding a port (no userland proxy): the runtime's published ports say whose
    shop = r.publication(13, None, 18082, "tcp", "0.0.0.0")
    assert shop is not None
    assert shop.container is not None
    assert shop.container.label() == "shop_web_1 (compose shop/web)"
    assert (shop.kind, shop.via, shop.container_port) == ("nat", "dockerd", 80)
    assert r.publication(13, "dockerd", 65000, "tcp") == Publication(
        None, "nat", "dockerd", "tcp", None, 65000
    )
    assert r.publication(11, "sshd", 22) is None  # no publisher
    assert r.publisher_of(12, "docker-proxy", 18080) == web
    assert r.by_name("web") == web
    assert r.by_name(WEB["Id"][:6]) == web
    assert r.by_name("ab") is None
    assert r.pid_of(web) == INSPECT["State"]["Pid"]
    assert [line.split(" HTTP")[0] for line in server.seen] == [
        "GET /containers/json",  # once, however many questions
        f"GET /containers/{WEB['Id']}/json",
    ]
    assert r.notes == []
    everything = {(c.name, c.runtime, c.pid, c.from_api) for c in r.containers()}
    assert ("web", "docker", INSPECT["State"]["Pid"], True) in everything  # pid_of asked
    assert ("hidden", "docker", None, True) in everything
    assert ("9" * 12, "podman", 14, False) in everything  # its conmon's cgroup only
    assert ("coredns", "containerd", 15, False) not in everything  # no kubelet logs here
    assert ("7" * 12, "containerd", 15, False) in everything
    assert len(everything) == len(json.loads(LISTED)) + 2
    assert r.notes == [
        "2 containers known by their cgroup only (no runtime API answered for it): "
        "shown by short id"
    ]


def test_resolver_without_an_api(tmp_path: Path, procfs: Path) -> None:
    r = Resolver(
        str(procfs),
        sockets=[("docker", str(tmp_path / "nothing.sock"), True)],
        kubelet_logs=str(tmp_path / "logs"),
    )
    web = r.of_pid(10)
    assert web == Container(WEB["Id"], WEB["Id"][:12], "docker")
    conmon = r.publication(14, "conmon", 8080)
    assert conmon is not None
    assert conmon.container is not None
    assert (conmon.container.runtime, conmon.container.name) == ("podman", "9" * 12)
    coredns = r.of_pid(15)
    assert coredns is not None
    assert (coredns.pod, coredns.namespace, coredns.name) == (
        "coredns-5d78c9869d-x2x7q",
        "kube-system",
        "coredns",
    )
    assert coredns.label() == "kube-system/coredns-5d78c9869d-x2x7q"
    assert coredns.pod_uid == "2c1b8d0e-5a7f-4e51-9f0a-1f6a2b3c4d5e"
    assert sorted((c.pid, c.name) for c in r.containers(with_pids=True)) == [
        (10, WEB["Id"][:12]),
        (14, "9" * 12),
        (15, "coredns"),
    ]
    assert r.notes == [
        f"docker API at {tmp_path}/nothing.sock: no such socket",
        "3 containers known by their cgroup only (no runtime API answered for it): "
        "shown by short id",
    ]


def test_container_pid_by_name(
    serve: Callable[[Handler], UnixServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(engine)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{server.path}")
    assert container_pid("web") == INSPECT["State"]["Pid"]
    with pytest.raises(ParseError, match="no running container 'nope'"):
        container_pid("nope")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ParseError, match=r"no such socket"):
        container_pid("web")

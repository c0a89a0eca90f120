"""A real Docker daemon for the tests, in a network namespace of its own.

``DockerLab`` starts Debian's ``dockerd`` (docker.io) inside a fresh network namespace
(``nsenter --net``; ``ip netns exec`` would mount a fresh /sys and hide the cgroup
hierarchies dockerd needs), with its own API socket, data and exec roots and pidfile.
Its bridge, its nat/filter rules and its ``ip_forward`` live and die with that
namespace, so two daemons (userland proxy on, and off) coexist with the same bridge
name and ports, and the host's own firewall is not touched. As a second line of
defence the host's ruleset, ``ip_forward`` and links are recorded before the start and
put back at the stop if anything changed them.

No registry is reachable: the image is ``docker import`` of a rootfs holding Debian's
``busybox-static`` (``httpd``, ``nc``, ``sh``...) plus ``lib``/``lib64`` links so that a
container may run the host's ``/usr`` (bind-mounted read-only) for the one thing busybox
cannot do, a UDP server (``python3``). Containers always run with ``--init``.

Stopping removes the containers, kills dockerd by its pid, then the containerd it
spawned (by the pid it wrote) and any shim left behind (processes whose command line
names this lab's exec root), unmounts what is left under the lab's directory and
deletes the namespace.

Used by session fixtures (tests/conftest.py: ``docker_lab``, ``docker_lab_noproxy``);
a test that needs one fails with the daemon's log when it cannot start. Run as a
script it captures the test data of tests/data/netfilter and tests/data/containers:
``python -m tests._docker capture``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, NoReturn

DOCKER = shutil.which("docker") or "docker"
IMAGE = "portkit-busybox:test"
BUSYBOX_APPLETS = ("sh", "httpd", "nc", "sleep", "cat", "echo", "ls", "ps", "ip", "netstat")
#: A UDP echo server for the containers (busybox has none), run by the host's python3.
UDP_ECHO = (
    "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
    "s.bind(('0.0.0.0', {port})); "
    "[s.sendto(*s.recvfrom(2048)) for _ in iter(int, 1)]"
)

COMPOSE = """\
version: "2.4"
services:
  web:
    image: portkit-busybox:test
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    init: true
    ports: ["18082:80"]
  db:
    image: portkit-busybox:test
    command: ["httpd", "-f", "-p", "5432", "-h", "/www"]
    init: true
"""


def httpd(port: int) -> tuple[str, ...]:
    """busybox httpd in the foreground on ``port``."""
    return ("httpd", "-f", "-p", str(port), "-h", "/www")


def udp_echo(port: int) -> tuple[str, ...]:
    """The host's python3 answering every datagram on ``port`` (needs ``HOST_USR``)."""
    return ("/usr/bin/python3", "-c", UDP_ECHO.format(port=port))


#: ``docker run`` arguments that lend a container the host's /usr (for udp_echo).
HOST_USR = ("-v", "/usr:/usr:ro")


def _sh(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, **kw)


class DockerError(RuntimeError):
    """The daemon did not come up, or a docker command failed."""


class HostState:
    """What a daemon could change on the host: the ruleset, ip_forward, the links."""

    def __init__(self) -> None:
        self.ruleset = _sh("nft", "list", "ruleset", check=False).stdout
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            self.ip_forward = f.read().strip()
        self.links = set(os.listdir("/sys/class/net"))

    def restore(self) -> list[str]:
        """Put back whatever changed; what was put back, for the record."""
        now = HostState()
        changed = []
        for link in sorted(now.links - self.links):
            if link.startswith(("docker", "br-", "veth")):
                _sh("ip", "link", "del", link, check=False)
                changed.append(f"link {link}")
        if now.ruleset != self.ruleset:
            with tempfile.NamedTemporaryFile("w", suffix=".nft") as saved:
                saved.write(self.ruleset)
                saved.flush()
                _sh("nft", "flush", "ruleset", check=False)
                if self.ruleset.strip():
                    _sh("nft", "-f", saved.name, check=False)
            changed.append("ruleset")
        if now.ip_forward != self.ip_forward:
            with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
                f.write(self.ip_forward)
            changed.append("ip_forward")
        return changed


def _processes_naming(root: str) -> list[int]:
    """Processes whose command line names ``root`` (a lab's directory)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as f:
            if root.encode() in f.read():
                found.append(int(entry))
    return found


def sweep_left_behind(run_dir: str = "/run/netns") -> list[str]:
    """Clear what a killed test run's labs left (``pkdock<pid>``/``pkdockn<pid>`` whose
    pytest is gone): their processes, mounts, namespace, socket and directory. A
    namespace left behind carries the bridge's addresses and would confuse the next
    run's namespaces. Returns the names cleared."""
    import glob
    import re

    cleared = []
    for name in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:
        match = re.fullmatch(r"pkdockn?(\d+)", name)
        if match is None or os.path.exists(f"/proc/{match.group(1)}"):
            continue
        roots = glob.glob(os.path.join(tempfile.gettempdir(), f"{name}-*"))
        for root in roots:
            for pid in _processes_naming(root):  # orphans of a dead run: no grace due
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with open("/proc/self/mounts") as f:
                mounts = [line.split()[1] for line in f if root in line]
            for point in sorted(mounts, key=len, reverse=True):
                _sh("umount", "-l", point, check=False)
            shutil.rmtree(root, ignore_errors=True)
        _sh("ip", "netns", "del", name, check=False)
        with contextlib.suppress(OSError):
            os.unlink(f"/run/{name}.sock")
        cleared.append(name)
    return cleared


class DockerLab:
    """One dockerd in network namespace ``name``; ``docker(...)`` talks to it."""

    def __init__(self, name: str, *, userland_proxy: bool = True) -> None:
        self.name = name
        self.ns = name
        self.netns_path = f"/run/netns/{name}"
        self.userland_proxy = userland_proxy
        self.tmp = tempfile.mkdtemp(prefix=f"{name}-")
        self.exec_root = os.path.join(self.tmp, "exec")
        self.sock = f"/run/{name}.sock"
        self.env = {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.sock}",
            "DOCKER_CLI_HINTS": "0",
            "DOCKER_CONFIG": os.path.join(self.tmp, "cli"),
        }
        self.pid: int | None = None
        self.containerd_pid: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(self.tmp, "dockerd.log")
        self.host: HostState | None = None
        self.restored: list[str] = []
        self.started_in = 0.0
        self.stopped_in = 0.0

    # --- life ---------------------------------------------------------------------------

    def start(self) -> DockerLab:
        began = time.monotonic()
        for tool in ("dockerd", "containerd", "runc", "docker", "busybox", "nsenter"):
            if shutil.which(tool) is None:
                raise DockerError(f"{tool} is not installed (scripts/system-packages.txt)")
        sweep_left_behind()
        self.host = HostState()
        _sh("ip", "netns", "add", self.ns)
        _sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        argv = [
            "nsenter", f"--net={self.netns_path}",
            "dockerd",
            "--host", f"unix://{self.sock}",
            "--data-root", os.path.join(self.tmp, "data"),
            "--exec-root", self.exec_root,
            "--pidfile", os.path.join(self.tmp, "dockerd.pid"),
            "--userland-proxy=" + ("true" if self.userland_proxy else "false"),
            "--storage-driver", "overlay2",
            "--log-level", "warn",
        ]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DockerError(f"dockerd exited ({self.proc.returncode})")
            if os.path.exists(self.sock) and self.docker("version", check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise DockerError("dockerd did not answer within 60 s")
        with open(os.path.join(self.tmp, "dockerd.pid")) as f:
            self.pid = int(f.read().strip())
        pidfile = os.path.join(self.exec_root, "containerd", "containerd.pid")
        with contextlib.suppress(OSError, ValueError), open(pidfile) as f:
            self.containerd_pid = int(f.read().strip())
        self._import_image()
        self.started_in = time.monotonic() - began
        return self

    def _ours(self) -> list[int]:
        """Processes left that this lab started (their command line names its root)."""
        return _processes_naming(self.tmp)

    def _kill(self, pid: int | None, timeout: float = 30) -> None:
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and os.path.exists(f"/proc/{pid}"):
            if self.proc is not None and pid == self.proc.pid:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(0.1)
            else:
                time.sleep(0.05)
            with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break  # a zombie whose parent reaps it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        began = time.monotonic()
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(subprocess.SubprocessError, DockerError):
                ids = self.docker("ps", "-aq", check=False, timeout=30).stdout.split()
                if ids:
                    self.docker("rm", "-f", *ids, check=False, timeout=60)
            self._kill(self.pid or self.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)
        self._kill(self.containerd_pid, 10)
        for pid in self._ours():  # shims or proxies the daemon left behind
            self._kill(pid, 5)
        with open("/proc/self/mounts") as f:
            mounts = [line.split()[1] for line in f if self.tmp in line]
        for point in sorted(mounts, key=len, reverse=True):
            _sh("umount", "-l", point, check=False)
        _sh("ip", "netns", "del", self.ns, check=False)
        with contextlib.suppress(OSError):
            os.unlink(self.sock)
        if self.host is not None:
            self.restored = self.host.restore()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.stopped_in = time.monotonic() - began

    def fail(self, exc: BaseException) -> NoReturn:
        """Stop, and raise DockerError with what went wrong and the daemon's log."""
        tail = self.log_tail()
        self.stop()
        if not isinstance(exc, Exception):
            raise exc
        raise DockerError(f"{exc}\n--- the end of dockerd's log ---\n{tail}") from exc

    def __enter__(self) -> DockerLab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- use -----------------------------------------------------------------------------

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def docker(
        self, *args: str, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [DOCKER, *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and done.returncode != 0:
            raise DockerError(f"docker {' '.join(args)}: {done.stderr.strip()}")
        return done

    def _import_image(self) -> None:
        root = os.path.join(self.tmp, "rootfs")
        for d in ("bin", "www", "usr", "tmp", "proc", "sys", "dev", "etc"):
            os.makedirs(os.path.join(root, d))
        shutil.copy(shutil.which("busybox") or "busybox", os.path.join(root, "bin", "busybox"))
        for applet in BUSYBOX_APPLETS:
            os.symlink("busybox", os.path.join(root, "bin", applet))
        for link in ("lib", "lib64"):  # so that a bind-mounted host /usr runs
            os.symlink(f"usr/{link}", os.path.join(root, link))
        with open(os.path.join(root, "www", "index.html"), "w") as f:
            f.write("portkit\n")
        tar = subprocess.Popen(["tar", "-C", root, "-c", "."], stdout=subprocess.PIPE)
        done = subprocess.run(
            [DOCKER, "import", "-c", "ENV PATH=/bin", "-", IMAGE],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait()
        if done.returncode != 0:
            raise DockerError(f"docker import: {done.stderr.strip()}")

    def run(self, name: str, *args: str, cmd: tuple[str, ...]) -> dict[str, Any]:
        """``docker run -d --init --name NAME ARGS IMAGE CMD``; its inspect JSON."""
        self.docker("run", "-d", "--init", "--name", name, *args, IMAGE, *cmd)
        return self.inspect(name)

    def inspect(self, name: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(self.docker("inspect", name).stdout)
        return found[0]

    def compose_up(self, project: str, text: str, directory: str) -> None:
        """``docker-compose -p PROJECT up -d`` (Debian's v1) of the compose ``text``."""
        path = os.path.join(directory, "compose.yaml")
        with open(path, "w") as f:
            f.write(text)
        done = subprocess.run(
            ["docker-compose", "-H", f"unix://{self.sock}", "-p", project, "-f", path, "up", "-d"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
        )
        if done.returncode != 0:
            raise DockerError(f"docker-compose up: {done.stderr.strip()[-2000:]}")

    def in_ns(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """A command in the daemon's network namespace (nothing else changes)."""
        return _sh("nsenter", f"--net={self.netns_path}", *argv, check=False, timeout=timeout)

    def wait_listening(self, port: int, proto: str = "tcp", timeout: float = 20) -> None:
        """Until something listens on ``port`` in the daemon's namespace (a proxy)."""
        flag = "-ltnH" if proto == "tcp" else "-lunH"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.in_ns("ss", flag, f"sport = :{port}").stdout.strip():
                return
            time.sleep(0.05)
        raise DockerError(f"nothing listens on {port}/{proto} in {self.ns}")

    def main_pid(self, name: str) -> int:
        """The pid of the container's command (the child of its --init)."""
        init = int(self.inspect(name)["State"]["Pid"])
        with open(f"/proc/{init}/task/{init}/children") as f:
            children = f.read().split()
        return int(children[0]) if children else init


# --- the labs the tests share (tests/conftest.py) ----------------------------------------


def default_lab(name: str, workdir: str) -> DockerLab:
    """The daemon with the userland proxy, and its containers:

    * ``web``: httpd on 80, ``-p 127.0.0.1:18080:80 -p 18081:80`` (v4 and v6 proxies)
    * ``dns``: a UDP echo on 53, ``-p 5353:53/udp``
    * ``hidden``: httpd on 5432, nothing published
    * ``dangling``: httpd on 80, ``-p 18083:8080`` (nothing listens behind it)
    * compose project ``shop``: ``web`` (18082:80) and ``db`` (5432, unpublished)
    """
    lab = DockerLab(name)
    try:
        lab.start()
        lab.run("web", "-p", "127.0.0.1:18080:80", "-p", "18081:80", cmd=httpd(80))
        lab.run("dns", *HOST_USR, "-p", "5353:53/udp", cmd=udp_echo(53))
        lab.run("hidden", cmd=httpd(5432))
        lab.run("dangling", "-p", "18083:8080", cmd=httpd(80))
        lab.compose_up("shop", COMPOSE, workdir)
        for port, proto in ((18080, "tcp"), (18081, "tcp"), (5353, "udp"), (18082, "tcp")):
            lab.wait_listening(port, proto)
    except BaseException as exc:
        lab.fail(exc)
    return lab


def noproxy_lab(name: str) -> DockerLab:
    """The daemon with ``--userland-proxy=false``: ``pub`` (httpd on 80,
    ``-p 18090:80``) is published by NAT rules and a listener dockerd holds."""
    lab = DockerLab(name, userland_proxy=False)
    try:
        lab.start()
        lab.run("pub", "-p", "18090:80", cmd=httpd(80))
        lab.wait_listening(18090)
    except BaseException as exc:
        lab.fail(exc)
    return lab


# --- capturing the test data ---------------------------------------------------------------


def _scrub(text: str) -> str:
    """iptables-save's comment lines carry a date: drop them."""
    return "".join(line for line in text.splitlines(True) if not line.startswith("#"))


def _pretty(text: str) -> str:
    return json.dumps(json.loads(text), indent=1) + "\n"


def capture_written(data: str) -> None:  # pragma: no cover - run by hand
    """``nft -j`` of each written ruleset (``*.nft``), loaded into a scratch namespace."""
    nf = os.path.join(data, "netfilter")
    for name in sorted(os.listdir(nf)):
        if not name.endswith(".nft"):
            continue
        ns = f"pkcapnft{os.getpid()}"
        _sh("ip", "netns", "add", ns)
        try:
            _sh("ip", "netns", "exec", ns, "nft", "-f", os.path.join(nf, name))
            listed = _sh("ip", "netns", "exec", ns, "nft", "-j", "list", "ruleset").stdout
        finally:
            _sh("ip", "netns", "del", ns, check=False)
        with open(os.path.join(nf, name.removesuffix(".nft") + ".json"), "w") as f:
            f.write(_pretty(listed))


def capture(data: str) -> None:  # pragma: no cover - run by hand
    """Write the captured rulesets, cgroup files, proxy argv and API answers."""
    capture_written(data)
    nf = os.path.join(data, "netfilter")
    ct = os.path.join(data, "containers")
    with tempfile.TemporaryDirectory() as work:
        lab = default_lab(f"pkcap{os.getpid()}", work)
        try:
            lab.run("ranged", "-p", "18100-18102:8100-8102", cmd=httpd(8100))
            lab.wait_listening(18102)
            with open(os.path.join(nf, "docker-iptables-nft.json"), "w") as f:
                f.write(_pretty(lab.in_ns("nft", "-j", "list", "ruleset").stdout))
            with open(os.path.join(nf, "docker-iptables-save.txt"), "w") as f:
                f.write(_scrub(lab.in_ns("iptables-save").stdout))
            pids = {}
            for name in ("web", "dns", "shop_web_1"):
                pids[name] = lab.main_pid(name)
            for name, pid in pids.items():
                with (
                    open(f"/proc/{pid}/cgroup") as src,
                    open(os.path.join(ct, f"cgroup-docker-{name}.txt"), "w") as dst,
                ):
                    dst.write(src.read())
            argvs = []
            for entry in os.listdir("/proc"):
                with contextlib.suppress(OSError):
                    with open(f"/proc/{entry}/stat") as f:
                        parent = int(f.read().rsplit(")", 1)[1].split()[1])
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        argv = f.read().rstrip(b"\0").split(b"\0")
                    if parent == lab.pid and argv[0].endswith(b"docker-proxy"):
                        argvs.append([a.decode() for a in argv])
            with open(os.path.join(ct, "docker-proxy-argv.json"), "w") as f:
                json.dump(sorted(argvs), f, indent=1)
                f.write("\n")
            from portkit.containers._api import request

            for url, file in (
                ("/containers/json", "docker-containers.json"),
                ("/containers/web/json", "docker-inspect-web.json"),
            ):
                status, body = request(lab.sock, "GET", url, time.monotonic() + 10)
                assert status == 200, body
                with open(os.path.join(ct, file), "w") as f:
                    json.dump(json.loads(body), f, indent=1, sort_keys=True)
                    f.write("\n")
        finally:
            lab.stop()
        lab = noproxy_lab(f"pkcap{os.getpid()}n")
        try:
            with open(os.path.join(nf, "docker-userland-proxy-off.json"), "w") as f:
                f.write(_pretty(lab.in_ns("nft", "-j", "list", "ruleset").stdout))
            with open(os.path.join(nf, "docker-userland-proxy-off-iptables-save.txt"), "w") as f:
                f.write(_scrub(lab.in_ns("iptables-save").stdout))
        finally:
            lab.stop()


if __name__ == "__main__":  # pragma: no cover
    if sys.argv[1:] == ["capture"]:
        capture(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))
    else:
        sys.exit("usage: python -m tests._docker capture")

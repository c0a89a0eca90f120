"""Real servers from Debian's packages, started on loopback ports for the readiness tests.

One :class:`Fleet` per test session starts every server at once (each in its own
session, own data directory under tmp, own port), so their start-up times overlap;
a test asks ``fleet.port("postgres")``, which waits for that one server only. Every
server is stopped by the process group of the PID this module started, never by name.

Readiness before a test runs is judged by the peers' own tools (``pg_isready``,
``redis-cli ping``, ``mysqladmin ping``) or a TCP connect, never by portkit: the tests
judge portkit's codecs, they must not depend on them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), Path("/nonexistent"))

#: command -> Debian package: what every server here needs (scripts/system-packages.txt).
NEEDED = {
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "mariadbd": "mariadb-server",
    "mysqladmin": "mariadb-client",
    "sshd": "openssh-server",
    "dnsmasq": "dnsmasq",
    "memcached": "memcached",
    "slapd": "slapd",
    "exim4": "exim4-daemon-light",
    "nats-server": "nats-server",
    "pg_isready": "postgresql-client",
    "epmd": "erlang-base",
}


def missing_tools() -> list[str]:
    gone = [f"{cmd} ({pkg})" for cmd, pkg in NEEDED.items() if shutil.which(cmd) is None]
    gone += ["sshd (openssh-server)"] if not Path("/usr/sbin/sshd").exists() else []
    gone += [] if (PG_BIN / "postgres").exists() else ["postgres (postgresql)"]
    gone += [] if Path("/usr/lib/rabbitmq/bin/rabbitmq-server").exists() else ["rabbitmq"]
    return sorted(set(gone))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tcp_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


def as_user(user: str) -> list[str]:
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]


class Proc:
    """One server process we started, in its own session (so its children go with it)."""

    def __init__(self, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None):
        self.name = name
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, wait: float = 10.0) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            return
        try:
            self.popen.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5)

    def tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


class Fleet:
    """Every server, started at once; ``port(name)`` waits for one to be ready."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ports: dict[str, int] = {}
        self.procs: dict[str, Proc] = {}
        self.ready_checks: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.started = time.monotonic()
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()
        for name, starter in _STARTERS.items():
            self.ports[name] = free_port()
            # Starters that prepare data (initdb, install-db) run in threads: in parallel.
            t = threading.Thread(target=self._start, args=(name, starter), daemon=True)
            self._threads[name] = t
            t.start()

    def _start(self, name: str, starter: Any) -> None:
        try:
            starter(self, name, self.root / name)
        except subprocess.CalledProcessError as exc:  # reported by port(), when needed
            said = (exc.stderr or b"").decode(errors="replace")[-600:]
            self.errors[name] = f"{exc}: {said}"
        except Exception as exc:
            self.errors[name] = f"{type(exc).__name__}: {exc}"

    def spawn(
        self, name: str, argv: list[str], ready: Any, env: dict[str, str] | None = None
    ) -> Proc:
        proc = Proc(name, argv, self.root / f"{name}.log", env)
        with self._lock:
            self.procs[name] = proc
            self.ready_checks[name] = ready
        return proc

    def port(self, name: str, timeout: float = 60.0) -> int:
        """The loopback port of ``name`` once it serves (fails the test loudly if not)."""
        self._threads[name].join(timeout)
        if name in self.errors:
            raise AssertionError(f"{name} did not start: {self.errors[name]}")
        proc, ready = self.procs[name], self.ready_checks[name]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise AssertionError(f"{name} exited: {proc.tail()}")
            if ready(self.ports[name]):
                return self.ports[name]
            time.sleep(0.05)
        raise AssertionError(f"{name} not ready after {timeout} s: {proc.tail()}")

    def stop(self) -> None:
        for t in self._threads.values():
            t.join(30)
        for proc in self.procs.values():
            proc.stop()


# --- the servers ------------------------------------------------------------------------


def _quiet(argv: list[str], **kw: Any) -> bool:
    return subprocess.run(argv, capture_output=True, timeout=10, **kw).returncode == 0


def pg_template(root: Path) -> Path:
    """An initdb'd, never started cluster; servers start from copies of it."""
    template = root / "template"
    root.mkdir(parents=True, exist_ok=True)
    shutil.chown(root, "postgres", "postgres")
    subprocess.run(
        [
            *as_user("postgres"),
            *(str(PG_BIN / "initdb"), "-D", str(template), "-A", "trust", "-U", "postgres"),
            *("--no-sync", "--no-instructions"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return template


def pg_copy(template: Path, to: Path) -> Path:
    subprocess.run(["cp", "-a", str(template), str(to)], check=True)
    return to


def pg_argv(data: Path, port: int, *extra: str) -> list[str]:
    return [
        *as_user("postgres"),
        str(PG_BIN / "postgres"),
        "-D",
        str(data),
        "-p",
        str(port),
        "-k",
        str(data),
        "-c",
        "listen_addresses=127.0.0.1",
        "-c",
        "fsync=off",
        *extra,
    ]


def pg_ready(port: int) -> bool:
    return _quiet(["pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port), "-t", "1"])


def _postgres(fleet: Fleet, name: str, root: Path) -> None:
    template = pg_template(root)
    fleet.pg_template = template  # type: ignore[attr-defined]
    data = pg_copy(template, root / "main")
    fleet.spawn(name, pg_argv(data, fleet.ports[name]), pg_ready)


def _pg_standby(fleet: Fleet, name: str, root: Path) -> None:
    # A standby with hot_standby off refuses every session for as long as it recovers,
    # and with no primary and no restore_command it recovers for ever: 57P03, always.
    fleet._threads["postgres"].join(60)
    template = fleet.pg_template  # type: ignore[attr-defined]
    data = pg_copy(template, root)
    (data / "standby.signal").touch()
    shutil.chown(data / "standby.signal", "postgres", "postgres")
    fleet.spawn(
        name,
        pg_argv(data, fleet.ports[name], "-c", "hot_standby=off"),
        pg_answering,
    )


def pg_answering(port: int) -> bool:
    """pg_isready's 0 (accepting) or 1 (rejecting): the postmaster answers."""
    done = subprocess.run(
        ["pg_isready", "-h", "127.0.0.1", "-p", str(port), "-t", "1"], capture_output=True
    )
    return done.returncode in (0, 1)


def _redis(fleet: Fleet, name: str, root: Path) -> None:
    root.mkdir(parents=True)
    port = fleet.ports[name]
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root)]
    argv += ["--save", "", "--appendonly", "no", "--enable-debug-command", "yes"]
    fleet.spawn(name, argv, lambda p: _quiet(["redis-cli", "-p", str(p), "ping"]) and tcp_open(p))


def _mariadb(fleet: Fleet, name: str, root: Path) -> None:
    root.mkdir(parents=True)
    shutil.chown(root, "mysql", "mysql")
    data = root / "data"
    subprocess.run(
        [
            *("mariadb-install-db", "--user=mysql", f"--datadir={data}", "--skip-test-db"),
            "--auth-root-authentication-method=normal",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fleet.mariadb_socket = root / "sock"  # type: ignore[attr-defined]
    argv = ["mariadbd", "--no-defaults", "--user=mysql", f"--datadir={data}"]
    argv += [f"--socket={root / 'sock'}", f"--port={fleet.ports[name]}"]
    argv += ["--bind-address=127.0.0.1", f"--pid-file={root / 'pid'}", "--skip-log-bin"]
    argv += ["--max-connections=10", "--innodb-buffer-pool-size=16M", "--skip-name-resolve"]
    fleet.spawn(
        name,
        argv,
        lambda p: _quiet(["mysqladmin", "--no-defaults", "-h127.0.0.1", f"-P{p}", "ping"]),
    )


def _sshd(fleet: Fleet, name: str, root: Path) -> None:
    root.mkdir(parents=True)
    key = root / "host_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30
    )
    config = root / "sshd_config"
    config.write_text(
        f"Port {fleet.ports[name]}\nListenAddress 127.0.0.1\nHostKey {key}\n"
        f"PidFile {root / 'sshd.pid'}\nUsePAM no\nMaxStartups 2\nLoginGraceTime 20\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # the privilege separation directory sshd checks
    fleet.spawn(name, ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], tcp_open)


def _dnsmasq(fleet: Fleet, name: str, root: Path) -> None:
    argv = ["dnsmasq", "--no-daemon", f"--port={fleet.ports[name]}", "--conf-file=/dev/null"]
    argv += ["--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts"]
    argv += ["--address=/portkit.test/127.0.0.1", "--pid-file=", "--user=nobody"]
    fleet.spawn(name, argv, tcp_open)


def _memcached(fleet: Fleet, name: str, root: Path) -> None:
    argv = ["memcached", "-p", str(fleet.ports[name]), "-l", "127.0.0.1", "-U", "0"]
    fleet.spawn(name, [*argv, "-u", "nobody"], tcp_open)


def _slapd(fleet: Fleet, name: str, root: Path) -> None:
    (root / "db").mkdir(parents=True)
    conf = root / "slapd.conf"
    conf.write_text(
        "include /etc/ldap/schema/core.schema\n"
        f"pidfile {root / 'slapd.pid'}\nmodulepath /usr/lib/ldap\nmoduleload back_mdb\n"
        'database mdb\nmaxsize 10485760\nsuffix "dc=portkit,dc=test"\n'
        f"directory {root / 'db'}\n"
    )
    url = f"ldap://127.0.0.1:{fleet.ports[name]}/"
    fleet.spawn(name, ["/usr/sbin/slapd", "-f", str(conf), "-h", url, "-d", "0"], tcp_open)


def _exim(fleet: Fleet, name: str, root: Path) -> None:
    # exim reads an alternate config (-C) only when root owns it; it then drops root
    # for the exim user, who must own the spool and log directories.
    (root / "spool").mkdir(parents=True)
    conf = root / "exim.conf"
    conf.write_text(
        f"primary_hostname = portkit.test\nspool_directory = {root / 'spool'}\n"
        f"log_file_path = {root}/%slog\npid_file_path = {root / 'exim.pid'}\n"
        f"daemon_smtp_ports = {fleet.ports[name]}\nlocal_interfaces = 127.0.0.1\n"
        "smtp_accept_max = 2\ntls_advertise_hosts =\nacl_smtp_rcpt = refuse\n"
        "begin acl\nrefuse:\n  deny\n"
    )
    conf.chmod(0o644)
    for path in (root, root / "spool"):
        shutil.chown(path, "Debian-exim", "Debian-exim")
    fleet.spawn(name, ["/usr/sbin/exim4", "-bdf", "-C", str(conf)], tcp_open)


def _nats(fleet: Fleet, name: str, root: Path) -> None:
    root.mkdir(parents=True)
    conf = root / "nats.conf"
    conf.write_text(f"listen: 127.0.0.1:{fleet.ports[name]}\nmax_connections: 3\n")
    fleet.spawn(name, ["nats-server", "-c", str(conf)], tcp_open)


def _rabbitmq(fleet: Fleet, name: str, root: Path) -> None:
    # Its own epmd on a private port (stopped with the group), its own node, dirs and
    # ports; no plugins. Erlang takes 10-20 s to boot it here: the tests that need it
    # run last.
    (root / "home").mkdir(parents=True)
    (root / "enabled_plugins").write_text("[].\n")
    epmd_port = free_port()
    env = {
        "HOME": str(root / "home"),
        "ERL_EPMD_PORT": str(epmd_port),
        "RABBITMQ_NODENAME": f"portkit{os.getpid()}@localhost",
        "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
        "RABBITMQ_NODE_PORT": str(fleet.ports[name]),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(root / "mnesia"),
        "RABBITMQ_LOG_BASE": str(root / "log"),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_CONFIG_FILE": str(root / "rabbitmq"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(root / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(root / "pid"),
    }
    fleet.spawn("epmd", ["epmd", "-port", str(epmd_port)], lambda p: True)
    # Erlang starts (and daemonizes, out of our reach) an epmd of its own if ours is not
    # listening yet.
    deadline = time.monotonic() + 10
    while not tcp_open(epmd_port) and time.monotonic() < deadline:
        time.sleep(0.02)
    fleet.spawn(name, ["/usr/lib/rabbitmq/bin/rabbitmq-server"], tcp_open, env)


#: Every server the fleet starts, by name; ``port(name)`` waits for one.
_STARTERS = {
    "rabbitmq": _rabbitmq,  # the slowest first
    "postgres": _postgres,
    "pg-standby": _pg_standby,
    "mariadb": _mariadb,
    "redis": _redis,
    "sshd": _sshd,
    "dnsmasq": _dnsmasq,
    "memcached": _memcached,
    "slapd": _slapd,
    "exim": _exim,
    "nats": _nats,
}

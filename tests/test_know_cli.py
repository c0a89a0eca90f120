"""``portkit lookup`` and ``portkit free`` through the real entry point."""

from __future__ import annotations

import json
import os
import pty
import socket
import subprocess
import sys

import pytest

from portkit.render import use_color
from portkit.system import ephemeral_range
from tests.conftest import Runner


def test_lookup_table(cli: Runner) -> None:
    r = cli("lookup", "22")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["PORT", "PROTO", "SERVICE", "SOURCE", "DESCRIPTION"]
    assert any(line.split()[:3] == ["22", "tcp", "SSH"] for line in lines)
    assert "well-known" in r.stdout and "NodePort" in r.stdout
    assert "\x1b[" not in r.stdout  # no colour when piped


def test_lookup_json_shape(cli: Runner) -> None:
    r = cli("lookup", "9092", "30000-30001", "redis", "--json")
    assert r.returncode == 0, r.stderr
    objs = json.loads(r.stdout)
    keys = {
        "query",
        "protocol",
        "service",
        "description",
        "source",
        "range_class",
        "ephemeral",
        "nodeport",
        "everyday",
        "status",
    }
    assert all(keys <= o.keys() for o in objs)
    kafka = next(o for o in objs if o["service"] == "kafka")
    assert kafka == {
        **kafka,
        "port": 9092,
        "protocol": "tcp",
        "everyday": True,
        "range_class": "registered",
        "nodeport": False,
        "source": "devops",
    }
    assert any(o["service"] == "XmlIpcRegSvc" and o["everyday"] is False for o in objs)
    assert all(o["nodeport"] for o in objs if o["query"] == "30000-30001")
    assert any(o["query"] == "redis" and o["port"] == 6379 for o in objs)


def test_lookup_range_entry_has_start_and_end(cli: Runner) -> None:
    objs = json.loads(cli("lookup", "nodeport", "--json").stdout)
    node = next(o for o in objs if o["service"] == "k8s-nodeport")
    assert (node["port_start"], node["port_end"], node["range_class"]) == (
        30000,
        32767,
        "registered",
    )
    assert "port" not in node


def test_lookup_ephemeral_flag(cli: Runner) -> None:
    eph = ephemeral_range()
    (obj, *_) = json.loads(cli("lookup", str(eph.start), "--json").stdout)
    assert obj["ephemeral"] is True


def test_lookup_unknown_name_exits_1(cli: Runner) -> None:
    r = cli("lookup", "zzqqxxy")
    assert r.returncode == 1
    assert "no service of that name" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lookup", "70000"], "70000"),
        (["lookup", "8080/tcpx"], "tcpx"),
        (["lookup", "65536-1"], "65536"),
        (["lookup", ""], "empty query"),
        (["lookup", "abc:80:1/tcp"], "abc:80:1/tcp"),
        (["lookup"], "Missing argument"),
        (["lookup", "--limit", "x", "22"], "--limit"),
        (["free", "-n", "0"], "-n"),
        (["free", "--range", "9000-8000"], "reversed"),
        (["free", "--proto", "icmp"], "icmp"),
        (["free", "--host", "not-an-ip"], "not-an-ip"),
        (["nosuchcommand"], "nosuchcommand"),
        (["completion", "tcsh"], "tcsh"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli: Runner, args: list[str], message: str) -> None:
    r = cli(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["lookup", "22"],
        ["lookup", "9092", "redis"],
        ["lookup", "53/udp", "--json"],
        ["lookup", "10.0.0.5:9200"],
        ["lookup", "8000-8010", "--json"],
        ["lookup", "zzqqxxy"],
        ["lookup", "70000"],
    ],
)
def test_shortcut_and_click_paths_agree(cli: Runner, args: list[str]) -> None:
    fast = cli(*args)
    full = cli(*args, env={"PORTKIT_NO_FAST": "1"})
    assert (fast.returncode, fast.stdout, fast.stderr) == (
        full.returncode,
        full.stdout,
        full.stderr,
    )


def test_lookup_shortcut_does_not_import_click() -> None:
    code = (
        "import sys; from portkit.cli import main; main(['lookup', '22']); "
        "print(sorted(m for m in ('click', 'rich', 'asyncio', 'dataclasses', 'typing') "
        "if m in sys.modules), file=sys.stderr)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stderr.strip() == "[]"


def test_version_help_and_examples(cli: Runner) -> None:
    from portkit import __version__

    assert cli("--version").stdout.strip() == f"portkit, version {__version__}"
    top = cli("--help")
    assert top.returncode == 0 and "lookup" in top.stdout and "free" in top.stdout
    from portkit.cli._app import COMMANDS

    for name in COMMANDS:
        if name == "overview":
            continue
        r = cli(name, "--help")
        assert r.returncode == 0, (name, r.stderr)
        assert "Examples:" in r.stdout, name


def test_completion_scripts(cli: Runner) -> None:
    for shell, marker in (("bash", "complete "), ("zsh", "compdef"), ("fish", "complete ")):
        r = cli("completion", shell)
        assert r.returncode == 0 and marker in r.stdout and "_PORTKIT_COMPLETE" in r.stdout


def test_shell_completion_lists_commands() -> None:
    env = {
        **os.environ,
        "_PORTKIT_COMPLETE": "bash_complete",
        "COMP_WORDS": "portkit lo",
        "COMP_CWORD": "1",
    }
    code = "from portkit.cli._app import cli; cli.main(prog_name='portkit')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert "plain,lookup" in r.stdout


def test_colour_only_on_a_tty_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            monkeypatch.delenv("NO_COLOR", raising=False)
            monkeypatch.setenv("TERM", "xterm")
            assert use_color(tty)
            monkeypatch.setenv("NO_COLOR", "1")
            assert not use_color(tty)
        with open(os.devnull, "w") as piped:
            monkeypatch.delenv("NO_COLOR")
            assert not use_color(piped)
    finally:
        os.close(master)
        os.close(slave)


def test_free_ports_are_distinct_and_bindable(cli: Runner) -> None:
    r = cli("free", "-n", "5", "--json")
    assert r.returncode == 0, r.stderr
    ports = [o["port"] for o in json.loads(r.stdout)]
    assert len(set(ports)) == 5
    eph = ephemeral_range()
    for port in ports:
        assert port not in eph and port >= 1024
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_free_respects_range_protocol_and_host(cli: Runner) -> None:
    r = cli("free", "-n", "2", "--range", "20000-20100", "--proto", "udp", "--host", "127.0.0.1")
    assert r.returncode == 0, r.stderr
    ports = [int(p) for p in r.stdout.split()]
    assert len(ports) == 2 and all(20000 <= p <= 20100 for p in ports)


def test_free_skips_a_busy_port_and_says_when_none_is_left(cli: Runner) -> None:
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("free", "--range", f"{port}-{port}")
        assert r.returncode == 3
        assert "only 0 of 1 tcp ports are free" in r.stderr
        assert len(r.stderr.splitlines()) == 1
        # The same port is free for UDP.
        assert cli("free", "--range", f"{port}-{port}", "--proto", "udp").stdout.strip() == str(
            port
        )


@pytest.fixture
def server_port() -> int:
    import portkit

    return portkit.free_port(host="127.0.0.1")


def test_free_port_works_in_a_fixture(server_port: int) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", server_port))
        srv.listen()
        with socket.create_connection(("127.0.0.1", server_port), timeout=5):
            pass

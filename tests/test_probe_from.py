"""``--from netns:NAME|pid:PID``: probes run inside the lab's client namespace (the only
place the lab's target is reached from); names resolve with that side's /etc/hosts."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from portkit.errors import ParseError
from portkit.probe._origin import parse_origin, run_from
from tests import _lab

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def lab() -> Iterator[_lab.Lab]:
    with _lab.required_lab(prefix="pkf") as built:
        built.add_host("target.lab.test", built.v4)
        yield built


@pytest.fixture(scope="module")
def inside(lab: _lab.Lab) -> Iterator[int]:
    """The PID of a process living in the client namespace (and its mount namespace,
    where `ip netns exec` laid the lab's hosts file over /etc/hosts)."""
    proc = subprocess.Popen(lab.argv("sleep", "300"))
    try:
        yield proc.pid  # ip netns exec execs sleep: this PID is sleep itself
    finally:
        proc.terminate()
        proc.wait(5)


def portkit(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portkit", *args], capture_output=True, text=True, timeout=60
    )


def test_check_from_netns(lab: _lab.Lab) -> None:
    # Never probed from the host's own namespace: there the lab's addresses would take
    # the default route off this machine.
    there = portkit("check", f"{lab.v4}:22", "--from", f"netns:{lab.client}", "--json")
    assert there.returncode == 0, there.stderr
    assert json.loads(there.stdout)[0]["state"] == "open"


def test_names_resolve_as_the_namespace_would(lab: _lab.Lab, inside: int) -> None:
    for origin in (f"netns:{lab.client}", f"pid:{inside}"):
        done = portkit("check", "target.lab.test:22", "--proto", "ssh", "--from", origin, "--json")
        assert done.returncode == 0, (origin, done.stderr)
        got = json.loads(done.stdout)[0]
        assert got["address"] == lab.v4 and got["handshake"]["verdict"] == "ready"


def test_wait_and_scan_from_pid(lab: _lab.Lab, inside: int) -> None:
    done = portkit("wait", f"{lab.v4}:22", "--from", f"pid:{inside}", "--timeout", "5")
    assert done.returncode == 0, done.stderr
    scanned = portkit("scan", lab.v4, "-p", "22", "--from", f"pid:{inside}", "--json")
    assert scanned.returncode == 0, scanned.stderr
    assert [r["state"] for r in json.loads(scanned.stdout)] == ["open"]


def test_library_round_trip(lab: _lab.Lab) -> None:
    from portkit.probe import check

    results = run_from(parse_origin(f"netns:{lab.client}"), check, [f"{lab.v4}:22"])
    assert results[0].ok and results[0].address == lab.v4
    with pytest.raises(ParseError, match="no such network namespace"):
        run_from(parse_origin("netns:pkf-none"), check, ["127.0.0.1:1"])
    with pytest.raises(ParseError):  # errors raised inside come back as they were
        run_from(parse_origin(f"netns:{lab.client}"), check, ["127.0.0.1:0"])


@pytest.mark.parametrize("text", ["bogus", "netns:", "netns:../x", "pid:0", "pid:x", "ip:1"])
def test_bad_origins(text: str) -> None:
    with pytest.raises(ParseError):
        parse_origin(text)
    done = portkit("check", "127.0.0.1:1", "--from", text)
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1


def test_container_origins_are_names_until_located() -> None:
    origin = parse_origin("container:web_1")
    assert (origin.kind, origin.ns_path) == ("container", "")
    for bad in ("container:-x", "container:a/b", "container:" + "x" * 200):
        with pytest.raises(ParseError, match="bad container name"):
            parse_origin(bad)
    # No runtime of ours knows this name: one line, exit 2 (never a traceback).
    done = portkit("check", "127.0.0.1:1", "--from", "container:pk-no-such-container")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert "pk-no-such-container" in done.stderr


def test_connect_from_netns(lab: _lab.Lab) -> None:
    """connect's client runs in the namespace; stdin and stdout stay ours."""
    done = subprocess.run(
        [sys.executable, "-m", "portkit", "connect", f"{lab.v4}:22", "--from",
         f"netns:{lab.client}", "-q", "--timeout", "5"],
        input="", capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SSH-2.0-OpenSSH_9.6 portkit-lab")

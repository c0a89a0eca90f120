"""Containers in ``ls``, ``who``, the overview and ``--from``, as a user runs them,
against the real Docker daemons of tests/_docker.py (each in a namespace of its own:
``--netns NAME`` or ``ip netns exec`` looks there, ``DOCKER_HOST`` names its API).

The pure halves have their own files (test_containers_parsers.py,
test_netfilter_parsers.py); here the answers must be the ones ``docker ps`` and
``ss`` give for the same daemon.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from portkit.containers import Container, Published
from portkit.see import ContainerPorts
from tests._docker import DockerLab, httpd
from tests.conftest import run_portkit

pytestmark = pytest.mark.netns


def _env(lab: DockerLab) -> dict[str, str]:
    return {"DOCKER_HOST": f"unix://{lab.sock}"}


def _in(lab: DockerLab, *args: str) -> subprocess.CompletedProcess[str]:
    """portkit run inside the lab's namespace (the overview has no --netns)."""
    return subprocess.run(
        ["nsenter", f"--net={lab.netns_path}", sys.executable, "-m", "portkit", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **_env(lab)},
        timeout=60,
    )


def _ls(lab: DockerLab, *args: str) -> list[dict[str, Any]]:
    done = run_portkit("ls", *args, "--netns", lab.ns, "--json", env=_env(lab))
    assert done.returncode == 0, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def _ip(lab: DockerLab, name: str) -> str:
    networks = lab.inspect(name)["NetworkSettings"]["Networks"]
    return str(next(iter(networks.values()))["IPAddress"])


# --- ls ---------------------------------------------------------------------------------


def test_every_proxy_socket_names_the_container_it_publishes(docker_lab: DockerLab) -> None:
    rows = [r for r in _ls(docker_lab, "-tulnp") if r["process"] == "docker-proxy"]
    got = {(r["proto"], r["local"]["port"], r["container"]["name"]) for r in rows}
    assert {
        ("tcp", 18080, "web"),
        ("tcp", 18081, "web"),
        ("tcp", 18082, "shop_web_1"),
        ("tcp", 18083, "dangling"),
        ("udp", 5353, "dns"),
    } <= got
    web = next(r for r in rows if r["local"]["port"] == 18080)
    assert web["published_by"] == "proxy"
    assert web["published_to"] == f"{_ip(docker_lab, 'web')}:80"
    shop = next(r for r in rows if r["local"]["port"] == 18082)
    assert (shop["container"]["compose_project"], shop["container"]["compose_service"]) == (
        "shop",
        "web",
    )
    # -t: no UDP row, not even a port NAT rules publish (5353/udp has its proxy anyway)
    assert all(r["proto"] == "tcp" for r in _ls(docker_lab, "-tlnp"))


def test_the_table_says_published_and_where_to(docker_lab: DockerLab) -> None:
    done = run_portkit(
        "ls", "-tlnp", "--sport", "18082", "--netns", docker_lab.ns, env=_env(docker_lab)
    )
    assert done.returncode == 0, done.stderr
    assert "CONTAINER" in done.stdout.splitlines()[0]
    assert (
        f"published: shop_web_1 (compose shop/web) -> {_ip(docker_lab, 'shop_web_1')}:80"
        in done.stdout
    )


def test_ls_in_a_container_by_name(docker_lab: DockerLab) -> None:
    """``--container hidden``: the sockets inside it, nothing published, owner its own."""
    done = run_portkit("ls", "-tlnp", "--container", "hidden", "--json", env=_env(docker_lab))
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert {(r["local"]["port"], r["process"]) for r in rows} == {(5432, "httpd")}
    assert rows[0]["container"]["name"] == "hidden" and rows[0]["published_by"] is None
    unknown = run_portkit("ls", "--container", "pk-nope", env=_env(docker_lab))
    assert unknown.returncode == 2 and "pk-nope" in unknown.stderr
    both = run_portkit("ls", "--container", "web", "--netns", "x", env=_env(docker_lab))
    assert both.returncode == 2 and "one of" in both.stderr


def test_every_namespace_is_labelled_with_its_container(docker_lab: DockerLab) -> None:
    done = run_portkit("ls", "-tlnp", "--all-netns", "--json", env=_env(docker_lab))
    assert done.returncode == 0, done.stderr
    labels = {row["netns"] for row in json.loads(done.stdout)}
    assert {"container:web", "container:hidden", "container:shop_db_1"} <= labels


def test_without_the_api_containers_show_by_id_and_a_note_says_why(
    docker_lab: DockerLab,
) -> None:
    done = run_portkit(
        "ls",
        "-tlnp",
        "--container",
        "web",
        env={"DOCKER_HOST": "unix:///run/pk-no-such-daemon.sock"},
    )
    assert done.returncode == 2  # a name needs the runtime
    rows = run_portkit(
        "ls",
        "-tlnp",
        "--netns",
        docker_lab.ns,
        "--json",
        env={"DOCKER_HOST": "unix:///run/pk-no-such-daemon.sock"},
    )
    assert rows.returncode == 0, rows.stderr
    assert "Traceback" not in rows.stderr


# --- who --------------------------------------------------------------------------------


def test_who_names_the_container_behind_a_published_port(docker_lab: DockerLab) -> None:
    done = run_portkit("who", "18080", "--netns", docker_lab.ns, env=_env(docker_lab))
    assert done.returncode == 0, done.stderr
    assert f"published by container web -> {_ip(docker_lab, 'web')}:80" in done.stdout
    doc = json.loads(
        run_portkit("who", "18080", "--netns", docker_lab.ns, "--json", env=_env(docker_lab)).stdout
    )
    assert doc["container"]["name"] == "web"


def test_who_kill_never_signals_a_publisher(docker_lab: DockerLab) -> None:
    """Killing docker-proxy would not stop the container and would break its port:
    refused, with the way that works."""
    before = docker_lab.inspect("web")["State"]["Pid"]
    done = run_portkit(
        "who", "18080", "--kill", "--yes", "--netns", docker_lab.ns, env=_env(docker_lab)
    )
    assert done.returncode == 2 and "--stop-container" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert docker_lab.inspect("web")["State"]["Pid"] == before
    listening = docker_lab.in_ns("ss", "-ltnH", "sport = :18080").stdout
    assert "18080" in listening


def test_who_stop_container_stops_the_one_behind_the_port(docker_lab: DockerLab) -> None:
    docker_lab.run("pk-throwaway", "-p", "18095:80", cmd=httpd(80))
    try:
        docker_lab.wait_listening(18095)
        done = run_portkit(
            "who",
            "18095",
            "--stop-container",
            "--yes",
            "--netns",
            docker_lab.ns,
            env=_env(docker_lab),
        )
        assert done.returncode == 0, done.stderr
        assert docker_lab.inspect("pk-throwaway")["State"]["Running"] is False
        no_tty = run_portkit(
            "who", "18080", "--stop-container", "--netns", docker_lab.ns, env=_env(docker_lab)
        )
        assert no_tty.returncode == 2 and "--yes" in no_tty.stderr
        assert docker_lab.inspect("web")["State"]["Running"] is True
    finally:
        docker_lab.docker("rm", "-f", "pk-throwaway", check=False)


# --- the overview -----------------------------------------------------------------------


def test_the_overview_lists_containers_and_warns_of_dangling_ports(
    docker_lab: DockerLab,
) -> None:
    docker_lab.run(
        "pk-loopback", "-p", "18096:80", cmd=("httpd", "-f", "-p", "127.0.0.1:80", "-h", "/www")
    )
    try:
        docker_lab.wait_listening(18096)
        text = _in(docker_lab)
        assert text.returncode == 0, text.stderr
        out = text.stdout
        assert "Containers" in out
        assert "published for web" in out and "shop_web_1 (compose shop/web)" in out
        assert "nothing listens on 8080 inside it" in text.stderr + out
        assert "listens on the container's loopback only" in text.stderr + out
        assert "127.0.0.11" not in out  # Docker's embedded resolver is the engine's
        doc = json.loads(_in(docker_lab, "--json").stdout)
        by_name = {c["container"]["name"]: c for c in doc["containers"]}
        assert by_name["hidden"]["unpublished"] == [{"proto": "tcp", "port": 5432}]
        assert [p["host_port"] for p in by_name["dangling"]["dangling"]] == [18083, 18083]
        assert not by_name["web"]["dangling"]
        assert [p["host_port"] for p in by_name["pk-loopback"]["dangling"]] == [18096, 18096]
        db_ports = {p["port"] for p in by_name["shop_db_1"]["listening"]}
        assert db_ports == {5432}
    finally:
        docker_lab.docker("rm", "-f", "pk-loopback", check=False)


def test_container_ports_decide_purely() -> None:
    c = Container("abc", "api", "docker", image="img")
    pub = (Published("0.0.0.0", 8080, 80, "tcp"), Published("0.0.0.0", 9090, 90, "tcp"))
    found = ContainerPorts(c, (("tcp", 80, "0.0.0.0"), ("tcp", 90, "127.0.0.1")), pub)
    assert found.unpublished == () and found.dangling == (pub[1],)
    assert "loopback only" in found.warnings[0]
    alone = ContainerPorts(c, (("tcp", 5432, "::"),), ())
    assert alone.unpublished == (("tcp", 5432),) and alone.warnings == ()


# --- probes from inside a container ---------------------------------------------------------


def test_check_from_a_container(docker_lab: DockerLab) -> None:
    """--from container:hidden sees its own loopback (5432 there), which the host's
    namespace cannot."""
    done = run_portkit(
        "check", "127.0.0.1:5432", "--from", "container:hidden", "--json", env=_env(docker_lab)
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[0]["state"] == "open"
    gone = run_portkit(
        "check", "127.0.0.1:5432", "--from", "container:pk-nope", env=_env(docker_lab)
    )
    assert gone.returncode == 2 and len(gone.stderr.strip().splitlines()) == 1


# --- NAT only: --userland-proxy=false ---------------------------------------------------------


def test_ports_dockerd_holds_name_each_its_own_container(docker_lab_noproxy: DockerLab) -> None:
    """Without the userland proxy, dockerd holds every published port (to reserve
    it) while NAT rules carry the traffic: each of its sockets names its own
    container, in the table, JSON and CSV alike."""
    lab = docker_lab_noproxy
    lab.run("pk-second", "-p", "18097:80", cmd=httpd(80))
    try:
        lab.wait_listening(18097)
        rows = [r for r in _ls(lab, "-tlnp") if r["local"]["port"] in (18090, 18097)]
        got = {(r["local"]["port"], r["process"], r["container"]["name"]) for r in rows}
        assert {(18090, "dockerd", "pub"), (18097, "dockerd", "pk-second")} <= got, rows
        assert {r["published_by"] for r in rows} == {"nat"}
        table = run_portkit("ls", "-tlnp", "--netns", lab.ns, env=_env(lab)).stdout
        line = next(x for x in table.splitlines() if ":18097 " in x)
        assert "pk-second" in line and "dockerd" in line
        csv = run_portkit("ls", "-tlnp", "--csv", "--netns", lab.ns, env=_env(lab)).stdout
        assert any("18090" in x and ",pub" in x for x in csv.splitlines()), csv
    finally:
        lab.docker("rm", "-f", "pk-second", check=False)


def test_who_of_a_port_dockerd_holds(docker_lab_noproxy: DockerLab) -> None:
    lab = docker_lab_noproxy
    done = run_portkit("who", "18090", "--netns", lab.ns, env=_env(lab))
    assert done.returncode == 0, done.stderr
    assert "published by container pub" in done.stdout
    kill = run_portkit("who", "18090", "--kill", "--yes", "--netns", lab.ns, env=_env(lab))
    assert kill.returncode == 2 and "--stop-container" in kill.stderr  # never dockerd


def test_a_port_published_by_nat_alone_is_a_row(tmp_path: Any) -> None:
    """A DNAT rule with no socket behind it (kube-proxy's NodePorts, Docker 28's
    nftables backend) is a port of this host all the same: ``ls -lp`` lists it after
    the sockets, with the rule; ``-u`` or another ``--sport`` leaves it out."""
    ns = f"pknat{os.getpid()}"
    rules = tmp_path / "nat.nft"
    rules.write_text(
        "table ip pk {\n"
        "  chain pre { type nat hook prerouting priority dstnat; policy accept;\n"
        '    tcp dport 18099 dnat to 10.99.0.2:80 comment "pk-test"\n'
        "  }\n"
        "}\n"
    )
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", str(rules)], check=True)
        text = run_portkit("ls", "-tlnp", "--netns", ns)
        assert text.returncode == 0, text.stderr
        assert "published by NAT rules only" in text.stdout
        assert "0.0.0.0:18099 -> 10.99.0.2:80" in text.stdout, text.stdout
        rows = json.loads(run_portkit("ls", "-tlnp", "--netns", ns, "--json").stdout)
        nat = [r for r in rows if r.get("to") == "10.99.0.2:80"]
        assert [(r["proto"], r["local"]["port"], r["published_by"]) for r in nat] == [
            ("tcp", 18099, "nat")
        ]
        for other in (["-ulnp"], ["-tlnp", "--sport", "18098"]):
            done = run_portkit("ls", *other, "--netns", ns)
            assert "18099" not in done.stdout, (other, done.stdout)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)

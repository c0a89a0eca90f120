"""Containers and NAT against real Docker daemons (tests/_docker.py, each in its own
network namespace): every published form resolves to its container, the compose
project's services are named, a container's unpublished listener is where it is, and
with ``--userland-proxy=false`` the port is dockerd's listener plus a NAT rule."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from portkit.containers import Container, Resolver, container_pid, parse_cgroup
from portkit.netfilter import read_nat
from tests._docker import DockerLab

pytestmark = pytest.mark.netns

#: The host ports the lab's containers publish (tests/_docker.py default_lab).
LAB_PORTS = {18080, 18081, 18082, 18083, 5353}


def _resolver(lab: DockerLab, **kw: Any) -> Resolver:
    return Resolver(sockets=[("docker", lab.sock, True)], **kw)


def _listeners(lab: DockerLab) -> list[tuple[str, str, int, int, str]]:
    """``(proto, ip, port, pid, process)`` of every listener in the lab's namespace, as
    ``ss`` sees them (the cross-check: the owner pass gives phase 2 the same pids)."""
    out = []
    for line in lab.in_ns("ss", "-ltunpH").stdout.splitlines():
        cols = line.split()
        proto, local, users = cols[0], cols[4], cols[-1]
        ip, _, port = local.rpartition(":")
        name = users.split('"')[1]
        pid = int(users.split("pid=")[1].split(",")[0])
        out.append((proto, ip.strip("[]").split("%")[0], int(port), pid, name))
    return out


def test_the_api_lists_every_container_with_its_pid(docker_lab: DockerLab) -> None:
    r = _resolver(docker_lab)
    found = {c.name: c for c in r.containers(with_pids=True, cgroup_only=False)}
    # (other tests may add containers to the shared daemon: these are the lab's own)
    mine = {"web", "dns", "hidden", "dangling", "shop_web_1", "shop_db_1"}
    assert mine <= set(found)
    for name in mine:
        c = found[name]
        state = docker_lab.inspect(name)
        assert c.pid == state["State"]["Pid"]
        assert c.id == state["Id"]
        assert c.image == "portkit-busybox:test"
        assert c.runtime == "docker"
    assert r.notes == []


def test_every_published_form_resolves_to_its_container(docker_lab: DockerLab) -> None:
    r = _resolver(docker_lab)
    held = {
        (proto, ip, port): r.publication(pid, name, port, proto, ip)
        for proto, ip, port, pid, name in _listeners(docker_lab)
        if port in LAB_PORTS
    }
    web_ip = r.by_name("web").addresses[0]  # type: ignore[union-attr]
    seen = {
        key: (
            p.container.label() if p and p.container else None,
            p.kind if p else None,
            p.target if p else None,
        )
        for key, p in held.items()
    }
    dns_ip = docker_lab.inspect("dns")["NetworkSettings"]["IPAddress"]
    dangling_ip = docker_lab.inspect("dangling")["NetworkSettings"]["IPAddress"]
    shop_ip = next(iter(docker_lab.inspect("shop_web_1")["NetworkSettings"]["Networks"].values()))[
        "IPAddress"
    ]
    assert seen == {
        ("tcp", "127.0.0.1", 18080): ("web", "proxy", f"{web_ip}:80"),  # -p 127.0.0.1:18080:80
        ("tcp", "0.0.0.0", 18081): ("web", "proxy", f"{web_ip}:80"),  # -p 18081:80, IPv4
        ("tcp", "::", 18081): ("web", "proxy", f"{web_ip}:80"),  # and IPv6
        ("udp", "0.0.0.0", 5353): ("dns", "proxy", f"{dns_ip}:53"),  # -p 5353:53/udp
        ("udp", "::", 5353): ("dns", "proxy", f"{dns_ip}:53"),
        ("tcp", "0.0.0.0", 18083): ("dangling", "proxy", f"{dangling_ip}:8080"),
        ("tcp", "::", 18083): ("dangling", "proxy", f"{dangling_ip}:8080"),
        ("tcp", "0.0.0.0", 18082): ("shop_web_1 (compose shop/web)", "proxy", f"{shop_ip}:80"),
        ("tcp", "::", 18082): ("shop_web_1 (compose shop/web)", "proxy", f"{shop_ip}:80"),
    }
    proxy = held["tcp", "127.0.0.1", 18080]
    assert proxy is not None
    assert proxy.as_dict()["published_by"] == "proxy"
    assert proxy.as_dict()["container"]["name"] == "web"


def test_processes_inside_containers_are_theirs(docker_lab: DockerLab) -> None:
    r = _resolver(docker_lab)
    for name, label in (
        ("web", "web"),
        ("hidden", "hidden"),
        ("shop_web_1", "shop_web_1 (compose shop/web)"),
        ("shop_db_1", "shop_db_1 (compose shop/db)"),
    ):
        pid = docker_lab.main_pid(name)  # httpd, the child of --init
        found = r.of_pid(pid)
        assert found is not None
        assert found.label() == label
        init = docker_lab.inspect(name)["State"]["Pid"]
        assert r.of_pid(init) == found
    assert r.of_pid(os.getpid()) is None
    assert r.of_pid(docker_lab.pid or 0) is None  # dockerd is the host's


def test_a_listener_nobody_publishes(docker_lab: DockerLab) -> None:
    """``hidden`` listens on 5432 inside its namespace and publishes nothing (what
    ``ls --all-netns`` must show as the container's)."""
    r = _resolver(docker_lab)
    hidden = r.by_name("hidden")
    assert hidden is not None
    assert hidden.published == ()
    pid = r.pid_of(hidden)
    assert pid is not None
    inside = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", "ss", "-ltnpH"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "*:5432" in inside or "0.0.0.0:5432" in inside
    assert not any(port == 5432 for _, _, port, _, _ in _listeners(docker_lab))


def test_the_udp_port_answers_through_its_proxy(docker_lab: DockerLab) -> None:
    code = (
        "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
        "s.settimeout(5); s.sendto(b'ping', ('127.0.0.1', 5353)); print(s.recv(64))"
    )
    done = docker_lab.in_ns(sys.executable, "-c", code)
    assert done.stdout.strip() == "b'ping'", done.stderr


def test_without_the_api_containers_are_their_short_ids(docker_lab: DockerLab) -> None:
    r = Resolver(sockets=[("docker", "/run/pk-no-daemon.sock", True)])
    pid = docker_lab.main_pid("web")
    web = r.of_pid(pid)
    full = docker_lab.inspect("web")["Id"]
    assert web == Container(full, full[:12], "docker")
    with open(f"/proc/{pid}/cgroup") as f:
        assert parse_cgroup(f.read()) is not None
    proto, ip, port, proxy_pid, name = next(x for x in _listeners(docker_lab) if x[2] == 18080)
    p = r.publication(proxy_pid, name, port, proto, ip)
    assert p is not None
    assert (p.container, p.kind, p.container_port) == (None, "proxy", 80)  # argv still says
    assert r.notes == [
        "docker API at /run/pk-no-daemon.sock: no such socket",
        "1 container known by its cgroup only (no runtime API answered for it): shown by short id",
    ]


def test_container_pid_by_name_through_docker_host(
    docker_lab: DockerLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{docker_lab.sock}")
    assert container_pid("shop_db_1") == docker_lab.inspect("shop_db_1")["State"]["Pid"]
    assert (
        container_pid(docker_lab.inspect("web")["Id"][:10])
        == docker_lab.inspect("web")["State"]["Pid"]
    )


def test_the_daemons_nat_rules(docker_lab: DockerLab) -> None:
    reading = read_nat(docker_lab.netns_path)
    assert reading.sources == ("nft", "iptables-nft")  # its DNAT targets are xt's
    r = _resolver(docker_lab)
    found = {
        (m.published(), (r.by_address(m.to_addr) or Container("", "?", "")).name, m.to_port)
        for m in reading.mappings
        if m.dport in LAB_PORTS
    }
    assert found == {
        ("tcp 127.0.0.1:18080", "web", 80),
        ("tcp 0.0.0.0:18081", "web", 80),
        ("udp 0.0.0.0:5353", "dns", 53),
        ("tcp 0.0.0.0:18083", "dangling", 8080),
        ("tcp 0.0.0.0:18082", "shop_web_1", 80),
    }


def test_userland_proxy_off_dockerd_holds_the_port_and_nat_carries_it(
    docker_lab_noproxy: DockerLab,
) -> None:
    lab = docker_lab_noproxy
    r = _resolver(lab)
    (held,) = [x for x in _listeners(lab) if x[2] == 18090]
    proto, ip, port, pid, name = held
    assert name == "dockerd"
    assert pid == lab.pid
    p = r.publication(pid, name, port, proto, ip)
    assert p is not None
    assert p.container is not None
    pub = lab.inspect("pub")
    assert (p.container.name, p.kind, p.via, p.container_port) == ("pub", "nat", "dockerd", 80)
    assert p.target == f"{pub['NetworkSettings']['IPAddress']}:80"
    (m,) = [m for m in read_nat(lab.netns_path).mappings if m.dport == 18090]
    assert (m.published(), m.destination()) == (
        "tcp 0.0.0.0:18090",
        f"{pub['NetworkSettings']['IPAddress']}:80",
    )
    # the rule, not dockerd's listener, carries the traffic: from this host itself
    # (the OUTPUT hook) to its bridge address, an HTTP answer comes from the container
    code = (
        "import socket; c = socket.create_connection(('172.17.0.1', 18090), 5); "
        "c.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); print(c.recv(200).split()[1])"
    )
    done = lab.in_ns(sys.executable, "-c", code)
    assert done.stdout.strip() == "b'200'", done.stderr

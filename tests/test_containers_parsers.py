"""The container layer's pure parts on captured and reconstructed input: cgroup files,
docker-proxy command lines, the Engine API's answers, kubelet log names."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portkit.containers import (
    PUBLISHERS,
    Container,
    ContainerRef,
    Publication,
    Published,
    is_publisher,
    may_be_container,
    parse_cgroup,
    parse_containers,
    parse_proxy_argv,
    publisher_kind,
    ref_of_path,
)
from portkit.containers._kubelet import parse_log_name
from portkit.containers._records import decode_answer, parse_inspect, parse_response
from portkit.errors import ParseError

DATA = Path(__file__).parent / "data" / "containers"


def _load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


def _forms() -> list[tuple[str, str, str, str, str]]:
    """``(what, text, runtime, id, pod uid)`` of cgroup-forms.txt."""
    out = []
    what = head = ""
    lines: list[str] = []
    for line in [*(DATA / "cgroup-forms.txt").read_text().splitlines(), "=== end"]:
        if line.startswith("#"):
            continue
        if line.startswith("=== "):
            if head:
                runtime, cid, uid = head.split()[:3]
                out.append((what, "\n".join(lines).strip("\n"), runtime, cid, uid))
            head, what, lines = line[4:], line[4:].split("  ", 1)[-1], []
        else:
            lines.append(line)
    return out


# --- cgroups ------------------------------------------------------------------------------


@pytest.mark.parametrize(("what", "text", "runtime", "cid", "uid"), _forms(), ids=lambda v: v)
def test_every_cgroup_form(what: str, text: str, runtime: str, cid: str, uid: str) -> None:
    ref = parse_cgroup(text + "\n")
    if runtime == "none":
        assert ref is None, what
        return
    assert ref == ContainerRef(runtime, cid, None if uid == "-" else uid), what
    assert ref.short_id == cid[:12]
    assert may_be_container(text), what  # the cheap test never hides a container


def test_the_forms_file_covers_every_runtime() -> None:
    assert {f[2] for f in _forms()} == {
        "docker",
        "containerd",
        "cri-o",
        "podman",
        "kubernetes",
        "container",
        "none",
    }


@pytest.mark.parametrize("name", ["web", "dns", "shop_web_1"])
def test_captured_cgroups_name_the_container_the_api_lists(name: str) -> None:
    ref = parse_cgroup((DATA / f"cgroup-docker-{name}.txt").read_text())
    assert ref is not None
    assert ref.runtime == "docker"
    listed = {c.name: c.id for c in parse_containers(_load("docker-containers.json"), "docker")}
    assert listed[name] == ref.id


def test_a_socket_cgroup_path_alone() -> None:
    cid = "ab" * 32
    assert ref_of_path(f"/system.slice/docker-{cid}.scope") == ContainerRef("docker", cid)
    assert ref_of_path("/system.slice/sshd.service") is None
    assert ref_of_path("/docker/" + cid + "x" * 5000) is None  # longer than PATH_MAX


@given(st.text(max_size=300))
def test_any_cgroup_text_is_a_ref_or_none(text: str) -> None:
    found = parse_cgroup(text)
    assert found is None or may_be_container(text)
    assert found is None or len(found.id) == 64


CGROUP_WORDS = [
    "docker",
    "kubepods",
    "kubepods.slice",
    "pod" + "1" * 8 + "-2222-3333-4444-" + "5" * 12,
    "system.slice",
    "docker-" + "a" * 64 + ".scope",
    "a" * 64,
    "libpod-",
    ".scope",
]


@given(
    st.lists(
        st.sampled_from(CGROUP_WORDS),
        max_size=8,
    )
)
def test_any_path_of_cgroup_words_is_a_ref_or_none(parts: list[str]) -> None:
    found = ref_of_path("/" + "/".join(parts))
    assert found is None or found.id == "a" * 64


# --- publishers and docker-proxy ------------------------------------------------------------


def test_captured_proxy_argv_match_the_ports_the_api_publishes() -> None:
    listed = parse_containers(_load("docker-containers.json"), "docker")
    argvs = _load("docker-proxy-argv.json")
    assert len(argvs) == sum(len(c.published) for c in listed)
    for argv in argvs:
        m = parse_proxy_argv(argv)
        (owner,) = [c for c in listed if m.container_ip in c.addresses]
        assert Published(m.host_ip, m.host_port, m.container_port, m.proto) in owner.published


def test_proxy_argv_forms() -> None:
    base = ["-host-port", "8080", "-container-ip", "fd00::2", "-container-port", "80"]
    m = parse_proxy_argv(["docker-proxy", "--proto=udp", "-host-ip=::1", *base, "-use-listen-fd"])
    assert (m.proto, m.host_ip, m.host_port, m.container_ip, m.container_port) == (
        "udp",
        "::1",
        8080,
        "fd00::2",
        80,
    )
    assert m.target == "[fd00::2]:80"
    assert parse_proxy_argv(["/usr/bin/docker-proxy", *base]).host_ip == "0.0.0.0"


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        ([], "not a docker-proxy"),
        (["nginx", "-host-port", "80"], "not a docker-proxy"),
        (["docker-proxy", "-host-port", "80"], "without -container-ip, -container-port"),
        (["docker-proxy", "-host-port"], "has no value"),
        (
            [
                "docker-proxy",
                "-proto",
                "icmp",
                "-host-port",
                "1",
                "-container-ip",
                "1.2.3.4",
                "-container-port",
                "1",
            ],
            "icmp",
        ),
        (
            [
                "docker-proxy",
                "-host-port",
                "99999",
                "-container-ip",
                "1.2.3.4",
                "-container-port",
                "1",
            ],
            "99999",
        ),
        (
            ["docker-proxy", "-host-port", "1", "-container-ip", "web", "-container-port", "1"],
            "not an IP address",
        ),
    ],
)
def test_bad_proxy_argv_is_a_parse_error(argv: list[str], says: str) -> None:
    with pytest.raises(ParseError, match=says):
        parse_proxy_argv(argv)


@given(st.lists(st.text(max_size=20), max_size=12))
def test_any_argv_is_a_mapping_or_a_parse_error(argv: list[str]) -> None:
    with contextlib.suppress(ParseError):
        parse_proxy_argv(["docker-proxy", *argv])


def test_publishers_are_a_table_of_how_traffic_gets_there() -> None:
    assert publisher_kind("/usr/bin/docker-proxy") == "proxy"
    assert publisher_kind("dockerd") == "nat"
    assert publisher_kind("conmon") == "nat"
    assert publisher_kind("rootlessport-ch") == "proxy"  # a 15-character comm
    assert publisher_kind("nginx") is None
    assert publisher_kind(None) is None
    assert not is_publisher("containerd-shim-runc-v2")  # holds no port
    assert set(PUBLISHERS.values()) == {"proxy", "nat"}


# --- the Engine API's answers --------------------------------------------------------------


def test_captured_container_list() -> None:
    listed = {c.name: c for c in parse_containers(_load("docker-containers.json"), "docker", "/s")}
    assert {"web", "dns", "hidden", "dangling", "shop_web_1", "shop_db_1"} <= set(listed)
    web = listed["web"]
    assert web.image == "portkit-busybox:test"
    assert web.api == "/s"
    assert web.from_api
    assert web.compose_project is None
    assert web.label() == "web"
    assert sorted(
        (p.host_ip, p.host_port, p.container_port, p.protocol) for p in web.published
    ) == [
        ("0.0.0.0", 18081, 80, "tcp"),
        ("127.0.0.1", 18080, 80, "tcp"),
        ("::", 18081, 80, "tcp"),
    ]
    assert web.addresses[0].startswith("172.17.")
    shop = listed["shop_web_1"]
    assert (shop.compose_project, shop.compose_service) == ("shop", "web")
    assert shop.label() == "shop_web_1 (compose shop/web)"
    assert listed["hidden"].published == ()
    assert listed["dns"].published[0].protocol == "udp"


def test_container_json_keys_are_the_documented_ones() -> None:
    (c,) = parse_containers([{"Id": "c" * 64, "Names": ["/x"]}], "podman")
    assert list(c.as_dict()) == [
        "id",
        "name",
        "runtime",
        "image",
        "compose_project",
        "compose_service",
        "pod",
        "namespace",
    ]
    assert c.as_dict()["runtime"] == "podman"
    assert c.replace(pid=7).pid == 7
    assert c.pid is None


def test_kubernetes_labels() -> None:
    doc = [
        {
            "Id": "d" * 64,
            "Names": ["/k8s_coredns_coredns-5d78c9869d-x2x7q_kube-system_uid_0"],
            "Labels": {
                "io.kubernetes.pod.name": "coredns-5d78c9869d-x2x7q",
                "io.kubernetes.pod.namespace": "kube-system",
                "io.kubernetes.pod.uid": "2c1b8d0e-5a7f-4e51-9f0a-1f6a2b3c4d5e",
            },
        }
    ]
    (c,) = parse_containers(doc, "docker")
    assert (c.pod, c.namespace) == ("coredns-5d78c9869d-x2x7q", "kube-system")
    assert c.label() == "kube-system/coredns-5d78c9869d-x2x7q"
    assert c.pod_uid == "2c1b8d0e-5a7f-4e51-9f0a-1f6a2b3c4d5e"


def test_items_not_shaped_as_containers_are_skipped() -> None:
    doc = [
        1,
        {"Id": "short"},
        {"Id": "e" * 64, "Names": "not a list", "Labels": [], "Ports": [{"PublicPort": True}]},
        {"Id": "f" * 64, "Ports": [{"PublicPort": 70000, "PrivatePort": 80}], "Names": ["/"]},
    ]
    got = parse_containers(doc, "docker")
    assert [c.name for c in got] == ["e" * 12, "f" * 12]
    assert all(c.published == () for c in got)


def test_not_a_list_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="not a JSON array"):
        parse_containers({"message": "page not found"}, "docker")


def test_captured_inspect_gives_the_pid() -> None:
    doc = _load("docker-inspect-web.json")
    assert parse_inspect(doc) == doc["State"]["Pid"] > 0
    assert parse_inspect({"State": {"Pid": 0}}) is None
    with pytest.raises(ParseError):
        parse_inspect([])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "Id",
                    "Names",
                    "Labels",
                    "Ports",
                    "NetworkSettings",
                    "Networks",
                    "IPAddress",
                    "PublicPort",
                    "PrivatePort",
                    "Type",
                    "IP",
                    "Image",
                    "State",
                    "Pid",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_json_is_containers_or_a_parse_error(doc: Any) -> None:
    try:
        for c in parse_containers(doc, "docker"):
            assert isinstance(c, Container)
            c.as_dict()
    except ParseError:
        pass
    with contextlib.suppress(ParseError):
        parse_inspect(doc)


# --- HTTP answers ----------------------------------------------------------------------------


def test_http_answers() -> None:
    assert parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]") == (200, b"[]")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n[1\r\n1\r\n]\r\n0\r\n\r\n"
    assert parse_response(chunked) == (200, b"[1]")
    assert parse_response(b"HTTP/1.0 200 OK\r\n\r\n[2]") == (200, b"[2]")  # to the end
    with pytest.raises(ParseError, match="not an HTTP answer"):
        parse_response(b"SSH-2.0-OpenSSH_9.6\r\n")
    with pytest.raises(ParseError, match="not an HTTP answer"):
        parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n[]")  # cut short


def test_answers_decode_or_say_what_the_runtime_said() -> None:
    assert decode_answer(200, b'{"a": 1}') == {"a": 1}
    with pytest.raises(ParseError, match=r"HTTP 403: authorization denied by plugin"):
        decode_answer(403, b'{"message": "authorization denied by plugin"}\n')
    with pytest.raises(ParseError, match="HTTP 500: oops"):
        decode_answer(500, b"oops")
    with pytest.raises(ParseError, match="not JSON"):
        decode_answer(200, b"<html>")


@given(st.binary(max_size=300))
def test_any_bytes_are_an_answer_or_a_parse_error(raw: bytes) -> None:
    try:
        status, body = parse_response(raw)
    except ParseError:
        return
    with contextlib.suppress(ParseError):
        decode_answer(status, body)


@given(st.binary(max_size=200))
def test_any_body_after_a_good_head_is_an_answer_or_a_parse_error(body: bytes) -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    with contextlib.suppress(ParseError):
        parse_response(head + body)


# --- records ----------------------------------------------------------------------------------


def test_publication_record() -> None:
    web = Container("a" * 64, "web", "docker")
    p = Publication(web, "proxy", "docker-proxy", "tcp", "127.0.0.1", 18080, "172.17.0.2", 80)
    assert p.target == "172.17.0.2:80"
    assert p.as_dict() == {
        "container": web.as_dict(),
        "published_by": "proxy",
        "via": "docker-proxy",
        "to": "172.17.0.2:80",
    }
    assert Publication(None, "nat", "dockerd", "tcp", None, 80).target is None
    assert Publication(None, "nat", "conmon", "tcp", None, 80, None, 8080).target == ":8080"


# --- kubelet log names ---------------------------------------------------------------------------


def test_kubelet_log_names() -> None:
    cid = "0f" * 32
    assert parse_log_name(f"web-7d4b9c-abcde_shop_nginx-{cid}.log") == (
        cid,
        "web-7d4b9c-abcde",
        "shop",
        "nginx",
    )
    for name in ("kube-proxy.log", f"a_b-{cid}.log", f"A_b_c-{cid}.log", f"a_b_c-{cid[:-1]}.log"):
        assert parse_log_name(name) is None

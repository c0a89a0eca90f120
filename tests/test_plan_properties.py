"""Readers and rules on arbitrary input: findings or a PlanError, never a crash."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import portkit.plan as pp
from portkit.plan._compose import read_compose
from portkit.plan._kube import read_kubernetes
from portkit.plan._native import read_native
from portkit.plan._plan import build_plan
from portkit.render import Style
from portkit.render.plan import describe, explain_text, host_port_rows, mapping_json

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 70000),
    st.floats(allow_nan=False, allow_infinity=False, width=16),
    st.sampled_from(
        ["80", "80:80", "22:22", "a", "", "tcp", "TCP", "udp", "http", "0", "8000-9000", "web",
         "127.0.0.1", "::1", "${X:-1}", "$", "-1", "1-2-3", "HTTP", "web--x", "None"]
    ),
)  # fmt: skip
KEYS = [
    "target", "published", "host_ip", "protocol", "mode", "name", "port", "targetPort",
    "nodePort", "containerPort", "hostPort", "hostIP", "exposure", "address", "forwards_to",
    "x-a",
]  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(KEYS), inner, max_size=5),
    ),
    max_leaves=12,
)


def _all_of(plan: pp.Plan) -> None:
    pp.lint(plan)
    for m in plan.mappings:
        describe(m)
        mapping_json(m)
    host_port_rows(plan)
    explain_text(plan, Style(False))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    ports=st.lists(values, max_size=5),
    expose=values,
    network=st.sampled_from([None, "host", "bridge"]),
)
def test_compose_reader_never_crashes(ports: list[Any], expose: Any, network: str | None) -> None:
    svc: dict[str, Any] = {"ports": ports, "expose": expose}
    if network:
        svc["network_mode"] = network
    doc = {"services": {"a": svc, "b": {"ports": ports}}}
    _all_of(build_plan([read_compose(doc, "c.yaml", {"X": "8080"})]))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    svc_ports=st.lists(values, max_size=4),
    cports=st.lists(values, max_size=4),
    svc_type=st.sampled_from([None, "ClusterIP", "NodePort", "LoadBalancer", "Bogus", 3]),
    host_network=st.booleans(),
)
def test_kubernetes_reader_never_crashes(
    svc_ports: list[Any], cports: list[Any], svc_type: Any, host_network: bool
) -> None:
    docs = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "s"},
            "spec": {"type": svc_type, "selector": {"app": "a"}, "ports": svc_ports},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": "d"},
            "spec": {
                "template": {
                    "metadata": {"labels": {"app": "a"}},
                    "spec": {
                        "hostNetwork": host_network,
                        "containers": [{"name": "c", "ports": cports}],
                    },
                }
            },
        },
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "i"},
            "spec": {"defaultBackend": {"service": {"name": "s", "port": {"number": 80}}}},
        },
    ]
    from portkit.plan._yaml import YamlMap

    def to_yaml(v: Any) -> Any:
        if isinstance(v, dict):
            m = YamlMap(1)
            for k, x in v.items():
                m[k] = to_yaml(x)
            return m
        if isinstance(v, list):
            return [to_yaml(x) for x in v]
        return v

    _all_of(build_plan([read_kubernetes([to_yaml(d) for d in docs], "k.yaml")]))


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(ports=st.lists(values, max_size=5), connections=st.lists(values, max_size=3))
def test_plan_reader_never_crashes(ports: list[Any], connections: list[Any]) -> None:
    doc = {
        "portkit": "plan/v1",
        "hosts": {"h": "127.0.0.1"},
        "services": {"a": {"host": "h", "ports": ports}, "b": {"ports": ports}},
        "connections": connections,
    }
    _all_of(build_plan([read_native(doc, "p.yaml")]))

"""Kubernetes manifests -> port mappings: Services, container ports, Ingress backends.

A pure function of the decoded documents. Multi-document files and ``List`` kinds
are read whole; the pod template is found by kind (table :data:`POD_TEMPLATE`).
Field problems are reported with the API server's own words and field paths,
e.g. ``spec.ports[0].port: Invalid value: 70000: must be between 1 and 65535,
inclusive`` (``k8s.io/apimachinery/pkg/util/validation``,
``pkg/apis/core/validation``), and every problem is reported, not just the first.

    >>> from portkit.plan._yaml import load_documents
    >>> text = '''
    ... apiVersion: v1
    ... kind: Service
    ... metadata: {name: web}
    ... spec: {type: NodePort, ports: [{port: 80, targetPort: 8080, nodePort: 30080}]}
    ... '''
    >>> m = read_kubernetes(load_documents(text), "svc.yaml").mappings[0]
    >>> m.kind, m.type, m.port, m.target_port, m.node_port, m.exposure.value
    ('Service', 'NodePort', 80, 8080, 30080, 'public')
"""

from __future__ import annotations

import json
import re
from typing import Any

from portkit.model import PortRange
from portkit.plan._compose import exposure_of
from portkit.plan._model import (
    Exposure,
    Issue,
    KubeContainerPort,
    KubeIngressBackend,
    KubeNetworkPolicy,
    KubeObjects,
    KubePolicyPort,
    KubeProbe,
    KubeRouteBackend,
    KubeService,
    KubeServicePort,
    KubeWorkload,
    PlanFile,
    PortMapping,
)
from portkit.plan._spec import parse_ip
from portkit.plan._yaml import YamlMap, line_of

__all__ = [
    "POD_TEMPLATE",
    "SERVICE_TYPES",
    "dns1123_label_errors",
    "expand_documents",
    "port_name_errors",
    "port_number_errors",
    "read_kubernetes",
]

#: kind -> path from the object to its pod template (the mapping with metadata + spec).
POD_TEMPLATE: dict[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
    "PodTemplate": ("template",),
}

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
PROTOCOLS = ("SCTP", "TCP", "UDP")
#: Where each Service type makes its ports reachable.
_SERVICE_EXPOSURE = {
    "ClusterIP": Exposure.INTERNAL,
    "NodePort": Exposure.PUBLIC,
    "LoadBalancer": Exposure.PUBLIC,
    "ExternalName": Exposure.INTERNAL,
}

# --- the API server's validation words ---------------------------------------------

_PORT_RANGE_MSG = "must be between 1 and 65535, inclusive"
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_PORT_NAME_CHARSET = re.compile(r"^[-a-z0-9]+$")
_ONE_LETTER = re.compile(r"[a-z]")


def port_number_errors(port: int) -> list[str]:
    """``validation.IsValidPortNum``: 1-65535."""
    return [] if 1 <= port <= 65535 else [_PORT_RANGE_MSG]


def port_name_errors(name: str) -> list[str]:
    """``validation.IsValidPortName`` (IANA_SVC_NAME, RFC 6335), every message.

    >>> port_name_errors("HTTP_1")
    ['must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)', \
'must contain at least one letter (a-z)']
    >>> port_name_errors("-web--ui")
    ['must not contain consecutive hyphens', 'must not begin or end with a hyphen']
    """
    errs = []
    if len(name) > 15:
        errs.append("must be no more than 15 characters")
    if not _PORT_NAME_CHARSET.match(name):
        errs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if not _ONE_LETTER.search(name):
        errs.append("must contain at least one letter (a-z)")
    if "--" in name:
        errs.append("must not contain consecutive hyphens")
    if name and (name[0] == "-" or name[-1] == "-"):
        errs.append("must not begin or end with a hyphen")
    return errs


def dns1123_label_errors(name: str) -> list[str]:
    """``validation.IsDNS1123Label``: what a Service port name must be."""
    errs = []
    if len(name) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(name):
        errs.append(_DNS1123_MSG)
    return errs


def _go(value: Any) -> str:
    """A value as ``field.Error`` prints it: strings quoted, numbers bare."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _invalid(path: str, value: Any, detail: str) -> str:
    return f"{path}: Invalid value: {_go(value)}: {detail}"


_JSON_KIND = {
    str: "string",
    bool: "bool",
    int: "number",
    float: "number",
    list: "array",
    dict: "object",
}


def _json_kind(value: Any) -> str:
    for t, name in _JSON_KIND.items():
        if isinstance(value, t):
            return f"number {value}" if t is float else name
    return "null"


def _unmarshal(struct: str, path: str, value: Any, go_type: str = "int32") -> str:
    """The API server's decode error for a wrongly typed field."""
    bare = re.sub(r"\[\d+\]", "", path)
    return (
        f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
        f"{struct}.{bare} of type {go_type}"
    )


def expand_documents(docs: list[Any]) -> list[YamlMap]:
    """Every object of the file: documents, and the items of ``List`` kinds."""
    out: list[YamlMap] = []
    stack = list(reversed(docs))
    while stack:
        doc = stack.pop()
        if not isinstance(doc, YamlMap):
            continue
        kind = doc.get("kind")
        items = doc.get("items")
        if isinstance(kind, str) and kind.endswith("List") and isinstance(items, list):
            stack.extend(reversed(items))
        elif isinstance(kind, str):
            out.append(doc)
    return out


def _get(obj: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): str(v) for k, v in value.items()}


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.out = PlanFile(path, "kubernetes", kube=KubeObjects())
        self.kube = self.out.kube
        assert self.kube is not None

    def issue(self, rule: str, line: int | None, obj: str, message: str) -> None:
        self.out.issues.append(Issue(rule, self.path, line, obj, message))

    def invalid(
        self, rule: str, item: Any, key: str, obj: str, path: str, value: Any, errors: list[str]
    ) -> None:
        """One finding per validation error of ``value`` (read from ``item[key]``), worded
        as Kubernetes' validation words it."""
        for msg in errors:
            self.issue(rule, line_of(item, key), obj, _invalid(f"{path}.{key}", value, msg))

    def int_field(
        self,
        container: Any,
        key: str,
        struct: str,
        path: str,
        obj: str,
        *,
        rule: str = "invalid-port",
    ) -> int | None:
        """An int32 field; a wrong type is reported as the API server's decode error."""
        value = container.get(key) if isinstance(container, dict) else None
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.issue(
                rule, line_of(container, key), obj, _unmarshal(struct, f"{path}.{key}", value)
            )
            return None
        return value

    def list_field(
        self, container: Any, key: str, struct: str, path: str, obj: str, go_type: str
    ) -> list[Any]:
        """A list field; another type is the API server's decode error (``invalid-type``)."""
        value = container.get(key) if isinstance(container, dict) else None
        if value is None:
            return []
        if not isinstance(value, list):
            self.issue(
                "invalid-type",
                line_of(container, key),
                obj,
                _unmarshal(struct, f"{path}.{key}", value, go_type),
            )
            return []
        return value

    def protocol(self, item: Any, path: str, obj: str) -> str:
        value = item.get("protocol") if isinstance(item, dict) else None
        if value is None or value == "":
            return "TCP"
        if value not in PROTOCOLS:
            self.issue(
                "invalid-protocol",
                line_of(item, "protocol"),
                obj,
                f"{path}.protocol: Unsupported value: {_go(str(value))}: supported values: "
                + ", ".join(f'"{p}"' for p in PROTOCOLS),
            )
            return str(value).upper() if str(value).upper() in PROTOCOLS else str(value)
        return str(value)

    # --- objects ----------------------------------------------------------------

    def read(self, docs: list[Any]) -> PlanFile:
        for doc in expand_documents(docs):
            kind = doc.get("kind")
            if kind == "Service":
                self.service(doc)
            elif kind in POD_TEMPLATE:
                self.workload(doc, str(kind))
            elif kind == "Ingress":
                self.ingress(doc)
            elif kind == "NetworkPolicy":
                self.network_policy(doc)
            elif kind in ROUTE_KINDS:
                self.route(doc, str(kind))
        return self.out

    def service(self, doc: YamlMap) -> None:
        assert self.kube is not None
        name = str(_get(doc, "metadata", "name") or "?")
        namespace = _get(doc, "metadata", "namespace")
        namespace = str(namespace) if namespace is not None else None
        obj = f"Service/{name}"
        raw_spec = doc.get("spec")
        spec: dict[Any, Any] = raw_spec if isinstance(raw_spec, dict) else YamlMap(doc.line)
        svc_type = spec.get("type") or "ClusterIP"
        if svc_type not in SERVICE_TYPES:
            self.issue(
                "invalid-service-type",
                line_of(spec, "type"),
                obj,
                f"spec.type: Unsupported value: {_go(str(svc_type))}: supported values: "
                + ", ".join(f'"{t}"' for t in SERVICE_TYPES),
            )
        svc_type = str(svc_type)
        headless = spec.get("clusterIP") == "None"
        selector = _labels(spec.get("selector"))
        external_ips = tuple(
            str(ip)
            for ip in self.list_field(spec, "externalIPs", "ServiceSpec", "spec", obj, "[]string")
            if ip
        )
        ports_raw = spec.get("ports")
        ports_list = ports_raw if isinstance(ports_raw, list) else []
        # pkg/apis/core/validation ValidateService (TestValidateServiceCreate): a
        # Service that is not headless needs ports, and a NodePort or LoadBalancer
        # Service cannot be headless.
        if not ports_list and not headless and svc_type != "ExternalName":
            self.issue(
                "invalid-port",
                line_of(spec, "ports") if "ports" in spec else (doc.line or None),
                obj,
                "spec.ports: Required value",
            )
        if headless and svc_type in ("NodePort", "LoadBalancer"):
            self.issue(
                "invalid-service-type",
                line_of(spec, "clusterIP"),
                obj,
                "spec.clusterIPs[0]: Invalid value: \"None\": may not be set to 'None' for "
                f"{svc_type} services",
            )
        names: set[str] = set()
        seen_ports: set[tuple[int, str]] = set()
        seen_node_ports: set[tuple[int, str]] = set()
        ports: list[KubeServicePort] = []
        for i, item in enumerate(ports_list):
            path = f"spec.ports[{i}]"
            line = line_of(ports_list, i)
            if not isinstance(item, dict):
                continue
            pname = item.get("name")
            pname = str(pname) if pname not in (None, "") else None
            if len(ports_list) > 1 and pname is None:
                self.issue("invalid-port-name", line, obj, f"{path}.name: Required value")
            elif pname is not None:
                self.invalid(
                    "invalid-port-name", item, "name", obj, path, pname, dns1123_label_errors(pname)
                )
                if pname in names:
                    self.issue(
                        "duplicate-port-name",
                        line_of(item, "name"),
                        obj,
                        f"{path}.name: Duplicate value: {_go(pname)}",
                    )
                names.add(pname)
            port = self.int_field(item, "port", "ServicePort", "spec.ports", obj)
            if port is None and "port" not in item:
                port = 0
            if port is not None:
                self.invalid(
                    "invalid-port", item, "port", obj, path, port, port_number_errors(port)
                )
            protocol = self.protocol(item, path, obj)
            target = item.get("targetPort")
            target_port: int | str | None
            if target is None or target in (0, ""):
                target_port = port if port else None
            elif isinstance(target, bool) or not isinstance(target, (int, str)):
                self.issue(
                    "invalid-port",
                    line_of(item, "targetPort"),
                    obj,
                    _unmarshal(
                        "ServicePort", "spec.ports.targetPort", target, "intstr.IntOrString"
                    ),
                )
                target_port = None
            elif isinstance(target, int):
                target_port = target
                self.invalid(
                    "invalid-port",
                    item,
                    "targetPort",
                    obj,
                    path,
                    target,
                    port_number_errors(target),
                )
            else:
                target_port = target
                self.invalid(
                    "invalid-port-name",
                    item,
                    "targetPort",
                    obj,
                    path,
                    target,
                    port_name_errors(target),
                )
            node_port = self.int_field(item, "nodePort", "ServicePort", "spec.ports", obj)
            if node_port == 0:
                node_port = None
            if node_port is not None and port_number_errors(node_port):
                self.invalid(
                    "invalid-port",
                    item,
                    "nodePort",
                    obj,
                    path,
                    node_port,
                    port_number_errors(node_port),
                )
                node_port = None
            if node_port is not None:
                if svc_type == "ClusterIP":
                    self.issue(
                        "nodeport-on-clusterip",
                        line_of(item, "nodePort"),
                        obj,
                        f"{path}.nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
                    )
                key = (node_port, protocol)
                if key in seen_node_ports:
                    self.issue(
                        "duplicate-port",
                        line_of(item, "nodePort"),
                        obj,
                        f"{path}.nodePort: Duplicate value: {node_port}",
                    )
                seen_node_ports.add(key)
            if port:
                key = (port, protocol)
                if key in seen_ports:
                    self.issue(
                        "duplicate-port",
                        line_of(item, "port"),
                        obj,
                        f"{path}: Duplicate value: core.ServicePort"
                        f'{{Name:"", Protocol:"{protocol}", '
                        f"AppProtocol:(*string)(nil), Port:{port}, TargetPort:intstr.IntOrString"
                        '{Type:0, IntVal:0, StrVal:""}, NodePort:0}',
                    )
                seen_ports.add(key)
            sp = KubeServicePort(
                i,
                line,
                pname,
                port or None,
                target_port,
                node_port,
                protocol,
                port_line=line_of(item, "port"),
                target_line=line_of(item, "targetPort" if "targetPort" in item else "port"),
                node_port_line=line_of(item, "nodePort"),
            )
            ports.append(sp)
            exposure = _SERVICE_EXPOSURE.get(svc_type, Exposure.INTERNAL)
            if external_ips:
                exposure = Exposure.PUBLIC
            public = svc_type in ("NodePort", "LoadBalancer")
            self.out.mappings.append(
                PortMapping(
                    source="kubernetes",
                    file=self.path,
                    line=line,
                    object=obj,
                    service=name,
                    origin="service",
                    protocol=protocol.lower(),
                    exposure=exposure,
                    host_port=PortRange(node_port)
                    if public and node_port and node_port <= 65535
                    else None,
                    host_line=line_of(item, "nodePort") if node_port else None,
                    host_bound=public,
                    container_port=(
                        PortRange(target_port)
                        if isinstance(target_port, int) and 0 < target_port <= 65535
                        else None
                    ),
                    kind="Service",
                    namespace=namespace,
                    type=svc_type if not headless else "ClusterIP",
                    port=port or None,
                    target_port=target_port,
                    node_port=node_port,
                    name=pname,
                    app_protocol=_opt(item.get("appProtocol")),
                    external_ips=external_ips,
                    description="headless" if headless else None,
                )
            )
        self.kube.services.append(
            KubeService(
                self.path,
                doc.line or None,
                name,
                namespace,
                svc_type,
                headless,
                selector,
                tuple(ports),
            )
        )

    def workload(self, doc: YamlMap, kind: str) -> None:
        assert self.kube is not None
        name = str(_get(doc, "metadata", "name") or "?")
        namespace = _get(doc, "metadata", "namespace")
        namespace = str(namespace) if namespace is not None else None
        obj = f"{kind}/{name}"
        tpath = POD_TEMPLATE[kind]
        template = _get(doc, *tpath) if tpath else doc
        pod_spec = _get(template, "spec")
        if not isinstance(pod_spec, dict):
            return
        labels = _labels(_get(template, "metadata", "labels"))
        host_network = pod_spec.get("hostNetwork") is True
        prefix = ".".join((*tpath, "spec"))
        ports: list[KubeContainerPort] = []
        probes: list[KubeProbe] = []
        cnames: list[str] = []
        for group in ("containers", "initContainers"):
            containers = pod_spec.get(group)
            if not isinstance(containers, list):
                continue
            for ci, container in enumerate(containers):
                if not isinstance(container, dict):
                    continue
                cname = str(container.get("name") or f"#{ci}")
                cnames.append(cname)
                probes.extend(_probes(container, cname))
                cports = container.get("ports")
                if not isinstance(cports, list):
                    continue
                names: set[str] = set()
                for pi, item in enumerate(cports):
                    path = f"{prefix}.{group}[{ci}].ports[{pi}]"
                    cp = self.container_port(
                        item, path, obj, cname, names, host_network, line_of(cports, pi), kind
                    )
                    if cp is None:
                        continue
                    ports.append(cp)
                    self.out.mappings.append(
                        _container_mapping(self.path, obj, kind, name, namespace, cp, host_network)
                    )
        self.kube.workloads.append(
            KubeWorkload(
                self.path,
                doc.line or None,
                kind,
                name,
                namespace,
                labels,
                host_network,
                tuple(ports),
                line_of(pod_spec, "hostNetwork") if host_network else None,
                tuple(probes),
                tuple(cnames),
            )
        )

    def container_port(
        self,
        item: Any,
        path: str,
        obj: str,
        cname: str,
        names: set[str],
        host_network: bool,
        line: int | None,
        kind: str,
    ) -> KubeContainerPort | None:
        if not isinstance(item, dict):
            return None
        struct_path = path.split(".containers[")[0].split(".initContainers[")[0]
        group = "initContainers" if ".initContainers[" in path else "containers"
        fpath = f"{struct_path}.{group}.ports"
        pname = item.get("name")
        pname = str(pname) if pname not in (None, "") else None
        if pname is not None:
            errs = port_name_errors(pname)
            self.invalid("invalid-port-name", item, "name", obj, path, pname, errs)
            if not errs and pname in names:
                self.issue(
                    "duplicate-port-name",
                    line_of(item, "name"),
                    obj,
                    f"{path}.name: Duplicate value: {_go(pname)}",
                )
            names.add(pname)
        cport = self.int_field(item, "containerPort", "ContainerPort", fpath, obj)
        if cport is None or cport == 0:
            if "containerPort" not in item or cport == 0:
                self.issue("invalid-port", line, obj, f"{path}.containerPort: Required value")
            cport = None
        else:
            self.invalid(
                "invalid-port", item, "containerPort", obj, path, cport, port_number_errors(cport)
            )
        host_port = self.int_field(item, "hostPort", "ContainerPort", fpath, obj)
        if host_port == 0:
            host_port = None
        if host_port is not None:
            self.invalid(
                "invalid-port",
                item,
                "hostPort",
                obj,
                path,
                host_port,
                port_number_errors(host_port),
            )
        if host_network and host_port is not None and cport is not None and host_port != cport:
            self.issue(
                "invalid-port",
                line_of(item, "hostPort"),
                obj,
                _invalid(
                    f"{path}.hostPort",
                    host_port,
                    "must match `containerPort` when `hostNetwork` is true",
                ),
            )
        if kind == "Pod" and host_network and host_port is None and cport is not None:
            host_port = cport  # the API server defaults it for a Pod
        protocol = self.protocol(item, path, obj)
        host_ip_raw = item.get("hostIP")
        host_ip = parse_ip(str(host_ip_raw)) if host_ip_raw not in (None, "") else None
        if cport is not None and not 1 <= cport <= 65535:
            cport = None
        if host_port is not None and not 1 <= host_port <= 65535:
            host_port = None
        host_line = line_of(item, "hostPort") if "hostPort" in item else line
        return KubeContainerPort(cname, line, pname, cport, protocol, host_port, host_ip, host_line)

    def network_policy(self, doc: YamlMap) -> None:
        assert self.kube is not None
        name = str(_get(doc, "metadata", "name") or "?")
        namespace = _get(doc, "metadata", "namespace")
        namespace = str(namespace) if namespace is not None else None
        obj = f"NetworkPolicy/{name}"
        spec = doc.get("spec")
        if not isinstance(spec, dict):
            return
        selector = spec.get("podSelector")
        labels = _labels(selector.get("matchLabels")) if isinstance(selector, dict) else {}
        expressions = isinstance(selector, dict) and bool(selector.get("matchExpressions"))
        ports: list[KubePolicyPort] = []
        rules = self.list_field(
            spec, "ingress", "NetworkPolicySpec", "spec", obj, "[]v1.NetworkPolicyIngressRule"
        )
        for ri, rule in enumerate(rules):
            if not isinstance(rule, dict):
                continue
            items = self.list_field(
                rule,
                "ports",
                "NetworkPolicyIngressRule",
                f"spec.ingress[{ri}]",
                obj,
                "[]v1.NetworkPolicyPort",
            )
            for item in items:
                if not isinstance(item, dict):
                    continue
                port = item.get("port")
                if isinstance(port, bool) or not isinstance(port, (int, str)):
                    port = None
                end = item.get("endPort")
                end = end if isinstance(end, int) and not isinstance(end, bool) else None
                protocol = str(item.get("protocol") or "TCP")
                ports.append(KubePolicyPort(port, end, protocol, line_of(item, "port")))
        self.kube.policies.append(
            KubeNetworkPolicy(
                self.path, doc.line or None, name, namespace, labels, tuple(ports), expressions
            )
        )

    def route(self, doc: YamlMap, kind: str) -> None:
        assert self.kube is not None
        name = str(_get(doc, "metadata", "name") or "?")
        namespace = _get(doc, "metadata", "namespace")
        namespace = str(namespace) if namespace is not None else None
        obj = f"{kind}/{name}"
        spec = doc.get("spec")
        if not isinstance(spec, dict):
            return
        rules = self.list_field(spec, "rules", f"{kind}Spec", "spec", obj, f"[]v1.{kind}Rule")
        for ri, rule in enumerate(rules):
            if not isinstance(rule, dict):
                continue
            refs = self.list_field(
                rule, "backendRefs", f"{kind}Rule", f"spec.rules[{ri}]", obj, "[]v1.BackendRef"
            )
            for ref in refs:
                if not isinstance(ref, dict) or ref.get("kind", "Service") != "Service":
                    continue
                if ref.get("group") not in (None, "", "core"):
                    continue
                svc = ref.get("name")
                port = ref.get("port")
                if not isinstance(svc, str):
                    continue
                port = port if isinstance(port, int) and not isinstance(port, bool) else None
                ns = ref.get("namespace")
                self.kube.routes.append(
                    KubeRouteBackend(
                        self.path,
                        line_of(ref, "port") or line_of(ref, "name"),
                        obj,
                        str(ns) if isinstance(ns, str) else namespace,
                        svc,
                        port,
                    )
                )

    def ingress(self, doc: YamlMap) -> None:
        assert self.kube is not None
        name = str(_get(doc, "metadata", "name") or "?")
        namespace = _get(doc, "metadata", "namespace")
        namespace = str(namespace) if namespace is not None else None
        spec = doc.get("spec")
        if not isinstance(spec, dict):
            return
        obj = f"Ingress/{name}"
        found: list[tuple[Any, int | None, str]] = []
        for key in ("defaultBackend", "backend"):
            if isinstance(spec.get(key), dict):
                found.append((spec[key], line_of(spec, key), "default backend"))
        rules = self.list_field(spec, "rules", "IngressSpec", "spec", obj, "[]v1.IngressRule")
        for rule in rules:
            if not isinstance(rule, dict):
                continue
            host = rule.get("host") or "*"
            paths = _get(rule, "http", "paths")
            if not isinstance(paths, list):
                continue
            for pi, p in enumerate(paths):
                if isinstance(p, dict) and isinstance(p.get("backend"), dict):
                    where = f"host {host} path {p.get('path') or '/'}"
                    found.append((p["backend"], line_of(paths, pi), where))
        for backend, line, where in found:
            svc_name, port, port_line = _backend(backend)
            if svc_name is None:
                continue
            line = port_line or line
            self.kube.backends.append(
                KubeIngressBackend(self.path, line, name, namespace, svc_name, port)
            )
            self.out.mappings.append(
                PortMapping(
                    source="kubernetes",
                    file=self.path,
                    line=line,
                    object=f"Ingress/{name}",
                    service=name,
                    origin="ingress",
                    protocol="tcp",
                    exposure=Exposure.PUBLIC,
                    kind="Ingress",
                    namespace=namespace,
                    port=port if isinstance(port, int) else None,
                    name=port if isinstance(port, str) else None,
                    backend=svc_name,
                    description=where,
                )
            )


#: Gateway API route kinds whose rules name backendRefs (gateway.networking.k8s.io).
ROUTE_KINDS = frozenset({"HTTPRoute", "GRPCRoute", "TCPRoute", "UDPRoute", "TLSRoute"})
_PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
_HANDLERS = ("httpGet", "tcpSocket", "grpc")


def _probes(container: Any, cname: str) -> list[KubeProbe]:
    out = []
    for kind in _PROBES:
        probe = container.get(kind)
        if not isinstance(probe, dict):
            continue
        for handler in _HANDLERS:
            action = probe.get(handler)
            if not isinstance(action, dict):
                continue
            port = action.get("port")
            if isinstance(port, (int, str)) and not isinstance(port, bool) and port != "":
                out.append(KubeProbe(cname, kind, handler, port, line_of(action, "port")))
    return out


def _backend(backend: Any) -> tuple[str | None, int | str | None, int | None]:
    """(service, port, line of the port) of ``service: {name, port: {number|name}}`` (v1)
    or ``serviceName``/``servicePort`` (v1beta1)."""
    service = backend.get("service")
    if isinstance(service, dict):
        port = service.get("port")
        value = None
        if isinstance(port, dict):
            value = port.get("number") if port.get("number") is not None else port.get("name")
        ok = isinstance(value, (int, str)) and not isinstance(value, bool)
        return _opt(service.get("name")), value if ok else None, line_of(service, "port")
    name = backend.get("serviceName")
    port = backend.get("servicePort")
    ok = isinstance(port, (int, str)) and not isinstance(port, bool)
    return _opt(name), port if ok else None, line_of(backend, "servicePort")


def _opt(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _container_mapping(
    path: str,
    obj: str,
    kind: str,
    name: str,
    namespace: str | None,
    cp: KubeContainerPort,
    host_network: bool,
) -> PortMapping:
    host_port = cp.host_port
    if host_network and host_port is None:
        host_port = cp.container_port
    bound = host_port is not None
    return PortMapping(
        source="kubernetes",
        file=path,
        line=cp.line,
        object=obj,
        service=name,
        origin="container",
        protocol=cp.protocol.lower(),
        exposure=exposure_of(cp.host_ip) if bound else Exposure.INTERNAL,
        host_ip=cp.host_ip if bound else None,
        host_port=PortRange(host_port) if host_port is not None else None,
        host_line=cp.host_port_line if bound else None,
        host_bound=bound,
        container_port=PortRange(cp.container_port) if cp.container_port is not None else None,
        kind=kind,
        namespace=namespace,
        container=cp.container,
        name=cp.name,
        network_host=host_network,
    )


def read_kubernetes(docs: list[Any], path: str) -> PlanFile:
    """Read the decoded documents of one manifest file.

    Args:
        docs: every document of the file (from ``_yaml.load_documents``).
        path: the file name, kept on every record.

    Returns:
        The mappings (Service ports, container ports, Ingress backends), the issues
        met, and the objects for the cross-object rules.
    """
    return _Reader(path).read(docs)

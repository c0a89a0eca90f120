"""portkit's own plan files -> port mappings, services and expected connections.

The format (``portkit: plan/v1``) is documented in docs/plan.md and described by
``schema.json`` beside this module, for editors and CI. This reader checks the same
rules by hand so that every problem gets a line number and a plain message, and
keeps going after the first one. Pure: a function of the decoded document.

    >>> from portkit.plan._yaml import load_documents
    >>> text = '''
    ... portkit: plan/v1
    ... services:
    ...   app: {ports: [{port: 8080, exposure: internal}]}
    ...   lb: {ports: [{port: 80, exposure: public, forwards_to: "app:8080"}]}
    ... connections:
    ...   - {from: lb, to: "app:8080"}
    ... '''
    >>> pf = read_native(load_documents(text)[0], "plan.yaml")
    >>> [(m.service, str(m.host_port), m.exposure.value) for m in pf.mappings]
    [('app', '8080', 'internal'), ('lb', '80', 'public')]
"""

from __future__ import annotations

from typing import Any

from portkit.errors import PlanError
from portkit.model import BindScope, bind_scope
from portkit.plan._model import (
    Connection,
    Exposure,
    Issue,
    NativePlan,
    PlanFile,
    PlanPort,
    PlanService,
    PortMapping,
)
from portkit.plan._spec import PROTOCOLS, parse_ip, parse_port_range
from portkit.plan._yaml import YamlMap, line_of

__all__ = ["EXPOSURES", "EXTERNAL", "VERSION", "parse_target", "read_native"]

VERSION = "plan/v1"
#: The exposures a plan port may declare (``address`` is only ever observed).
EXPOSURES = ("public", "internal", "loopback")
#: The pseudo service for clients outside every planned host (the Internet, users).
EXTERNAL = "external"

_TOP_KEYS = frozenset(
    {"portkit", "name", "description", "baseline", "hosts", "services", "connections"}
)
_SERVICE_KEYS = frozenset({"host", "description", "ports", "image"})
_PORT_KEYS = frozenset(
    {"port", "protocol", "exposure", "address", "name", "description", "forwards_to"}
)
_CONNECTION_KEYS = frozenset({"from", "to", "description"})


def parse_target(text: str) -> tuple[str, int | None, str] | None:
    """``"db:5432/tcp"`` -> ("db", 5432, "tcp"); ``"db"`` -> ("db", None, "tcp"); None if bad.

    >>> parse_target("cache:6379"), parse_target("dns:53/udp"), parse_target("x:y")
    (('cache', 6379, 'tcp'), ('dns', 53, 'udp'), None)
    """
    body, _, proto = text.strip().partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        return None
    name, sep, port = body.rpartition(":")
    if not sep:
        return (body, None, proto) if body else None
    if not name or not port.isascii() or not port.isdigit() or not 1 <= int(port) <= 65535:
        return None
    return name, int(port), proto


class _Reader:
    def __init__(self, path: str) -> None:
        self.path = path
        self.plan = NativePlan()
        self.out = PlanFile(path, "plan", native=self.plan)

    def issue(self, rule: str, line: int | None, obj: str, message: str) -> None:
        self.out.issues.append(Issue(rule, self.path, line, obj, message))

    def unknown_keys(
        self, m: dict[str, Any], allowed: frozenset[str], where: str, obj: str
    ) -> None:
        for key in m:
            if key not in allowed and not str(key).startswith("x-"):
                self.issue("invalid-plan", line_of(m, key), obj, f'{where}: unknown key "{key}"')

    def read(self, doc: Any) -> PlanFile:
        if not isinstance(doc, dict):
            raise PlanError(f"{self.path}: a portkit plan must be a mapping", file=self.path)
        version = doc.get("portkit")
        if version != VERSION:
            raise PlanError(
                f"{self.path}: unsupported plan version {version!r} (supported: {VERSION})",
                file=self.path,
                line=line_of(doc, "portkit"),
            )
        self.unknown_keys(doc, _TOP_KEYS, "plan", "plan")
        self.plan.name = str(doc["name"]) if doc.get("name") is not None else None
        baseline = doc.get("baseline", False)
        if not isinstance(baseline, bool):
            self.issue(
                "invalid-plan", line_of(doc, "baseline"), "plan", "baseline: must be true or false"
            )
            baseline = False
        self.plan.baseline = baseline
        hosts = doc.get("hosts")
        if isinstance(hosts, dict):
            self.plan.hosts = {str(k): str(v) for k, v in hosts.items()}
        elif hosts is not None:
            self.issue(
                "invalid-plan",
                line_of(doc, "hosts"),
                "plan",
                "hosts: must be a mapping of name to address",
            )
        services = doc.get("services")
        if not isinstance(services, dict):
            raise PlanError(
                f"{self.path}: services: must be a mapping of service name to its ports",
                file=self.path,
                line=line_of(doc, "services"),
            )
        for name, raw in services.items():
            self.service(str(name), raw, line_of(services, name))
        connections = doc.get("connections")
        if connections is not None and not isinstance(connections, list):
            self.issue(
                "invalid-plan", line_of(doc, "connections"), "plan", "connections: must be a list"
            )
        elif isinstance(connections, list):
            for i, raw in enumerate(connections):
                self.connection(i, raw, line_of(connections, i))
        return self.out

    def service(self, name: str, raw: Any, line: int | None) -> None:
        obj = f"service {name}"
        where = f"services.{name}"
        if name == EXTERNAL:
            self.issue(
                "invalid-plan",
                line,
                obj,
                f'{where}: "{EXTERNAL}" is reserved for clients outside every host',
            )
            return
        if raw is None:
            raw = YamlMap(line or 0)
        if not isinstance(raw, dict):
            self.issue("invalid-plan", line, obj, f"{where}: must be a mapping with ports")
            return
        self.unknown_keys(raw, _SERVICE_KEYS, where, obj)
        host = raw.get("host")
        host = str(host) if host is not None else None
        scope = self.plan.hosts.get(host, host) if host is not None else None
        ports_raw = raw.get("ports") or []
        if not isinstance(ports_raw, list):
            self.issue("invalid-plan", line_of(raw, "ports"), obj, f"{where}.ports: must be a list")
            ports_raw = []
        ports: list[PlanPort] = []
        for i, entry in enumerate(ports_raw):
            port = self.port(f"{where}.ports[{i}]", entry, line_of(ports_raw, i), obj)
            if port is None:
                continue
            ports.append(port)
            self.out.mappings.append(
                PortMapping(
                    source="plan",
                    file=self.path,
                    line=port.line,
                    object=obj,
                    service=name,
                    origin="port",
                    protocol=port.protocol,
                    exposure=port.exposure,
                    host_ip=port.address,
                    host_port=port.ports,
                    host_bound=True,
                    container_port=port.ports,
                    name=port.name,
                    scope=scope,
                    host_name=host,
                    forwards_to=port.forwards_to,
                    image=str(raw["image"]) if raw.get("image") is not None else None,
                )
            )
        self.plan.services.append(PlanService(self.path, line, name, host, tuple(ports)))

    def port(self, where: str, entry: Any, line: int | None, obj: str) -> PlanPort | None:
        if isinstance(entry, bool) or entry is None:
            self.issue(
                "invalid-port",
                line,
                obj,
                f"{where}: a port must be a number, a string or a mapping",
            )
            return None
        if isinstance(entry, (int, str)):
            text = str(entry)
            body, _, proto = text.partition("/")
            entry = YamlMap(line or 0)
            entry["port"] = body
            entry.key_lines["port"] = line or 0
            if proto:
                entry["protocol"] = proto
                entry.key_lines["protocol"] = line or 0
        if not isinstance(entry, dict):
            self.issue(
                "invalid-port",
                line,
                obj,
                f"{where}: a port must be a number, a string or a mapping",
            )
            return None
        self.unknown_keys(entry, _PORT_KEYS, where, obj)
        ok = True
        raw_port = entry.get("port")
        ports = (
            None
            if isinstance(raw_port, bool) or raw_port is None
            else parse_port_range(str(raw_port))
        )
        if ports is None or ports.start == 0:
            self.issue(
                "invalid-port",
                line_of(entry, "port"),
                obj,
                f"{where}.port: invalid port {raw_port!s}: must be 1-65535 or START-END",
            )
            ok = False
        protocol = str(entry.get("protocol") or "tcp").lower()
        if protocol not in PROTOCOLS:
            self.issue(
                "invalid-protocol",
                line_of(entry, "protocol"),
                obj,
                f'{where}.protocol: unsupported value "{entry.get("protocol")}": supported values: '
                '"tcp", "udp", "sctp"',
            )
            ok = False
        exposure_raw = entry.get("exposure", "internal")
        if exposure_raw not in EXPOSURES:
            self.issue(
                "invalid-plan",
                line_of(entry, "exposure"),
                obj,
                f'{where}.exposure: unsupported value "{exposure_raw}": supported values: '
                + ", ".join(f'"{e}"' for e in EXPOSURES),
            )
            exposure_raw = "internal"
        exposure = Exposure(exposure_raw)
        address: str | None = None
        if entry.get("address") is not None:
            address = parse_ip(str(entry["address"]).strip("[]"))
            if address is None:
                self.issue(
                    "invalid-plan",
                    line_of(entry, "address"),
                    obj,
                    f"{where}.address: invalid IP address: {entry['address']}",
                )
            elif _contradicts(exposure, address):
                self.issue(
                    "invalid-plan",
                    line_of(entry, "address"),
                    obj,
                    f"{where}.address: {address} contradicts exposure {exposure.value}",
                )
        if exposure is Exposure.LOOPBACK and address is None:
            address = "127.0.0.1"
        forwards_to = entry.get("forwards_to")
        if forwards_to is not None:
            forwards_to = str(forwards_to)
            target = parse_target(forwards_to)
            if target is None or target[1] is None:
                self.issue(
                    "invalid-plan",
                    line_of(entry, "forwards_to"),
                    obj,
                    f"{where}.forwards_to: {forwards_to!r} is not SERVICE:PORT[/PROTO]",
                )
                forwards_to = None
        if not ok or ports is None:
            return None
        name = entry.get("name")
        return PlanPort(
            line_of(entry, "port") or line,
            ports,
            protocol,
            exposure,
            address,
            str(name) if name is not None else None,
            forwards_to,
            line_of(entry, "forwards_to") if forwards_to else None,
        )

    def connection(self, index: int, raw: Any, line: int | None) -> None:
        where = f"connections[{index}]"
        if not isinstance(raw, dict):
            self.issue("invalid-plan", line, "plan", f"{where}: must be a mapping with from and to")
            return
        self.unknown_keys(raw, _CONNECTION_KEYS, where, "plan")
        source, target = raw.get("from"), raw.get("to")
        if source is None or target is None:
            self.issue("invalid-plan", line, "plan", f"{where}: needs both from and to")
            return
        parsed = parse_target(str(target))
        if parsed is None:
            self.issue(
                "invalid-plan",
                line_of(raw, "to"),
                f"connection {source} -> {target}",
                f"{where}.to: {str(target)!r} is not SERVICE[:PORT[/PROTO]]",
            )
            return
        name, port, protocol = parsed
        self.plan.connections.append(
            Connection(self.path, line, str(source), name, port, protocol, f"{source} -> {target}")
        )


def _contradicts(exposure: Exposure, address: str) -> bool:
    scope = bind_scope(address)
    loopback = scope is BindScope.LOOPBACK
    wildcard = scope is BindScope.WILDCARD
    if exposure is Exposure.LOOPBACK:
        return not loopback
    if exposure is Exposure.INTERNAL:
        return wildcard or loopback
    return loopback


def read_native(doc: Any, path: str) -> PlanFile:
    """Read a decoded portkit plan (``portkit: plan/v1``).

    Raises:
        PlanError: the document is not a plan at all (not a mapping, another
            version, no ``services`` mapping). Anything smaller is an issue.
    """
    return _Reader(path).read(doc)

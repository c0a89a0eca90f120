"""Docker Compose files -> port mappings: ``ports`` (short and long syntax) and ``expose``.

A pure function of the decoded file (see ``_yaml``) and the variables to interpolate.
Every entry is read, even after a bad one, so that lint can report every problem;
the messages are Docker's and compose-go's own.

    >>> from portkit.plan._yaml import load_documents
    >>> doc = load_documents("services:\\n  web:\\n    ports: ['127.0.0.1:8080:3000']\\n")[0]
    >>> m = read_compose(doc, "compose.yaml", {}).mappings[0]
    >>> m.service, m.host_ip, str(m.host_port), str(m.container_port), m.exposure.value
    ('web', '127.0.0.1', '8080', '3000', 'loopback')
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from portkit.errors import ParseError
from portkit.model import BindScope, PortRange, bind_scope
from portkit.plan._interp import interpolate
from portkit.plan._model import Exposure, Issue, PlanFile, PortMapping
from portkit.plan._spec import PROTOCOLS, parse_expose, parse_ip, parse_port_range, parse_port_spec
from portkit.plan._yaml import Base60Str, YamlList, YamlMap, line_of

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["LONG_SYNTAX_KEYS", "exposure_of", "project_name", "read_compose"]

#: compose-spec ``ports`` long syntax (plus ``x-*`` extensions).
LONG_SYNTAX_KEYS = frozenset(
    {"target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"}
)
#: The service keys portkit reads; only these are interpolated and checked for
#: unset variables, so an unset password elsewhere is not a port problem.
_READ_KEYS = ("ports", "expose", "network_mode", "image")

#: How deep interpolation goes into a value: ``ports`` is a list of mappings of scalars.
_INTERP_DEPTH = 2

#: Go's names for YAML value types, as compose-go prints them in type errors.
_GO_TYPES: dict[type, str] = {
    float: "float64",
    bool: "bool",
    type(None): "<nil>",
    YamlList: "[]interface {}",
    list: "[]interface {}",
    YamlMap: "map[string]interface {}",
    dict: "map[string]interface {}",
}

#: Which rule a Docker parser message belongs to, by its first words.
_RULE_OF_MESSAGE = (
    ("invalid proto", "invalid-protocol"),
    ("invalid ranges specified", "unequal-ranges"),
)


def exposure_of(host_ip: str | None) -> Exposure:
    """Who can reach a port published on ``host_ip`` (None: every interface)."""
    return _EXPOSURE_OF_SCOPE[bind_scope(host_ip)]


#: A published port's exposure from the scope of its host IP.
_EXPOSURE_OF_SCOPE = {
    BindScope.WILDCARD: Exposure.PUBLIC,
    BindScope.LOOPBACK: Exposure.LOOPBACK,
    BindScope.LINK_LOCAL: Exposure.ADDRESS,
    BindScope.SPECIFIC: Exposure.ADDRESS,
}


def _rule_for(message: str) -> str:
    return next(
        (rule for prefix, rule in _RULE_OF_MESSAGE if message.startswith(prefix)), "invalid-port"
    )


_PROJECT_CHARS = re.compile(r"[^a-z0-9_-]")


def project_name(doc: Mapping[Any, Any], path: str, env: Mapping[str, str]) -> str:
    """The compose project's name, as compose-go picks it: COMPOSE_PROJECT_NAME, the
    top-level ``name``, else the directory of the file; normalised (lower case,
    ``a-z 0-9 _ -``, starting with a letter or digit).

    >>> project_name({}, "/srv/My Shop/compose.yaml", {})
    'myshop'
    >>> project_name({"name": "Web"}, "compose.yaml", {"COMPOSE_PROJECT_NAME": "x"})
    'x'
    """
    import os

    raw = env.get("COMPOSE_PROJECT_NAME") or ""
    if not raw and isinstance(doc.get("name"), str):
        raw = interpolate(doc["name"], env).text
    if not raw:
        where = os.path.dirname(os.path.abspath(path)) if path != "-" else os.getcwd()
        raw = os.path.basename(where)
    return _PROJECT_CHARS.sub("", raw.lower()).lstrip("_-")


class _Reader:
    def __init__(self, path: str, env: Mapping[str, str], project: str | None = None) -> None:
        self.path = path
        self.env = env
        self.project = project
        self.out = PlanFile(path, "compose", project=project)

    def issue(self, rule: str, line: int | None, obj: str, message: str) -> None:
        self.out.issues.append(Issue(rule, self.path, line, obj, message))

    # --- interpolation ------------------------------------------------------------

    def interp(self, value: Any, line: int | None, where: str, obj: str, depth: int = 0) -> Any:
        """``value`` with its strings interpolated, down to the depth a port entry has
        (a list of mappings of scalars); anything deeper is a type error the readers
        report, and is left as written."""
        if depth > _INTERP_DEPTH:
            return value
        if isinstance(value, str):
            if "$" not in value:
                return value
            result = interpolate(value, self.env, where)
            for name in result.unset:
                self.issue(
                    "unset-variable",
                    line,
                    obj,
                    f'The "{name}" variable is not set. Defaulting to a blank string.',
                )
            for message in result.errors:
                self.issue("invalid-interpolation", line, obj, message)
            return result.text
        if isinstance(value, YamlMap):
            copy = YamlMap(value.line)
            for k, v in value.items():
                copy[k] = self.interp(v, line_of(value, k), f"{where}.{k}", obj, depth + 1)
                copy.key_lines[k] = value.key_lines.get(k, value.line)
            return copy
        if isinstance(value, YamlList):
            seq = YamlList(value.line)
            for i, v in enumerate(value):
                seq.append(self.interp(v, line_of(value, i), f"{where}[]", obj, depth + 1))
                seq.item_lines.append(line_of(value, i) or value.line)
            return seq
        return value

    # --- services -----------------------------------------------------------------

    def read(self, doc: dict[Any, Any]) -> PlanFile:
        services = doc.get("services")
        if not isinstance(services, dict):
            return self.out
        for name, raw in services.items():
            obj = f"service {name}"
            if not isinstance(raw, dict):
                if raw is not None:
                    self.issue(
                        "invalid-type",
                        line_of(services, name),
                        obj,
                        f"services.{name} must be a mapping",
                    )
                continue
            svc: dict[str, Any] = {}
            for key in _READ_KEYS:
                if key in raw:
                    svc[key] = self.interp(
                        raw[key], line_of(raw, key), f"services.{name}.{key}", obj
                    )
            self.service(str(name), svc, raw, obj)
        return self.out

    def service(self, name: str, svc: dict[str, Any], raw: Any, obj: str) -> None:
        host_network = svc.get("network_mode") == "host"
        image = svc.get("image") if isinstance(svc.get("image"), str) else None
        if host_network:
            self.issue(
                "host-network",
                line_of(raw, "network_mode"),
                obj,
                "network_mode: host: every port the container opens is opened on the host itself",
            )
        ports = svc.get("ports")
        if ports is not None:
            if not isinstance(ports, list):
                self.issue(
                    "invalid-port",
                    line_of(raw, "ports"),
                    obj,
                    f"services.{name}.ports: invalid type {_go_type(ports)} for port",
                )
                ports = []
            if ports and host_network:
                self.issue(
                    "ports-with-host-network",
                    line_of(raw, "ports"),
                    obj,
                    "Published ports are discarded when using host network mode",
                )
            for i, entry in enumerate(ports):
                line = line_of(ports, i)
                for m in self.port_entry(name, i, entry, line, obj, image):
                    self.out.mappings.append(_host_network(m) if host_network else m)
        expose = svc.get("expose")
        if expose is not None:
            if not isinstance(expose, list):
                expose = [expose]
            for i, entry in enumerate(expose):
                line = (
                    line_of(expose, i) if isinstance(expose, YamlList) else line_of(raw, "expose")
                )
                exposed = self.expose_entry(name, entry, line, obj, image)
                if exposed is not None:
                    self.out.mappings.append(_host_network(exposed) if host_network else exposed)

    def port_entry(
        self, name: str, index: int, entry: Any, line: int | None, obj: str, image: str | None
    ) -> list[PortMapping]:
        base: dict[str, Any] = {"source": "compose", "file": self.path, "line": line}
        base.update(object=obj, project=self.project)
        base.update(service=name, origin="ports", image=image)
        if isinstance(entry, bool) or not isinstance(entry, (int, str, dict)):
            self.issue(
                "invalid-port",
                line,
                obj,
                f"services.{name}.ports: invalid type {_go_type(entry)} for port",
            )
            return []
        if isinstance(entry, int):
            if not 0 <= entry <= 65535:
                self.issue("invalid-port", line, obj, f"invalid containerPort: {entry}")
                return []
            if entry == 0:
                self.issue("invalid-port", line, obj, _missing_target(name, index))
                return []
            return [
                PortMapping(
                    **base,
                    protocol="tcp",
                    exposure=Exposure.PUBLIC,
                    host_bound=True,
                    container_port=PortRange(entry),
                )
            ]
        if isinstance(entry, str):
            try:
                spec = parse_port_spec(entry)
            except ParseError as exc:
                self.issue(_rule_for(exc.message), line, obj, exc.message)
                return []
            if spec.container.start == 0:
                self.issue("invalid-port", line, obj, _missing_target(name, index))
                return []
            return [
                PortMapping(
                    **base,
                    protocol=spec.protocol,
                    exposure=exposure_of(spec.host_ip),
                    host_ip=spec.host_ip,
                    host_port=spec.host,
                    host_bound=True,
                    pool=spec.pool,
                    container_port=spec.container,
                    base60=isinstance(entry, Base60Str),
                )
            ]
        return self.long_syntax(name, index, entry, line, obj, base)

    def long_syntax(
        self,
        name: str,
        index: int,
        entry: dict[str, Any],
        line: int | None,
        obj: str,
        base: dict[str, Any],
    ) -> list[PortMapping]:
        ok = True
        for key in entry:
            if key not in LONG_SYNTAX_KEYS and not str(key).startswith("x-"):
                self.issue(
                    "invalid-port",
                    line_of(entry, key),
                    obj,
                    f"services.{name}.ports.{index} Additional property {key} is not allowed",
                )
        target = entry.get("target")
        container: PortRange | None = None
        if target is None or target == 0 or target == "0":
            self.issue("invalid-port", line, obj, _missing_target(name, index))
            ok = False
        else:
            value = _int_of(target)
            if value is None or not 1 <= value <= 65535:
                self.issue(
                    "invalid-port",
                    line_of(entry, "target"),
                    obj,
                    f"invalid containerPort: {target}",
                )
                ok = False
            else:
                container = PortRange(value)
        host: PortRange | None = None
        published = entry.get("published")
        if published is not None and published != "":
            text = str(published) if not isinstance(published, bool) else "?"
            host = parse_port_range(text)
            if host is None:
                self.issue(
                    "invalid-port",
                    line_of(entry, "published"),
                    obj,
                    f"invalid hostPort: {published}",
                )
                ok = False
        host_ip: str | None = None
        raw_ip = entry.get("host_ip")
        if raw_ip is not None and raw_ip != "":
            host_ip = parse_ip(str(raw_ip).strip("[]"))
            if host_ip is None:
                self.issue(
                    "invalid-port", line_of(entry, "host_ip"), obj, f"invalid IP address: {raw_ip}"
                )
                ok = False
        protocol = str(entry.get("protocol") or "tcp").lower()
        if protocol not in PROTOCOLS:
            self.issue(
                "invalid-protocol", line_of(entry, "protocol"), obj, f"invalid proto: {protocol}"
            )
            ok = False
        mode = entry.get("mode")
        if mode is not None and mode not in ("host", "ingress"):
            self.issue(
                "invalid-port",
                line_of(entry, "mode"),
                obj,
                f"services.{name}.ports.{index}.mode must be one of the following: "
                '"host", "ingress"',
            )
        if not ok or container is None:
            return []
        return [
            PortMapping(
                **base,
                protocol=protocol,
                exposure=exposure_of(host_ip),
                host_ip=host_ip,
                host_port=host,
                host_bound=True,
                pool=host is not None and len(host) > 1,
                container_port=container,
                mode=str(mode) if mode is not None else None,
                app_protocol=_opt_str(entry.get("app_protocol")),
                name=_opt_str(entry.get("name")),
            )
        ]

    def expose_entry(
        self, name: str, entry: Any, line: int | None, obj: str, image: str | None
    ) -> PortMapping | None:
        if isinstance(entry, bool) or not isinstance(entry, (int, str)):
            self.issue(
                "invalid-port",
                line,
                obj,
                f"services.{name}.expose: invalid type {_go_type(entry)} for port",
            )
            return None
        try:
            ports, protocol = parse_expose(str(entry))
        except ParseError as exc:
            self.issue(_rule_for(exc.message), line, obj, exc.message)
            return None
        return PortMapping(
            source="compose",
            file=self.path,
            line=line,
            object=obj,
            service=name,
            origin="expose",
            protocol=protocol,
            exposure=Exposure.INTERNAL,
            container_port=ports,
            image=image,
            project=self.project,
        )


def _host_network(m: PortMapping) -> PortMapping:
    """With ``network_mode: host`` the container listens straight on the host's ports."""
    from dataclasses import replace

    return replace(
        m,
        exposure=Exposure.PUBLIC,
        host_ip=None,
        host_port=m.container_port,
        host_bound=True,
        pool=False,
        network_host=True,
    )


def _missing_target(service: str, index: int) -> str:
    return f"service ports services.{service}.ports.{index} is missing a target port"


def _go_type(value: Any) -> str:
    return _GO_TYPES.get(type(value), type(value).__name__)


def _int_of(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def read_compose(
    doc: dict[Any, Any], path: str, env: Mapping[str, str], project: str | None = None
) -> PlanFile:
    """Read a decoded compose file.

    Args:
        doc: the file's top-level mapping (from ``_yaml.load_documents``).
        path: the file name, kept on every record.
        env: the variables for ``${VAR}`` interpolation.

    Returns:
        The mappings, in file order, and the issues met.
    """
    return _Reader(path, env, project).read(doc)

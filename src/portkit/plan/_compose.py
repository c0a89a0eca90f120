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
from portkit.plan._dockerfile import parse_expose as dockerfile_expose
from portkit.plan._model import (
    ComposeDependency,
    ComposeService,
    DockerfileExpose,
    Exposure,
    Issue,
    PlanFile,
    PortMapping,
)
from portkit.plan._project import Project, file_of, merge_project
from portkit.plan._spec import PROTOCOLS, parse_expose, parse_ip, parse_port_range, parse_port_spec
from portkit.plan._yaml import Base60Str, YamlList, YamlMap, line_of

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    LoadText = Callable[[str], str | None]

__all__ = ["LONG_SYNTAX_KEYS", "exposure_of", "project_name", "read_compose", "read_project"]

#: compose-spec ``ports`` long syntax (plus ``x-*`` extensions).
LONG_SYNTAX_KEYS = frozenset(
    {"target", "published", "host_ip", "protocol", "mode", "name", "app_protocol"}
)
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


def project_name(name: str | None, path: str, env: Mapping[str, str]) -> str:
    """The compose project's name, as compose-go picks it: COMPOSE_PROJECT_NAME, the
    top-level ``name``, else the directory of the file; normalised (lower case,
    ``a-z 0-9 _ -``, starting with a letter or digit).

    >>> project_name(None, "/srv/My Shop/compose.yaml", {})
    'myshop'
    >>> project_name("Web", "compose.yaml", {"COMPOSE_PROJECT_NAME": "x"})
    'x'
    """
    import os

    raw = env.get("COMPOSE_PROJECT_NAME") or name or ""
    if not raw:
        where = os.path.dirname(os.path.abspath(path)) if path != "-" else os.getcwd()
        raw = os.path.basename(where)
    return _PROJECT_CHARS.sub("", raw.lower()).lstrip("_-")


class _Reader:
    def __init__(self, path: str, env: Mapping[str, str], project: str | None = None) -> None:
        self.path = path  # the file being read (the entry's, in a merged project)
        self.env = env
        self.project = project
        self.out = PlanFile(path, "compose", project=project)

    def issue(self, rule: str, line: int | None, obj: str, message: str) -> None:
        self.out.issues.append(Issue(rule, self.path, line, obj, message))

    def read_project(self, project: Project, load_text: LoadText | None = None) -> PlanFile:
        """The merged services of a project (see ``_project``): each entry is read in
        the file it came from, and entries compose keeps once are kept once."""
        self.out.issues.extend(project.issues)
        for name, svc in project.services.items():
            obj = f"service {name}"
            first = len(self.out.mappings)
            self.service(name, svc, svc, obj)
            self.out.mappings[first:] = _unique(self.out.mappings[first:])
            file = project.service_files.get(name, self.path)
            self.out.compose.append(
                ComposeService(
                    file,
                    project.service_lines.get(name),
                    name,
                    _dependencies(svc.get("depends_on")),
                    file_of(svc, "depends_on", file),
                    _healthy(svc.get("healthcheck")),
                    _dockerfile(svc, file, load_text),
                )
            )
        return self.out

    def service(self, name: str, svc: dict[str, Any], raw: Any, obj: str) -> None:
        default = self.path
        host_network = svc.get("network_mode") == "host"
        self.path = file_of(raw, "network_mode", default)
        image = svc.get("image") if isinstance(svc.get("image"), str) else None
        if host_network:
            self.issue(
                "host-network",
                line_of(raw, "network_mode"),
                obj,
                "network_mode: host: every port the container opens is opened on the host itself",
            )
        ports = svc.get("ports")
        ports_file = file_of(raw, "ports", default)
        self.path = ports_file
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
                self.path = file_of(ports, i, ports_file)
                for m in self.port_entry(name, i, entry, line, obj, image):
                    self.out.mappings.append(_host_network(m) if host_network else m)
        expose = svc.get("expose")
        expose_file = file_of(raw, "expose", default)
        if expose is not None:
            if not isinstance(expose, list):
                expose = [expose]
            for i, entry in enumerate(expose):
                self.path = file_of(expose, i, expose_file)
                line = (
                    line_of(expose, i) if isinstance(expose, YamlList) else line_of(raw, "expose")
                )
                exposed = self.expose_entry(name, entry, line, obj, image)
                if exposed is not None:
                    self.out.mappings.append(_host_network(exposed) if host_network else exposed)
        self.path = default

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


def _dependencies(raw: Any) -> tuple[ComposeDependency, ...]:
    """``depends_on`` in either form: a list of names (started), or name -> condition."""
    out: list[ComposeDependency] = []
    if isinstance(raw, list):
        for i, name in enumerate(raw):
            if isinstance(name, str):
                out.append(ComposeDependency(name, "service_started", line_of(raw, i)))
    elif isinstance(raw, dict):
        for name, spec in raw.items():
            cond = spec.get("condition") if isinstance(spec, dict) else None
            out.append(
                ComposeDependency(str(name), str(cond or "service_started"), line_of(raw, name))
            )
    return tuple(out)


def _healthy(raw: Any) -> bool:
    """A healthcheck that runs: a test, and not ``disable: true`` / ``test: [NONE]``."""
    if not isinstance(raw, dict) or raw.get("disable") is True:
        return False
    test = raw.get("test")
    if isinstance(test, list):
        return bool(test) and test[0] != "NONE"
    return isinstance(test, str) and bool(test)


def _dockerfile(svc: Any, file: str, load_text: LoadText | None) -> DockerfileExpose | None:
    """What the Dockerfile ``build:`` points at EXPOSEs (None: no build, or not readable)."""
    import os

    build = svc.get("build")
    if load_text is None or build is None:
        return None
    origin = file_of(svc, "build", file)
    if isinstance(build, str):
        build = {"context": build}
    if not isinstance(build, dict):
        return None
    target = build.get("target") if isinstance(build.get("target"), str) else None
    inline = build.get("dockerfile_inline")
    if isinstance(inline, str):
        path, text = f"{origin} (dockerfile_inline)", inline
    else:
        context = build.get("context", ".")
        if not isinstance(context, str) or "://" in context or context.startswith("git@"):
            return None
        name = build.get("dockerfile") if isinstance(build.get("dockerfile"), str) else None
        base = os.path.join(os.path.dirname(origin), context)
        path = os.path.normpath(os.path.join(base, name or "Dockerfile"))
        found = load_text(path)
        if found is None:
            return None
        text = found
    exposed, invalid = dockerfile_expose(text, target)
    return DockerfileExpose(path, exposed, invalid)


def _canonical(m: PortMapping) -> tuple[Any, ...]:
    """What compose-go's port indexer keys a port by: ``HOST_IP:PUBLISHED:TARGET/PROTO``,
    no host IP being 0.0.0.0 (``override.portIndexer``); expose by the port."""
    host = m.host_ip or "0.0.0.0"
    published = str(m.host_port) if m.host_port is not None and m.origin == "ports" else ""
    return (m.origin, host, published, str(m.container_port), m.protocol)


def _unique(ms: list[PortMapping]) -> list[PortMapping]:
    """One entry per canonical form: a repeated entry, in one file or in an override,
    is one port to compose (``EnforceUnicity``); the later one's fields win, in the
    earlier one's place."""
    seen: dict[tuple[Any, ...], int] = {}
    out: list[PortMapping] = []
    for m in ms:
        key = _canonical(m)
        if key in seen:
            out[seen[key]] = m
        else:
            seen[key] = len(out)
            out.append(m)
    return out


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
    """Read one decoded compose file on its own (a project of one file).

    Args:
        doc: the file's top-level mapping (from ``_yaml.load_documents``).
        path: the file name, kept on every record.
        env: the variables for ``${VAR}`` interpolation.
        project: the project's name, kept on every record.

    Returns:
        The mappings, in file order, and the issues met.
    """
    return read_project(merge_project([(path, doc)], env), path, env, project)


def read_project(
    project: Project,
    path: str,
    env: Mapping[str, str],
    name: str | None = None,
    load_text: LoadText | None = None,
) -> PlanFile:
    """Read the merged services of a compose project (``_project.merge_project``).

    Returns:
        One :class:`PlanFile` named ``path`` (the first file) holding every mapping
        and issue, each with the file it came from.
    """
    return _Reader(path, env, name).read_project(project, load_text)

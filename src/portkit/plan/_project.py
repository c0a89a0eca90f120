"""A compose project: several files merged the way ``docker compose`` merges them.

compose-go (``loader.loadYamlModel``) reads the files of a project in order, and for
each one: interpolates it, resolves ``extends``, loads what it ``include``-s as
projects of their own, merges it over what came before (``override.Merge``) and
de-duplicates the lists it keeps unique (``override.EnforceUnicity``). Then the
services outside the enabled profiles are dropped. This module does the same for the
keys portkit reads, keeping where every value came from (file and line), so that a
port published by ``compose.override.yaml`` is reported there.

Pure: files other than the ones given (``extends: {file: ...}``, ``include:``) come
through the ``load`` callback (``_io`` reads them).

    >>> from portkit.plan._yaml import load_documents
    >>> base = load_documents("services:\\n  web: {image: nginx, ports: ['8080:80']}\\n")[0]
    >>> over = load_documents("services:\\n  web: {ports: ['8080:80', '9090:90']}\\n")[0]
    >>> p = merge_project([("compose.yaml", base), ("compose.override.yaml", over)], {})
    >>> list(p.services["web"]["ports"]), p.services["web"]["image"]
    (['8080:80', '8080:80', '9090:90'], 'nginx')

(The repeated ``8080:80`` is one port to compose: the reader drops the copy by its
canonical form, ``0.0.0.0:8080:80/tcp``, as ``EnforceUnicity``'s port indexer does.)
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from portkit.errors import PlanError
from portkit.plan._interp import interpolate
from portkit.plan._model import Issue
from portkit.plan._yaml import YamlList, YamlMap, line_of

__all__ = ["READ_KEYS", "Project", "active_profiles", "file_of", "merge_project"]

#: The service keys portkit reads; only these are interpolated and checked for unset
#: variables, so an unset password elsewhere is not a port problem.
READ_KEYS = (
    "ports",
    "expose",
    "network_mode",
    "image",
    "profiles",
    "extends",
    "depends_on",
    "healthcheck",
    "build",
)
#: Lists compose concatenates when merging (and keeps unique).
_CONCAT = frozenset({"ports", "expose", "profiles"})
#: Mappings compose merges key by key (the override's keys win).
_MERGE_MAPS = frozenset({"depends_on", "healthcheck", "build"})
#: How deep interpolation goes: ``ports`` is a list of mappings of scalars.
_INTERP_DEPTH = 3
#: extends/include chains longer than this are refused (compose-go tracks cycles; a
#: bound also stops a chain through a thousand files).
_MAX_CHAIN = 64

Load = Callable[[str], Any]


def file_of(container: Any, key: Any, default: str) -> str:
    """The file ``container[key]`` came from (merged containers remember it)."""
    files = getattr(container, "origins", None)
    if files is None:
        return default
    if isinstance(container, YamlMap):
        return str(files.get(key, default))
    if isinstance(key, int) and 0 <= key < len(files):
        return str(files[key])
    return default


def _copy_map(src: YamlMap, origin: str) -> YamlMap:
    out = YamlMap(src.line)
    out.origins = {}
    for k, v in src.items():
        out[k] = v
        out.key_lines[k] = src.key_lines.get(k, src.line)
        out.origins[k] = file_of(src, k, origin)
    return out


def _concat(a: Any, a_file: str, b: Any, b_file: str) -> Any:
    """Two lists one after the other, each item remembering its file and line."""
    if not isinstance(a, list) or not isinstance(b, list):
        return b
    out = YamlList(getattr(a, "line", 0))
    out.origins = []
    for seq, origin in ((a, a_file), (b, b_file)):
        for i, item in enumerate(seq):
            out.append(item)
            out.item_lines.append(line_of(seq, i) or 0)
            out.origins.append(file_of(seq, i, origin))
    return out


def _as_map(value: Any) -> Any:
    """``depends_on: [db]`` is ``{db: {condition: service_started}}`` to compose."""
    if isinstance(value, list):
        out = YamlMap(getattr(value, "line", 0))
        for i, name in enumerate(value):
            if isinstance(name, str):
                cond = YamlMap(line_of(value, i) or 0)
                cond["condition"] = "service_started"
                out[name] = cond
                out.key_lines[name] = line_of(value, i) or 0
        return out
    return value


def merge_service(base: YamlMap, base_file: str, over: YamlMap, over_file: str) -> YamlMap:
    """``over`` merged onto ``base`` as compose-go's ``override.Merge`` does for the keys
    portkit reads: ports, expose and profiles concatenated, depends_on, healthcheck and
    build merged key by key, anything else replaced."""
    out = _copy_map(base, base_file)
    origins: dict[Any, str] = out.origins if out.origins is not None else {}
    for k, v in over.items():
        line = over.key_lines.get(k, over.line)
        origin = file_of(over, k, over_file)
        if k in out and k in _CONCAT:
            out[k] = _concat(out[k], origins[k], v, origin)
        elif k in out and k in _MERGE_MAPS:
            left, right = _as_map(out[k]), _as_map(v)
            if isinstance(left, YamlMap) and isinstance(right, YamlMap):
                merged = _copy_map(left, origins[k])
                for kk, vv in right.items():
                    merged[kk] = vv
                    merged.key_lines[kk] = right.key_lines.get(kk, right.line)
                    if merged.origins is not None:
                        merged.origins[kk] = origin
                v = merged
            out[k] = v
        else:
            out[k] = v
        out.key_lines[k] = line
        origins[k] = origin
    return out


@dataclass
class Project:
    """The merged services of a compose project and what reading it found."""

    services: dict[str, Any] = field(default_factory=dict)
    #: service name -> the file that defined it first (the object's file)
    service_files: dict[str, str] = field(default_factory=dict)
    service_lines: dict[str, int | None] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    #: every file read, in order: the given ones, then extended and included ones
    files: list[str] = field(default_factory=list)
    #: services left out because none of their profiles is enabled
    inactive: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: the top-level ``name:`` of the first file that has one
    name: str | None = None


def active_profiles(profiles: Sequence[str] | None, env: Mapping[str, str]) -> frozenset[str]:
    """``--profile`` values, else ``COMPOSE_PROFILES`` (comma-separated), as compose.

    >>> sorted(active_profiles(None, {"COMPOSE_PROFILES": "debug, tools"}))
    ['debug', 'tools']
    """
    if profiles:
        return frozenset(p for p in profiles if p)
    raw = env.get("COMPOSE_PROFILES", "")
    return frozenset(p.strip() for p in raw.split(",") if p.strip())


class _Builder:
    def __init__(self, env: Mapping[str, str], load: Load | None) -> None:
        self.env = env
        self.load = load
        self.project = Project()
        self.loaded: dict[str, Any] = {}

    def issue(self, rule: str, file: str, line: int | None, obj: str, message: str) -> None:
        self.project.issues.append(Issue(rule, file, line, obj, message))

    # --- interpolation ------------------------------------------------------------

    def interp(
        self, value: Any, file: str, line: int | None, where: str, obj: str, depth: int = 0
    ) -> Any:
        if depth > _INTERP_DEPTH:
            return value
        if isinstance(value, str):
            if "$" not in value:
                return value
            result = interpolate(value, self.env, where)
            for name in result.unset:
                self.issue(
                    "unset-variable",
                    file,
                    line,
                    obj,
                    f'The "{name}" variable is not set. Defaulting to a blank string.',
                )
            for message in result.errors:
                self.issue("invalid-interpolation", file, line, obj, message)
            return result.text
        if isinstance(value, YamlMap):
            copy = YamlMap(value.line)
            for k, v in value.items():
                k_line = line_of(value, k)
                copy[k] = self.interp(v, file, k_line, f"{where}.{k}", obj, depth + 1)
                copy.key_lines[k] = value.key_lines.get(k, value.line)
            return copy
        if isinstance(value, YamlList):
            seq = YamlList(value.line)
            for i, v in enumerate(value):
                i_line = line_of(value, i)
                seq.append(self.interp(v, file, i_line, f"{where}[]", obj, depth + 1))
                seq.item_lines.append(i_line or value.line)
            return seq
        return value

    def services_of(self, doc: Any, path: str) -> dict[str, YamlMap]:
        """The file's services, with the keys portkit reads interpolated."""
        raw = doc.get("services") if isinstance(doc, dict) else None
        out: dict[str, YamlMap] = {}
        if not isinstance(raw, dict):
            return out
        for name, svc in raw.items():
            obj = f"service {name}"
            if not isinstance(svc, dict):
                if svc is not None:
                    self.issue(
                        "invalid-type",
                        path,
                        line_of(raw, name),
                        obj,
                        f"services.{name} must be a mapping",
                    )
                svc = YamlMap(line_of(raw, name) or 0)
            copy = YamlMap(svc.line if isinstance(svc, YamlMap) else 0)
            copy.origins = {}
            for key in READ_KEYS:
                if key in svc:
                    k_line = line_of(svc, key)
                    copy[key] = self.interp(svc[key], path, k_line, f"services.{name}.{key}", obj)
                    copy.key_lines[key] = k_line or 0
                    copy.origins[key] = path
            out[str(name)] = copy
            self.project.service_lines.setdefault(str(name), line_of(raw, name))
        return out

    # --- extends ------------------------------------------------------------------

    def doc_of(self, path: str) -> Any:
        if path not in self.loaded:
            if self.load is None:
                raise PlanError(f"{path}: cannot read other files here", file=path)
            self.loaded[path] = self.load(path)
            if path not in self.project.files:
                self.project.files.append(path)
        return self.loaded[path]

    def resolve_extends(
        self, name: str, services: dict[str, YamlMap], path: str, chain: tuple[str, ...] = ()
    ) -> YamlMap:
        """The service with its ``extends`` chain applied (base first, then itself)."""
        svc = services[name]
        ext = svc.get("extends")
        if ext is None:
            return svc
        here = f"{name} in {path}"
        if here in chain:
            cycle = " -> ".join([*chain, here])
            raise PlanError(
                f"{path}:{line_of(svc, 'extends')}: circular reference with extends: {cycle}",
                file=path,
                line=line_of(svc, "extends"),
            )
        if len(chain) >= _MAX_CHAIN:
            raise PlanError(
                f"{path}:{line_of(svc, 'extends')}: services.{name}.extends: a chain of more "
                f"than {_MAX_CHAIN} services (portkit's limit)",
                file=path,
                line=line_of(svc, "extends"),
            )
        if isinstance(ext, str):
            base_name, base_file = ext, None
        elif isinstance(ext, dict) and isinstance(ext.get("service"), str):
            base_name = ext["service"]
            base_file = ext.get("file") if isinstance(ext.get("file"), str) else None
        else:
            raise PlanError(
                f"{path}:{line_of(svc, 'extends')}: services.{name}.extends must be a service "
                "name or a mapping with service (and file)",
                file=path,
                line=line_of(svc, "extends"),
            )
        if base_file is not None:
            target = os.path.normpath(os.path.join(os.path.dirname(path), base_file))
            base_services = self.services_of(self.doc_of(target), target)
        else:
            target, base_services = path, services
        if base_name not in base_services:
            raise PlanError(
                f"{path}:{line_of(svc, 'extends')}: cannot extend service {name!r}: "
                f"service {base_name!r} not found in {target}",
                file=path,
                line=line_of(svc, "extends"),
            )
        base = self.resolve_extends(base_name, base_services, target, (*chain, here))
        own = YamlMap(svc.line)
        own.origins = {}
        for k, v in svc.items():
            if k != "extends":
                own[k] = v
                own.key_lines[k] = svc.key_lines.get(k, svc.line)
                own.origins[k] = file_of(svc, k, path)
        return merge_service(base, target, own, path)

    # --- include ------------------------------------------------------------------

    def include(self, doc: Any, path: str, chain: tuple[str, ...]) -> dict[str, YamlMap]:
        """The services of the projects ``doc`` includes, each loaded on its own."""
        raw = doc.get("include") if isinstance(doc, dict) else None
        if raw is None:
            return {}
        if not isinstance(raw, list):
            raise PlanError(
                f"{path}:{line_of(doc, 'include')}: include must be a list",
                file=path,
                line=line_of(doc, "include"),
            )
        out: dict[str, YamlMap] = {}
        for i, item in enumerate(raw):
            line = line_of(raw, i)
            paths = item.get("path") if isinstance(item, dict) else item
            paths = [paths] if isinstance(paths, str) else paths
            if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
                raise PlanError(
                    f"{path}:{line}: include[{i}] must be a path or a mapping with path",
                    file=path,
                    line=line,
                )
            targets = [
                os.path.normpath(os.path.join(os.path.dirname(path), interpolate(p, self.env).text))
                for p in paths
            ]
            for target in targets:
                if target in chain or len(chain) > _MAX_CHAIN:
                    raise PlanError(
                        f"{path}:{line}: include cycle detected: " + " -> ".join([*chain, target]),
                        file=path,
                        line=line,
                    )
            sub = _Builder(self.env, self.load)
            sub.loaded = self.loaded
            for target in targets:
                sub.add(target, self.doc_of(target), (*chain, target))
            self.project.issues.extend(sub.project.issues)
            for f in sub.project.files:
                if f not in self.project.files:
                    self.project.files.append(f)
            for name, svc in sub.project.services.items():
                if name in out:
                    raise PlanError(
                        f"{path}:{line}: imported compose file {targets[0]} defines "
                        f"conflicting service {name}",
                        file=path,
                        line=line,
                    )
                out[name] = svc
                self.project.service_files.setdefault(name, sub.project.service_files[name])
                self.project.service_lines.setdefault(name, sub.project.service_lines.get(name))
        return out

    # --- one file -----------------------------------------------------------------

    def add(self, path: str, doc: Any, chain: tuple[str, ...] = ()) -> None:
        if path not in self.project.files:
            self.project.files.append(path)
        if self.project.name is None and isinstance(doc, dict):
            name = doc.get("name")
            if isinstance(name, str):
                self.project.name = interpolate(name, self.env).text
        included = self.include(doc, path, (*chain, path))
        services = self.services_of(doc, path)
        resolved = {name: self.resolve_extends(name, services, path) for name in services}
        for name, svc in included.items():
            if name in resolved:
                raise PlanError(
                    f"{path}:{self.project.service_lines.get(name)}: services.{name} conflicts "
                    "with imported resource",
                    file=path,
                )
            self.merge(name, svc, self.project.service_files.get(name, path))
        for name, svc in resolved.items():
            self.merge(name, svc, path)

    def merge(self, name: str, svc: YamlMap, path: str) -> None:
        current = self.project.services.get(name)
        if current is None:
            self.project.services[name] = svc
            self.project.service_files.setdefault(name, path)
        else:
            self.project.services[name] = merge_service(
                current, self.project.service_files[name], svc, path
            )


def merge_project(
    sources: Sequence[tuple[str, Any]],
    env: Mapping[str, str],
    *,
    load: Load | None = None,
    profiles: Sequence[str] | None = None,
) -> Project:
    """Merge the compose files of one project, in order (``docker compose -f a -f b``).

    Args:
        sources: (path, decoded top-level mapping) of each file.
        env: the variables (the environment over the .env files).
        load: reads another file (for ``extends: {file}`` and ``include``): path ->
            its decoded top-level mapping.
        profiles: the enabled profiles (None: ``COMPOSE_PROFILES``; ``*``: all).

    Raises:
        PlanError: what compose refuses to load: an extends cycle or an unknown base
            service, an include cycle, an included service defined again.
    """
    builder = _Builder(env, load)
    for path, doc in sources:
        builder.add(path, doc)
    project = builder.project
    enabled = active_profiles(profiles, env)
    for name, svc in list(project.services.items()):
        wanted = svc.get("profiles")
        if not isinstance(wanted, list) or not wanted:
            continue
        names = tuple(str(p) for p in wanted)
        if "*" in enabled or enabled.intersection(names):
            continue
        project.inactive[name] = names
        del project.services[name]
    return project

"""Reading plan files: the only file I/O of the plan capability.

Each file is read, decoded as YAML the way Docker reads it, recognised as a compose
file, Kubernetes manifests or a portkit plan, and handed to the matching pure
reader. OS errors become :class:`~portkit.errors.PlanError` here, once.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, BinaryIO

from portkit.errors import PlanError
from portkit.plan._compose import project_name, read_project
from portkit.plan._interp import parse_env_file
from portkit.plan._kube import read_kubernetes
from portkit.plan._model import PlanFile
from portkit.plan._native import read_native
from portkit.plan._plan import Plan, build_plan
from portkit.plan._project import merge_project
from portkit.plan._yaml import MAX_BYTES, load_documents

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


__all__ = ["FORMATS", "detect_format", "load_plan", "read_text"]

FORMATS = ("auto", "compose", "kubernetes", "plan")


def _read_capped(f: BinaryIO, path: str) -> bytes:
    data = f.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise PlanError(
            f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MB (the limit for a plan file)",
            file=path,
        )
    return data


def read_text(path: str) -> str:
    """The text of ``path`` (``-`` is stdin), as UTF-8, read up to :data:`MAX_BYTES`.

    Reading stops at the cap, so ``/dev/zero``, an endless pipe or a huge file costs
    at most 32 MB, whatever it is.
    """
    try:
        if path == "-":
            stream = getattr(sys.stdin, "buffer", None)
            if stream is None:  # a text-only stdin (an embedding application's)
                text = sys.stdin.read(MAX_BYTES + 1)
                if len(text) > MAX_BYTES:
                    raise PlanError(f"{path}: larger than {MAX_BYTES // (1024 * 1024)} MB")
                return text
            data = _read_capped(stream, path)
        else:
            with open(path, "rb") as f:
                data = _read_capped(f, path)
    except OSError as exc:
        raise PlanError(f"{path}: {exc.strerror or exc}", file=path) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise PlanError(f"{path}: not UTF-8 text (byte {exc.start})", file=path) from exc


def detect_format(docs: Sequence[Any], path: str) -> str:
    """``plan``, ``compose`` or ``kubernetes``, from the top-level keys.

    Raises:
        PlanError: none of the three.
    """
    maps = [d for d in docs if isinstance(d, dict)]
    if not maps:
        raise PlanError(f"{path}: empty file, or no YAML mapping in it", file=path)
    if any("portkit" in d for d in maps):
        return "plan"
    if any("kind" in d and "apiVersion" in d for d in maps):
        return "kubernetes"
    if isinstance(maps[0].get("services"), dict) or "include" in maps[0]:
        return "compose"
    if is_compose_v1(maps[0]):
        return "compose"
    raise PlanError(
        f"{path}: not a compose file, Kubernetes manifest or portkit plan "
        "(no top-level `services`, `apiVersion`/`kind` or `portkit` key)",
        file=path,
    )


def _compose_env(
    paths: Sequence[str], env_files: Sequence[str] | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """Variables as docker compose sees them: the .env file(s), then the environment.

    As compose-go's ``GetEnvFromFile``: each file interpolates against the files read
    before it, then the environment, then its own lines above; a file that does not
    exist is an error, a pipe (``--env-file <(...)``) is read like a file.
    """
    values: dict[str, str] = {}
    if env_files is None:
        # compose reads .env from the project directory: the first file's directory.
        first = next((p for p in paths if p != "-"), None)
        default = os.path.join(os.path.dirname(first) if first else ".", ".env")
        chosen = [default] if os.path.isfile(default) else []
    else:
        chosen = list(env_files)
    for env_file in chosen:
        if not os.path.exists(env_file):
            raise PlanError(f"couldn't find env file: {os.path.abspath(env_file)}", file=env_file)
        if os.path.isdir(env_file):
            raise PlanError(f"{env_file} is a directory", file=env_file)
        lookup = {**environ, **values}
        values.update(parse_env_file(read_text(env_file), lookup, env_file))
    values.update(environ)
    return values


#: A service of the Compose file format version 1 (services at the top level) has one.
_V1_KEYS = frozenset({"image", "build"})


def is_compose_v1(doc: Any) -> bool:
    """Services at the top level, as docker-compose 1.x's version 1 format had them."""
    if not isinstance(doc, dict) or not doc or "services" in doc:
        return False
    values = [v for k, v in doc.items() if not str(k).startswith("x-")]
    return bool(values) and all(isinstance(v, dict) and _V1_KEYS & v.keys() for v in values)


def _compose_doc(doc: Any, path: str) -> Any:
    """The compose file's top level, with a version 1 file's services moved under
    ``services`` (docker-compose 1.x read them; ``docker compose`` v2 does not)."""
    if is_compose_v1(doc):
        from portkit.plan._yaml import YamlMap

        wrapped = YamlMap(doc.line)
        wrapped["services"] = doc
        wrapped.key_lines["services"] = doc.line
        return wrapped
    if doc is None or not isinstance(doc.get("services", {}), dict):
        raise PlanError(f"{path}: a compose file needs a `services` mapping", file=path)
    if "services" not in doc and "include" not in doc:
        raise PlanError(f"{path}: a compose file needs a `services` mapping", file=path)
    return doc


def _dockerfile_text(path: str) -> str | None:
    """A Dockerfile a compose ``build:`` points at; None when there is none to read."""
    if not os.path.isfile(path):
        return None
    try:
        return read_text(path)
    except PlanError:
        return None


def _distinct(paths: Sequence[str]) -> list[str]:
    """The paths with the same file named twice kept once (``f.yaml ./f.yaml``): a file
    read twice would collide with itself."""
    seen: set[tuple[int, int]] = set()
    out: list[str] = []
    for path in paths:
        if path != "-":
            try:
                st = os.stat(path)
            except OSError:
                out.append(path)  # read_text says what is wrong with it
                continue
            if st.st_ino and os.path.isfile(path):
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
        elif "-" in out:
            continue
        out.append(path)
    return out


def load_plan(
    paths: Sequence[str],
    *,
    env_files: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    format: str = "auto",
    profiles: Sequence[str] | None = None,
) -> Plan:
    """Read compose files, Kubernetes manifests and portkit plans into one :class:`Plan`.

    The compose files among ``paths`` are one project, merged in order as ``docker
    compose -f a.yaml -f b.yaml`` merges them (``extends`` and ``include`` followed,
    services outside the enabled profiles left out).

    Args:
        paths: the files (``-`` reads stdin).
        env_files: ``--env-file`` files for compose interpolation, in order; None
            reads ``.env`` beside the first file when there is one, as compose does.
        environ: variables that override the env files (default: ``os.environ``).
        format: ``auto`` (recognise each file), ``compose``, ``kubernetes`` or ``plan``.
        profiles: compose profiles to enable (``--profile``; None: COMPOSE_PROFILES;
            ``*``: every one).

    Raises:
        PlanError: a file cannot be read at all (missing, not UTF-8, not YAML, or
            none of the three formats).
    """
    if not paths:
        raise PlanError("no files given")
    if format not in FORMATS:
        raise PlanError(f"unknown format {format!r} (accepted: {', '.join(FORMATS)})")
    env_source = dict(os.environ) if environ is None else dict(environ)
    env: dict[str, str] | None = None
    files: list[PlanFile] = []
    compose: list[tuple[str, Any]] = []
    compose_at = -1  # where the project's files go among the others
    paths = _distinct(paths)
    for path in paths:
        docs = load_documents(read_text(path), path)
        kind = detect_format(docs, path) if format == "auto" else format
        if kind == "compose":
            doc = next((d for d in docs if isinstance(d, dict)), None)
            compose.append((path, _compose_doc(doc, path)))
            if compose_at < 0:
                compose_at = len(files)
        elif kind == "kubernetes":
            files.append(read_kubernetes(docs, path))
        else:
            doc = next((d for d in docs if isinstance(d, dict)), None)
            files.append(read_native(doc, path))
    if compose:
        # The compose files given together are one project, merged in order, as
        # ``docker compose -f compose.yaml -f compose.override.yaml`` merges them.
        env = _compose_env(paths, env_files, env_source)

        def load(other: str) -> Any:
            found = load_documents(read_text(other), other)
            return _compose_doc(next((d for d in found if isinstance(d, dict)), None), other)

        project = merge_project(compose, env, load=load, profiles=profiles)
        first = compose[0][0]
        name = project_name(project.name, first, env)
        read = read_project(project, first, env, name, _dockerfile_text)
        read.inactive = dict(project.inactive)
        others = [PlanFile(f, "compose", project=name) for f in project.files if f != first]
        files[compose_at:compose_at] = [read, *others]
    return build_plan(files)

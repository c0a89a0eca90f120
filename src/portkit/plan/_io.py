"""Reading plan files: the only file I/O of the plan capability.

Each file is read, decoded as YAML the way Docker reads it, recognised as a compose
file, Kubernetes manifests or a portkit plan, and handed to the matching pure
reader. OS errors become :class:`~portkit.errors.PlanError` here, once.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from portkit.errors import PlanError
from portkit.plan._compose import read_compose
from portkit.plan._interp import parse_env_file
from portkit.plan._kube import read_kubernetes
from portkit.plan._native import read_native
from portkit.plan._plan import Plan, build_plan
from portkit.plan._yaml import load_documents

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from portkit.plan._model import PlanFile

__all__ = ["FORMATS", "detect_format", "load_plan", "read_text"]

FORMATS = ("auto", "compose", "kubernetes", "plan")


def read_text(path: str) -> str:
    """The text of ``path`` (``-`` is stdin), as UTF-8."""
    try:
        if path == "-":
            return sys.stdin.read()
        with open(path, "rb") as f:
            data = f.read()
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
    if isinstance(maps[0].get("services"), dict):
        return "compose"
    raise PlanError(
        f"{path}: not a compose file, Kubernetes manifest or portkit plan "
        "(no top-level `services`, `apiVersion`/`kind` or `portkit` key)",
        file=path,
    )


def _compose_env(
    paths: Sequence[str], env_files: Sequence[str] | None, environ: Mapping[str, str]
) -> dict[str, str]:
    """Variables as docker compose sees them: the .env file(s), then the environment."""
    values: dict[str, str] = {}
    if env_files is None:
        # compose reads .env from the project directory: the first file's directory.
        first = next((p for p in paths if p != "-"), None)
        default = os.path.join(os.path.dirname(first) if first else ".", ".env")
        chosen = [default] if os.path.isfile(default) else []
    else:
        chosen = list(env_files)
    for env_file in chosen:
        if not os.path.isfile(env_file):
            raise PlanError(f"couldn't find env file: {os.path.abspath(env_file)}", file=env_file)
        values.update(parse_env_file(read_text(env_file), {**values, **environ}))
    values.update(environ)
    return values


def load_plan(
    paths: Sequence[str],
    *,
    env_files: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    format: str = "auto",
) -> Plan:
    """Read compose files, Kubernetes manifests and portkit plans into one :class:`Plan`.

    Args:
        paths: the files (``-`` reads stdin).
        env_files: ``--env-file`` files for compose interpolation, in order; None
            reads ``.env`` beside the first file when there is one, as compose does.
        environ: variables that override the env files (default: ``os.environ``).
        format: ``auto`` (recognise each file), ``compose``, ``kubernetes`` or ``plan``.

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
    for path in paths:
        docs = load_documents(read_text(path), path)
        kind = detect_format(docs, path) if format == "auto" else format
        if kind == "compose":
            if env is None:
                env = _compose_env(paths, env_files, env_source)
            doc = next((d for d in docs if isinstance(d, dict)), None)
            if doc is None or not isinstance(doc.get("services"), dict):
                raise PlanError(f"{path}: a compose file needs a `services` mapping", file=path)
            files.append(read_compose(doc, path, env))
        elif kind == "kubernetes":
            files.append(read_kubernetes(docs, path))
        else:
            doc = next((d for d in docs if isinstance(d, dict)), None)
            files.append(read_native(doc, path))
    return build_plan(files)

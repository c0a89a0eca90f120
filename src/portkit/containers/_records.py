"""Containers as records, and the runtimes' answers read into them (pure).

The Docker Engine API and Podman's compatible one answer HTTP/1.1 with JSON; nothing
here touches a socket: :func:`parse_response` takes the bytes of an answer (status
line, headers, body, chunked or not) and :func:`parse_containers` /
:func:`parse_inspect` the decoded JSON, so the tests feed them captured answers and
hypothesis feeds them anything (a record, or a ParseError, nothing else).

    >>> status, body = parse_response(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n[]")
    >>> status, body
    (200, b'[]')
"""

from __future__ import annotations

import io

from portkit.errors import ParseError
from portkit.model import _Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Container",
    "Publication",
    "Published",
    "decode_answer",
    "parse_containers",
    "parse_inspect",
    "parse_response",
]

#: Labels the runtimes put on containers, by the field they fill.
LABELS = {
    "compose_project": "com.docker.compose.project",
    "compose_service": "com.docker.compose.service",
    "pod": "io.kubernetes.pod.name",
    "namespace": "io.kubernetes.pod.namespace",
    "pod_uid": "io.kubernetes.pod.uid",
}


class Published(_Record):
    """A port the runtime says it publishes: host ip:port -> container port/protocol."""

    __slots__ = ("host_ip", "host_port", "container_port", "protocol")
    host_ip: str
    host_port: int
    container_port: int
    protocol: str

    def __init__(self, host_ip: str, host_port: int, container_port: int, protocol: str) -> None:
        self._init(
            host_ip=host_ip, host_port=host_port, container_port=container_port, protocol=protocol
        )


class Container(_Record):
    """A container as portkit shows it.

    Fields are None where nothing said them: a container known only from its cgroup
    (no runtime API answered) has its id, the runtime its cgroup path names, and its
    short id as its name; ``api`` is the API socket it was learnt from (None then).
    ``pid`` is its main process when known, ``addresses`` its network addresses,
    ``published`` what the runtime publishes for it.
    """

    __slots__ = (
        "id",
        "name",
        "runtime",
        "image",
        "compose_project",
        "compose_service",
        "pod",
        "namespace",
        "pid",
        "addresses",
        "published",
        "api",
        "pod_uid",
    )
    id: str
    name: str
    runtime: str
    image: str | None
    compose_project: str | None
    compose_service: str | None
    pod: str | None
    namespace: str | None
    pid: int | None
    addresses: tuple[str, ...]
    published: tuple[Published, ...]
    api: str | None
    pod_uid: str | None

    def __init__(
        self,
        id: str,
        name: str,
        runtime: str,
        image: str | None = None,
        compose_project: str | None = None,
        compose_service: str | None = None,
        pod: str | None = None,
        namespace: str | None = None,
        pid: int | None = None,
        addresses: tuple[str, ...] = (),
        published: tuple[Published, ...] = (),
        api: str | None = None,
        pod_uid: str | None = None,
    ) -> None:
        self._init(
            id=id,
            name=name,
            runtime=runtime,
            image=image,
            compose_project=compose_project,
            compose_service=compose_service,
            pod=pod,
            namespace=namespace,
            pid=pid,
            addresses=addresses,
            published=published,
            api=api,
            pod_uid=pod_uid,
        )

    @property
    def short_id(self) -> str:
        """The 12 characters ``docker ps`` shows."""
        return self.id[:12]

    @property
    def from_api(self) -> bool:
        """Whether a runtime's API named it (else only its cgroup did)."""
        return self.api is not None

    def replace(self, **changes: Any) -> Container:
        """A copy with some fields changed."""
        values = dict(zip(self.__slots__, self._values(), strict=True))
        values.update(changes)
        return Container(**values)

    def as_dict(self) -> dict[str, Any]:
        """The ``container`` object of every command's JSON (docs/see.md):
        ``{id, name, runtime, image, compose_project, compose_service, pod, namespace}``.
        """
        return {
            "id": self.id,
            "name": self.name,
            "runtime": self.runtime,
            "image": self.image,
            "compose_project": self.compose_project,
            "compose_service": self.compose_service,
            "pod": self.pod,
            "namespace": self.namespace,
        }

    as_json = as_dict  # the name the first see/ integration calls

    def label(self) -> str:
        """How a table names it: ``web (compose shop/web)``, ``kube-system/coredns``,
        or the name (the short id when only the cgroup knew it).

        >>> Container("a" * 64, "shop_web_1", "docker", compose_project="shop",
        ...           compose_service="web").label()
        'shop_web_1 (compose shop/web)'
        """
        if self.pod:
            return f"{self.namespace}/{self.pod}" if self.namespace else self.pod
        if self.compose_project and self.compose_service:
            return f"{self.name} (compose {self.compose_project}/{self.compose_service})"
        return self.name


class Publication(_Record):
    """A host socket held for a container: the publisher process (``via``: its
    name), how traffic reaches the container (``kind``: ``proxy`` or ``nat``), the
    host side, and the container side where known (docker-proxy's argv, the runtime's
    ports). ``container`` is None when no runtime told which container it is.
    """

    __slots__ = (
        "container",
        "kind",
        "via",
        "protocol",
        "host_ip",
        "host_port",
        "container_ip",
        "container_port",
    )
    container: Container | None
    kind: str
    via: str
    protocol: str
    host_ip: str | None
    host_port: int
    container_ip: str | None
    container_port: int | None

    def __init__(
        self,
        container: Container | None,
        kind: str,
        via: str,
        protocol: str,
        host_ip: str | None,
        host_port: int,
        container_ip: str | None = None,
        container_port: int | None = None,
    ) -> None:
        self._init(
            container=container,
            kind=kind,
            via=via,
            protocol=protocol,
            host_ip=host_ip,
            host_port=host_port,
            container_ip=container_ip,
            container_port=container_port,
        )

    @property
    def target(self) -> str | None:
        """``172.17.0.2:80``, ``:80`` (the port only), or None when nothing says."""
        if self.container_port is None:
            return None
        ip = self.container_ip or ""
        host = f"[{ip}]" if ":" in ip else ip
        return f"{host}:{self.container_port}"

    def as_dict(self) -> dict[str, Any]:
        """``{container, published_by, via, to}`` for a socket's JSON."""
        return {
            "container": self.container.as_dict() if self.container else None,
            "published_by": self.kind,
            "via": self.via,
            "to": self.target,
        }


# --- the runtimes' answers -----------------------------------------------------------


class _Bytes:
    """What ``HTTPResponse`` reads from: ``makefile`` over bytes already received."""

    def __init__(self, data: bytes) -> None:
        self._file = io.BytesIO(data)

    def makefile(self, mode: str) -> io.BytesIO:
        return self._file


def parse_response(raw: bytes) -> tuple[int, bytes]:
    """An HTTP/1.1 answer's bytes -> ``(status, body)``: ``http.client`` reads the
    status line, the headers and the body (Content-Length, chunked, or up to the end).

    Raises:
        ParseError: not an HTTP answer, or one cut short.
    """
    # here, not at the top: http.client brings the email package (about 15 ms), which
    # a listing that meets no container never needs
    from http.client import HTTPException, HTTPResponse

    resp = HTTPResponse(_Bytes(raw))  # type: ignore[arg-type]
    try:
        resp.begin()
        body = resp.read()
    except (HTTPException, ValueError) as exc:
        raise ParseError(
            f"not an HTTP answer ({type(exc).__name__})", text=raw[:60].decode("latin-1")
        ) from None
    return resp.status, body


def decode_answer(status: int, body: bytes) -> Any:
    """The JSON of a 200 answer.

    Raises:
        ParseError: another status (with the runtime's ``message``), or not JSON.
    """
    import json  # here: reading /proc needs no JSON

    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        doc = None
        if status == 200:
            raise ParseError("the answer is not JSON", text=body[:60].decode("latin-1")) from None
    if status != 200:
        message = doc.get("message") if isinstance(doc, dict) else None
        text = message if isinstance(message, str) else body[:80].decode("utf-8", "replace")
        raise ParseError(f"HTTP {status}: {' '.join(text.split())[:120]}", text=str(status))
    return doc


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _published(ports: Any) -> tuple[Published, ...]:
    out = []
    for p in ports if isinstance(ports, list) else ():
        if not isinstance(p, dict):
            continue
        public, private = p.get("PublicPort"), p.get("PrivatePort")
        if (
            isinstance(public, int)
            and isinstance(private, int)
            and not isinstance(public, bool)
            and 0 < public < 65536
            and 0 < private < 65536
        ):
            proto = _str(p.get("Type")) or "tcp"
            out.append(Published(_str(p.get("IP")) or "0.0.0.0", public, private, proto))
    return tuple(out)


def _addresses(settings: Any) -> tuple[str, ...]:
    nets = _dict(_dict(settings).get("Networks"))
    found: list[str] = []
    for net in nets.values():
        for key in ("IPAddress", "GlobalIPv6Address"):
            ip = _str(_dict(net).get(key))
            if ip and ip not in found:
                found.append(ip)
    return tuple(found)


def parse_containers(doc: Any, runtime: str, api: str | None = None) -> list[Container]:
    """``GET /containers/json`` decoded -> records; items not shaped as containers are
    skipped.

    Raises:
        ParseError: the document is not a list.

    >>> c = parse_containers([{"Id": "a" * 64, "Names": ["/web"], "Image": "nginx",
    ...     "Labels": {"com.docker.compose.project": "shop",
    ...                "com.docker.compose.service": "web"},
    ...     "Ports": [{"IP": "127.0.0.1", "PrivatePort": 80, "PublicPort": 8080,
    ...                "Type": "tcp"}]}], "docker")[0]
    >>> c.label(), c.published[0].host_port
    ('web (compose shop/web)', 8080)
    """
    if not isinstance(doc, list):
        raise ParseError(
            "the container list is not a JSON array",
            text=str(doc)[:60],
            accepted="GET /containers/json's answer",
        )
    out = []
    for item in doc:
        if not isinstance(item, dict):
            continue
        cid = item.get("Id")
        if not isinstance(cid, str) or len(cid) < 12 or len(cid) > 128:
            continue
        names = item.get("Names")
        first = names[0] if isinstance(names, list) and names else None
        name = first.lstrip("/") if isinstance(first, str) and first.strip("/") else cid[:12]
        labels = _dict(item.get("Labels"))
        found = {field: _str(labels.get(label)) for field, label in LABELS.items()}
        out.append(
            Container(
                cid,
                name,
                runtime,
                _str(item.get("Image")),
                found["compose_project"],
                found["compose_service"],
                found["pod"],
                found["namespace"],
                None,
                _addresses(item.get("NetworkSettings")),
                _published(item.get("Ports")),
                api,
                found["pod_uid"],
            )
        )
    return out


def parse_inspect(doc: Any) -> int | None:
    """``GET /containers/{id}/json`` decoded -> the container's main pid (None when it
    does not run).

    Raises:
        ParseError: the document is not an object.
    """
    if not isinstance(doc, dict):
        raise ParseError("the container is not a JSON object", text=str(doc)[:60])
    pid = _dict(doc.get("State")).get("Pid")
    if isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < 2**22:
        return pid
    return None

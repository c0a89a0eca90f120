"""What a port is, asked by every part of portkit that shows or judges one.

One owner of three answers that listings, scans, plans, the live view and the exporter
all need, so that they never disagree:

- :func:`service_name` / :func:`service_names`: the short name shown for a port
  (``5432/tcp`` is ``postgresql``, ``9092/tcp`` is ``kafka``). One ranking of the
  sources, the registry's own (the guide's table, then the DevOps defaults, then the
  Prometheus allocations, then IANA's assignments); lower-case, spaces dashed, never cut.
- :func:`port_role`: what the port is for in a deployment (database, cache, search,
  broker, admin, metrics, web, ...) from the ``role`` column of the curated tables, or
  from a container image's name, and whether publishing it on all interfaces deserves
  a warning, with the reason. :data:`ROLES` is that policy as a table.
- :func:`top_ports`: the ports a scan tries first.

The decisions are pure functions of index rows (:func:`best_name`, :func:`role_from`);
the rows come from :mod:`portkit.registry._store`.
"""

from __future__ import annotations

from portkit.errors import ParseError
from portkit.model import Endpoint, PortRange, Protocol, _Record
from portkit.registry import _store
from portkit.registry._index import SHARD_BITS
from portkit.registry._store import SOURCE_RANK, Entry

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from portkit.registry._index import ImageRow, Row

__all__ = [
    "ROLES",
    "Role",
    "best_name",
    "entries",
    "image_role",
    "parse_endpoint",
    "port_of",
    "port_role",
    "ports_matching",
    "role_from",
    "service_name",
    "service_names",
    "top_ports",
]

#: role -> (what it is, in words; why it should not listen on every interface, or None).
#: A role with a reason gets a warning when published on all interfaces, in the overview
#: and in ``plan lint`` alike (rules ``datastore-public`` and ``admin-public``).
ROLES: dict[str, tuple[str, str | None]] = {
    "database": ("database", "its data is one login (or none) away from anyone who reaches it"),
    "cache": ("cache", "caches usually run without authentication"),
    "search": ("search engine", "search engines usually run without authentication"),
    "broker": ("message broker", "anyone who reaches it can read or inject messages"),
    "admin": ("admin interface", "it controls the service, often without authentication"),
    "metrics": ("metrics endpoint", None),
    "monitoring": ("monitoring service", None),
    "web": ("web server", None),
    "remote-access": ("remote shell", None),
    "mail": ("mail server", None),
    "dns": ("DNS server", None),
    "file-transfer": ("file transfer", None),
    "control-plane": ("control plane", None),
    "network": ("network fabric", None),
    "ci": ("CI/CD or artifact service", None),
    "automation": ("configuration management", None),
    "auth": ("identity provider", None),
    "proxy": ("proxy", None),
    "storage": ("object or block storage", None),
    "compute": ("data processing", None),
}

#: The roles whose exposure ``plan lint`` reports as data stores (the rest with a reason
#: are ``admin-public``).
DATASTORE_ROLES = frozenset({"database", "cache", "search", "broker"})

_EVERYDAY = ("guide", "devops", "prometheus")
_SERVICE_STATUS = ("assigned", "everyday")


class Role(_Record):
    """What a port (or container image) is for, and whether exposing it is a risk.

    ``role`` is a key of :data:`ROLES` (``database``); ``product`` the name people use
    (``PostgreSQL``); ``decided_by`` ``port`` or ``image``; ``reason`` is None when
    listening on every interface is normal for this role.
    """

    __slots__ = ("port", "protocol", "role", "product", "decided_by", "reason")
    port: int | None
    protocol: str
    role: str
    product: str
    decided_by: str
    reason: str | None

    def __init__(
        self, port: int | None, protocol: str, role: str, product: str, decided_by: str
    ) -> None:
        self._init(
            port=port,
            protocol=protocol,
            role=role,
            product=product,
            decided_by=decided_by,
            reason=ROLES.get(role, (role, None))[1],
        )

    @property
    def kind(self) -> str:
        """The role in words: ``database``, ``message broker``, ``admin interface``."""
        return ROLES.get(self.role, (self.role, None))[0]

    @property
    def warn(self) -> bool:
        """True when publishing this port on all interfaces deserves a warning."""
        return self.reason is not None

    @property
    def datastore(self) -> bool:
        return self.role in DATASTORE_ROLES


# --- pure decisions ---------------------------------------------------------------


def _slug(name: str) -> str:
    return "-".join(name.lower().split())


def best_name(rows: Iterable[Row], protocol: str) -> str | None:
    """The name shown for a port among its index rows: the best-ranked source wins.

    >>> rows = [(9092, 9092, "tcp", "XmlIpcRegSvc", "", "iana", "assigned", "", ""),
    ...         (9092, 9092, "tcp", "kafka", "", "devops", "everyday", "", "broker")]
    >>> best_name(rows, "tcp")
    'kafka'
    """
    best: tuple[int, str] | None = None
    for row in rows:
        if (
            row[0] != row[1]
            or row[2] not in (protocol, "")
            or not row[3]
            or row[6] not in _SERVICE_STATUS
        ):
            continue
        rank = SOURCE_RANK[row[5]]
        if best is None or rank < best[0]:
            best = (rank, row[3])
    return _slug(best[1]) if best is not None else None


def _deciding_rows(rows: Iterable[Row], protocol: str) -> list[Row]:
    """The everyday rows that decide a port's role: the guide's if it names the port,
    else the DevOps defaults', else the Prometheus allocations'."""
    by_source: dict[str, list[Row]] = {}
    for row in rows:
        if row[0] == row[1] and row[2] in (protocol, "") and row[5] in _EVERYDAY and row[3]:
            by_source.setdefault(row[5], []).append(row)
    if "guide" in by_source:
        return by_source["guide"]
    for source in _EVERYDAY[1:]:
        with_role = [row for row in by_source.get(source, ()) if row[8]]
        if with_role:
            return with_role
    return []


def _image_match(image: str, images: Sequence[ImageRow]) -> ImageRow | None:
    """The image table's row for an image reference (``docker.io/bitnami/postgresql:16``,
    ``mcr.microsoft.com/mssql/server:2022-latest``): any path part, last first, that is a
    known name or starts with one and a dash or underscore."""
    path = image.split("@", 1)[0].lower()
    last = path.rsplit("/", 1)
    last[-1] = last[-1].split(":", 1)[0]
    parts = "/".join(last).split("/")
    for part in reversed(parts):
        for row in images:
            name = row[0]
            if part == name or part.startswith((name + "-", name + "_")):
                return row
    return None


def role_from(
    rows: Iterable[Row],
    port: int | None,
    protocol: str,
    image: str | None = None,
    images: Sequence[ImageRow] = (),
) -> Role | None:
    """The role of ``port`` from its index rows, with a container image to break ties.

    The guide's table decides where it names the port (8080 is ``web`` whatever else
    uses it). Otherwise a known image names the product: the role of that product's
    row for the port if there is one (15672 of ``rabbitmq:3-management`` is its admin
    interface), else the image's own role (``postgres`` on 15432 is a database; nginx
    on 9090 is a web server, not Prometheus). Without an image, the DevOps defaults
    with a role: if they agree, that role; if they disagree (9000: ClickHouse, MinIO,
    SonarQube, Keycloak) there is no answer, unless every role seen there deserves a
    warning (9093: Kafka's controller or Alertmanager), then the first, naming every
    product.
    A port the registry has no everyday role for is known by its image alone.

    >>> rows = [(9000, 9000, "tcp", "clickhouse-native", "", "devops", "everyday", "", "database"),
    ...         (9000, 9000, "tcp", "minio", "", "devops", "everyday", "", "storage")]
    >>> role_from(rows, 9000, "tcp") is None
    True
    >>> role_from(rows, 9000, "tcp", "clickhouse/clickhouse-server:24",
    ...           [("clickhouse", "ClickHouse", "database", "")]).product
    'ClickHouse'
    """
    deciding = _deciding_rows(rows, protocol)
    if deciding and deciding[0][5] == "guide":
        first = deciding[0]
        return Role(port, protocol, first[8], first[3], "port") if first[8] else None
    matched = _image_match(image, images) if image else None
    if matched is not None:
        # The image names the product; the port row of that product (if any) its role:
        # 15672 of a rabbitmq image is RabbitMQ's admin interface, not its broker port.
        flat = _flat(matched[0])
        own = [row for row in deciding if _flat(row[3]).startswith(flat)]
        role = own[0][8] if own else matched[2]
        return Role(port, protocol, role, matched[1], "image") if role else None
    roles = list(dict.fromkeys(row[8] for row in deciding))
    if len(roles) == 1:
        return Role(port, protocol, roles[0], deciding[0][3], "port")
    if roles and all(ROLES.get(role, ("", None))[1] for role in roles):
        # Every product seen on this port is one to keep off public interfaces.
        products = " or ".join(dict.fromkeys(row[3] for row in deciding))
        return Role(port, protocol, roles[0], products, "port")
    return None


def _flat(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


# --- the registry's answers -------------------------------------------------------

_names: dict[str, dict[int, str]] = {}
_known: dict[tuple[int, str], str | None] = {}
#: Above this many index shards to read, name every port at once from the whole row list.
_BULK_SHARDS = 64


def _full_names(protocol: str) -> dict[int, str]:
    names = _names.get(protocol)
    if names is None:
        by_port: dict[int, list[Row]] = {}
        for row in _store.all_rows():
            if row[0] is not None and row[0] == row[1]:
                by_port.setdefault(row[0], []).append(row)
        names = {}
        for port, rows in by_port.items():
            name = best_name(rows, protocol)
            if name:
                names[port] = name
        _names[protocol] = names
    return names


def service_names(ports: Iterable[int], protocol: str = "tcp") -> dict[int, str]:
    """``{port: name}`` for the ports of ``ports`` the registry names (see :func:`service_name`).

    A few ports are read from their index shards; many at once from the whole index,
    decoded once per process.
    """
    full = _names.get(protocol)
    wanted = set(ports) if full is None else ports
    if full is None:
        todo = {p for p in wanted if (p, protocol) not in _known}
        if len({p >> SHARD_BITS for p in todo}) > _BULK_SHARDS:
            full = _full_names(protocol)
    if full is not None:
        return {p: full[p] for p in wanted if p in full}
    out: dict[int, str] = {}
    known = _known
    for port in wanted:
        key = (port, protocol)
        if key not in known:
            if not 0 <= port <= 65535:
                known[key] = None
                continue
            rows = _store.shard(port >> SHARD_BITS).get(port, ())
            known[key] = best_name(rows, protocol)
        name = known[key]
        if name:
            out[port] = name
    return out


def service_name(port: int, protocol: str = "tcp") -> str | None:
    """The short name shown for ``port/protocol`` everywhere in portkit, or None.

    >>> service_name(22), service_name(53, "udp"), service_name(9092), service_name(9119)
    ('ssh', 'dns', 'kafka', 'bind-exporter')
    """
    return service_names((port,), protocol).get(port)


def entries(port: int, protocol: str | None = None) -> tuple[Entry, ...]:
    """Every registry entry about ``port`` (ranges holding it included), best source first.

    >>> [e.service for e in entries(9092, "tcp")]
    ['kafka', 'XmlIpcRegSvc']
    """
    found = [Entry(row) for row in _store.rows_for(PortRange(port))]
    if protocol is not None:
        found = [e for e in found if e.protocol in (protocol, "")]
    found.sort(key=Entry.sort_key)
    return tuple(found)


def port_role(port: int, protocol: str = "tcp", image: str | None = None) -> Role | None:
    """What ``port/protocol`` is for, and whether publishing it everywhere is a risk.

    ``image`` (a container image reference) breaks ties where the port is used by
    several products, and names the role of a port the registry does not know.

    >>> r = port_role(5432)
    >>> r.role, r.product, r.warn
    ('database', 'PostgreSQL', True)
    >>> port_role(15432, image="postgres:16").decided_by
    'image'
    """
    if not 0 <= port <= 65535:
        return None
    rows = _store.shard(port >> SHARD_BITS).get(port, ())
    return role_from(rows, port, protocol, image, _store.image_rows() if image else ())


def image_role(image: str) -> Role | None:
    """The role of a container image by its name alone (``redis:7`` is a cache)."""
    return role_from((), None, "tcp", image, _store.image_rows())


_ORDER = ("guide", "devops", "iana-well-known", "prometheus", "iana")
_top: dict[str, tuple[int, ...]] = {}


def top_ports(n: int, protocol: str = "tcp") -> tuple[int, ...]:
    """The ``n`` ports of ``protocol`` a scan tries first, by portkit's registry.

    The guide's table of common ports, then the DevOps everyday defaults (Kubernetes,
    databases, queues, monitoring), then IANA's assigned well-known ports, then the
    Prometheus exporter allocations, then the rest of IANA's assigned ports. There is
    no traffic-frequency data behind it (nmap-services has that, and it is not
    shipped): it is the ports DevOps engineers meet first.

    >>> top_ports(3)
    (20, 21, 22)
    """
    if n < 1:
        raise ParseError(f"--top needs at least 1, got {n}", text=str(n), accepted="1 or more")
    ranked = _top.get(protocol)
    if ranked is None:
        buckets: dict[str, list[int]] = {k: [] for k in _ORDER}
        for row in _store.all_rows():
            port = row[0]
            if (
                port is None
                or port != row[1]
                or port == 0
                or row[2] != protocol
                or row[6] not in _SERVICE_STATUS
            ):
                continue
            key = row[5]
            if key == "iana" and port <= 1023:
                key = "iana-well-known"
            buckets[key].append(port)
        seen: dict[int, None] = {}
        for key in _ORDER:
            ports = buckets[key] if key in ("guide", "devops") else sorted(buckets[key])
            seen.update(dict.fromkeys(ports))
        ranked = _top[protocol] = tuple(seen)
    return ranked[:n]


# --- names to ports ---------------------------------------------------------------

_by_name: dict[str, dict[str, list[tuple[int, int]]]] = {}


def _name_key(name: str) -> str:
    return "-".join(name.lower().replace("_", "-").split())


def _ports_by_name(protocol: str) -> dict[str, list[tuple[int, int]]]:
    """``{name: [(source rank, port), ...]}`` of every single-port service of ``protocol``."""
    table = _by_name.get(protocol)
    if table is None:
        table = {}
        for row in _store.all_rows():
            port = row[0]
            if (
                port is None
                or port != row[1]
                or not port
                or row[2] not in (protocol, "")
                or not row[3]
                or row[6] not in _SERVICE_STATUS
            ):
                continue
            table.setdefault(_name_key(row[3]), []).append((SOURCE_RANK[row[5]], port))
        _by_name[protocol] = table
    return table


def port_of(name: str, protocol: str = "tcp") -> int:
    """The port a service name stands for, as Go's ``net`` and nmap read ``db:postgresql``.

    The registry's everyday names and IANA's assignments are both names (``postgresql``,
    ``http``, ``domain``), and so are lookup's aliases (``postgres``, ``dns``). Where a
    name has several ports, the best-ranked source decides (the guide, the DevOps
    defaults, the Prometheus allocations, IANA); where that source itself lists several,
    the name is ambiguous.

    >>> port_of("postgresql"), port_of("postgres"), port_of("http"), port_of("dns", "udp")
    (5432, 5432, 80, 53)

    Raises:
        ParseError: an unknown name (with the closest names) or an ambiguous one (with
        its ports).
    """
    key = _name_key(name)
    table = _ports_by_name(protocol)
    candidates = [key, *(_name_key(a) for a in _store.ALIASES.get(key, ()))]
    for candidate in candidates:
        found = table.get(candidate)
        if not found:
            continue
        best = min(rank for rank, _ in found)
        ports = sorted({port for rank, port in found if rank == best})
        if len(ports) == 1:
            return ports[0]
        raise ParseError(
            f"service name {name!r} is ambiguous for {protocol}: ports "
            + ", ".join(map(str, ports)),
            text=name,
            accepted="one of those port numbers",
        )
    import difflib

    close = difflib.get_close_matches(key, table.keys(), n=4, cutoff=0.75)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ParseError(
        f"unknown service name {name!r} for {protocol}{hint}",
        text=name,
        accepted="a port number or a service name from portkit lookup",
    )


def ports_matching(pattern: str, protocol: str = "tcp") -> tuple[int, ...]:
    """The ports whose service names match a shell pattern (``http*``), as nmap's
    ``-p http*``; a plain name is :func:`port_of`.

    >>> 80 in ports_matching("http*") and 8080 in ports_matching("http*")
    True

    Raises:
        ParseError: a pattern that matches nothing.
    """
    if not any(c in pattern for c in "*?["):
        return (port_of(pattern, protocol),)
    import fnmatch

    key = _name_key(pattern)
    table = _ports_by_name(protocol)
    ports = sorted(
        {p for name, found in table.items() if fnmatch.fnmatchcase(name, key) for _, p in found}
    )
    if not ports:
        raise ParseError(
            f"no service name matches {pattern!r} for {protocol}",
            text=pattern,
            accepted="a service name pattern such as http*",
        )
    return tuple(ports)


def parse_endpoint(text: str) -> Endpoint:
    """``Endpoint.parse`` that also takes a service name where the port goes:
    ``db:postgresql``, ``localhost:http``, ``[::1]:domain/udp`` (see :func:`port_of`).

    >>> str(parse_endpoint("db:postgresql")), str(parse_endpoint("ns1:domain/udp"))
    ('db:5432/tcp', 'ns1:53/udp')

    Raises:
        ParseError: as ``Endpoint.parse``, or an unknown or ambiguous service name.
    """
    try:
        return Endpoint.parse(text)
    except ParseError:
        raw = text.strip()
        body, slash, proto_text = raw.rpartition("/")
        if not slash or not proto_text.isalpha():
            body, proto_text = raw, ""
        host, sep, port_text = body.rpartition(":")
        if not sep or not port_text or port_text.isdigit() or not host:
            raise
        if not all(c.isalnum() or c in "-_." for c in port_text):
            raise
        protocol = Protocol.parse(proto_text) if proto_text else Protocol.TCP
        port = port_of(port_text, protocol.value)
    return Endpoint.parse(f"{host}:{port}/{protocol.value}")

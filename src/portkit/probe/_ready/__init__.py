"""Readiness handshakes: is the service behind an open port *serving*?

An open port is not a ready service: Postgres accepts TCP long before it accepts
sessions, a Redis loading its dataset answers ``-LOADING``. Each protocol here is a
pure, sans-I/O codec (``_base.Codec``: bytes out, bytes in, a :class:`Verdict` out)
that sends the smallest request proving the service serves; one I/O driver
(``_driver``) runs any of them over a connected socket with a deadline.

* ``_http``: HTTP/1.1 (status set, body regex); ``_tls``: TLS handshake verdicts
* ``_grpc``: grpc.health.v1 over HTTP/2 (the optional ``h2`` library)
* ``_kv``: Redis, memcached; ``_sql``: PostgreSQL, MySQL/MariaDB; ``_mongo``: MongoDB
* ``_broker``: AMQP 0-9-1, Kafka; ``_greeting``: SMTP, FTP, SSH, POP3, IMAP, NATS
* ``_dns``: DNS over UDP and TCP; ``_ldap``: LDAP anonymous bind

:data:`PROTOCOLS` is the table of names -> codecs; ``--proto auto`` picks one from
the port's everyday service in portkit's registry (:func:`auto_protocol`).

    >>> protocol("postgresql").name, protocol("https").tls
    ('postgres', True)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portkit.errors import ParseError, UsageError
from portkit.model import _Record
from portkit.probe._ready._base import (
    Codec,
    Options,
    ReadyState,
    Verdict,
    parse_statuses,
    printable,
)
from portkit.probe._ready._broker import AmqpCodec, KafkaCodec
from portkit.probe._ready._dns import DnsCodec
from portkit.probe._ready._greeting import (
    FtpCodec,
    ImapCodec,
    NatsCodec,
    Pop3Codec,
    SmtpCodec,
    SshCodec,
)
from portkit.probe._ready._http import HttpCodec
from portkit.probe._ready._kv import MemcachedCodec, RedisCodec
from portkit.probe._ready._ldap import LdapCodec
from portkit.probe._ready._mongo import MongoCodec
from portkit.probe._ready._sql import MysqlCodec, PostgresCodec

if TYPE_CHECKING:
    from collections.abc import Callable

    from portkit.probe._ready._grpc import GrpcCodec

__all__ = [
    "ALIASES",
    "PROTOCOLS",
    "Codec",
    "Options",
    "ReadyState",
    "Spec",
    "Verdict",
    "auto_protocol",
    "judge_datagram",
    "parse_statuses",
    "protocol",
    "protocol_names",
]


def _grpc_codec(opts: Options) -> Codec:
    # Imported here: h2 is an optional extra, needed only when gRPC is asked for.
    from portkit.probe._ready._grpc import GrpcCodec

    return GrpcCodec(opts)


def _grpcs_codec(opts: Options) -> Codec:
    from portkit.probe._ready._grpc import GrpcCodec

    codec: GrpcCodec = GrpcCodec(opts)
    return codec.over_tls()


class Spec(_Record):
    """One protocol a handshake can speak.

    ``make`` builds its codec from :class:`Options` (None: the TLS handshake is the
    whole check); ``tls``: the codec runs inside TLS (https, imaps, ...); ``udp``:
    it may also run over UDP (DNS).
    """

    __slots__ = ("name", "make", "tls", "udp", "about")
    name: str
    make: Callable[[Options], Codec] | None
    tls: bool
    udp: bool
    about: str

    def __init__(
        self,
        name: str,
        make: Callable[[Options], Codec] | None,
        about: str,
        *,
        tls: bool = False,
        udp: bool = False,
    ) -> None:
        self._init(name=name, make=make, tls=tls, udp=udp, about=about)

    def codec(self, opts: Options) -> Codec | None:
        return None if self.make is None else self.make(opts)


#: Protocol name -> what ``--proto NAME`` runs.
PROTOCOLS: dict[str, Spec] = {
    s.name: s
    for s in (
        Spec("http", HttpCodec, "GET PATH: a status in the accepted set (and a body match)"),
        Spec("https", HttpCodec, "TLS, then http", tls=True),
        Spec("tls", None, "a TLS handshake; the certificate's days left (--min-days)", tls=True),
        Spec("grpc", _grpc_codec, "grpc.health.v1 Check over h2c: SERVING"),
        Spec("grpcs", _grpcs_codec, "grpc.health.v1 Check inside TLS", tls=True),
        Spec("redis", RedisCodec, "PING: PONG; -LOADING, -MASTERDOWN not ready"),
        Spec("rediss", RedisCodec, "TLS, then redis", tls=True),
        Spec("postgres", PostgresCodec, "StartupMessage: an auth request; 57P03, 53300 not"),
        Spec("mysql", MysqlCodec, "the server's greeting; ERR 1040, 1129 not ready"),
        Spec("mongodb", MongoCodec, "OP_MSG hello: ok 1"),
        Spec("amqp", AmqpCodec, "protocol header: Connection.Start"),
        Spec("amqps", AmqpCodec, "TLS, then amqp", tls=True),
        Spec("kafka", KafkaCodec, "ApiVersions: error_code 0"),
        Spec("smtp", SmtpCodec, "greeting 220; 421, 554 not ready"),
        Spec("smtps", SmtpCodec, "TLS, then smtp", tls=True),
        Spec("ftp", FtpCodec, "greeting 220; 120, 421 not ready"),
        Spec("ssh", SshCodec, "version line SSH-2.0-"),
        Spec("pop3", Pop3Codec, "greeting +OK"),
        Spec("pop3s", Pop3Codec, "TLS, then pop3", tls=True),
        Spec("imap", ImapCodec, "greeting * OK / * PREAUTH; * BYE not ready"),
        Spec("imaps", ImapCodec, "TLS, then imap", tls=True),
        Spec("dns", DnsCodec, "a query (UDP or TCP) answered with any RCODE but FORMERR", udp=True),
        Spec("memcached", MemcachedCodec, "version: VERSION"),
        Spec("ldap", LdapCodec, "anonymous bind: a BindResponse; busy, unavailable not"),
        Spec("ldaps", LdapCodec, "TLS, then ldap", tls=True),
        Spec("nats", NatsCodec, "greeting INFO; -ERR not ready"),
    )
}

#: Other names people (and portkit's registry) use -> the protocol's name.
ALIASES: dict[str, str] = {
    "postgresql": "postgres",
    "pg": "postgres",
    "mariadb": "mysql",
    "mongo": "mongodb",
    "domain": "dns",
    "http-alt": "http",
    "https-alt": "https",
    "rabbitmq-amqp": "amqp",
    "rabbitmq-amqps": "amqps",
    "submission": "smtp",
    "submissions": "smtps",
    "urd": "smtps",  # 465/tcp: IANA's name for it beside submissions (RFC 8314)
    "memcache": "memcached",
    # Services whose everyday port speaks HTTP (their health endpoints are HTTP).
    "prometheus": "http",
    "alertmanager": "http",
    "grafana": "http",
    "elasticsearch": "http",
    "opensearch": "http",
    "kibana": "http",
    "consul": "http",
    "vault": "http",
    "couchdb": "http",
    "node-exporter": "http",
}


def protocol_names() -> list[str]:
    """Every name ``--proto`` takes, sorted (``auto`` not included)."""
    return sorted({*PROTOCOLS, *ALIASES})


def protocol(name: str, *, tls: bool = False, udp: bool = False) -> Spec:
    """The protocol called ``name`` (an alias too); ``tls`` asks for its TLS variant.

    Raises:
        ParseError: an unknown name (the message lists the known ones).
        UsageError: a protocol that cannot run over UDP, or TLS over UDP.
    """
    key = name.strip().lower()
    spec = PROTOCOLS.get(ALIASES.get(key, key))
    if spec is None:
        raise ParseError(
            f"unknown protocol {name!r}",
            text=name,
            accepted="auto, " + ", ".join(sorted(PROTOCOLS)),
        )
    if tls and not spec.tls:
        variant = PROTOCOLS.get(spec.name + "s")
        if spec.name == "http":
            variant = PROTOCOLS["https"]
        if variant is None or not variant.tls:
            raise UsageError(f"--proto {spec.name} has no TLS variant")
        spec = variant
    if udp and not spec.udp:
        raise UsageError(f"--proto {spec.name} does not run over UDP (only dns does)")
    if udp and spec.tls:
        raise UsageError("TLS over UDP (DTLS) is not a readiness handshake portkit speaks")
    return spec


def auto_protocol(port: int, transport: str = "tcp") -> Spec | None:
    """The protocol of ``port``'s everyday service in portkit's registry, or None.

    >>> auto_protocol(5432).name, auto_protocol(53, "udp").name, auto_protocol(1)
    ('postgres', 'dns', None)
    """
    from portkit.registry import service_name

    name = service_name(port, transport) or ""
    spec = PROTOCOLS.get(ALIASES.get(name, name))
    if spec is None or (transport == "udp" and not spec.udp):
        return None
    return spec


def judge_datagram(spec: Spec, opts: Options, reply: bytes) -> Verdict:
    """The verdict on one UDP reply to ``spec``'s request (the request went out with the
    probe). Pure; a reply that does not parse is ``not-this-protocol``."""
    from portkit.errors import ProtocolError

    codec = spec.codec(opts)
    assert codec is not None
    codec.start()
    try:
        found = codec.feed(reply) if reply else None
        return found if found is not None else codec.feed(b"") or codec.other()
    except ProtocolError as exc:
        return Verdict(spec.name, ReadyState.NOT_THIS_PROTOCOL, printable(str(exc)))

"""portkit's one exception tree.

Every error portkit raises on purpose derives from :class:`PortkitError`. Each class
carries the command-line exit code it maps to, so the CLI translates errors in one
place (``portkit.cli``) and never prints a traceback for them::

    PortkitError                 exit 3  an environment failure
    ├── ParseError (ValueError)  exit 2  bad input: names the bad part and what is accepted
    ├── UsageError               exit 2  a valid value in a combination that makes no sense
    ├── RegistryError            exit 3  the packaged port data is missing or damaged
    ├── PermissionDenied         exit 3  the OS refused; says what privilege is missing
    ├── ResourceExhausted        exit 3  out of file descriptors, ports, memory
    ├── Unsupported              exit 3  this system cannot do it (a Linux-only feature)
    ├── ProbeError               exit 3  a probe could not be sent (no route, bad family)
    │   ├── ProbeTimeout         exit 1  a deadline passed before the answer
    │   └── ProtocolError        exit 1  a peer's bytes do not parse as the protocol asked for
    ├── ForwardError             exit 3  a forwarder could not listen or relay
    └── PlanError                exit 2  a plan file cannot be read at all

OS errors are turned into these at one boundary per capability, always with
``raise X(...) from exc`` so the original errno stays on ``__cause__``.
"""

from __future__ import annotations

# Not `from typing import ...`: importing typing costs ~9 ms at start-up.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

__all__ = [
    "ForwardError",
    "ParseError",
    "PermissionDenied",
    "PlanError",
    "PortkitError",
    "ProbeError",
    "ProbeTimeout",
    "ProtocolError",
    "RegistryError",
    "ResourceExhausted",
    "Unsupported",
    "UsageError",
]


class PortkitError(Exception):
    """Base of every error portkit raises on purpose."""

    #: The exit code the command line uses for this error.
    exit_code: ClassVar[int] = 3


class ParseError(PortkitError, ValueError):
    """Text that does not parse.

    Args:
        message: what was wrong, naming the bad part.
        text: the whole input that was being parsed.
        part: the part of ``text`` that is wrong (may equal ``text``).
        accepted: a short description of what is accepted instead.

    >>> str(ParseError("port 70000 is out of range", text="70000", accepted="0-65535"))
    'port 70000 is out of range (accepted: 0-65535)'
    """

    exit_code: ClassVar[int] = 2

    def __init__(self, message: str, *, text: str = "", part: str = "", accepted: str = "") -> None:
        self.message = message
        self.text = text
        self.part = part or text
        self.accepted = accepted
        super().__init__(f"{message} (accepted: {accepted})" if accepted else message)


class UsageError(PortkitError):
    """Arguments that parse but do not go together."""

    exit_code: ClassVar[int] = 2


class RegistryError(PortkitError):
    """The packaged port registry is missing or cannot be read."""


class PermissionDenied(PortkitError):
    """The OS refused an operation.

    Args:
        message: what could not be done.
        needed: the privilege or capability that is missing (e.g. ``root or CAP_NET_ADMIN``).
    """

    def __init__(self, message: str, *, needed: str = "") -> None:
        self.needed = needed
        super().__init__(f"{message}: needs {needed}" if needed else message)


class ResourceExhausted(PortkitError):
    """Out of a bounded resource: file descriptors, free ports, memory."""


class Unsupported(PortkitError):
    """A feature this operating system does not have (network namespaces, sock_diag,
    BPF, nftables and containers are Linux's).

    Args:
        feature: what was asked for (``network namespaces``).
        platform: the system's name (``sys.platform``).
    """

    def __init__(self, feature: str, platform: str) -> None:
        self.feature = feature
        self.platform = platform
        super().__init__(f"{feature} need Linux; this system is {platform}")


class ProbeError(PortkitError):
    """A probe could not be sent at all (as opposed to a port that answered 'closed')."""

    def __init__(
        self, message: str, *, host: str = "", port: int | None = None, errno: int | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.errno = errno
        super().__init__(message)


class ProbeTimeout(ProbeError):
    """A deadline passed before an answer came."""

    exit_code: ClassVar[int] = 1


class ProtocolError(ProbeError):
    """A peer answered, but not in the protocol a readiness handshake asked for.

    Raised by the pure codecs of ``portkit.probe._ready`` for bytes they cannot read
    (a truncated frame, a length out of bounds, an unknown type); the handshake
    driver reports it as the verdict ``not-this-protocol``.

    Args:
        message: what did not parse.
        protocol: the protocol's name (``postgres``, ``redis``, ...).
    """

    exit_code: ClassVar[int] = 1

    def __init__(self, message: str, *, protocol: str = "") -> None:
        self.protocol = protocol
        super().__init__(f"{protocol}: {message}" if protocol else message)


class ForwardError(PortkitError):
    """A forwarder could not listen, connect or relay."""


class PlanError(PortkitError):
    """A plan, compose or Kubernetes file that cannot be read at all."""

    exit_code: ClassVar[int] = 2

    def __init__(self, message: str, *, file: str = "", line: int | None = None) -> None:
        self.file = file
        self.line = line
        super().__init__(message)

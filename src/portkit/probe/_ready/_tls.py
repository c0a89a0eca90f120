"""TLS readiness: a handshake that completes, with a certificate that is not about to expire.

Pure decisions over what the handshake showed. The handshake itself is
``probe/_session.tls_handshake`` (``ssl.MemoryBIO``, the one ``check --tls`` uses),
and the certificate fields come from ``probe/_x509`` (DER read without a
cryptography dependency); the driver runs them and hands the results here.
Verification against the system CAs is reported (``detail``), not required: a
health check of ``127.0.0.1:8443`` has no name to verify.

    >>> from portkit.probe._records import TlsInfo
    >>> tls_verdict(TlsInfo(version="TLSv1.3", cipher="x", days_left=3), 30).reason
    'the certificate expires in 3 days (--min-days 30)'
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from portkit.probe._ready._base import ReadyState, Verdict

if TYPE_CHECKING:
    from portkit.probe._records import TlsInfo

__all__ = ["tls_error_verdict", "tls_verdict"]

#: OpenSSL's reasons that mean the peer does not speak TLS at all (it answered in
#: plain text, or with a record no TLS stack sends).
_NOT_TLS = (
    "WRONG_VERSION_NUMBER",
    "UNKNOWN_PROTOCOL",
    "HTTP_REQUEST",
    "HTTPS_PROXY_REQUEST",
    "PACKET_LENGTH_TOO_LONG",
    "RECORD_LAYER_FAILURE",
    "UNEXPECTED_RECORD",
    "record layer failure",
    "wrong version number",
)


def tls_verdict(info: TlsInfo, min_days: int | None, proto: str = "tls") -> Verdict:
    """Ready when the handshake completed and the certificate has ``min_days`` left."""
    detail = f"{info.version}, " + (
        "verified" if info.verified else f"not verified: {info.verify_error or 'unknown'}"
    )
    days = info.days_left
    if min_days is not None and days is not None and days < min_days:
        what = "expired" if days < 0 else f"expires in {days} days"
        reason = (
            f"the certificate expired {-days} days ago (--min-days {min_days})"
            if days < 0
            else f"the certificate {what} (--min-days {min_days})"
        )
        return Verdict(proto, ReadyState.NOT_READY, reason, code=days, detail=detail)
    if min_days is not None and days is None:
        return Verdict(proto, ReadyState.NOT_READY, "no certificate expiry to check", detail=detail)
    left = "" if days is None else f"certificate: {days} days left"
    return Verdict(proto, ReadyState.READY, left, code=days, detail=detail)


def tls_error_verdict(reason: str, message: str, proto: str = "tls") -> Verdict:
    """The verdict for a failed handshake: OpenSSL's ``reason`` and its ``message``.

    >>> tls_error_verdict("WRONG_VERSION_NUMBER", "wrong version number").state.value
    'not-this-protocol'
    """
    if any(mark in reason or mark in message for mark in _NOT_TLS):
        return Verdict(proto, ReadyState.NOT_THIS_PROTOCOL, f"not TLS: {message or reason}")
    return Verdict(proto, ReadyState.NOT_READY, f"TLS handshake failed: {message or reason}")

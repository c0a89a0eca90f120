"""DNS readiness: a query gets an answer, over UDP or TCP. Pure.

The query asks for the root's NS records (``. NS``, RFC 1035 section 4.1) with
recursion desired: every server can answer it, if only with REFUSED. Any RCODE but
FORMERR counts as serving (NXDOMAIN, SERVFAIL and REFUSED come from a server that
reads queries); FORMERR says it could not read ours. Over TCP every message has a
two-byte length in front (RFC 1035 section 4.2.2, RFC 7766).

    >>> from portkit.probe._ready._base import Options
    >>> c = DnsCodec(Options(tcp=False))
    >>> q = c.start()
    >>> c.feed(q[:2] + b"\\x81\\x85" + bytes(8)).reason
    'REFUSED'
"""

from __future__ import annotations

from portkit.probe._ready._base import Codec, Verdict

__all__ = ["RCODES", "DnsCodec"]

#: RCODE -> its name (RFC 1035 4.1.1, RFC 2136, RFC 6895).
RCODES: dict[int, str] = {
    0: "NOERROR",
    1: "FORMERR",
    2: "SERVFAIL",
    3: "NXDOMAIN",
    4: "NOTIMP",
    5: "REFUSED",
    6: "YXDOMAIN",
    7: "YXRRSET",
    8: "NXRRSET",
    9: "NOTAUTH",
    10: "NOTZONE",
}

_TXID = b"pk"


def _query() -> bytes:
    # id, flags (RD), QDCOUNT 1, AN/NS/AR 0; QNAME "." (a zero byte), QTYPE NS, QCLASS IN
    return _TXID + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + b"\x00" + b"\x00\x02\x00\x01"


class DnsCodec(Codec):
    name = "dns"
    limit = 65535 + 2

    def start(self) -> bytes:
        q = _query()
        return len(q).to_bytes(2, "big") + q if self.opts.tcp else q

    def judge(self, final: bool) -> Verdict | None:
        msg = self.buf
        if self.opts.tcp:
            if len(msg) < 2:
                return None if not final else self.other()
            size = int.from_bytes(msg[:2], "big")
            if size < 12:
                return self.other()
            if len(msg) < 2 + size and not final:
                return None if len(msg) < 14 else self._header(msg[2:14])
            msg = msg[2 : 2 + size]
        if len(msg) < 12:
            return None if not final and self.opts.tcp else self.other()
        return self._header(msg[:12])

    def _header(self, head: bytes) -> Verdict:
        if head[:2] != _TXID or not head[2] & 0x80:  # our id, and QR: a response
            return self.other("not an answer to our DNS query")
        rcode = head[3] & 0x0F
        name = RCODES.get(rcode, f"RCODE {rcode}")
        if rcode == 1:
            return self.not_ready("FORMERR: the server could not read the query", code=rcode)
        return self.ready(name, code=rcode, detail=f"{int.from_bytes(head[6:8], 'big')} answers")

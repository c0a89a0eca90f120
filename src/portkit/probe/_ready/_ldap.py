"""LDAP readiness: an anonymous simple bind and its BindResponse (RFC 4511). Pure.

The request is ``LDAPMessage { messageID 1, BindRequest { version 3, name "",
simple "" } }`` (RFC 4511 sections 4.1.1, 4.2; RFC 4513 section 5.1.1: anonymous).
``success`` is ready; ``busy`` (51), ``unavailable`` (52) and ``unwillingToPerform``
(53) are not; a server that refuses anonymous binds (``inappropriateAuthentication``
48, ``confidentialityRequired`` 13, ...) is serving and needs auth. A Notice of
Disconnection (section 4.4.1, messageID 0) is not ready, with its message.

    >>> LdapCodec().feed(bytes.fromhex("300c02010161070a010004000400")).state.value
    'ready'
"""

from __future__ import annotations

from portkit.probe._ready._base import Codec, ReadyState, Verdict, printable

__all__ = ["LDAP_RESULTS", "LdapCodec", "ber_element"]

#: resultCode -> (name, readiness) for the codes a bind may return (RFC 4511 A.1).
LDAP_RESULTS: dict[int, tuple[str, ReadyState]] = {
    0: ("success", ReadyState.READY),
    2: ("protocolError", ReadyState.NOT_READY),
    7: ("authMethodNotSupported", ReadyState.READY),
    8: ("strongerAuthRequired", ReadyState.READY),
    13: ("confidentialityRequired", ReadyState.READY),
    48: ("inappropriateAuthentication", ReadyState.READY),
    49: ("invalidCredentials", ReadyState.READY),
    50: ("insufficientAccessRights", ReadyState.READY),
    51: ("busy", ReadyState.NOT_READY),
    52: ("unavailable", ReadyState.NOT_READY),
    53: ("unwillingToPerform", ReadyState.NOT_READY),
    80: ("other", ReadyState.NOT_READY),
}

BIND_REQUEST = bytes.fromhex("300c020101600702010304008000")


def ber_element(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(tag, start of content, end of content) of the BER element at ``pos``, or None
    when ``data`` ends first. Raises ValueError for a length BER does not allow here."""
    if pos + 2 > len(data):
        return None
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4:
            raise ValueError("indefinite or oversized BER length")
        if pos + n > len(data):
            return None
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        return None
    return tag, pos, pos + length


class LdapCodec(Codec):
    name = "ldap"
    limit = 8192
    farewell = bytes.fromhex("30050201024200")  # UnbindRequest, messageID 2

    def start(self) -> bytes:
        return BIND_REQUEST

    def judge(self, final: bool) -> Verdict | None:
        buf = self.buf
        if buf[:1] != b"\x30":
            return self.other()
        try:
            return self._read(buf, final)
        except ValueError as exc:
            raise self.error(str(exc)) from None

    def _read(self, buf: bytes, final: bool) -> Verdict | None:
        outer = ber_element(buf, 0)
        if outer is None:
            if final or len(buf) >= self.limit:
                raise ValueError("LDAPMessage cut short")
            return None
        _, start, end = outer
        msgid = ber_element(buf, start)
        if msgid is None or msgid[0] != 0x02 or msgid[2] > end:
            raise ValueError("no messageID")
        op = ber_element(buf, msgid[2])
        if op is None or op[2] > end:
            raise ValueError("no protocolOp")
        tag, os, oe = op
        if tag not in (0x61, 0x78):  # BindResponse, ExtendedResponse (notice)
            return self.other(f"LDAP answered with operation tag 0x{tag:02x}, not a bind")
        code_el = ber_element(buf, os)
        if code_el is None or code_el[0] != 0x0A or code_el[2] > oe:
            raise ValueError("no resultCode")
        code = int.from_bytes(buf[code_el[1] : code_el[2]], "big")
        texts = []
        pos = code_el[2]
        for _ in range(2):  # matchedDN, diagnosticMessage
            el = ber_element(buf, pos)
            if el is None or el[2] > oe:
                break
            texts.append(buf[el[1] : el[2]])
            pos = el[2]
        message = printable(texts[1]) if len(texts) == 2 else ""
        name, state = LDAP_RESULTS.get(code, (f"resultCode {code}", ReadyState.NOT_READY))
        if tag == 0x78:  # Notice of Disconnection: the server is going away
            state = ReadyState.NOT_READY
        if state is ReadyState.NOT_READY:
            return self.not_ready(f"{name}: {message}" if message else name, code=code)
        if code == 0:
            return self.ready("anonymous bind accepted", code=code)
        return self.ready("serving, needs auth", code=code, detail=message or name)

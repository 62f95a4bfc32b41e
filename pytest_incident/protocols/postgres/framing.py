# PostgreSQL wire protocol (3.0), framing: one direction's bytes, in any chunks, become typed
# (type, body) messages; `_Reader` takes a body's fields apart in order. The untyped messages
# that open a connection (SSLRequest, GSSENCRequest, CancelRequest, the startup message) are
# told apart by their codes here and read by the session; the proxy owns the sockets and
# answers SSLRequest/GSSENCRequest with `refuse_encryption_reply()`.
#
# Strategy: a message's five-byte header (type, length) is checked against the direction's
# known types and MAX_MESSAGE before its body is awaited; bodies of types the session does not
# read are dropped as they arrive (the message is still reported, with an empty body), so
# DataRow and CopyData are never buffered whatever their size.
#
# Invariants: bytes that are not this protocol raise PostgresProtocolError (a ProtocolError),
# never anything looser; a kept message is returned only once its whole body is in, and
# messages come out in the order they were sent.
from __future__ import annotations

import struct

from pytest_incident.model.errors import ProtocolError

SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
MAX_STARTUP = 10_000  # the server's limit for a startup packet
MAX_MESSAGE = 1 << 30  # and, roughly, for any other message

FRONTEND_TYPES = b"BCdcfDEHFpPQSX"
BACKEND_TYPES = b"RKSZCENAI123tTnDsGHWdcVv"


def refuse_encryption_reply() -> bytes:
    """The server's answer turning down SSLRequest or GSSENCRequest: the client goes on in
    plain text with its startup message."""
    return b"N"


class PostgresProtocolError(ProtocolError):
    """The bytes are not the PostgreSQL protocol this parser follows."""


class _Reader:
    """Fields of one message body, in order."""

    def __init__(self, body: bytes, encoding: str = "utf-8") -> None:
        self.body = body
        self.pos = 0
        self.encoding = encoding

    def int16(self) -> int:
        (value,) = struct.unpack_from("!h", self.body, self.pos)
        self.pos += 2
        return int(value)

    def int32(self) -> int:
        (value,) = struct.unpack_from("!i", self.body, self.pos)
        self.pos += 4
        return int(value)

    def uint32(self) -> int:
        (value,) = struct.unpack_from("!I", self.body, self.pos)
        self.pos += 4
        return int(value)

    def raw(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.body):
            raise PostgresProtocolError("message shorter than its fields")
        value = self.body[self.pos : self.pos + size]
        self.pos += size
        return value

    def cstring(self) -> str:
        end = self.body.find(b"\0", self.pos)
        if end < 0:
            raise PostgresProtocolError("string without its terminating NUL")
        value = self.body[self.pos : end].decode(self.encoding, "replace")
        self.pos = end + 1
        return value


class _Frames:
    """Splits one direction's bytes into (type, body) messages. Bodies of types not in `kept`
    are dropped as they arrive (never buffered: DataRow and CopyData may be large)."""

    def __init__(self, known: bytes, kept: bytes) -> None:
        self._known = known
        self._kept = kept
        self._buf = bytearray()
        self._skipping = b""  # type of the message being dropped
        self._skip = 0  # its body bytes still to come

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        self._buf += data
        out: list[tuple[bytes, bytes]] = []
        while True:
            if self._skipping:
                size = min(self._skip, len(self._buf))
                del self._buf[:size]
                self._skip -= size
                if self._skip:
                    return out
                out.append((self._skipping, b""))
                self._skipping = b""
            if len(self._buf) < 5:
                return out
            kind = bytes(self._buf[:1])
            if kind not in self._known:
                raise PostgresProtocolError(f"unknown message type {kind!r}")
            (length,) = struct.unpack_from("!i", self._buf, 1)
            if length < 4 or length > MAX_MESSAGE:
                raise PostgresProtocolError(f"message {kind!r} with length {length}")
            if kind not in self._kept:
                del self._buf[:5]
                self._skipping, self._skip = kind, length - 4
                continue
            if len(self._buf) < 1 + length:
                return out
            out.append((kind, bytes(self._buf[5 : 1 + length])))
            del self._buf[: 1 + length]


def _error_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse/NoticeResponse fields by their code: S, V, C, M, P, ..."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        end = body.find(b"\0", pos + 1)
        if end < 0:
            raise PostgresProtocolError("error field without its terminating NUL")
        fields[chr(body[pos])] = body[pos + 1 : end].decode("utf-8", "replace")
        pos = end + 1
    return fields

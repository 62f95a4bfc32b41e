# The Redis protocol, sans-I/O: RESP framing both ways and one connection's state.
#
# `CommandReader` frames a client's bytes into commands and `encode_reply` frames replies
# (RESP2, or RESP3 after HELLO 3); `Session` follows one connection's state and says which
# commands took effect, given each command's reply (a MULTI's commands take effect at an EXEC
# that ran, each unless its own reply is an error; a DISCARDed or aborted EXEC drops them);
# `local_reply` answers what fakeredis lacks or should not decide (AUTH with any password,
# INFO, CONFIG GET). Which commands enqueue a job is jobs.py's; the stub (runtime/stubs/jobs.py)
# owns the sockets and fakeredis.
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_incident.model.errors import ProtocolError

Command = tuple[bytes, ...]

MAX_INLINE = 64 * 1024  # Redis's limit for an inline command line
MAX_BULK = 512 * 1024 * 1024


class RedisProtocolError(ProtocolError):
    """The client's bytes are not RESP; the server answers with an error and closes."""


@dataclass(frozen=True)
class ErrorReply:
    """An error reply, with its code: "WRONGTYPE Operation against a key holding ..."."""

    text: str


class _NoReply:
    def __repr__(self) -> str:
        return "NO_REPLY"


NO_REPLY: Any = _NoReply()  # the command got no reply (CLIENT REPLY OFF/SKIP)


@dataclass(frozen=True)
class Push:
    """An out-of-band RESP3 message (pub/sub): framed with `>` instead of `*`."""

    items: Sequence[Any]


# ---------------------------------------------------------------------------------------------
# Framing


class CommandReader:
    """Incremental RESP request parser: `feed` bytes, get the complete commands back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Command]:
        self._buf += data
        commands: list[Command] = []
        while True:
            command = self._next()
            if command is None:
                return commands
            if command:
                commands.append(command)

    def _line(self, start: int) -> tuple[bytes, int] | None:
        end = self._buf.find(b"\r\n", start)
        if end < 0:
            if len(self._buf) - start > MAX_INLINE:
                raise RedisProtocolError("too big inline request")
            return None
        return bytes(self._buf[start:end]), end + 2

    def _next(self) -> Command | None:
        if not self._buf:
            return None
        if self._buf[:1] != b"*":  # inline command: "PING\r\n"
            got = self._line(0)
            if got is None:
                return None
            line, pos = got
            del self._buf[:pos]
            return tuple(line.split())
        got = self._line(0)
        if got is None:
            return None
        header, pos = got
        count = _length(header[1:], "multibulk")
        args = []
        for _ in range(count):
            got = self._line(pos)
            if got is None:
                return None
            header, pos = got
            if header[:1] != b"$":
                raise RedisProtocolError(f"expected '$', got '{header[:1].decode('latin-1')}'")
            size = _length(header[1:], "bulk")
            if size > MAX_BULK:
                raise RedisProtocolError("invalid bulk length")
            if len(self._buf) < pos + size + 2:
                return None
            args.append(bytes(self._buf[pos : pos + size]))
            pos += size + 2
        del self._buf[:pos]
        return tuple(args)


def _length(digits: bytes, what: str) -> int:
    try:
        value = int(digits)
    except ValueError:
        raise RedisProtocolError(f"invalid {what} length") from None
    if value < 0:
        raise RedisProtocolError(f"invalid {what} length")
    return value


def encode_command(command: Sequence[bytes]) -> bytes:
    return b"*%d\r\n" % len(command) + b"".join(_bulk(arg) for arg in command)


def _bulk(data: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(data), data)


def encode_reply(value: Any, protocol: int = 2, *, nested: bool = False) -> bytes:
    """One reply, as a client speaking `protocol` expects it. Values are what fakeredis
    produces for that protocol (maps arrive flattened for RESP2 already); status replies
    arrive as bytes and go out as simple strings at the top level."""
    resp3 = protocol >= 3
    if value is None:
        return b"_\r\n" if resp3 else b"$-1\r\n"
    if isinstance(value, ErrorReply):
        return b"-" + value.text.replace("\r", " ").replace("\n", " ").encode() + b"\r\n"
    if isinstance(value, bool):  # before int, which bool subclasses
        if resp3:
            return b"#t\r\n" if value else b"#f\r\n"
        return b":1\r\n" if value else b":0\r\n"
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return b":%d\r\n" % value
        return b"(%d\r\n" % value if resp3 else _bulk(b"%d" % value)
    if isinstance(value, float):
        text = repr(value).encode()
        return b",%s\r\n" % text if resp3 else _bulk(text)
    if isinstance(value, str):
        value = value.encode()
    if isinstance(value, bytes):
        if nested or b"\r" in value or b"\n" in value:
            return _bulk(value)
        return b"+" + value + b"\r\n"
    if isinstance(value, Push):
        head = b">" if resp3 else b"*"
        return head + b"%d\r\n" % len(value.items) + _items(value.items, protocol)
    if isinstance(value, Mapping):
        flat = [part for pair in value.items() for part in pair]
        if resp3:
            return b"%%%d\r\n" % len(value) + _items(flat, protocol)
        return b"*%d\r\n" % len(flat) + _items(flat, protocol)
    if isinstance(value, (set, frozenset)):
        return (b"~" if resp3 else b"*") + b"%d\r\n" % len(value) + _items(value, protocol)
    if isinstance(value, (list, tuple)):
        return b"*%d\r\n" % len(value) + _items(value, protocol)
    raise TypeError(f"cannot encode a reply of type {type(value).__name__}")


def _items(values: Any, protocol: int) -> bytes:
    return b"".join(encode_reply(v, protocol, nested=True) for v in values)


# ---------------------------------------------------------------------------------------------
# Connection state


def _failed(reply: Any) -> bool:
    return isinstance(reply, ErrorReply)


@dataclass
class Session:
    """One client connection: its database, protocol and open transaction."""

    db: int = 0
    protocol: int = 2
    _queued: list[Command] | None = field(default=None, repr=False)

    @property
    def in_transaction(self) -> bool:
        return self._queued is not None

    def took_effect(self, command: Command, reply: Any) -> list[tuple[int, Command]]:
        """The commands that ran now, each with the database it ran in, given `command`'s
        reply (ErrorReply for an error, NO_REPLY when the client turned replies off)."""
        name = command[0].upper() if command else b""
        if self._queued is not None:
            if name == b"EXEC":
                queued, self._queued = self._queued, None
                if _failed(reply) or reply is None:  # EXECABORT, or a WATCHed key changed
                    return []
                results = reply if isinstance(reply, (list, tuple)) else [None] * len(queued)
                ran = [c for c, r in zip(queued, results, strict=False) if not _failed(r)]
                return [(self._apply(c), c) for c in ran]
            if name == b"DISCARD" or name == b"RESET":
                self._queued = None
                if name == b"RESET":
                    self._apply(command)
                return []
            if not _failed(reply):  # QUEUED (MULTI and WATCH inside MULTI are errors)
                self._queued.append(command)
            return []
        if _failed(reply):
            return []
        if name == b"MULTI":
            self._queued = []
            return []
        return [(self._apply(command), command)]

    def _apply(self, command: Command) -> int:
        """Follow the state a command changes; the database it ran in."""
        db = self.db
        name = command[0].upper()
        if name == b"SELECT" and len(command) == 2 and command[1].isdigit():
            self.db = int(command[1])
        elif name == b"HELLO" and len(command) > 1 and command[1].isdigit():
            self.protocol = int(command[1])
        elif name == b"RESET":
            self.db, self.protocol = 0, 2
        return db


# ---------------------------------------------------------------------------------------------
# Commands the stub answers itself


def local_reply(command: Command, session: Session, version: str) -> Any | None:
    """The reply to a command the stub answers instead of fakeredis, or None.

    AUTH succeeds whatever the password (the target carries production credentials); INFO
    reports a plain standalone server (fakeredis has no INFO; clients read the version from
    it); CONFIG GET knows no parameters. Inside MULTI everything goes to fakeredis."""
    if session.in_transaction or not command:
        return None
    name = command[0].upper()
    if name == b"AUTH":
        return b"OK"
    if name == b"INFO":
        sections = {arg.lower() for arg in command[1:]}
        if sections and not sections & {b"server", b"default", b"all", b"everything"}:
            return b""
        lines = [
            "# Server",
            f"redis_version:{version}",
            "redis_mode:standalone",
            "os:pytest-incident job-queue stub",
            "arch_bits:64",
        ]
        return ("\r\n".join(lines) + "\r\n").encode()
    if name == b"CONFIG" and len(command) > 2 and command[1].upper() == b"GET":
        return {}
    return None


def as_redis_hello(reply: Any, version: str) -> Any:
    """HELLO's reply naming Redis at `version`, as INFO does (fakeredis names itself, with its
    own version, which a client reading the server version from HELLO would take for 2.x)."""
    fix = {b"server": b"redis", b"version": version.encode()}

    def key(k: Any) -> Any:
        return k.encode() if isinstance(k, str) else k

    if isinstance(reply, Mapping):
        return {k: fix.get(key(k), v) for k, v in reply.items()}
    if isinstance(reply, list):
        out = list(reply)
        for i in range(0, len(out) - 1, 2):
            out[i + 1] = fix.get(key(out[i]), out[i + 1])
        return out
    return reply


def without_auth(command: Command) -> Command:
    """HELLO [protover] [AUTH user pass] [SETNAME name] without its AUTH part."""
    out: list[bytes] = []
    i = 0
    while i < len(command):
        if i > 0 and command[i].upper() == b"AUTH" and i + 2 < len(command):
            i += 3
            continue
        out.append(command[i])
        i += 1
    return tuple(out)

# Job queues over the Redis protocol, sans-I/O: which commands enqueue a job, and what job.
#
# `CommandReader` frames a client's bytes into commands and `encode_reply` frames replies
# (RESP2, or RESP3 after HELLO 3); `Session` follows one connection's state and says which
# commands took effect, given each command's reply (a MULTI's commands take effect at an EXEC
# that ran, each unless its own reply is an error; a DISCARDed or aborted EXEC drops them);
# `recognise` turns a command that took effect into JobEnqueue events, reading RQ's job hash
# through the lookup it is handed; `local_reply` answers what fakeredis lacks or should not
# decide (AUTH with any password, INFO, CONFIG GET). The stub (stubs/jobs.py) owns the
# sockets and fakeredis.
#
# Recognised: RQ, a job id LPUSHed/RPUSHed onto `rq:queue:<name>` or ZADDed to the
# `rq:scheduled:<name>` / `rq:deferred:<name>` registries; Celery (kombu's Redis transport),
# an LPUSH of a kombu JSON message onto the queue's list. Everything else is not a job.
# Invariant: nothing here runs code from the target: RQ's pickled `data` is read with an
# unpickler that refuses every global (plain values only), never with `pickle.loads`.
from __future__ import annotations

import base64
import binascii
import datetime
import io
import json
import pickle
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_incident.model.effects import Effect, Outcome
from pytest_incident.model.errors import ProtocolError

Command = tuple[bytes, ...]
HashLookup = Callable[[bytes], Mapping[bytes, bytes]]  # HGETALL in the command's database

MAX_INLINE = 64 * 1024  # Redis's limit for an inline command line
MAX_BULK = 512 * 1024 * 1024
MAX_DECODED = 1024 * 1024  # job payloads decoded for a description, at most
MAX_SHOWN = 200  # characters of a description or argument list in an Effect

RQ_QUEUE = b"rq:queue:"
RQ_REGISTRIES = {b"rq:scheduled:": "scheduled", b"rq:deferred:": "deferred"}
KOMBU_PRIORITY_SEP = b"\x06\x16"
PUSHES = {b"LPUSH", b"RPUSH", b"LPUSHX", b"RPUSHX"}
ZADD_FLAGS = {b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"}


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


# ---------------------------------------------------------------------------------------------
# Recognition


@dataclass(frozen=True)
class JobEnqueue:
    system: str  # "rq", "celery"
    queue: str
    task: str  # "examples.tasks.send_welcome('a@b.c')", "tasks.add"
    detail: str  # "job <id>, not dispatched"

    @property
    def what(self) -> str:
        return f"{self.system} {self.queue}: {self.task}"

    def effect(self) -> Effect:
        return Effect(Outcome.JOB, self.what, self.detail)


def recognise(command: Sequence[bytes], hgetall: HashLookup) -> list[JobEnqueue]:
    """The jobs a command that took effect enqueued (none for most commands)."""
    if len(command) < 3:
        return []
    name, key = command[0].upper(), command[1]
    if name in PUSHES:
        if key.startswith(RQ_QUEUE) and not key.endswith(b":intermediate"):
            queue = _text(key[len(RQ_QUEUE) :])
            front = " (at the front)" if name.startswith(b"L") else ""
            return [_rq_job(queue, job_id, hgetall, front) for job_id in command[2:]]
        jobs = (_kombu_message(key, value) for value in command[2:])
        return [job for job in jobs if job is not None]
    if name == b"ZADD":
        for prefix, registry in RQ_REGISTRIES.items():
            if key.startswith(prefix):
                queue = _text(key[len(prefix) :])
                return [
                    _rq_registered(queue, registry, score, job_id, hgetall)
                    for score, job_id in _zadd_pairs(command[2:])
                ]
    return []


def _zadd_pairs(args: Sequence[bytes]) -> Iterator[tuple[bytes, bytes]]:
    rest = list(args)
    while rest and rest[0].upper() in ZADD_FLAGS:
        rest.pop(0)
    yield from zip(rest[0::2], rest[1::2], strict=False)


def _rq_job(queue: str, job_id: bytes, hgetall: HashLookup, note: str = "") -> JobEnqueue:
    ident = _text(job_id)
    job = hgetall(b"rq:job:" + job_id)
    call = _rq_call(job)
    if call is None:
        return JobEnqueue("rq", queue, f"job {ident}", f"job {ident}{note}, not dispatched")
    return JobEnqueue("rq", queue, call, f"job {ident}{note}, not dispatched")


def _rq_registered(
    queue: str, registry: str, score: bytes, job_id: bytes, hgetall: HashLookup
) -> JobEnqueue:
    job = _rq_job(queue, job_id, hgetall)
    ident = _text(job_id)
    if registry == "scheduled":
        when = _timestamp(score)
        detail = f"job {ident}, scheduled for {when}, not dispatched"
    else:
        detail = f"job {ident}, deferred until its dependencies finish, not dispatched"
    return JobEnqueue("rq", f"{queue} ({registry})", job.task, detail)


def _timestamp(score: bytes) -> str:
    try:
        stamp = datetime.datetime.fromtimestamp(float(score), datetime.UTC)
    except (ValueError, OverflowError, OSError):
        return _text(score)
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _rq_call(job: Mapping[bytes, bytes]) -> str | None:
    """The job's call as RQ describes it: its `description`, else decoded from `data`."""
    description = job.get(b"description")
    if description:
        return _short(_text(description))
    data = job.get(b"data")
    if not data:
        return None
    decoded = _rq_data(data)
    if decoded is None:
        return None
    func, args, kwargs = decoded
    parts = [repr(a) for a in args] + sorted(f"{k}={v!r}" for k, v in kwargs.items())
    return _short(f"{func}({', '.join(parts)})")


def _rq_data(data: bytes) -> tuple[str, Sequence[Any], Mapping[str, Any]] | None:
    """(func_name, args, kwargs) from RQ's zlib-compressed pickle or JSON job tuple."""
    try:
        raw = zlib.decompressobj().decompress(data, MAX_DECODED)
    except zlib.error:
        raw = data  # RQ stores `data` uncompressed when it was saved so
    pickled = raw[:1] == b"\x80"  # RQ's default serializer; JSONSerializer otherwise
    try:
        loaded = _PlainUnpickler(io.BytesIO(raw)).load() if pickled else json.loads(raw)
    except Exception:  # any malformed payload: describe the job without it
        return None
    if not isinstance(loaded, (list, tuple)) or len(loaded) != 4:
        return None
    func, _instance, args, kwargs = loaded
    if not isinstance(func, str) or not isinstance(args, (list, tuple)):
        return None
    return func, args, kwargs if isinstance(kwargs, dict) else {}


class _PlainUnpickler(pickle.Unpickler):
    """Loads plain values only: any class or function reference is refused, so nothing from
    the target is imported or run in the test process."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing {module}.{name}")


def _kombu_message(key: bytes, value: bytes) -> JobEnqueue | None:
    """A Celery task (or a bare kombu message) LPUSHed onto a queue's list, if `value` is one."""
    if not value.startswith(b"{") or len(value) > MAX_DECODED:
        return None
    try:
        message = json.loads(value)
    except ValueError:
        return None
    if not isinstance(message, dict):
        return None
    headers, properties = message.get("headers"), message.get("properties")
    if not isinstance(headers, dict) or not isinstance(properties, dict) or "body" not in message:
        return None
    queue_key, _, priority = key.partition(KOMBU_PRIORITY_SEP)
    queue = _text(queue_key)
    body = _kombu_body(message, properties)
    task = headers.get("task") or (body.get("task") if isinstance(body, dict) else None)
    if not isinstance(task, str):
        tag = properties.get("delivery_tag", "")
        return JobEnqueue("kombu", queue, "message", f"message {tag}, not delivered".strip())
    ident = headers.get("id") or (body.get("id") if isinstance(body, dict) else None) or "?"
    parts = [f"task {ident}"]
    args, kwargs = _celery_arguments(headers, body)
    if args is not None:
        parts.append(f"args {args}")
    if kwargs is not None:
        parts.append(f"kwargs {kwargs}")
    eta = headers.get("eta") or (body.get("eta") if isinstance(body, dict) else None)
    if eta:
        parts.append(f"eta {eta}")
    if priority:
        parts.append(f"priority {_text(priority)}")
    return JobEnqueue("celery", queue, task, ", ".join(parts) + ", not dispatched")


def _kombu_body(message: Mapping[str, Any], properties: Mapping[str, Any]) -> Any:
    """The decoded body when it is JSON (never pickle, yaml or msgpack); else None."""
    body = message.get("body")
    if not isinstance(body, str) or "json" not in str(message.get("content-type", "")):
        return None
    try:
        raw = base64.b64decode(body) if properties.get("body_encoding") == "base64" else body
        return json.loads(raw)
    except (ValueError, binascii.Error):
        return None


def _celery_arguments(headers: Mapping[str, Any], body: Any) -> tuple[str | None, str | None]:
    """The task's arguments as Celery shows them (argsrepr/kwargsrepr), else from the body;
    kwargs only when there are any."""
    args = headers.get("argsrepr")
    kwargs = headers.get("kwargsrepr")
    if args is None and isinstance(body, list) and len(body) >= 2:  # protocol 2
        args, kwargs = repr(tuple(body[0])), repr(body[1])
    elif args is None and isinstance(body, dict):  # protocol 1
        args, kwargs = repr(tuple(body.get("args") or ())), repr(body.get("kwargs") or {})
    shown_kwargs = _short(str(kwargs)) if kwargs not in (None, "{}", "") else None
    return (_short(str(args)) if args is not None else None), shown_kwargs


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _short(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 1] + "…"

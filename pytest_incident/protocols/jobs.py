# Job queues over Redis, sans-I/O: which commands that took effect enqueue a job, and what job.
#
# `recognise` turns a command (framed by redis.py, known to have taken effect) into JobEnqueue
# events, reading RQ's job hash through the lookup it is handed.
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
from dataclasses import dataclass
from typing import Any

from pytest_incident.model.effects import Effect, Outcome

HashLookup = Callable[[bytes], Mapping[bytes, bytes]]  # HGETALL in the command's database

MAX_DECODED = 1024 * 1024  # job payloads decoded for a description, at most
MAX_SHOWN = 200  # characters of a description or argument list in an Effect

RQ_QUEUE = b"rq:queue:"
RQ_REGISTRIES = {b"rq:scheduled:": "scheduled", b"rq:deferred:": "deferred"}
KOMBU_PRIORITY_SEP = b"\x06\x16"
PUSHES = {b"LPUSH", b"RPUSH", b"LPUSHX", b"RPUSHX"}
ZADD_FLAGS = {b"NX", b"XX", b"GT", b"LT", b"CH", b"INCR"}


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

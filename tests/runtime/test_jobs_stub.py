"""The job-queue stub: Redis semantics from fakeredis, enqueues recorded, nothing dispatched.

Every connection here goes to the stub's own loopback listener or to a listener the test
opens; nothing uses a Redis that may run on this machine. The pure parts (framing,
connection state, recognition) are tested without sockets first.
"""

from __future__ import annotations

import base64
import datetime
import json
import pickle
import socket
import sys
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis
import rq
from redis.backoff import NoBackoff
from redis.retry import Retry

from pytest_incident.core.book import ReplayBook
from pytest_incident.model.effects import Effect, Outcome
from pytest_incident.protocols.jobs import (
    JobEnqueue,
    recognise,
)
from pytest_incident.protocols.redis import (
    NO_REPLY,
    CommandReader,
    ErrorReply,
    ProtocolError,
    Push,
    Session,
    as_redis_hello,
    encode_command,
    encode_reply,
    local_reply,
    without_auth,
)
from pytest_incident.runtime.stubs.jobs import JobQueueStub
from pytest_incident.sandbox.policy import SandboxPolicy

from ..sandboxing import run_traced

JOB_ID = b"0b7c6c3e-1b8a-4a43-9a55-5f3d4c1f3a10"
TASK_ID = "5c2a3a5e-8d0b-4c4b-9e41-1b6ac2a9d7f3"


def no_hashes(key: bytes) -> Mapping[bytes, bytes]:
    return {}


def hashes(table: Mapping[bytes, Mapping[bytes, bytes]]) -> Any:
    return lambda key: table.get(key, {})


def rq_data(func: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    """RQ's `data` field: the zlib-compressed pickle of (func_name, instance, args, kwargs)."""
    return zlib.compress(pickle.dumps((func, None, args, kwargs)))


def kombu_message(
    task: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, reprs: bool = True
) -> bytes:
    """A Celery protocol-2 task message as kombu's Redis transport LPUSHes it."""
    body = [list(args), kwargs, {"callbacks": None, "errbacks": None, "chain": None}]
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": TASK_ID,
        "eta": None,
        "retries": 0,
        "root_id": TASK_ID,
        "parent_id": None,
        "origin": "gen1@web-1",
    }
    if reprs:
        headers |= {"argsrepr": repr(args), "kwargsrepr": repr(kwargs)}
    message = {
        "body": base64.b64encode(json.dumps(body).encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": TASK_ID,
            "reply_to": "d1e0c7b2-6f7e-3b7a-8a5e-2a1f0e9c8b7d",
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": "celery"},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": "7f1f3b0e-2d3c-4f5a-9b8c-6d7e8f9a0b1c",
        },
    }
    return json.dumps(message).encode()


# ---------------------------------------------------------------------------------------------
# Framing


def test_reader_frames_commands_split_anywhere_and_pipelined() -> None:
    wire = encode_command((b"SET", b"k", b"a\r\nb")) + encode_command((b"GET", b"k"))
    reader = CommandReader()
    got = [c for i in range(len(wire)) for c in reader.feed(wire[i : i + 1])]
    assert got == [(b"SET", b"k", b"a\r\nb"), (b"GET", b"k")]
    assert CommandReader().feed(b"PING\r\n\r\nECHO hi\r\n") == [(b"PING",), (b"ECHO", b"hi")]


def test_reader_rejects_what_is_not_resp() -> None:
    with pytest.raises(ProtocolError):
        CommandReader().feed(b"*1\r\n+PING\r\n")
    with pytest.raises(ProtocolError):
        CommandReader().feed(b"*x\r\n")


def test_replies_follow_the_negotiated_protocol() -> None:
    assert encode_reply(None, 2) == b"$-1\r\n"
    assert encode_reply(None, 3) == b"_\r\n"
    assert encode_reply({b"a": 1}, 2) == b"*2\r\n$1\r\na\r\n:1\r\n"
    assert encode_reply({b"a": 1}, 3) == b"%1\r\n$1\r\na\r\n:1\r\n"
    assert encode_reply(True, 3) == b"#t\r\n"
    assert encode_reply(1.5, 3) == b",1.5\r\n"
    assert encode_reply(b"OK", 2) == b"+OK\r\n"
    assert encode_reply([b"OK"], 2) == b"*1\r\n$2\r\nOK\r\n"
    assert encode_reply(ErrorReply("WRONGTYPE bad\r\nkind"), 2) == b"-WRONGTYPE bad  kind\r\n"
    assert encode_reply(Push([b"message", b"ch", b"hi"]), 3).startswith(b">3\r\n")
    assert encode_reply(Push([b"message", b"ch", b"hi"]), 2).startswith(b"*3\r\n")


# ---------------------------------------------------------------------------------------------
# Connection state


def test_transaction_commands_take_effect_at_exec_unless_they_failed() -> None:
    session = Session()
    push = (b"RPUSH", b"rq:queue:default", JOB_ID)
    bad = (b"LPUSH", b"a-string", b"x")
    assert session.took_effect((b"MULTI",), b"OK") == []
    assert session.took_effect(push, b"QUEUED") == []
    assert session.took_effect(bad, b"QUEUED") == []
    assert session.took_effect((b"EXEC",), [1, ErrorReply("WRONGTYPE no")]) == [(0, push)]
    assert not session.in_transaction


def test_discarded_or_aborted_transactions_take_no_effect() -> None:
    session = Session()
    push = (b"RPUSH", b"rq:queue:default", JOB_ID)
    for end, reply in [((b"DISCARD",), b"OK"), ((b"EXEC",), None), ((b"EXEC",), ErrorReply("E"))]:
        session.took_effect((b"MULTI",), b"OK")
        session.took_effect(push, b"QUEUED")
        assert session.took_effect(end, reply) == []
    assert session.took_effect(push, ErrorReply("WRONGTYPE no")) == []
    assert session.took_effect(push, NO_REPLY) == [(0, push)]  # CLIENT REPLY OFF: it ran


def test_session_follows_select_and_hello() -> None:
    session = Session()
    push = (b"RPUSH", b"rq:queue:default", JOB_ID)
    session.took_effect((b"HELLO", b"3"), {b"proto": 3})
    assert session.protocol == 3
    session.took_effect((b"MULTI",), b"OK")
    session.took_effect((b"SELECT", b"2"), b"QUEUED")
    session.took_effect(push, b"QUEUED")
    assert session.took_effect((b"EXEC",), [b"OK", 1])[1] == (2, push)
    assert session.db == 2
    session.took_effect((b"SELECT", b"9"), ErrorReply("ERR DB index is out of range"))
    assert session.db == 2


def test_stub_answers_auth_info_and_config_itself_outside_transactions() -> None:
    session = Session()
    assert local_reply((b"AUTH", b"prod-secret"), session, "7.4.0") == b"OK"
    info = local_reply((b"INFO", b"server"), session, "7.4.0")
    assert isinstance(info, bytes) and b"redis_version:7.4.0" in info
    assert local_reply((b"INFO", b"keyspace"), session, "7.4.0") == b""
    assert local_reply((b"CONFIG", b"GET", b"maxmemory"), session, "7.4.0") == {}
    assert local_reply((b"GET", b"k"), session, "7.4.0") is None
    session.took_effect((b"MULTI",), b"OK")
    assert local_reply((b"AUTH", b"x"), session, "7.4.0") is None
    hello = (b"HELLO", b"3", b"AUTH", b"default", b"pw", b"SETNAME", b"web")
    assert without_auth(hello) == (b"HELLO", b"3", b"SETNAME", b"web")


def test_hello_names_redis_not_fakeredis() -> None:
    resp3 = {b"server": b"fakeredis", b"version": b"2.40.0", b"proto": 3}
    assert as_redis_hello(resp3, "7.4.0") == {
        b"server": b"redis",
        b"version": b"7.4.0",
        b"proto": 3,
    }
    resp2 = [b"server", b"fakeredis", b"version", b"2.40.0", b"proto", 2]
    assert as_redis_hello(resp2, "7.4.0")[:4] == [b"server", b"redis", b"version", b"7.4.0"]


# ---------------------------------------------------------------------------------------------
# Recognition


def test_rq_push_is_a_job_described_from_its_hash() -> None:
    job = {b"description": b"examples.tasks.send_welcome('a@b.c')", b"origin": b"default"}
    lookup = hashes({b"rq:job:" + JOB_ID: job})
    [event] = recognise((b"RPUSH", b"rq:queue:default", JOB_ID), lookup)
    assert event == JobEnqueue(
        "rq",
        "default",
        "examples.tasks.send_welcome('a@b.c')",
        f"job {JOB_ID.decode()}, not dispatched",
    )
    assert event.effect() == Effect(Outcome.JOB, event.what, event.detail)
    assert event.what == "rq default: examples.tasks.send_welcome('a@b.c')"
    [front] = recognise((b"LPUSH", b"rq:queue:default", JOB_ID), lookup)
    assert "(at the front)" in front.detail


def test_rq_job_without_description_is_decoded_from_its_data() -> None:
    pickled = {b"data": rq_data("examples.tasks.send_welcome", ("a@b.c",), {"lang": "fr"})}
    as_json = {b"data": zlib.compress(b'["examples.tasks.ping", null, [1], {}]')}
    other = b"1f2e3d4c"
    lookup = hashes({b"rq:job:" + JOB_ID: pickled, b"rq:job:" + other: as_json})
    events = recognise((b"RPUSH", b"rq:queue:mail", JOB_ID, other), lookup)
    assert [e.what for e in events] == [
        "rq mail: examples.tasks.send_welcome('a@b.c', lang='fr')",
        "rq mail: examples.tasks.ping(1)",
    ]
    [unknown] = recognise((b"RPUSH", b"rq:queue:mail", b"gone"), no_hashes)
    assert unknown.what == "rq mail: job gone"


TRIPWIRE: list[str] = []  # appended to if a job's arguments were ever unpickled


def _trip(tag: str) -> None:
    TRIPWIRE.append(tag)


class _Tripwire:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_trip, ("unpickled",))  # loading it calls _trip


def test_rq_data_is_never_unpickled_with_code() -> None:
    """A job's arguments are the target's objects: loading them would run its code here."""
    job = {b"data": rq_data("examples.tasks.charge", (_Tripwire(),), {})}
    [event] = recognise((b"RPUSH", b"rq:queue:default", JOB_ID), hashes({b"rq:job:" + JOB_ID: job}))
    assert TRIPWIRE == []
    assert event.what == f"rq default: job {JOB_ID.decode()}"


def test_rq_scheduled_and_deferred_jobs_are_jobs_too() -> None:
    lookup = hashes({b"rq:job:" + JOB_ID: {b"description": b"examples.tasks.later(1)"}})
    [scheduled] = recognise((b"ZADD", b"rq:scheduled:default", b"1715695200", JOB_ID), lookup)
    assert scheduled.what == "rq default (scheduled): examples.tasks.later(1)"
    assert "scheduled for 2024-05-14T14:00:00Z" in scheduled.detail
    [deferred] = recognise((b"ZADD", b"rq:deferred:default", b"NX", b"1", JOB_ID), lookup)
    assert deferred.what == "rq default (deferred): examples.tasks.later(1)"


def test_celery_message_is_a_job_named_by_its_task() -> None:
    [event] = recognise((b"LPUSH", b"celery", kombu_message("tasks.add", (2, 3), {})), no_hashes)
    assert event.what == "celery celery: tasks.add"
    assert event.detail == f"task {TASK_ID}, args (2, 3), not dispatched"
    message = kombu_message("tasks.mail", ("a@b.c",), {"retry": True}, reprs=False)
    [decoded] = recognise((b"LPUSH", b"emails\x06\x163", message), no_hashes)
    assert decoded.what == "celery emails: tasks.mail"
    assert decoded.detail == (
        f"task {TASK_ID}, args ('a@b.c',), kwargs {{'retry': True}}, priority 3, not dispatched"
    )


@pytest.mark.parametrize(
    "command",
    [
        (b"LPUSH", b"recent", b'{"user": 1}'),
        (b"LPUSH", b"celery", b"not json"),
        (b"RPUSH", b"rq:queue:default:intermediate", JOB_ID),
        (b"SET", b"rq:queue:default", JOB_ID),
        (b"HSET", b"rq:job:" + JOB_ID, b"status", b"queued"),
        (b"ZADD", b"leaderboard", b"1", b"alice"),
        (b"INCR", b"hits"),
    ],
)
def test_other_commands_are_not_jobs(command: tuple[bytes, ...]) -> None:
    assert recognise(command, no_hashes) == []


# ---------------------------------------------------------------------------------------------
# The stub, driven by redis-py and RQ


@pytest.fixture
def book() -> ReplayBook:
    book = ReplayBook()
    book.begin([])  # an item is running: its effects are its own
    return book


@pytest.fixture
def stub(book: ReplayBook) -> Iterator[JobQueueStub]:
    stub = JobQueueStub(book)
    try:
        yield stub
    finally:
        stub.close()


def client(stub: JobQueueStub, **kwargs: Any) -> redis.Redis:
    host, port = stub.address
    kwargs.setdefault("socket_timeout", 5)
    return redis.Redis(host=host, port=port, **kwargs)


def jobs(book: ReplayBook) -> list[Effect]:
    return [e for e in book.end() if e.outcome is Outcome.JOB]


@pytest.mark.parametrize("protocol", [2, 3])
def test_plain_commands_get_real_redis_answers_and_are_not_jobs(
    stub: JobQueueStub, book: ReplayBook, protocol: int
) -> None:
    r = client(stub, protocol=protocol, single_connection_client=True)
    assert r.ping() is True
    assert r.set("greeting", "hi") is True
    assert r.get("greeting") == b"hi"
    assert r.get("missing") is None
    assert [r.incr("hits"), r.incr("hits")] == [1, 2]
    assert r.hset("user:1", mapping={"name": "Ada", "plan": "pro"}) == 2
    assert r.hgetall("user:1") == {b"name": b"Ada", b"plan": b"pro"}
    assert r.set("lock", "me", nx=True, ex=30) is True
    assert r.set("lock", "you", nx=True, ex=30) is None
    assert 0 < r.ttl("lock") <= 30
    r.zadd("scores", {"a": 1.5})
    pairs = r.zrange("scores", 0, -1, withscores=True)  # RESP3: lists, RESP2: tuples
    assert [tuple(pair) for pair in pairs] == [(b"a", 1.5)]
    pipe = r.pipeline()  # MULTI/EXEC
    pipe.set("n", 1)
    pipe.incr("n")
    pipe.get("n")
    assert pipe.execute() == [True, 2, b"2"]
    before = r.client_id()
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        r.get("user:1")
    assert r.ping() is True
    assert r.client_id() == before  # an error reply does not end the connection
    assert r.info("server")["redis_version"] == "7.4.0"
    hello = r.execute_command("HELLO", protocol)  # type: ignore[no-untyped-call]
    assert b"7.4.0" in (hello.values() if isinstance(hello, dict) else hello)
    assert jobs(book) == []


def test_rq_enqueue_is_recorded_and_never_dispatched(stub: JobQueueStub, book: ReplayBook) -> None:
    r = client(stub)
    queue = rq.Queue("default", connection=r)
    job = queue.enqueue("examples.tasks.send_welcome", "a@b.c")
    assert jobs(book) == [
        Effect(
            Outcome.JOB,
            "rq default: examples.tasks.send_welcome('a@b.c')",
            f"job {job.id}, not dispatched",
        )
    ]
    time.sleep(0.2)  # nothing takes it off the queue
    assert r.lrange("rq:queue:default", 0, -1) == [job.id.encode()]
    assert job.get_status(refresh=True) == "queued"
    assert rq.utils.get_version(r) == (7, 4, 0)  # from INFO, not RQ's fakeredis fallback


def test_rq_bulk_scheduled_and_other_database_enqueues(
    stub: JobQueueStub, book: ReplayBook
) -> None:
    queue = rq.Queue("mail", connection=client(stub, db=3))
    queue.enqueue_many(
        [
            rq.Queue.prepare_data("examples.tasks.send", ("a@b.c",)),
            rq.Queue.prepare_data("examples.tasks.send", ("d@e.f",)),
        ]
    )
    queue.enqueue_in(datetime.timedelta(hours=1), "examples.tasks.remind", 7)
    assert [e.what for e in jobs(book)] == [
        "rq mail: examples.tasks.send('a@b.c')",
        "rq mail: examples.tasks.send('d@e.f')",
        "rq mail (scheduled): examples.tasks.remind(7)",
    ]


def test_transaction_that_did_not_run_records_nothing(stub: JobQueueStub, book: ReplayBook) -> None:
    r = client(stub)
    with r.pipeline() as pipe:
        pipe.watch("guard")  # type: ignore[no-untyped-call]
        r.set("guard", "changed by someone else")
        pipe.multi()
        pipe.rpush("rq:queue:default", "never-ran")
        with pytest.raises(redis.WatchError):
            pipe.execute()
    sock = socket.create_connection(stub.address, timeout=5)
    sock.sendall(
        encode_command((b"MULTI",))
        + encode_command((b"RPUSH", b"rq:queue:default", b"discarded"))
        + encode_command((b"DISCARD",))
    )
    assert _read_until(sock, b"+OK\r\n+QUEUED\r\n+OK\r\n")
    sock.close()
    assert r.llen("rq:queue:default") == 0
    assert jobs(book) == []


def _read_until(sock: socket.socket, expected: bytes) -> bool:
    got = b""
    while len(got) < len(expected):
        chunk = sock.recv(4096)
        if not chunk:
            break
        got += chunk
    return got == expected


def test_celery_style_push_is_recorded(stub: JobQueueStub, book: ReplayBook) -> None:
    r = client(stub)
    r.sadd("_kombu.binding.celery", "celery\x06\x16\x06\x16celery")
    r.lpush("celery", kombu_message("tasks.add", (2, 3), {}))
    assert jobs(book) == [
        Effect(
            Outcome.JOB, "celery celery: tasks.add", f"task {TASK_ID}, args (2, 3), not dispatched"
        )
    ]
    assert r.llen("celery") == 1


def test_any_password_is_accepted(stub: JobQueueStub) -> None:
    logins: list[dict[str, Any]] = [
        {"password": "prod-secret"},
        {"username": "app", "password": "x", "protocol": 3},
    ]
    for kwargs in logins:
        r = client(stub, **kwargs)
        assert r.set("k", "v") is True


def test_raw_protocol_pipelined_and_inline(stub: JobQueueStub) -> None:
    sock = socket.create_connection(stub.address, timeout=5)
    wire = encode_command((b"SET", b"k", b"v")) + encode_command((b"GET", b"k")) + b"PING\r\n"
    for i in range(len(wire)):  # byte by byte
        sock.sendall(wire[i : i + 1])
    assert _read_until(sock, b"+OK\r\n+v\r\n+PONG\r\n")
    sock.sendall(b"*1\r\n+PING\r\n")
    assert sock.recv(100).startswith(b"-ERR Protocol error")
    assert sock.recv(100) == b""  # and the connection ends, as Redis does
    sock.close()


def test_data_persist_between_items_until_reset(stub: JobQueueStub, book: ReplayBook) -> None:
    r = client(stub)
    r.set("session:1", "alive")
    book.begin([])
    assert r.get("session:1") == b"alive"
    stub.reset()
    assert r.get("session:1") is None


def test_close_ends_every_connection_and_thread(book: ReplayBook) -> None:
    stub = JobQueueStub(book)
    blocked: list[object] = []

    def wait_forever() -> None:
        try:
            once = client(stub, socket_timeout=None, retry=Retry(NoBackoff(), 0))
            blocked.append(once.blpop(["nothing"], 0))
        except redis.ConnectionError as exc:
            blocked.append(exc)

    idle = client(stub, single_connection_client=True)
    idle.ping()
    waiter = threading.Thread(target=wait_forever)
    waiter.start()
    time.sleep(0.3)
    started = time.monotonic()
    stub.close()
    assert time.monotonic() - started < 2
    waiter.join(5)
    assert not waiter.is_alive() and isinstance(blocked[0], redis.ConnectionError)
    assert not [t for t in threading.enumerate() if t.name.startswith("incident-jobs")]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(stub.address, timeout=2)
    idle.close()


# ---------------------------------------------------------------------------------------------
# In the sandbox: a real target's enqueue goes to the stub, and no further


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")
def test_enqueue_in_the_sandbox_reaches_the_stub_and_no_further(
    tmp_path: Path, stub: JobQueueStub, book: ReplayBook
) -> None:
    stand_in = socket.socket()  # where production's Redis would be: must see nothing
    stand_in.bind(("127.0.0.1", 0))
    stand_in.listen()
    stand_in.settimeout(0.3)
    port = stand_in.getsockname()[1]
    try:
        policy = SandboxPolicy(redirects={("127.0.0.1", port): stub.address})
        proc, events = run_traced(
            tmp_path,
            policy,
            f"""
            import redis, rq
            conn = redis.Redis.from_url("redis://:prod-secret@127.0.0.1:{port}/0")
            job = rq.Queue("default", connection=conn).enqueue(
                "examples.tasks.send_welcome", "a@b.c")
            print(job.id)
            """,
        )
        assert proc.returncode == 0, proc.stderr
        job_id = proc.stdout.strip()
        assert jobs(book) == [
            Effect(
                Outcome.JOB,
                "rq default: examples.tasks.send_welcome('a@b.c')",
                f"job {job_id}, not dispatched",
            )
        ]
        with pytest.raises(TimeoutError):
            stand_in.accept()
        redirects = [e for e in events if e["event"] == "net" and e["action"] == "redirect"]
        assert redirects
        assert {e["to"] for e in redirects} == {f"127.0.0.1:{stub.address[1]}"}
    finally:
        stand_in.close()

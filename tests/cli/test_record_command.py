"""`pytest-incident record -- COMMAND`: a small service (tests/data/record/: checkout.py, WSGI
served by wsgiref, and checkout.js, Node's `http` module) is recorded while it calls a fake
payments API on loopback, reached by its recorded hostname (`--resolve`); the recording then
replays under pytester with every item passing, and the twin: a changed service (another
call, another answer) fails its replay."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from uuid import uuid4

import pytest
import trustme

from pytest_incident.cli import record as record_command
from pytest_incident.events.frozen import read_spans
from pytest_incident.model.errors import ReplayConfigError
from pytest_incident.model.spans import SpanKind
from pytest_incident.runtime.database import PostgresServer
from pytest_incident.runtime.recorder import Destination, parse_resolve, resolve_destination
from pytest_incident.runtime.stubs.http import Endpoint

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

DATA = Path(__file__).resolve().parent.parent / "data" / "record"


class FakePayments(BaseHTTPRequestHandler):
    """api.payments.example as the service knows it: POST /v1/charges answers a charge; an
    amount over 1000 is declined with a 402; an amount of 13 is never answered (until the
    test ends), and 14 gets its connection closed without an answer."""

    protocol_version = "HTTP/1.1"
    server: PaymentsServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.calls.append((self.path, self.headers.get("Host", ""), body))
        amount = json.loads(body)["amount"]
        if amount == 13:
            self.server.ended.wait(60)
            return
        if amount == 14:  # the connection is closed without an answer
            self.close_connection = True
            return
        status, answer = (402, {"error": "declined"}) if amount > 1000 else (200, {"id": "ch_1"})
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


class PaymentsServer(ThreadingHTTPServer):
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, bytes]] = []  # path, Host, body of each call
        self.ended = threading.Event()  # set when the test ends: held calls end
        super().__init__(("127.0.0.1", 0), FakePayments)

    @property
    def port(self) -> int:
        return int(self.server_address[1])


@contextlib.contextmanager
def serving_payments() -> Iterator[PaymentsServer]:
    server = PaymentsServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.ended.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def payments() -> Iterator[PaymentsServer]:
    with serving_payments() as server:
        yield server


NODE = shutil.which("node")
# each service: its file, how it is started (as `record` and `target.command` take it), and
# how the changed one is
SERVICES = {
    "python": ("checkout.py", ["{python}", "checkout.py", "{port}"], "checkout_changed.py", []),
    "node": ("checkout.js", ["node", "checkout.js", "{port}"], "checkout.js", ["/v2/charges"]),
}


@pytest.fixture(scope="module", params=list(SERVICES))
def service(request: pytest.FixtureRequest) -> str:
    if request.param == "node" and NODE is None:
        pytest.skip("node is not installed")
    return str(request.param)


def record(
    tmp_path: Path, payments_port: int, out: Path, service: str = "python", *extra: str
) -> subprocess.Popen[str]:
    source, command, _, _ = SERVICES[service]
    shutil.copy(DATA / source, tmp_path / source)
    argv = [
        sys.executable, "-m", "pytest_incident.cli", "record",
        "--out", str(out), "--service", "checkout", "--cwd", str(tmp_path),
        "--resolve", f"api.payments.example:80=127.0.0.1:{payments_port}", *extra,
        "--", *command,
    ]  # fmt: skip
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ)
    )


def front_of(proc: subprocess.Popen[str]) -> str:
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("pytest-incident record: front "):
            return line.split()[-1]
    raise AssertionError(f"no front address; exit {proc.wait()}")


def post(front: str, path: str, payload: dict[str, object]) -> tuple[int, bytes]:
    request = urllib.request.Request(
        front + path,
        data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=30) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), bytes(exc.read())


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return out, err


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, service: str) -> Iterator[Path]:
    """Two requests to the service, recorded once per service for this module's tests."""
    with serving_payments() as payments:
        yield record_checkout(tmp_path_factory.mktemp(f"record-{service}"), payments, service)


def record_checkout(tmp_path: Path, payments: PaymentsServer, service: str) -> Path:
    out = tmp_path / "rec" / "checkout.events.jsonl.gz"
    proc = record(tmp_path, payments.port, out, service)
    try:
        front = front_of(proc)
        assert post(front, "/checkout?cart=7", {"amount": 250}) == (200, b'{"charge": "ch_1"}')
        assert post(front, "/checkout", {"amount": 5000}) == (402, b'{"declined": true}')
    finally:
        if proc.poll() is None:
            out_text, err = stop(proc)
    assert "wrote 4 spans (2 requests)" in out_text, err
    # the real destination was reached, by the recorded host name
    assert [(path, host) for path, host, _ in payments.calls] == [
        ("/v1/charges", "api.payments.example"),
        ("/v1/charges", "api.payments.example"),
    ]
    return out


def test_records_server_spans_and_their_outbound_calls(recording: Path) -> None:
    spans = list(read_spans(recording))
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert [
        (s.name, s.attr("url.query"), s.attr("http.response.status_code")) for s in servers
    ] == [
        ("POST /checkout", "cart=7", "200"),
        ("POST /checkout", "", "402"),
    ]
    for server, client in zip(servers, clients, strict=True):
        assert client.trace_id == server.trace_id
        assert client.parent_span_id == server.span_id
        assert client.attr("url.full") == "http://api.payments.example/v1/charges"
        assert client.attr("server.address") == "api.payments.example"
        assert client.attr("server.port") == "80"
    assert json.loads(clients[1].attr("incident.response.body")) == {"error": "declined"}
    assert clients[1].attr("error.type") == "402"
    assert [c.status_code for c in clients] == ["Unset", "Error"]
    assert [s.status_code for s in servers] == ["Unset", "Unset"]  # a 402 answered is no failure
    assert len({s.trace_id for s in servers}) == 2


def incident(
    pytester: pytest.Pytester,
    recording: Path,
    service: str,
    changed: bool,
    source: str = "../checkout.events.jsonl.gz",
) -> None:
    program, command, changed_program, changed_args = SERVICES[service]
    shutil.copy(recording, pytester.path / "checkout.events.jsonl.gz")
    shutil.copy(DATA / (changed_program if changed else program), pytester.path / program)
    argv = [*command, *(changed_args if changed else [])]
    now = datetime.now(UTC)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    window = f"{now - timedelta(hours=1):{stamp}} .. {now + timedelta(hours=1):{stamp}}"
    (pytester.path / "incidents").mkdir()
    (pytester.path / "incidents" / "checkout.yaml").write_text(
        f"window: {window}\n"
        f"source: {source}\n"
        f"target: {{command: {json.dumps(argv)}, cwd: ..}}\n"
        "expect: {status: '<500', response: match}\n"
    )
    pytester.makeini(
        "[pytest]\nfilterwarnings =\n"
        "    ignore:Module already imported:pytest.PytestAssertRewriteWarning\n"
    )


def test_the_recording_replays_with_every_item_passing(
    pytester: pytest.Pytester, recording: Path, service: str
) -> None:
    incident(pytester, recording, service, changed=False)
    result = pytester.runpytest("--incident=checkout", "-v")
    result.assert_outcomes(passed=2)


def test_changed_code_fails_its_replay(
    pytester: pytest.Pytester, recording: Path, service: str
) -> None:
    # the twin: the service now calls /v2/charges (the Python one declines with another body)
    incident(pytester, recording, service, changed=True)
    result = pytester.runpytest("--incident=checkout", "-v")
    result.assert_outcomes(failed=2)


def test_refuses_a_destination_that_is_not_loopback(tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    argv = [
        sys.executable, "-m", "pytest_incident.cli", "record", "--out", str(out),
        "--resolve", "api.payments.example:80=0.0.0.0:80", "--", "true",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "not loopback; that needs --allow-egress" in proc.stderr
    assert not out.exists()


def test_a_refused_call_is_recorded_as_refused(tmp_path: Path) -> None:
    # a destination where nothing listens: the service sees its call fail, the span says so
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead = sock.getsockname()[1]
    sock.close()
    out = tmp_path / "refused.jsonl"
    proc = record(tmp_path, dead, out)
    try:
        front = front_of(proc)
        status, _ = post(front, "/checkout", {"amount": 1})
        assert status == 502
    finally:
        if proc.poll() is None:
            stop(proc)
    client = next(s for s in read_spans(out) if s.kind is SpanKind.CLIENT)
    assert client.attr("error.type") == "ConnectionRefusedError"
    assert "http.response.status_code" not in client.attributes
    assert time.time_ns() > client.timestamp_ns


def test_a_call_left_unanswered_is_recorded_as_a_timeout(
    tmp_path: Path, payments: PaymentsServer
) -> None:
    # the service gives up after 0.5 s: the call is a timeout, as the service saw it
    out = tmp_path / "timeout.jsonl"
    proc = record(tmp_path, payments.port, out, "python", "--env", "PAYMENTS_TIMEOUT=0.5")
    try:
        front = front_of(proc)
        status, body = post(front, "/checkout", {"amount": 13})
        assert status == 502, body
    finally:
        if proc.poll() is None:
            stop(proc)
    spans = list(read_spans(out))
    server = next(s for s in spans if s.kind is SpanKind.SERVER)
    client = next(s for s in spans if s.kind is SpanKind.CLIENT)
    assert client.parent_span_id == server.span_id
    assert client.attr("error.type") == "timeout"
    assert "http.response.status_code" not in client.attributes
    assert server.attr("http.response.status_code") == "502"


def test_https_is_terminated_with_the_runs_ca_and_re_originated_to_the_real_host(
    tmp_path: Path,
) -> None:
    # the real host: a loopback TLS server with a certificate for api.payments.example from a
    # CA of this test, which `record` verifies (--cafile); the service trusts the run's CA
    authority = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("api.payments.example").configure_cert(context)
    cafile = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(cafile))
    server = PaymentsServer()
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    out = tmp_path / "https.jsonl"
    try:
        proc = record(
            tmp_path, server.port, out, "python",
            "--resolve", f"https://api.payments.example=127.0.0.1:{server.port}",
            "--cafile", str(cafile),
            "--env", "PAYMENTS_URL=https://api.payments.example/v1/charges",
        )  # fmt: skip
        try:
            assert post(front_of(proc), "/checkout", {"amount": 9}) == (200, b'{"charge": "ch_1"}')
        finally:
            if proc.poll() is None:
                stop(proc)
    finally:
        server.shutdown()
        server.server_close()
    assert [(path, host) for path, host, _ in server.calls] == [
        ("/v1/charges", "api.payments.example")
    ]
    client = next(s for s in read_spans(out) if s.kind is SpanKind.CLIENT)
    assert client.attr("url.full") == "https://api.payments.example/v1/charges"
    assert client.attr("server.port") == "443"


def test_database_writes_through_the_tap_become_db_client_spans(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    table = f"record_{uuid4().hex[:12]}"
    with postgres.admin() as admin:
        admin.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, name text NOT NULL)")
    shutil.copy(DATA / "orders_db.py", tmp_path / "orders_db.py")
    out = tmp_path / "orders.jsonl"
    argv = [
        sys.executable, "-m", "pytest_incident.cli", "record", "--out", str(out),
        "--cwd", str(tmp_path), "--allow", f"{postgres.host}:{postgres.port}",
        "--env", f"ORDERS_DSN={postgres.dsn('postgres')}", "--env", f"ORDERS_TABLE={table}",
        "--", "{python}", "orders_db.py", "{port}",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert post(front_of(proc), "/orders", {"name": "ada"}) == (201, b'{"created": true}')
    finally:
        if proc.poll() is None:
            stop(proc)
        with postgres.admin() as admin:
            admin.execute(f"DROP TABLE IF EXISTS {table}")
    spans = list(read_spans(out))
    server = next(s for s in spans if s.kind is SpanKind.SERVER)
    writes = [s for s in spans if s.attr("db.query.text")]
    assert [(w.name, w.parent_span_id, w.trace_id) for w in writes] == [
        (f"INSERT {table}", server.span_id, server.trace_id)
    ]
    assert json.loads(writes[0].attr("incident.db.params")) == ["ada"]


def test_concurrent_requests_each_get_their_own_calls(
    tmp_path: Path, payments: PaymentsServer
) -> None:
    # clients racing at the front: each Server span's child is the call its own request made
    out = tmp_path / "concurrent.jsonl"
    proc = record(tmp_path, payments.port, out)
    try:
        front = front_of(proc)
        amounts = list(range(100, 108))
        with ThreadPoolExecutor(len(amounts)) as pool:
            answers = list(pool.map(lambda a: post(front, "/checkout", {"amount": a}), amounts))
        assert {status for status, _ in answers} == {200}
    finally:
        if proc.poll() is None:
            stop(proc)
    spans = list(read_spans(out))
    servers = {s.span_id: s for s in spans if s.kind is SpanKind.SERVER}
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(servers) == len(clients) == 8
    for client in clients:
        server = servers[client.parent_span_id]
        assert client.trace_id == server.trace_id
        sent = json.loads(server.attr("incident.request.body"))["amount"]
        assert json.loads(client.attr("incident.request.body")) == {"amount": sent}
    assert len({s.trace_id for s in servers.values()}) == 8


def test_a_host_resolving_off_the_machine_is_refused_without_allow_egress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def getaddrinfo(host: str, port: int, **kwargs: object) -> list[tuple[object, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("0.0.0.0", port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    endpoint = Endpoint("api.payments.example", 443, "https")
    with pytest.raises(ReplayConfigError, match="needs --allow-egress"):
        resolve_destination(endpoint, allow_egress=False)
    assert resolve_destination(endpoint, allow_egress=True) == Destination("0.0.0.0", 443)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("api.payments.example", "expected [SCHEME://]HOST[:PORT]=ADDRESS:PORT"),
        ("api.payments.example=127.0.0.1", "expected [SCHEME://]HOST[:PORT]=ADDRESS:PORT"),
        ("ftp://api.payments.example=127.0.0.1:21", "the scheme must be http or https"),
        ("api.payments.example:x=127.0.0.1:80", "the port must be a number"),
        ("api.payments.example=127.0.0.1:٨٠", "expected [SCHEME://]HOST[:PORT]=ADDRESS:PORT"),
    ],
)
def test_a_malformed_resolve_is_a_usage_mistake(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_resolve(text)


def test_resolve_forms() -> None:
    assert parse_resolve("api.payments.example=127.0.0.1:9") == (
        [
            Endpoint("api.payments.example", 80, "http"),
            Endpoint("api.payments.example", 443, "https"),
        ],
        Destination("127.0.0.1", 9),
    )
    assert parse_resolve("https://API.payments.example:8443=[::1]:9") == (
        [Endpoint("api.payments.example", 8443, "https")],
        Destination("::1", 9),
    )


def test_a_recording_loaded_into_chdb_replays_from_there(
    pytester: pytest.Pytester, recording: Path, service: str, chdb_dir: Path
) -> None:
    # --sink: the spans go into ClickHouse (here the process's chDB directory), and an
    # incident whose source is that table replays them
    pytest.importorskip("chdb")
    source = f"chdb://{chdb_dir}?database=record_{service}"
    said = record_command.deliver(list(read_spans(recording)), None, source)
    assert said == f"loaded 4 spans (2 requests) into chdb://{chdb_dir}?table=otel_traces"
    incident(pytester, recording, service, changed=False, source=source)
    pytester.runpytest("--incident=checkout", "-v").assert_outcomes(passed=2)


def test_sink_and_out_are_one_or_the_other(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "pytest_incident.cli", "record"]
    both = [*base, "--out", str(tmp_path / "a.jsonl"), "--sink", "chdb:///x", "--", "true"]
    bad = [*base, "--sink", "postgres://x", "--", "true"]
    for argv, message in [(both, "not allowed with argument"), (bad, "expected chdb:///DIR")]:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2
        assert message in proc.stderr


def test_a_connection_closed_without_an_answer_is_recorded_as_such(
    tmp_path: Path, payments: PaymentsServer
) -> None:
    out = tmp_path / "closed.jsonl"
    proc = record(tmp_path, payments.port, out)
    try:
        status, body = post(front_of(proc), "/checkout", {"amount": 14})
        assert status == 502, body  # the service saw its call fail: a reset
    finally:
        if proc.poll() is None:
            stop(proc)
    client = next(s for s in read_spans(out) if s.kind is SpanKind.CLIENT)
    assert client.attr("error.type") == "RemoteDisconnected"
    assert client.status_code == "Error"
    assert "http.response.status_code" not in client.attributes

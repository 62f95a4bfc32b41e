"""OpenTelemetry capture end to end: a small Flask service, instrumented with OpenTelemetry
and pytest_incident.capture, calls a loopback fake upstream with `requests` and exports its
spans into chDB (the process's one directory, tests/conftest.py `chdb_dir`, a database of
this module's own); an incident whose `source:` is that table replays the requests against
the same code with every item passing, and against changed code with the changed answers
failing. The secrets the requests carried never reach ClickHouse."""

from __future__ import annotations

import importlib.util
import json
import socket
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.instrumentation.requests")

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from pytest_incident.capture import install
from pytest_incident.capture.exporter import ClickHouseSpanExporter
from pytest_incident.events.clickhouse import connect, parse_reference

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

UPSTREAM_HOST = "prices.example"  # recorded as a host name; resolved to the fake here
DATABASE = "otel_capture"
INBOUND_TOKEN = "tok-inbound-S3cr3t-4711"
UPSTREAM_TOKEN = "sk-upstream-S3cr3t-0815"
PASSWORD = "hunter2-very-S3cr3t"

SERVICE = """
import os

import requests
from flask import Flask, jsonify, request

app = Flask(__name__)
PRICES = os.environ.get("PRICES_URL", "http://prices.example")


@app.post("/quote/<sku>")
def quote(sku):
    qty = request.get_json()["qty"]
    answer = requests.get(
        f"{PRICES}/price", params={"sku": sku},
        headers={"Authorization": "Bearer " + os.environ.get("PRICES_TOKEN", "test")},
        timeout=5,
    )
    cents = answer.json()["cents"]
    return jsonify(sku=sku, qty=qty, total=cents * qty%s)


@app.post("/login")
def login():
    form = request.get_json()
    return jsonify(user=form["user"], ok=len(form["password"]) > 0)
"""


class Prices(BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers.items()))
        sku = self.path.partition("sku=")[2]
        body = json.dumps({"sku": sku, "cents": 100 + len(sku)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstream(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, str]]]:
    """The fake prices API on loopback; `prices.example` resolves to it (in this process
    only). Yields the headers of the requests it saw."""
    seen: list[dict[str, str]] = []
    handler = type("Handler", (Prices,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    port = server.server_address[1]
    real = socket.getaddrinfo

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == UPSTREAM_HOST:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield seen
    server.shutdown()
    server.server_close()


def load_service(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def record(project: Path, source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Serve three requests with the instrumented service; its spans go to `source`."""
    monkeypatch.setenv("PRICES_TOKEN", UPSTREAM_TOKEN)
    service = load_service(project / "shop.py", "otel_capture_shop")
    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(BatchSpanProcessor(ClickHouseSpanExporter(source)))
    capture = install(tracer_provider=provider, app=service.app)
    try:
        client = service.app.test_client()
        auth = {"Authorization": f"Bearer {INBOUND_TOKEN}"}
        assert client.post("/quote/ab", json={"qty": 2}, headers=auth).json["total"] == 204
        assert client.post("/quote/xyz", json={"qty": 1}, headers=auth).json["total"] == 103
        answer = client.post("/login", json={"user": "ann", "password": PASSWORD})
        assert answer.json == {"user": "ann", "ok": True}
    finally:
        capture.uninstall()
        provider.shutdown()  # flushes the batch into ClickHouse


def table_text(source: str) -> str:
    client = connect(parse_reference(source, Path.cwd(), {}))
    try:
        rows = client.query(f"SELECT * FROM {DATABASE}.otel_traces").result_rows
    finally:
        client.close()
    return repr(rows)


def incident(project: Path, source: str, module: str) -> None:
    now = datetime.now(UTC)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    start, end = (now - timedelta(minutes=30)).strftime(stamp), (now + timedelta(minutes=5))
    (project / "incidents" / "shop.yaml").write_text(
        f"window: {start} .. {end.strftime(stamp)}\n"
        f"source: {source}\n"
        "select: {service: shop}\n"
        f"target:\n  wsgi: {module}:app\n  env:\n    PRICES_URL: http://prices.example\n"
        "sandbox:\n  outbound: stub\n  unmatched: error\n"
        "expect:\n  response: match\n"
    )


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.mkdir("incidents")
    (pytester.path / "shop.py").write_text(SERVICE % "")
    (pytester.path / "shop_changed.py").write_text(SERVICE % " + 1")  # a quote costs a cent more
    pytester.makeini(
        "[pytest]\nfilterwarnings =\n"
        "    ignore:Module already imported:pytest.PytestAssertRewriteWarning\n"
    )
    return pytester


def test_a_flask_service_recorded_into_chdb_replays_from_it(
    project: pytest.Pytester,
    chdb_dir: Path,
    upstream: list[dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    source = f"chdb://{chdb_dir}?database={DATABASE}"
    client = connect(parse_reference(source, Path.cwd(), {}))
    client.command(f"DROP DATABASE IF EXISTS {DATABASE}")  # this test's own, made afresh
    client.close()
    record(project.path, source, monkeypatch)
    assert len(upstream) == 2  # the service really called the fake, with the real token
    assert all(seen["Authorization"] == f"Bearer {UPSTREAM_TOKEN}" for seen in upstream)

    stored = table_text(source)
    assert "/quote/ab" in stored and '"ann"' in stored  # what was recorded, is there
    assert "Bearer redacted-" in stored  # the Authorization headers, redacted
    for secret in (INBOUND_TOKEN, UPSTREAM_TOKEN, PASSWORD):
        assert secret not in stored

    incident(project.path, source, "shop")
    same = project.runpytest("--incident=shop", "-v")
    same.assert_outcomes(passed=3)

    incident(project.path, source, "shop_changed")
    changed = project.runpytest("--incident=shop", "-v")
    changed.assert_outcomes(passed=1, failed=2)  # the two quotes; the login answers as then
    changed.stdout.fnmatch_lines(["*total: 204 -> 205*", "*total: 103 -> 104*"])

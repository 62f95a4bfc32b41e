"""Capture's pieces, each with its twin: what a span gets from the WSGI middleware and the
requests hooks (bodies capped and marked, framing headers left out, the application's and
the caller's streams untouched), secrets redacted before they are set (and kept only when
the rules say so), and the exporter's rows (a timed-out call is `error.type: timeout`, an
answered one is not). Loopback only."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")
pytest.importorskip("opentelemetry.instrumentation.requests")

import requests
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from werkzeug.test import Client

from pytest_incident.capture import Capture, install
from pytest_incident.capture.exporter import to_span
from pytest_incident.capture.record import Recorder
from pytest_incident.core.redaction import RedactionRules
from pytest_incident.model.spans import Span, SpanKind

SECRET = "Bearer tok-S3cr3t-123456"


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider = TracerProvider(resource=Resource.create({"service.name": "unit"}))
    memory = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    yield provider, memory
    provider.shutdown()


def finished(memory: InMemorySpanExporter) -> list[Span]:
    found: tuple[ReadableSpan, ...] = memory.get_finished_spans()
    return [to_span(span) for span in found]


def echo(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("201 Created", [("Content-Type", "text/plain"), ("X-Api-Key", "k-123456")])
    yield b"got "
    yield str(len(body)).encode()
    yield b" bytes"


def serve(provider: TracerProvider, recorder: Recorder, body: bytes, **headers: str) -> bytes:
    capture = Capture(recorder, provider)
    client = Client(capture.wsgi(echo))
    answer = client.post("/echo?password=p4ssw0rd-x&n=1", data=body, headers=headers)
    assert answer.status_code == 201
    return answer.get_data()


def test_a_wsgi_request_and_its_answer_are_recorded_on_the_server_span(spans: Any) -> None:
    provider, memory = spans
    body = serve(provider, Recorder(), b'{"a": 1}', Authorization=SECRET)
    assert body == b"got 8 bytes"
    (span,) = finished(memory)
    a = span.attributes
    assert span.kind is SpanKind.SERVER and span.service == "unit"
    assert (a["http.request.method"], a["url.path"], a["http.response.status_code"]) == (
        "POST",
        "/echo",
        "201",
    )
    assert a["incident.request.body"] == '{"a": 1}'
    assert a["incident.response.body"] == "got 8 bytes"
    headers = json.loads(a["incident.request.headers"])
    assert "host" not in headers and "content-length" not in headers
    assert headers["authorization"].startswith("Bearer redacted-")
    assert json.loads(a["incident.response.headers"])["x-api-key"].startswith("redacted-")
    assert a["url.query"].startswith("password=redacted-") and a["url.query"].endswith("&n=1")
    assert "p4ssw0rd-x" not in repr(span)  # also the instrumentation's own http.target
    assert "tok-S3cr3t-123456" not in repr(span)


def test_rules_that_keep_a_header_keep_it(spans: Any) -> None:
    provider, memory = spans
    keep = RedactionRules(keep_headers=frozenset({"authorization"}))
    serve(provider, Recorder(keep), b"", Authorization=SECRET)
    (span,) = finished(memory)
    assert json.loads(span.attributes["incident.request.headers"])["authorization"] == SECRET


def test_a_body_past_the_cap_is_marked_and_still_reaches_the_app_whole(spans: Any) -> None:
    provider, memory = spans
    assert serve(provider, Recorder(max_body_bytes=4), b"0123456789") == b"got 10 bytes"
    (span,) = finished(memory)
    a = span.attributes
    assert a["incident.request.body"] == "" and a["incident.request.body.truncated"] == "10"
    assert a["incident.response.body"] == "got "  # the first 4 bytes of 12
    assert a["incident.response.body.truncated"] == "12"


def test_a_body_within_the_cap_is_not_marked(spans: Any) -> None:
    provider, memory = spans
    serve(provider, Recorder(max_body_bytes=64), b"0123456789")
    (span,) = finished(memory)
    assert not any(key.endswith(".truncated") for key in span.attributes)


class Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"token": "abcdef-123456", "n": 1}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def captured(spans: Any) -> Iterator[tuple[Capture, InMemorySpanExporter]]:
    provider, memory = spans
    capture = install(tracer_provider=provider)
    yield capture, memory
    capture.uninstall()


def test_a_requests_call_is_recorded_on_its_client_span(captured: Any, upstream: str) -> None:
    _, memory = captured
    answer = requests.get(f"{upstream}/x?q=1", headers={"Authorization": SECRET}, timeout=5)
    assert answer.json()["token"] == "abcdef-123456"  # the caller gets the real answer
    (span,) = finished(memory)
    a = span.attributes
    assert span.kind is SpanKind.CLIENT and keys_of(a) >= {"url.full", "server.port"}
    assert a["url.full"] == f"{upstream}/x?q=1" and a["http.response.status_code"] == "200"
    recorded = json.loads(a["incident.response.body"])
    assert recorded["token"].startswith("redacted-") and recorded["n"] == 1
    assert "abcdef-123456" not in repr(span) and "tok-S3cr3t" not in repr(span)
    assert "error.type" not in a


def keys_of(attributes: Any) -> set[str]:
    return set(attributes)


def test_a_streamed_answer_is_not_read_for_the_recording(captured: Any, upstream: str) -> None:
    _, memory = captured
    with requests.get(f"{upstream}/x", stream=True, timeout=5) as answer:
        assert b"".join(answer.iter_content(4)).startswith(b'{"token"')
    (span,) = finished(memory)
    assert span.attributes["incident.response.body"] == ""
    assert span.attributes["incident.response.body.truncated"] == "unknown"


def test_a_call_that_timed_out_is_recorded_as_a_timeout(captured: Any) -> None:
    _, memory = captured
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    try:
        with pytest.raises(requests.Timeout):
            requests.get(f"http://127.0.0.1:{silent.getsockname()[1]}/slow", timeout=0.2)
    finally:
        silent.close()
    (span,) = finished(memory)
    assert span.attributes["error.type"] == "timeout"
    assert "http.response.status_code" not in span.attributes
    assert span.duration_ns >= 200_000_000


def test_a_token_the_answer_echoes_is_swept_from_it(spans: Any) -> None:
    provider, memory = spans

    def echo_token(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"you sent " + environ["HTTP_AUTHORIZATION"].encode()]

    client = Client(Capture(Recorder(), provider).wsgi(echo_token))
    assert client.get("/", headers={"Authorization": SECRET}).get_data().endswith(b"123456")
    (span,) = finished(memory)
    body = span.attributes["incident.response.body"]
    assert body.startswith("you sent Bearer redacted-") and "S3cr3t" not in body
    placeholder = json.loads(span.attributes["incident.request.headers"])["authorization"]
    assert body == f"you sent {placeholder}"  # the same placeholder on both sides

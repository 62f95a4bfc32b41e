"""Every recorded value a replay uses is checked once, where spans become recorded requests
and calls: a span that cannot be replayed has a problem naming the span, the field and what
is allowed, and a span without one reaches the HTTP client and the stub without an exception
(the twins send it)."""

from __future__ import annotations

import base64
import http.client
import json
from pathlib import Path

import h11
import pytest

from pytest_incident.model.errors import RecordingError
from pytest_incident.model.recorded import OutboundCall, RecordedRequest
from pytest_incident.model.replayable import SpanProblem
from pytest_incident.model.spans import SpanOrigin
from pytest_incident.runtime.replay import send_request
from pytest_incident.runtime.stubs.http import HOP_BY_HOP, wire_headers

from ..spans import ROOT_SPAN, client_span, server_span


class Capture(http.client.HTTPConnection):
    """An HTTP connection that keeps what it would send (no socket)."""

    def __init__(self) -> None:
        super().__init__("127.0.0.1", 1)
        self.sent = b""

    def send(self, data: object) -> None:
        assert isinstance(data, bytes)
        self.sent += data


def sent(request: RecordedRequest) -> bytes:
    """What the replay sends for `request` (it must not raise)."""
    conn = Capture()
    send_request(conn, request, 8000)
    return conn.sent


def answered(call: OutboundCall, method: str = "GET") -> bytes:
    """What the HTTP stub sends for `call`, framed by h11 as HttpStub._answer does."""
    h = h11.Connection(h11.SERVER)
    h.receive_data(f"{method} / HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    h.next_event()
    h.next_event()
    assert call.status is not None
    payload = call.response_body
    headers = [(k, v) for k, v in call.response_headers if k.lower() not in HOP_BY_HOP]
    headers.append(("content-length", str(len(payload))))
    out = h.send(h11.Response(status_code=call.status, headers=wire_headers(headers))) or b""
    out += h.send(h11.Data(data=payload)) or b""
    return out + (h.send(h11.EndOfMessage()) or b"")


def request(**attributes: str) -> RecordedRequest:
    return RecordedRequest(server_span(status=None, **attributes))


def call(attributes: dict[str, str]) -> OutboundCall:
    base = {"http.request.method": "GET", "url.full": "https://api.example/v1?a=1"}
    return OutboundCall(client_span({**base, **attributes}), 0)


def problem_of(item: RecordedRequest | OutboundCall) -> SpanProblem:
    assert item.problem is not None, "expected a problem"
    return item.problem


# -- requests -------------------------------------------------------------------------------

BAD_REQUESTS = [
    ({"incident.request.body": "not base64!", "incident.request.body.encoding": "base64"},
     "incident.request.body", "is not valid base64"),
    ({"incident.request.body": "eA==", "incident.request.body.encoding": "gzip"},
     "incident.request.body.encoding", "'gzip'; allowed: base64, or none (the body is text)"),
    ({"url.path": "/bücher"}, "url.path", "allowed: a path from '/', printable ASCII"),
    ({"url.path": "signup"}, "url.path", "allowed: a path from '/'"),
    ({"url.path": "/a b"}, "url.path", "allowed: a path from '/'"),
    ({"url.query": "q=a b"}, "url.query", "printable ASCII"),
    ({"url.query": "q=\u2028"}, "url.query", "printable ASCII"),
    ({"http.request.method": "GE T"}, "http.request.method", "allowed: an HTTP method"),
    ({"http.request.method": "PÖST"}, "http.request.method", "allowed: an HTTP method"),
    ({"http.route": "/a\nb"}, "http.route", "holds control characters"),
    ({"http.response.status_code": "²"}, "http.response.status_code", "in ASCII digits"),
    ({"http.response.status_code": "५००"}, "http.response.status_code", "in ASCII digits"),
    ({"http.response.status_code": "600"}, "http.response.status_code", "100-599"),
    ({"incident.request.headers": '{"X-A": "a\u2028b"}'}, "incident.request.headers",
     "the value of X-A is 'a\\u2028b'; allowed: header names are tokens"),
    ({"incident.request.headers": '{"X-A": "a\\r\\nX-Evil: 1"}'}, "incident.request.headers",
     "the value of X-A"),
    ({"incident.request.headers": '{"X-A": "a\\u0000"}'}, "incident.request.headers",
     "the value of X-A"),
    ({"incident.request.headers": '{"X A": "a"}'}, "incident.request.headers", "header name"),
    ({"incident.request.headers": '{"X-\u2028": "a"}'}, "incident.request.headers",
     "header name"),
    ({"incident.request.headers": '[["X-A", "a", "b"]]'}, "incident.request.headers",
     "a list of [name, value] pairs"),
    ({"incident.request.headers": "5"}, "incident.request.headers", "a JSON object"),
    ({"incident.request.headers": '{"X-A": null}'}, "incident.request.headers",
     "not a string"),
    ({"incident.request.headers": '{"X-A": {"b": 1}}'}, "incident.request.headers",
     "not a string"),
    ({"incident.request.headers": "[" * 5000}, "incident.request.headers", "is not JSON"),
    ({"incident.response.headers": '{"X-A": "\u2028"}'}, "incident.response.headers",
     "the value of X-A"),
    ({"incident.response.body": "%%", "incident.response.body.encoding": "base64"},
     "incident.response.body", "is not valid base64"),
]  # fmt: skip


@pytest.mark.parametrize(("attributes", "field", "message"), BAD_REQUESTS)
def test_a_request_that_cannot_be_sent_has_a_problem(
    attributes: dict[str, str], field: str, message: str
) -> None:
    found = problem_of(request(**attributes))
    assert found.field == field
    assert message in found.message
    assert str(found).startswith(f"span {ROOT_SPAN}: {field}: ")


GOOD_REQUESTS = [
    {"incident.request.body": base64.b64encode(b"\xff\x00").decode(),
     "incident.request.body.encoding": "base64"},
    {"url.path": "/b%C3%BCcher", "url.query": "q=%20&x=1"},
    {"http.request.method": "patch", "http.route": "/users/{id}"},
    {"http.response.status_code": "503"},
    {"incident.request.headers": '{"X-A": "caf\u00e9\\t1", "X-N": 3, "Set-Cookie": ["a", "b"]}'},
    {"incident.request.headers": '[["x-a", "1"], ["X-A", "2"]]'},
    {"incident.request.body": "{\"email\": \"\u00e9\u2028@example.com\"}"},  # any text body
]  # fmt: skip


@pytest.mark.parametrize("attributes", GOOD_REQUESTS)
def test_the_twins_are_sent_as_recorded(attributes: dict[str, str]) -> None:
    recorded = request(**attributes)
    assert recorded.problem is None
    head, _, body = sent(recorded).partition(b"\r\n\r\n")
    assert head.startswith(f"{recorded.method} {recorded.target} HTTP/1.1".encode())
    assert body == recorded.body


def test_spans_a_plugin_built_are_checked_too() -> None:
    bad_trace = RecordedRequest(server_span(trace="not hex"))
    assert problem_of(bad_trace).field == "TraceId"
    bad_value = RecordedRequest(server_span(**{"url.path": 5}))  # type: ignore[arg-type]
    assert problem_of(bad_value).message == "5 is not a string; attribute values are strings"
    negative = RecordedRequest(server_span(duration_ns=-1))
    assert problem_of(negative).field == "Duration"


# -- outbound calls -------------------------------------------------------------------------

BAD_CALLS = [
    ({"url.full": "http://[::1"}, "url.full", "is not a URL (Invalid IPv6 URL)"),
    ({"url.full": "ftp://api.example/"}, "url.full", "allowed: an absolute http:// or https://"),
    ({"url.full": "http:///v1"}, "url.full", "with a host"),
    ({"url.full": "/v1/charges"}, "url.full", "with a host"),
    ({"url.full": "http://api.example:99999/"}, "url.full", "Port out of range"),
    ({"url.full": "http://api.example:0/"}, "url.full", "port 0; allowed: 1-65535"),
    ({"url.full": "http://api.example:x/"}, "url.full", "is not a URL"),
    ({"url.full": "http://bücher.example/"}, "url.full", "printable ASCII"),
    ({"url.full": "http://a..example/"}, "url.full", "allowed: a host name"),
    ({"url.full": "https://a_b.example/"}, "url.full", "allowed: a host name"),
    ({"url.full": "https://-a.example/"}, "url.full", "allowed: a host name"),
    ({"url.full": "http://api.example/a b"}, "url.full", "printable ASCII"),
    ({"server.port": "²"}, "server.port", "allowed: ASCII digits, 1-65535"),
    ({"server.port": "५४३२"}, "server.port", "allowed: ASCII digits"),
    ({"server.port": "0"}, "server.port", "1-65535"),
    ({"server.port": "70000"}, "server.port", "1-65535"),
    ({"server.address": "api example"}, "server.address", "allowed: a host name"),
    ({"http.response.status_code": "101"}, "http.response.status_code", "200-599"),
    ({"http.response.status_code": "²00"}, "http.response.status_code", "ASCII digits"),
    ({"http.response.status_code": "204", "incident.response.body": "x"},
     "incident.response.body", "a 204 answer carries no body"),
    ({"http.request.method": "HEAD", "http.response.status_code": "200",
      "incident.response.body": "x"}, "incident.response.body", "an answer to HEAD"),
    ({"http.response.status_code": "200", "incident.response.headers": '{"X": "\\n"}'},
     "incident.response.headers", "the value of X"),
    ({"http.response.status_code": "200", "incident.response.body": "!",
      "incident.response.body.encoding": "base64"}, "incident.response.body", "base64"),
    ({"incident.request.body": "!", "incident.request.body.encoding": "base64"},
     "incident.request.body", "base64"),
    ({"error.type": "timeout", "http.response.status_code": "200"}, "error.type",
     "a call that timed out has no http.response.status_code"),
]  # fmt: skip


@pytest.mark.parametrize(("attributes", "field", "message"), BAD_CALLS)
def test_a_call_the_stub_cannot_serve_has_a_problem(
    attributes: dict[str, str], field: str, message: str
) -> None:
    recorded = call(attributes)
    found = problem_of(recorded)
    assert (found.field, found.role) == (field, "outbound call span")
    assert message in found.message
    # the request it belongs to cannot be replayed either: it says which call
    owner = RecordedRequest(server_span(status=200), (recorded,))
    assert owner.problem == found
    assert str(found).startswith(f"outbound call span {recorded.span.span_id}: {field}: ")


GOOD_CALLS = [
    {"http.response.status_code": "200", "incident.response.body": "ok"},
    {"url.full": "http://[::1]:8080/x", "http.response.status_code": "503"},
    {"url.full": "http://127.0.0.5/x", "server.port": "80", "http.response.status_code": "201"},
    {"server.address": "api.example", "server.port": "443", "http.response.status_code": "204"},
    {"http.request.method": "HEAD", "http.response.status_code": "200",
     "incident.response.headers": '{"Content-Length": "5", "X-A": "caf\u00e9"}'},
    {"http.response.status_code": "200", "incident.response.body.encoding": "base64",
     "incident.response.body": base64.b64encode(b"\x89PNG").decode()},
]  # fmt: skip


@pytest.mark.parametrize("attributes", GOOD_CALLS)
def test_the_twin_calls_are_answered(attributes: dict[str, str]) -> None:
    recorded = call(attributes)
    assert recorded.problem is None
    method = attributes.get("http.request.method", "GET")
    data = answered(recorded, method)
    assert data.startswith(f"HTTP/1.1 {recorded.status} ".encode())
    for name, value in recorded.response_headers:
        if name.lower() not in HOP_BY_HOP:
            assert f"{name}: {value}\r\n".encode("latin-1") in data
    assert 0 < recorded.port < 65536 and recorded.host


def test_the_twin_hosts_get_a_stub_certificate() -> None:
    from pytest_incident.runtime.stubs.tls import IncidentCA

    ca = IncidentCA()
    for attributes in GOOD_CALLS:
        ca.server_context(call(attributes).host)  # what an https stub is given


def test_a_call_without_an_answer_is_replayable() -> None:
    timed_out = call({"error.type": "timeout"})
    assert timed_out.problem is None and timed_out.status is None
    reset = call({"error.type": "connection_reset"})
    assert reset.problem is None and not reset.timed_out
    answered_anyway = call({"error.type": "ConnectionError", "http.response.status_code": "502"})
    assert answered_anyway.problem is None  # an error with an answer: the answer is served


def test_the_owner_keeps_its_own_problem_first() -> None:
    bad_call = call({"url.full": "http://[::1"})
    owner = RecordedRequest(server_span(status=None, **{"url.path": "x"}), (bad_call,))
    assert problem_of(owner).field == "url.path"
    assert RecordedRequest(server_span(status=200), (call({}),)).problem is None


# -- where it is reported -------------------------------------------------------------------


def test_a_problem_is_reported_at_its_recording_line(tmp_path: Path) -> None:
    origin = SpanOrigin(tmp_path / "x.events.jsonl", 57)
    span = server_span(**{"url.path": "/\u00e9"})
    found = problem_of(RecordedRequest(span))
    fallback = found.error(tmp_path / "x.yaml", 3)
    assert (fallback.path, fallback.line) == (tmp_path / "x.yaml", 3)
    from dataclasses import replace

    located = problem_of(RecordedRequest(replace(span, origin=origin)))
    error = located.error(tmp_path / "x.yaml", 3)
    assert isinstance(error, RecordingError)
    assert str(error) == (
        f"{tmp_path}/x.events.jsonl:57: span {ROOT_SPAN}: url.path: '/é'; allowed: a path "
        "from '/', printable ASCII without spaces (percent-encode the rest)"
    )


def test_database_params_are_total() -> None:
    from pytest_incident.model.recorded import DatabaseWrite

    from ..spans import db_span

    for raw, expected in [
        ("[" * 5000, ("[" * 5000,)),
        ("5", ("5",)),
        ('{"a": 1}', ('{"a": 1}',)),
        ('[1, "x", null, [2]]', ("1", "x", None, "[2]")),
    ]:
        assert DatabaseWrite(db_span("INSERT", "t", "committed", params=raw)).params == expected


def test_headers_are_decoded_as_json_pairs() -> None:
    pairs = json.dumps([["A", "1"], ["B", "2"]])
    assert request(**{"incident.request.headers": pairs}).headers == (("A", "1"), ("B", "2"))

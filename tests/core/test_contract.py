"""The recording contract (docs/recording-format.md), rule by rule: every rule has a span that
breaks it (a problem or a warning naming the span and the field) and its valid twin (the same
span, fixed, with no finding at all); every problem of a span is named, not only the first."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_incident.core.contract import PROBLEM, WARNING, Finding, check_spans
from pytest_incident.model.replayable import call_problems, check_call, request_problems
from pytest_incident.model.spans import Span, SpanKind
from tests.spans import ROOT_SPAN, TRACE, client_span, server_span

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00").decode()
HEADERS = '{"content-type": "application/json"}'


def request(**attributes: str) -> Span:
    """A complete, valid recorded request, with `attributes` changed."""
    base = {
        "incident.request.headers": HEADERS,
        "incident.request.body": '{"a": 1}',
        "incident.response.headers": HEADERS,
        "incident.response.body": "{}",
    }
    return server_span(status=200, **{**base, **attributes})


def call(**attributes: str) -> Span:
    """A complete, valid outbound call of `request()`, with `attributes` changed."""
    base = {
        "http.request.method": "GET",
        "url.full": "http://api.example/v1/x",
        "server.address": "api.example",
        "server.port": "80",
        "http.response.status_code": "200",
        "incident.request.headers": "{}",
        "incident.response.headers": HEADERS,
        "incident.response.body": "{}",
    }
    return client_span({k: v for k, v in {**base, **attributes}.items() if v is not None})


def findings(*spans: Span) -> list[Finding]:
    return list(check_spans(spans))


def messages(found: list[Finding], severity: str) -> list[str]:
    return [f.message for f in found if f.severity == severity]


R = "span 00f067aa0ba902b7: "  # the recorded request's messages start so
C = "outbound call span 0000000000000001: "  # and its call's

# (rule, the span that breaks it, its valid twin, severity, what the message starts with)
RULES = [
    ("method is a token", request(**{"http.request.method": "PO ST"}),
     request(**{"http.request.method": "POST"}), PROBLEM, R + "http.request.method:"),
    ("path from /", request(**{"url.path": "signup"}), request(**{"url.path": "/signup"}),
     PROBLEM, R + "url.path:"),
    ("query printable ASCII", request(**{"url.query": "a=b c"}),
     request(**{"url.query": "a=b%20c"}),
     PROBLEM, R + "url.query:"),
    ("route without control characters", request(**{"http.route": "/a\nb"}),
     request(**{"http.route": "/a/{id}"}), PROBLEM, R + "http.route:"),
    ("request status 100-599 in ASCII digits", request(**{"http.response.status_code": "²00"}),
     request(**{"http.response.status_code": "200"}), PROBLEM,
     R + "http.response.status_code:"),
    ("headers are JSON", request(**{"incident.request.headers": "content-type: x"}),
     request(**{"incident.request.headers": '[["Content-Type", "x"]]'}), PROBLEM,
     R + "incident.request.headers: is not JSON"),
    ("headers are an object or pairs", request(**{"incident.request.headers": '"x"'}),
     request(**{"incident.request.headers": '{"x": ["1", "2"]}'}), PROBLEM,
     R + "incident.request.headers:"),
    ("header values without CR or LF",
     request(**{"incident.response.headers": '{"x": "a\\r\\nb"}'}),
     request(**{"incident.response.headers": '{"x": "a b"}'}), PROBLEM,
     R + "incident.response.headers: the value of x"),
    ("base64 is the only encoding", request(**{"incident.request.body.encoding": "gzip"}),
     request(**{"incident.request.body": "eyJhIjogMX0=",
                "incident.request.body.encoding": "base64"}),
     PROBLEM, R + "incident.request.body.encoding:"),
    ("base64 must be valid", request(**{"incident.request.body": "not base64!",
                                         "incident.request.body.encoding": "base64"}),
     request(**{"incident.request.body": PNG, "incident.request.body.encoding": "base64"}),
     PROBLEM, R + "incident.request.body:"),
    ("bytes lost to U+FFFD", request(**{"incident.response.body": "\ufffdPNG"}),
     request(**{"incident.response.body": PNG, "incident.response.body.encoding": "base64"}),
     PROBLEM, R + "incident.response.body: holds U+FFFD"),
    ("control characters look binary", request(**{"incident.response.body": "PNG\x00\x01"}),
     request(**{"incident.response.body": "PNG\t\r\n"}),
     WARNING, R + "incident.response.body: holds control characters"),
    ("base64 of binary data needs its encoding",
     request(**{"incident.response.headers": '{"content-type": "image/png"}',
                "incident.response.body": PNG}),
     request(**{"incident.response.headers": '{"content-type": "image/png"}',
                "incident.response.body": PNG, "incident.response.body.encoding": "base64"}),
     PROBLEM, R + "incident.response.body.encoding: missing"),
    ("base64-looking text of a text type is only a warning",
     request(**{"incident.response.headers": '{"content-type": "text/plain"}',
                "incident.response.body": PNG}),
     request(**{"incident.response.headers": '{"content-type": "text/plain"}',
                "incident.response.body": "a token"}),
     WARNING, R + "incident.response.body.encoding: missing"),
    ("url.full is an absolute http(s) URL", call(**{"url.full": "ftp://api.example/x"}), call(),
     PROBLEM, C + "url.full:"),
    ("url.full has a valid host", call(**{"url.full": "http://api_example/x"}), call(),
     PROBLEM, C + "url.full: host"),
    ("server.address is a host name", call(**{"server.address": "api example"}), call(),
     PROBLEM, C + "server.address:"),
    ("server.port 1-65535", call(**{"server.port": "70000"}), call(**{"server.port": "8080"}),
     PROBLEM, C + "server.port:"),
    ("a call's status is final: 200-599", call(**{"http.response.status_code": "100"}), call(),
     PROBLEM, C + "http.response.status_code:"),
    ("a timeout has no status", call(**{"error.type": "timeout"}),
     call(**{"error.type": "timeout", "http.response.status_code": None,
             "incident.response.headers": None, "incident.response.body": None}),
     PROBLEM, C + "error.type: 'timeout' on a call answered"),
    ("no body on an answer to HEAD", call(**{"http.request.method": "HEAD"}),
     call(**{"http.request.method": "HEAD", "incident.response.body": ""}),
     PROBLEM, C + "incident.response.body: an answer to HEAD"),
    ("no body on a 204", call(**{"http.response.status_code": "204"}),
     call(**{"http.response.status_code": "204", "incident.response.body": ""}),
     PROBLEM, C + "incident.response.body: a 204 answer"),
    ("a request's answer body is recorded", request(**{"incident.response.body": None}),
     request(**{"incident.response.body": ""}), WARNING,
     R + "incident.response.body: missing"),
    ("a request's headers are recorded", request(**{"incident.request.headers": None}),
     request(), WARNING, R + "incident.request.headers: missing"),
    ("a call's answer body is recorded", call(**{"incident.response.body": None}), call(),
     WARNING, C + "incident.response.body: missing"),
    ("a call without an answer says why", call(**{"http.response.status_code": None}),
     call(**{"http.response.status_code": None, "error.type": "connection_reset"}),
     WARNING, C + "error.type: no http.response.status_code"),
    ("a Client span names its URL", client_span({"http.request.method": "GET"}), call(),
     WARNING, "span 0000000000000001: url.full: missing: an HTTP call"),
    ("a database span holds its statement", client_span({"db.system.name": "postgresql"}),
     client_span({"db.system.name": "postgresql", "db.query.text": "INSERT INTO t VALUES (1)"}),
     WARNING, "database span 0000000000000001: db.query.text: missing"),
    ("database parameters are a JSON array",
     client_span({"db.system.name": "postgresql", "db.query.text": "x",
                  "incident.db.params": "{}"}),
     client_span({"db.system.name": "postgresql", "db.query.text": "x",
                  "incident.db.params": "[1]"}),
     WARNING, "database span 0000000000000001: incident.db.params:"),
]  # fmt: skip


def _clean(span: Span) -> Span:
    """`request()` and `call()` spell "absent" as None."""
    attributes = {k: v for k, v in span.attributes.items() if v is not None}
    return replace(span, attributes=attributes)


@pytest.mark.parametrize(
    ("rule", "bad", "good", "severity", "start"), RULES, ids=[r[0] for r in RULES]
)
def test_every_rule_has_a_failing_example_and_a_valid_twin(
    rule: str, bad: Span, good: Span, severity: str, start: str
) -> None:
    context = [] if bad.kind is SpanKind.SERVER else [request()]
    found = findings(*context, _clean(bad))
    assert [m for m in messages(found, severity) if m.startswith(start)], (rule, found)
    if severity == WARNING:
        assert not messages(found, PROBLEM), found
    assert findings(*context, _clean(good)) == []


def test_a_crash_is_no_status_and_an_error_status_code() -> None:
    unanswered = request(**{"http.response.status_code": None, "incident.response.body": None})
    found = findings(_clean(unanswered))
    assert messages(found, WARNING) == [
        "span 00f067aa0ba902b7: http.response.status_code: missing while StatusCode is 'Unset': "
        "read as a request that got no answer yet did not fail; a service that crashed has no "
        "status and StatusCode Error"
    ]
    assert findings(replace(_clean(unanswered), status_code="Error")) == []


def test_every_problem_of_a_span_is_named_not_only_the_first() -> None:
    bad = request(**{"http.request.method": "PO ST", "url.path": "x", "url.query": "a b"})
    found = messages(findings(bad), PROBLEM)
    assert [m.split(":")[1].strip() for m in found] == [
        "http.request.method",
        "url.path",
        "url.query",
    ]
    # the replay's own check still reports the first
    assert [p.field for p in request_problems(bad)] == [
        "http.request.method",
        "url.path",
        "url.query",
    ]


def test_the_first_problem_is_what_replay_reports() -> None:
    bad = _clean(call(**{"url.full": "http://[::1", "server.port": "0"}))
    first = check_call(bad)
    assert first is not None and first == call_problems(bad)[0]
    assert [p.field for p in call_problems(bad)] == ["url.full", "server.port"]


def test_spans_a_replay_never_reaches_are_warned_about() -> None:
    orphan = client_span({**call().attributes}, trace="ab" * 16)
    early = replace(call(), timestamp_ns=5)
    late_request = replace(request(), timestamp_ns=10)
    second = replace(request(), span_id="00f067aa0ba902b8", timestamp_ns=11)
    found = messages(findings(late_request, early, orphan, second), WARNING)
    assert found == [
        "span 00f067aa0ba902b8: TraceId: a second Server span in the trace: each is replayed, "
        "and every outbound call of the trace is served to both (a recording holds one request "
        "per trace: the service under test's)",
        "outbound call span 0000000000000001: TraceId: starts before the Server span of its "
        "trace: replay serves only the calls made while the request was handled",
        f"outbound call span 0000000000000001: TraceId: its trace {'ab' * 16} holds no Server "
        "span: no recorded request makes this call, and replay never serves it",
    ]


def test_a_recording_without_a_request_is_a_problem() -> None:
    found = findings(_clean(call()))
    assert messages(found, PROBLEM) == [
        "the recording holds no recorded request (Server span) among its 1 spans: there is "
        "nothing to replay"
    ]
    assert findings(request(), _clean(call())) == []


def test_producer_and_email_spans() -> None:
    job = Span(2, TRACE, "0000000000000002", ROOT_SPAN, "send", SpanKind.PRODUCER, "s", {}, 1)
    assert messages(findings(request(), job), WARNING)[0].startswith(
        "span 0000000000000002: messaging.system:"
    )
    fixed = replace(job, attributes={"messaging.system": "rq"})
    email = client_span({"incident.kind": "smtp", "incident.request.body": "hi"})
    assert findings(request(), fixed, email) == []


def test_ids_and_duration_of_a_span_built_by_another_source() -> None:
    bad = replace(request(), trace_id="xyz", duration_ns=-1)
    assert messages(findings(bad), PROBLEM)[0].startswith("span 00f067aa0ba902b7: TraceId:")


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=64))
def test_bytes_recorded_as_base64_are_always_valid(data: bytes) -> None:
    from pytest_incident.model.conventions import encode_body

    span = request(**encode_body("incident.response.body", data))
    assert messages(findings(span), PROBLEM) == []


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=12, max_size=64))
def test_binary_bytes_as_bare_base64_are_caught(data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        return  # text base64-encoded is text
    text = base64.b64encode(data).decode()
    if len(text) % 4:
        return
    span = request(**{"incident.response.headers": "{}", "incident.response.body": text})
    assert any(
        "incident.response.body.encoding: missing" in m for m in messages(findings(span), PROBLEM)
    )


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_the_encoder_round_trips_and_writes_base64_for_binary_looking_bytes(data: bytes) -> None:
    from pytest_incident.model.conventions import BINARY_LOOKING_RE, decode_body, encode_body

    stored = encode_body("incident.request.body", data)
    assert decode_body(stored, "incident.request.body") == data
    text = stored["incident.request.body"]
    if "incident.request.body.encoding" not in stored:
        assert not BINARY_LOOKING_RE.search(text)

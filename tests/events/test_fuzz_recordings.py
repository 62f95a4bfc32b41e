"""Fuzzing the recording's two decoders: the frozen-file reader (bytes -> spans) and the
span decoder (spans -> recorded requests and calls). The guarantee: a RecordingError with a
line number, or valid spans; and a request is either reported (its `problem`) or replayed
without an exception: everything the replay reads of it is total, http.client sends it and
h11 frames each of its calls' answers."""

from __future__ import annotations

import base64
import gzip
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_incident.core.matching import LiveRequest, MatchRules
from pytest_incident.events.frozen import FORMAT_NAME, read_spans, span_to_row
from pytest_incident.events.selection import choose
from pytest_incident.model.errors import RecordingError
from pytest_incident.model.recorded import OutboundCall, RecordedRequest
from pytest_incident.model.spans import Span, SpanKind
from pytest_incident.model.spec import Select, Window

from ..spans import client_span, server_span
from .test_replayable import answered, sent

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HEADER = json.dumps({"format": FORMAT_NAME, "version": 1})
AT = 1_715_695_392_000_000_000
WINDOW = Window(AT - 10**12, AT + 10**12)

SERVER = server_span(
    at=AT,
    status=500,
    **{
        "http.route": "/signup",
        "url.query": "ref=ad",
        "incident.request.headers": json.dumps({"Content-Type": "application/json"}),
        "incident.request.body": '{"email": "a@example.com"}',
        "incident.response.headers": json.dumps([["Content-Type", "text/plain"]]),
        "incident.response.body": "boom",
    },
)
CLIENT = client_span(
    {
        "http.request.method": "POST",
        "url.full": "https://api.example:8443/v1/charges?x=1",
        "server.address": "api.example",
        "server.port": "8443",
        "http.response.status_code": "201",
        "incident.request.headers": json.dumps({"Idempotency-Key": "k1"}),
        "incident.request.body": "amount=5",
        "incident.response.headers": json.dumps({"Content-Type": "application/json"}),
        "incident.response.body": base64.b64encode(b'{"id": 1}').decode(),
        "incident.response.body.encoding": "base64",
    },
    at=AT + 1,
)
ROWS = [span_to_row(SERVER), span_to_row(CLIENT)]

ATTRIBUTES = [
    "http.request.method", "url.path", "url.query", "http.route", "http.response.status_code",
    "url.full", "server.address", "server.port", "error.type", "incident.request.headers",
    "incident.request.body", "incident.request.body.encoding", "incident.response.headers",
    "incident.response.body", "incident.response.body.encoding", "db.system.name",
    "incident.db.params",
]  # fmt: skip
COLUMNS = [
    "Timestamp", "TraceId", "SpanId", "ParentSpanId", "SpanName", "SpanKind", "ServiceName",
    "SpanAttributes", "ResourceAttributes", "Duration", "StatusCode", "StatusMessage",
    "Events.Timestamp", "Events.Name", "Events.Attributes",
]  # fmt: skip
HOSTILE_TEXT = [
    "", "²", "५४३२", "٣", "0", "65536", "-1", "99999999999999999999", "1e400", "http://[::1",
    "http://[::1]:99999/", "ftp://x/", "http:///x", "http://bücher.example/", "http://a:x/",
    "/bücher", "/a b", "a\u2028b", "a\r\nX-Evil: 1", "a\x00b", "\x7f", "!!", "%%%", "eA=",
    "base64", "gzip", "GE T", "HEAD", "204", "101", "[[[[", '{"a": ', '{"X": ["a", 1]}',
    '{"X": "\\u2028"}', '[["a"]]', '[["a", "b", "c"]]', "5", "null", '{"X A": "1"}',
    "\ud800", "😀", "2024-05-14 14:03:12", "٢٠٢٤-05-14 14:03:12", "Server", "Client",
]  # fmt: skip


NESTED_RE = re.compile(r'"<nest (\d+)>"')


def nested(text: str) -> str:
    """Deep nesting, spliced into the JSON text (hypothesis could not show the value)."""
    return NESTED_RE.sub(lambda m: "[" * int(m[1]) + "]" * int(m[1]), text)


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HOSTILE_TEXT),
    st.text(max_size=12),
)
json_values = st.one_of(
    json_scalars,
    st.lists(json_scalars, max_size=3),
    st.dictionaries(st.sampled_from(ATTRIBUTES), json_scalars, max_size=3),
    st.integers(min_value=60, max_value=2_000).map(lambda depth: f"<nest {depth}>"),
)
attribute_values = st.one_of(st.sampled_from(HOSTILE_TEXT), st.text(max_size=16), json_values)


@st.composite
def mutated_rows(draw: st.DrawFn) -> dict[str, Any]:
    row = dict(draw(st.sampled_from(ROWS)))
    row["SpanAttributes"] = dict(row["SpanAttributes"])
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        attributes = row.get("SpanAttributes")
        if isinstance(attributes, dict) and draw(st.booleans()):
            attributes[draw(st.sampled_from(ATTRIBUTES))] = draw(attribute_values)
        elif draw(st.booleans()):
            row[draw(st.sampled_from(COLUMNS))] = draw(json_values)
        else:
            row.pop(draw(st.sampled_from(COLUMNS)), None)
    return row


def read(data: bytes, gzipped: bool) -> list[Span] | RecordingError:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("events.jsonl.gz" if gzipped else "events.jsonl")
        path.write_bytes(data)
        try:
            return list(read_spans(path))
        except RecordingError as error:
            assert error.line >= 1 and error.message
            assert str(error).startswith(f"{path}:{error.line}: ")
            return error


def check_replayable(spans: list[Span]) -> None:
    """Each selected request: reported, or replayed without an exception."""
    for request in choose(spans, WINDOW, Select()).requests:
        problem = request.problem
        if problem is not None:
            assert str(problem) and problem.error(Path("x.yaml"), 1).line >= 1
            continue
        _ = (request.failed, request.route, request.response_headers, request.response_body)
        sent(request)
        for call in request.outbound:
            replayed(call)


def replayed(call: OutboundCall) -> None:
    _ = (call.host, call.port, call.scheme, call.describe(), call.latency_s)
    live = LiveRequest(call.scheme, call.host, call.port, "GET", "/x?y=1", (), b"")
    rules = MatchRules(("method", "scheme", "host", "port", "path", "query", "body", "header:a"))
    for part in rules.parts:
        rules.agrees(part, live, call)
    if call.status is not None:
        answered(call, call.method)


@FUZZ
@given(rows=st.lists(mutated_rows(), min_size=1, max_size=3), gzipped=st.booleans())
def test_mutated_rows_read_as_spans_or_a_recording_error(
    rows: list[dict[str, Any]], gzipped: bool
) -> None:
    text = HEADER + "\n" + "".join(nested(json.dumps(row)) + "\n" for row in rows)
    data = gzip.compress(text.encode()) if gzipped else text.encode()
    outcome = read(data, gzipped)
    if isinstance(outcome, RecordingError):
        assert 2 <= outcome.line <= len(rows) + 1  # the header is fine: a row's line
        return
    assert len(outcome) == len(rows)
    check_replayable(outcome)


@FUZZ
@given(
    body=st.binary(max_size=300),
    header=st.booleans(),
    gzipped=st.booleans(),
    cut=st.integers(min_value=0, max_value=40),
)
def test_raw_bytes_read_as_spans_or_a_recording_error(
    body: bytes, header: bool, gzipped: bool, cut: int
) -> None:
    data = (HEADER.encode() + b"\n" if header else b"") + body
    if gzipped:
        data = gzip.compress(data)
        data = data[: len(data) - cut] if cut else data  # truncated, often
    outcome = read(data, gzipped)
    if not isinstance(outcome, RecordingError):
        check_replayable(outcome)


@FUZZ
@given(
    server=st.dictionaries(st.sampled_from(ATTRIBUTES), st.sampled_from(HOSTILE_TEXT) | st.text()),
    client=st.dictionaries(st.sampled_from(ATTRIBUTES), st.sampled_from(HOSTILE_TEXT) | st.text()),
)
def test_spans_decode_into_a_problem_or_a_replayable_request(
    server: dict[str, str], client: dict[str, str]
) -> None:
    """Spans from any source (a plugin builds them unchecked): the decoder never raises."""
    spans = [
        Span(**{**SERVER.__dict__, "attributes": {**SERVER.attributes, **server}}),
        Span(**{**CLIENT.__dict__, "attributes": {**CLIENT.attributes, **client}}),
    ]
    if "url.full" in client and not client["url.full"]:
        assert spans[1].kind is SpanKind.CLIENT  # no URL: not an outbound call, ignored
    check_replayable(spans)
    RecordedRequest(spans[0])  # built alone too

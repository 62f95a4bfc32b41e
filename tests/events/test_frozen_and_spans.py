"""The event log: span views (timestamps, bodies, headers) and the frozen JSON Lines file."""

from __future__ import annotations

import base64
import gzip
import json
import types
from pathlib import Path

import pytest

from pytest_incident.events.frozen import FORMAT_NAME, read_spans, span_to_row, write_spans
from pytest_incident.model.conventions import decode_body, decode_headers
from pytest_incident.model.errors import RecordingError
from pytest_incident.model.recorded import OutboundCall, RecordedRequest
from pytest_incident.model.spans import Span, SpanEvent, SpanKind, format_timestamp, parse_timestamp

STAMP = "2024-05-14 14:03:12.123456789"
STAMP_NS = 1_715_695_392_123_456_789


def make_span(attributes: dict[str, str] | None = None, **kw: object) -> Span:
    fields: dict[str, object] = {
        "timestamp_ns": STAMP_NS,
        "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
        "span_id": "00f067aa0ba902b7",
        "parent_span_id": "",
        "name": "POST /signup",
        "kind": SpanKind.SERVER,
        "service": "signup",
        "attributes": attributes or {},
        "duration_ns": 250_000_000,
    }
    fields.update(kw)
    return Span(**fields)  # type: ignore[arg-type]


# --- timestamps ----------------------------------------------------------------------------


def test_timestamp_clickhouse_text_round_trip() -> None:
    assert parse_timestamp(STAMP) == STAMP_NS
    assert format_timestamp(STAMP_NS) == STAMP


@pytest.mark.parametrize(
    "text",
    [
        "2024-05-14T14:03:12.123456789Z",
        "2024-05-14T14:03:12.123456789+00:00",
        " 2024-05-14 14:03:12.123456789 ",
    ],
)
def test_timestamp_iso_forms(text: str) -> None:
    assert parse_timestamp(text) == STAMP_NS


def test_timestamp_short_and_missing_fractions() -> None:
    assert parse_timestamp("2024-05-14 14:03:12.5") == STAMP_NS - 123_456_789 + 500_000_000
    assert parse_timestamp("2024-05-14T14:03:12Z") == STAMP_NS - 123_456_789
    assert format_timestamp(STAMP_NS - 123_456_789) == "2024-05-14 14:03:12.000000000"
    assert format_timestamp(0) == "1970-01-01 00:00:00.000000000"


def test_timestamp_numbers_pass_through() -> None:
    assert parse_timestamp(STAMP_NS) == STAMP_NS


@pytest.mark.parametrize("text", ["yesterday", "2024-05-14", "2024-05-14 14:03:12.12a"])
def test_timestamp_errors(text: str) -> None:
    with pytest.raises(ValueError, match="not a UTC timestamp"):
        parse_timestamp(text)


# --- bodies and headers --------------------------------------------------------------------


def test_text_and_base64_bodies() -> None:
    payload = b"\x89PNG\r\n\x00\xff"
    span = make_span(
        {
            "incident.request.body": '{"email": "é@example.com"}',
            "incident.response.body": base64.b64encode(payload).decode(),
            "incident.response.body.encoding": "base64",
        }
    )
    assert (
        decode_body(span.attributes, "incident.request.body")
        == '{"email": "é@example.com"}'.encode()
    )
    assert decode_body(span.attributes, "incident.response.body") == payload
    assert decode_body(span.attributes, "incident.missing.body") == b""


def test_bad_base64_body_names_the_span() -> None:
    span = make_span(
        {"incident.request.body": "not base64!", "incident.request.body.encoding": "base64"}
    )
    with pytest.raises(ValueError, match=r"00f067aa0ba902b7.*not valid base64"):
        _ = RecordedRequest(span).body


def test_headers_as_object_with_list_values() -> None:
    span = make_span(
        {
            "incident.request.headers": json.dumps(
                {"Content-Type": "application/json", "Set-Cookie": ["a=1", "b=2"], "X-N": 3}
            )
        }
    )
    assert decode_headers(span.attributes, "incident.request.headers") == (
        ("Content-Type", "application/json"),
        ("Set-Cookie", "a=1"),
        ("Set-Cookie", "b=2"),
        ("X-N", "3"),
    )


def test_headers_as_pairs_keep_order_and_repeats() -> None:
    pairs = [["Accept", "*/*"], ["X-Trace", "1"], ["Accept", "text/html"]]
    span = make_span({"incident.request.headers": json.dumps(pairs)})
    assert RecordedRequest(span).headers == (
        ("Accept", "*/*"),
        ("X-Trace", "1"),
        ("Accept", "text/html"),
    )


def test_headers_absent_and_invalid() -> None:
    assert decode_headers(make_span().attributes, "incident.request.headers") == ()
    with pytest.raises(ValueError, match="is not JSON"):
        decode_headers(
            make_span({"incident.request.headers": "{"}).attributes, "incident.request.headers"
        )


# --- request views -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "status, status_code, failed",
    [
        ("500", "Unset", True),
        ("503", "Error", True),
        ("499", "Error", False),  # answered, below 500: not a production failure
        ("200", "Unset", False),
        ("", "Error", True),  # no answer, Error status
        ("", "ERROR", True),
        ("", "Unset", False),
        ("", "Ok", False),
    ],
)
def test_recorded_request_failed(status: str, status_code: str, failed: bool) -> None:
    attributes = {"http.response.status_code": status} if status else {}
    request = RecordedRequest(make_span(attributes, status_code=status_code))
    assert request.failed is failed


def test_recorded_request_fields() -> None:
    request = RecordedRequest(
        make_span(
            {
                "http.request.method": "post",
                "url.path": "/signup",
                "url.query": "ref=ad",
                "http.response.status_code": "502",
            }
        )
    )
    assert request.method == "POST"
    assert request.target == "/signup?ref=ad"
    assert request.route == "/signup"
    assert request.status == 502
    assert request.request_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert RecordedRequest(make_span()).target == "/"


def test_outbound_call_timeout_and_describe() -> None:
    span = make_span(
        {
            "http.request.method": "POST",
            "url.full": "https://api.example/v1",
            "error.type": "timeout",
        },
        kind=SpanKind.CLIENT,
    )
    outbound = OutboundCall(span, 2)
    assert outbound.timed_out
    assert outbound.latency_s == 0.25
    assert outbound.describe() == "#2 POST https://api.example/v1 -> timeout"


def test_span_kind_parse() -> None:
    assert SpanKind.parse("Server") is SpanKind.SERVER
    assert SpanKind.parse("SPAN_KIND_CLIENT") is SpanKind.CLIENT
    with pytest.raises(ValueError, match="unknown SpanKind"):
        SpanKind.parse("Serverish")


# --- frozen file ---------------------------------------------------------------------------


def sample_spans() -> list[Span]:
    server = make_span(
        {"http.request.method": "POST", "url.path": "/signup", "http.response.status_code": "500"},
        status_code="Error",
        status_message="boom",
        resource_attributes={"service.version": "1.4.2"},
        events=(
            SpanEvent(STAMP_NS + 1, "connect", {"fd": "5", "return": "-111"}),
            SpanEvent(STAMP_NS + 2, "exception"),
        ),
    )
    client = make_span(
        {"url.full": "https://api.example/v1", "error.type": "timeout"},
        kind=SpanKind.CLIENT,
        span_id="b7ad6b7169203331",
        parent_span_id="00f067aa0ba902b7",
        timestamp_ns=STAMP_NS + 999,
    )
    return [server, client]


def header_line() -> str:
    return json.dumps({"format": FORMAT_NAME, "version": 1})


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_write_then_read_round_trip(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    spans = sample_spans()
    assert write_spans(path, spans) == 2
    assert list(read_spans(path)) == spans


def test_gzip_name_writes_gzip_and_plain_name_writes_text(tmp_path: Path) -> None:
    write_spans(tmp_path / "a.jsonl.gz", sample_spans())
    write_spans(tmp_path / "a.jsonl", sample_spans())
    assert (tmp_path / "a.jsonl.gz").read_bytes()[:2] == b"\x1f\x8b"
    plain = (tmp_path / "a.jsonl").read_text()
    assert gzip.decompress((tmp_path / "a.jsonl.gz").read_bytes()).decode() == plain
    first, second, _third = plain.splitlines()
    assert json.loads(first) == {"format": FORMAT_NAME, "version": 1}
    row = json.loads(second)
    assert row["Timestamp"] == STAMP
    assert row["SpanKind"] == "Server"
    assert row["Events.Name"] == ["connect", "exception"]


def test_gzip_rewrite_is_byte_identical(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    write_spans(path, sample_spans())
    before = path.read_bytes()
    write_spans(path, sample_spans())
    assert path.read_bytes() == before
    assert before[4:8] == b"\0\0\0\0"  # no mtime in the gzip header


def test_reading_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    good = json.dumps(span_to_row(sample_spans()[0]))
    path.write_text(f"{header_line()}\n{good}\n{good}\n{{broken\n")
    spans = read_spans(path)
    assert isinstance(spans, types.GeneratorType)
    assert next(spans) == sample_spans()[0]
    assert next(spans) == sample_spans()[0]
    with pytest.raises(RecordingError) as info:
        next(spans)
    assert info.value.line == 4


def test_missing_header_fails_on_line_1(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(span_to_row(sample_spans()[0])) + "\n")
    with pytest.raises(RecordingError, match="first line must be") as info:
        list(read_spans(path))
    assert info.value.line == 1
    assert str(info.value).startswith(f"{path}:1: ")


@pytest.mark.parametrize("first", ["", "not json", "[1]", '{"format": "something-else"}'])
def test_bad_first_line(tmp_path: Path, first: str) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(first + "\n")
    with pytest.raises(RecordingError, match="first line must be") as info:
        list(read_spans(path))
    assert info.value.line == 1


def test_unsupported_version(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(json.dumps({"format": FORMAT_NAME, "version": 2}).encode()))
    with pytest.raises(RecordingError, match="version 2 is not supported; supported: 1") as info:
        list(read_spans(path))
    assert info.value.line == 1


@pytest.mark.parametrize(
    "row, message",
    [
        ("{not json", "Expecting"),
        ("[1, 2]", "must be a JSON object"),
        ('{"TraceId": "0a", "SpanId": "0b"}', "missing column Timestamp"),
        (
            '{"Timestamp": "2024-05-14 14:03:12", "TraceId": "0a", "SpanId": "0b",'
            ' "SpanKind": "Sideways"}',
            "unknown SpanKind",
        ),
        (
            '{"Timestamp": "soon", "TraceId": "0a", "SpanId": "0b"}',
            "not a UTC timestamp",
        ),
        (
            '{"Timestamp": "2024-05-14 14:03:12", "TraceId": "0a", "SpanId": "0b",'
            ' "SpanAttributes": [1]}',
            "SpanAttributes must be an object",
        ),
        (
            '{"Timestamp": "2024-05-14 14:03:12", "TraceId": "0a", "SpanId": "0b",'
            ' "Events.Name": ["a", "b"], "Events.Timestamp": ["2024-05-14 14:03:12"]}',
            None,  # event columns of different lengths
        ),
    ],
)
def test_malformed_row_reports_its_line(tmp_path: Path, row: str, message: str | None) -> None:
    path = tmp_path / "events.jsonl"
    good = json.dumps(span_to_row(sample_spans()[1]))
    path.write_text(f"{header_line()}\n{good}\n\n{row}\n")  # blank lines still count
    with pytest.raises(RecordingError, match=message) as info:
        list(read_spans(path))
    assert info.value.line == 4
    assert str(info.value).startswith(f"{path}:4: ")


def test_minimal_row_gets_defaults(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    row = {
        "Timestamp": "2024-05-14T14:03:12.5Z",
        "TraceId": "0a",
        "SpanId": "0b",
        "SpanAttributes": {"server.port": 443, "flag": True, "s": "x"},
    }
    path.write_text(f"{header_line()}\n{json.dumps(row)}\n")
    (span,) = read_spans(path)
    assert span.kind is SpanKind.UNSPECIFIED
    assert span.status_code == "Unset"
    assert span.events == ()
    assert span.attributes == {"server.port": "443", "flag": "true", "s": "x"}


def test_scan_goes_on_past_a_bad_row_and_read_stops_at_it(tmp_path: Path) -> None:
    """scan_spans (validate) yields each bad row's error in its place and reads on;
    read_spans (replay) raises the first. Non-UTF-8 bytes are one bad row too."""
    from pytest_incident.events.frozen import scan_spans

    good = '{"Timestamp": 1, "TraceId": "ab", "SpanId": "01", "SpanKind": "Server"}'
    path = tmp_path / "mixed.events.jsonl"
    path.write_bytes(
        b'{"format": "pytest-incident-spans", "version": 1}\n'
        + good.encode()
        + b"\n"
        + b'{"Timestamp": 1, "SpanId": "02"}\n'
        + b"\xff\xfe\n\n"
        + good.replace('"01"', '"03"').encode()
        + b"\n"
    )
    items = list(scan_spans(path))
    assert [type(i).__name__ for i in items] == ["Span", "RecordingError", "RecordingError", "Span"]
    errors = [i for i in items if isinstance(i, RecordingError)]
    assert [(e.line, e.message) for e in errors] == [
        (3, "span 02: missing column TraceId"),
        (4, "not UTF-8 text (byte 0xff at column 1); a recording is UTF-8 JSON Lines"),
    ]
    with pytest.raises(RecordingError) as raised:
        list(read_spans(path))
    assert raised.value.line == 3

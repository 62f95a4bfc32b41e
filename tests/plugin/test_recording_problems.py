"""A recording's mistakes through pytester: a span that cannot be replayed errors on its own
item only, at the recording's line, and the incident's other requests still run; a window or
select that keeps nothing is an error at its line naming what the recording holds; a corrupt
recording is a `file:line` collection error, never a traceback."""

from __future__ import annotations

import gzip
import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_incident.events.frozen import read_spans, write_spans
from pytest_incident.model.spans import Span

from ..conftest import write_incident

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

DEMO_EVENTS = "incidents/2024-05-signup.events.jsonl.gz"
OK_APP = """
def app(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"ok"]
"""

# span id -> the attributes that make it unreplayable (demo recording, requests of four traces)
BROKEN = {
    # a request body marked base64 that is not
    "c8713290620762ea": {"incident.request.body": "not base64!",
                         "incident.request.body.encoding": "base64"},
    # a request header value holding U+2028
    "25e49909b8559322": {"incident.request.headers": '{"X-Note": "a\\u2028b"}'},
    # an outbound call (of request f6a57b9d) whose URL is no URL
    "e267b7da3c9406a9": {"url.full": "http://[::1"},
    # an outbound call (of request 579f287d) whose port is a superscript two
    "ecaa0a582820b60a": {"server.port": "²"},
}  # fmt: skip
EXPECTED = {
    "c8713290620762ea": "span c8713290620762ea: incident.request.body: is not valid base64",
    "25e49909b8559322": "span 25e49909b8559322: incident.request.headers: the value of X-Note "
    "is 'a\\u2028b'; allowed: header names are tokens*",
    "e267b7da3c9406a9": "outbound call span e267b7da3c9406a9: url.full: 'http://?::1' is not a "
    "URL (Invalid IPv6 URL); allowed: an absolute http:// or https:// URL*",
    "ecaa0a582820b60a": "outbound call span ecaa0a582820b60a: server.port: '²'; allowed: ASCII "
    "digits, 1-65535",
}
GOOD = ["058abed1", "38b2bd08"]
BAD = ["5983a437", "ee588629", "f6a57b9d", "579f287d"]


def broken_recording(pytester: pytest.Pytester) -> dict[str, int]:
    """The demo recording with BROKEN applied, as plain JSON Lines; span id -> its line."""
    spans: list[Span] = []
    for span in read_spans(pytester.path / DEMO_EVENTS):
        if span.span_id in BROKEN:
            span = replace(span, attributes={**span.attributes, **BROKEN[span.span_id]})
        spans.append(span)
    path = pytester.path / "incidents" / "broken.events.jsonl"
    write_spans(path, spans)
    lines = path.read_text().splitlines()
    return {
        span_id: next(i for i, line in enumerate(lines, 1) if f'"SpanId": "{span_id}"' in line)
        for span_id in BROKEN
    }


def test_an_unreplayable_span_errors_only_its_own_item(demo: pytest.Pytester) -> None:
    lines = broken_recording(demo)
    demo.makepyfile(ok_app=OK_APP)
    path = demo.path / "incidents" / "broken.yaml"
    path.write_text(
        "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\n"
        "source: broken.events.jsonl\n"
        f"select: {{requests: {json.dumps(GOOD + BAD)}}}\n"
        "target: {wsgi: 'ok_app:app', server: wsgiref}\n"
    )
    result = demo.runpytest("--incident=broken", "-rA")
    result.assert_outcomes(passed=2, errors=4)
    out = result.stdout.str()
    for span_id, message in EXPECTED.items():
        result.stdout.fnmatch_lines([f"*incidents/broken.events.jsonl:{lines[span_id]}: {message}"])
    for request in BAD:
        result.stdout.fnmatch_lines([f"ERROR incidents/broken.yaml::POST /signup?{request}*"])
    for request in GOOD:  # the twins: the same incident's other requests run and pass
        result.stdout.fnmatch_lines([f"PASSED incidents/broken.yaml::POST /signup?{request}*"])
    assert "this recorded request cannot be replayed" in out
    assert "Traceback" not in out and "INTERNALERROR" not in out


def test_a_select_that_keeps_nothing_names_what_the_window_holds(
    demo: pytest.Pytester,
) -> None:
    write_incident(demo, "nothing", "select: {routes: ['POST /login']}\ntarget: {wsgi: 'a:b'}\n")
    result = demo.runpytest("--incident=nothing", "--collect-only")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "incidents/nothing.yaml:3: select: routes 'POST /login' matches none of the requests "
            "recorded in the window (2024-05-14 14:00:00 .. 2024-05-14 14:30:00 UTC); the window "
            "holds 16 from 2024-05-14 14:02:00 to 2024-05-14 14:27:00 UTC; services: signup (14), "
            "billing-worker (2); routes: POST /signup (12), GET /health (2), "
            "POST /jobs/retry-pending-charges (1), POST /webhooks/payments (1)",
            "  >  3 | select: {routes: ['POST /login']}",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_the_documented_bare_path_route_selects_any_method(demo: pytest.Pytester) -> None:
    write_incident(demo, "bare", "select: {routes: ['/signup']}\ntarget: {wsgi: 'a:b'}\n")
    result = demo.runpytest("--incident=bare", "--collect-only", "-q")
    result.stdout.fnmatch_lines(["*12 tests collected*"])


def test_a_window_that_holds_no_request_names_the_recordings_range(
    demo: pytest.Pytester,
) -> None:
    path = write_incident(demo, "later", "target: {wsgi: 'a:b'}\n")
    path.write_text(path.read_text().replace("2024-05-14T14", "2024-05-15T14"))
    result = demo.runpytest("--incident=later", "--collect-only")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "incidents/later.yaml:1: window: no recorded request (Server span) in 2024-05-15 "
            "14:00:00 .. 2024-05-15 14:30:00 UTC; the recording's requests: 18 from 2024-05-14 "
            "13:55:12 to 2024-05-14 14:40:27 UTC; services: signup (16), billing-worker (2); "
            "routes: POST /signup (14), GET /health (2), *",
        ]
    )


def test_a_truncated_recording_is_a_collection_error_at_its_line(demo: pytest.Pytester) -> None:
    events = demo.path / DEMO_EVENTS
    whole = events.read_bytes()
    cut = demo.path / "incidents" / "cut.events.jsonl.gz"
    cut.write_bytes(whole[: len(whole) // 2])
    path = write_incident(demo, "cut", "target: {wsgi: 'a:b'}\n")
    path.write_text(path.read_text().replace("2024-05-signup.events", "cut.events"))
    result = demo.runpytest("--incident=cut", "--collect-only")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["incidents/cut.events.jsonl.gz:*: the gzip file is truncated (it ends before its end*"]
    )
    assert "Traceback" not in result.stdout.str()
    # the twin: the whole file collects
    Path(cut).write_bytes(gzip.compress(gzip.decompress(whole)))
    demo.runpytest("--incident=cut", "--collect-only").assert_outcomes()

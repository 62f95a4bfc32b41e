# Flask capture under OpenTelemetry's Flask instrumentation (FlaskInstrumentor, or
# `opentelemetry-instrument`), where the Server span starts in `before_request` and ends at
# teardown, before the WSGI server sends the answer's body: so the request side is taken in
# the instrumentation's request_hook, and the answer in Flask's `request_finished` signal,
# while the span is still current and the Response object whole.
#
# Strategy: request_hook buffers a body within the cap (as capture/wsgi.py does: the view
# reads it from a fresh stream), sets the request side and keeps its unredacted copy in the
# WSGI environ for the answer (redacted again with it: an echoed token is swept). The
# signal handler records status, headers and the body (`get_data()`; a streamed response is
# not read: marked truncated "unknown"). `connect` returns the function that disconnects.
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from pytest_incident.capture.record import TRUNCATED_SUFFIX, Recorder, wsgi_headers
from pytest_incident.capture.wsgi import read_request_body, set_redacted
from pytest_incident.model import conventions as keys

ENVIRON_KEY = "pytest_incident.capture.request"


def request_hook(recorder: Recorder) -> Callable[[trace.Span, dict[str, Any]], None]:
    """FlaskInstrumentor's request_hook: the request side of the Server span."""

    def hook(span: trace.Span, environ: dict[str, Any]) -> None:
        if not span.is_recording():
            return
        body, size = read_request_body(environ, recorder.max_body_bytes)
        request = recorder.server_request(
            str(environ.get("REQUEST_METHOD", "GET")),
            str(environ.get("PATH_INFO", "") or "/"),
            str(environ.get("QUERY_STRING", "")),
            wsgi_headers(environ),
            body,
            size,
        )
        environ[ENVIRON_KEY] = request
        set_redacted(span, recorder, request)

    return hook


def connect(recorder: Recorder) -> Callable[[], None]:
    """Record each Flask answer on the current Server span; returns the disconnection."""
    from flask import request_finished
    from flask.globals import request

    def finished(sender: Any, response: Any, **extra: Any) -> None:
        span = trace.get_current_span()
        earlier = request.environ.pop(ENVIRON_KEY, None)
        if earlier is None or not span.is_recording():
            return  # not a request the hook saw (excluded, or not instrumented)
        streamed = bool(response.is_streamed)
        body = b"" if streamed else response.get_data()
        attributes = recorder.response(
            int(response.status_code), list(response.headers.items()), body, len(body)
        )
        if streamed:
            attributes[keys.RESPONSE_BODY + TRUNCATED_SUFFIX] = "unknown"
        set_redacted(span, recorder, attributes, earlier)

    request_finished.connect(finished, weak=False)
    return lambda: request_finished.disconnect(finished)

# WSGI capture: a middleware placed inside OpenTelemetry's WSGI middleware (so the request's
# Server span is current when it runs) that records the request and the answer on that span.
#
# Strategy: the request body is read whole when its Content-Length is within the cap and
# handed to the application as a fresh stream; a bigger one, or one without a length, is not
# buffered (the span says how big it was: `incident.request.body.truncated`). The answer's
# status and headers are taken at start_response, its body as the application's iterable is
# consumed (up to the cap), and the response side is set when the server closes the iterable,
# which OpenTelemetry's middleware does just before it ends the span. The attributes the
# instrumentation already set (http.target, http.url, ...) are redacted along with capture's
# own. Flask apps get the same middleware around `app.wsgi_app`, and the URL rule as
# `http.route` (instrument_flask).
from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from opentelemetry import trace

from pytest_incident.capture.record import Recorder, wsgi_headers
from pytest_incident.model import conventions as keys

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def set_redacted(
    span: trace.Span,
    recorder: Recorder,
    added: Mapping[str, str],
    earlier: Mapping[str, str] | None = None,
) -> None:
    """Set `added` on `span`, redacting them together with the span's own text attributes
    (a secret capture finds by name is swept from what the instrumentation recorded) and
    `earlier`, the unredacted attributes of the request side, set before."""
    if not span.is_recording():
        return
    present = getattr(span, "attributes", None) or {}
    mine = {k: v for k, v in present.items() if isinstance(v, str)}
    mine.update(earlier or {})
    mine.update(added)
    redacted = recorder.redact(mine)
    span.set_attributes({k: v for k, v in redacted.items() if present.get(k) != v})


def read_request_body(environ: dict[str, Any], cap: int) -> tuple[bytes, int]:
    """The request body and its length, when the length is given and within `cap`; the
    application then reads it from a fresh stream. Else (b"", the length), nothing read."""
    length = keys.ascii_number(str(environ.get("CONTENT_LENGTH") or ""), 18)
    if not length:
        return b"", 0
    if length > cap:
        return b"", length
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    return body, length


class CaptureMiddleware:
    """Records the `incident.*` attributes of the current Server span (see the module)."""

    def __init__(self, app: WSGIApp, recorder: Recorder) -> None:
        self.app = app
        self.recorder = recorder

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        span = trace.get_current_span()
        if not span.is_recording():
            return self.app(environ, start_response)
        body, size = read_request_body(environ, self.recorder.max_body_bytes)
        request = self.recorder.server_request(
            str(environ.get("REQUEST_METHOD", "GET")),
            str(environ.get("PATH_INFO", "") or "/"),
            str(environ.get("QUERY_STRING", "")),
            wsgi_headers(environ),
            body,
            size,
        )
        set_redacted(span, self.recorder, request)
        answer: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> Any:
            answer["status"], answer["headers"] = status, list(headers)
            return start_response(status, headers, *exc_info)

        return _Answer(self.app(environ, capture), span, self.recorder, answer, request)


class _Answer:
    """The application's iterable, passed through; the answer is recorded at close."""

    def __init__(
        self,
        inner: Iterable[bytes],
        span: trace.Span,
        recorder: Recorder,
        answer: dict[str, Any],
        request: Mapping[str, str],
    ) -> None:
        self.inner, self.span, self.recorder, self.answer = inner, span, recorder, answer
        self.request = request
        self.chunks: list[bytes] = []
        self.kept = self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.inner:
            self.size += len(chunk)
            room = self.recorder.max_body_bytes - self.kept
            if room > 0:
                self.chunks.append(chunk[:room])
                self.kept += min(room, len(chunk))
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self.inner, "close", None)
            if close is not None:
                close()
        finally:
            self._record()

    def _record(self) -> None:
        status = keys.ascii_number(str(self.answer.get("status", "")).partition(" ")[0], 3)
        if status is None:
            return
        attributes = self.recorder.response(
            status, self.answer["headers"], b"".join(self.chunks), self.size
        )
        set_redacted(self.span, self.recorder, attributes, self.request)


def instrument_wsgi(
    app: WSGIApp, recorder: Recorder, tracer_provider: trace.TracerProvider | None = None
) -> WSGIApp:
    """`app` inside OpenTelemetry's WSGI middleware, with capture between them."""
    from opentelemetry.instrumentation.wsgi import OpenTelemetryMiddleware

    return OpenTelemetryMiddleware(
        CaptureMiddleware(app, recorder), tracer_provider=tracer_provider
    )


def instrument_flask(
    app: Any, recorder: Recorder, tracer_provider: trace.TracerProvider | None = None
) -> None:
    """A Flask app's `wsgi_app` instrumented and captured; its URL rule is `http.route`."""
    from flask import request

    app.wsgi_app = instrument_wsgi(app.wsgi_app, recorder, tracer_provider)

    def route() -> None:
        span = trace.get_current_span()
        if request.url_rule is not None and span.is_recording():
            span.set_attribute(keys.ROUTE, request.url_rule.rule)
            span.update_name(f"{request.method} {request.url_rule.rule}")

    app.before_request(route)

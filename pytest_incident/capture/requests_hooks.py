# requests capture: the request_hook and response_hook of OpenTelemetry's requests
# instrumentation, recording each outbound call's request and answer on its Client span.
#
# Strategy: the request side is what the PreparedRequest will send (a streamed body, a
# generator or a file, is not read: it is marked `incident.request.body.truncated`); the
# answer is what requests read: its content when already read (a `stream=True` response is
# never read here, so the caller's stream is untouched), its headers without
# Content-Encoding (requests hands over the decoded body, and a replay serves it as is).
# A call that failed without an answer (a timeout, a reset) has no response hook: the
# exporter reads its exception event (capture/exporter.py). The request side's unredacted
# attributes wait for the answer in a weak map keyed by the span, so a token the request
# carried is swept from an answer that echoes it.
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry import trace

from pytest_incident.capture.record import TRUNCATED_SUFFIX, Recorder
from pytest_incident.capture.wsgi import set_redacted
from pytest_incident.model import conventions as keys

RequestHook = Callable[[trace.Span, Any], None]
ResponseHook = Callable[[trace.Span, Any, Any], None]


def hooks(recorder: Recorder) -> tuple[RequestHook, ResponseHook]:
    """The instrumentation's (request_hook, response_hook) recording through `recorder`."""
    sent: weakref.WeakKeyDictionary[trace.Span, dict[str, str]] = weakref.WeakKeyDictionary()

    def request_hook(span: trace.Span, request: Any) -> None:
        body = request.body
        streamed = body is not None and not isinstance(body, bytes | str)
        raw = body.encode("utf-8") if isinstance(body, str) else (body or b"")
        if streamed:
            raw = b""
        attributes = recorder.client_request(
            str(request.method or "GET"), str(request.url), list(request.headers.items()), raw
        )
        if streamed:
            attributes[keys.REQUEST_BODY + TRUNCATED_SUFFIX] = "unknown"
        sent[span] = attributes  # unredacted, until the answer (gone with the span)
        set_redacted(span, recorder, attributes)

    def response_hook(span: trace.Span, request: Any, response: Any) -> None:
        content = getattr(response, "_content", False)  # False: not read (stream=True)
        read = isinstance(content, bytes)
        body: bytes = content if isinstance(content, bytes) else b""
        headers = [
            (name, value)
            for name, value in response.headers.items()
            if name.lower() != "content-encoding"
        ]
        attributes = recorder.response(int(response.status_code), headers, body, len(body))
        if not read:
            attributes[keys.RESPONSE_BODY + TRUNCATED_SUFFIX] = "unknown"
        set_redacted(span, recorder, attributes, sent.pop(span, None))

    return request_hook, response_hook

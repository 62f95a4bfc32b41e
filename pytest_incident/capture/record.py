# What capture adds to a span: the `incident.*` request and response attributes (README, "The
# event log"), size-capped and redacted before they are set, so a secret never leaves the
# process (not to ClickHouse, not to any other exporter of the span).
#
# Strategy: one Recorder per install(), holding the limits, the redaction rules and the
# placeholder key (drawn at random per process and never stored: placeholders are the same
# for one secret within one process, so a token the service received and sent upstream
# still matches its recorded call). Each side of an exchange (request, response) becomes
# a dict of attributes built with model/conventions.py, then redacted together with the
# span's other text attributes by core/redaction.py's Redactor, as a one-span recording
# (capture/wsgi.set_redacted): a secret found by name is swept from the instrumentation's
# attributes too (a query's password from http.target), and at the answer the request side
# is redacted again from its unredacted copy, so a token the request carried is swept from
# the answer that echoes it. A fresh Redactor per call keeps no secret after the call.
# Trace plumbing headers (traceparent, tracestate, baggage) differ on every run and are not
# recorded, nor Host and the body's framing (Content-Length, Transfer-Encoding). Pure:
# values in, attribute dicts out; the hooks (wsgi.py, requests_hooks.py) do the I/O.
from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from pytest_incident.core.redaction import RedactionRules, Redactor
from pytest_incident.model import conventions as keys
from pytest_incident.model.spans import Span, SpanKind

MAX_BODY_BYTES = 64 << 10  # a body beyond this is recorded up to it, and marked truncated
TRUNCATED_SUFFIX = ".truncated"  # `incident.request.body.truncated: "<size in bytes>"`
# not recorded: trace plumbing (different on every run), and what the connection or the
# replay sets itself (the host, the framing of a body redaction may change the length of)
UNRECORDED_HEADERS = frozenset(
    {
        "traceparent",
        "tracestate",
        "baggage",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
    }
)


@dataclass(frozen=True)
class Recorder:
    """Builds the `incident.*` attributes of each side of an exchange, and redacts them
    (together with what the instrumentation set: capture/wsgi.set_redacted)."""

    rules: RedactionRules = field(default_factory=RedactionRules)
    max_body_bytes: int = MAX_BODY_BYTES
    key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    def server_request(
        self,
        method: str,
        path: str,
        query: str,
        headers: Iterable[tuple[str, str]],
        body: bytes,
        size: int,
    ) -> dict[str, str]:
        """A Server span's request side; `size` is the body's whole length."""
        attributes = {
            keys.METHOD: method.upper(),
            keys.PATH: path or "/",
            keys.QUERY: query,
            keys.REQUEST_HEADERS: keys.encode_headers(_kept(headers)),
            **self._body(keys.REQUEST_BODY, body, size),
        }
        return attributes

    def client_request(
        self, method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes
    ) -> dict[str, str]:
        """An outbound HTTP call's Client span, request side."""
        attributes = keys.outbound_request(method.upper(), url, _kept(headers), b"")
        attributes.update(self._body(keys.REQUEST_BODY, body, len(body)))
        return attributes

    def response(
        self, status: int, headers: Iterable[tuple[str, str]], body: bytes, size: int
    ) -> dict[str, str]:
        """The answer, for a Server span or a Client span."""
        attributes = keys.response(status, _kept(headers), b"")
        attributes.update(self._body(keys.RESPONSE_BODY, body, size))
        return attributes

    def redact(self, attributes: Mapping[str, str]) -> dict[str, str]:
        """`attributes` with their secrets replaced (core/redaction.py's rules)."""
        carrier = Span(0, "", "", "", "", SpanKind.INTERNAL, "", dict(attributes), 0)
        (redacted,) = Redactor(self.rules, self.key).redact([carrier])
        return dict(redacted.attributes)

    def _body(self, key: str, body: bytes, size: int) -> dict[str, str]:
        kept = body[: self.max_body_bytes]
        attributes = keys.encode_body(key, kept)
        if size > len(kept):
            attributes[key + TRUNCATED_SUFFIX] = str(size)
        return attributes


def _kept(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers if name.lower() not in UNRECORDED_HEADERS]


def wsgi_headers(environ: Mapping[str, object]) -> list[tuple[str, str]]:
    """The request headers a WSGI server handed over (CONTENT_TYPE included)."""
    found = []
    for name, value in environ.items():
        if not isinstance(value, str):
            continue
        if name.startswith("HTTP_"):
            found.append((name[5:].replace("_", "-").lower(), value))
        elif name == "CONTENT_TYPE" and value:
            found.append(("content-type", value))
    return found

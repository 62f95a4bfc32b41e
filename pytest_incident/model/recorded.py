# What the replay reads out of spans: a recorded request (Server span), its outbound HTTP
# calls and database writes (Client spans). Views over a Span that decode attributes through
# pytest_incident.model.conventions on access; they never mutate the span, and bodies are
# decoded only when asked for. Pure.
from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from pytest_incident.model import conventions as keys
from pytest_incident.model.spans import Span, SpanKind


def _body(span: Span, key: str) -> bytes:
    try:
        return keys.decode_body(span.attributes, key)
    except ValueError as exc:
        raise ValueError(f"span {span.span_id}: {exc}") from None


def _headers(span: Span, key: str) -> tuple[tuple[str, str], ...]:
    try:
        return keys.decode_headers(span.attributes, key)
    except ValueError as exc:
        raise ValueError(f"span {span.span_id}: {exc}") from None


@dataclass(frozen=True)
class RecordedRequest:
    """A Server span: one request the service received in production."""

    span: Span
    outbound: tuple[OutboundCall, ...] = ()
    # the database writes it made, when the recording captured them (None: not recorded)
    db_writes: tuple[DatabaseWrite, ...] | None = None

    @property
    def request_id(self) -> str:
        return self.span.trace_id

    @property
    def method(self) -> str:
        return self.span.attr(keys.METHOD, "GET").upper()

    @property
    def path(self) -> str:
        return self.span.attr(keys.PATH, "/") or "/"

    @property
    def query(self) -> str:
        return self.span.attr(keys.QUERY)

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def route(self) -> str:
        return self.span.attr(keys.ROUTE) or self.path

    @property
    def status(self) -> int | None:
        text = self.span.attr(keys.STATUS)
        return int(text) if text.isdigit() else None

    @property
    def failed(self) -> bool:
        """Failed in production: a 5xx answer, or no answer and an Error status."""
        if self.status is not None:
            return self.status >= 500
        return self.span.status_code.lower() == "error"

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        return _headers(self.span, keys.REQUEST_HEADERS)

    @property
    def body(self) -> bytes:
        return _body(self.span, keys.REQUEST_BODY)

    @property
    def response_headers(self) -> tuple[tuple[str, str], ...]:
        return _headers(self.span, keys.RESPONSE_HEADERS)

    @property
    def response_body(self) -> bytes | None:
        """The answer's body as recorded; None when the recording did not keep it."""
        if keys.RESPONSE_BODY not in self.span.attributes:
            return None
        return _body(self.span, keys.RESPONSE_BODY)


@dataclass(frozen=True)
class OutboundCall:
    """A Client span with `url.full`: an HTTP call the service made while handling a request."""

    span: Span
    order: int  # position among the outbound calls of its request

    @property
    def method(self) -> str:
        return self.span.attr(keys.METHOD, "GET").upper()

    @property
    def url(self) -> str:
        return self.span.attr(keys.URL)

    @property
    def host(self) -> str:
        return self.span.attr(keys.SERVER_ADDRESS) or (urlsplit(self.url).hostname or "")

    @property
    def port(self) -> int:
        text = self.span.attr(keys.SERVER_PORT)
        if text.isdigit():
            return int(text)
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme or "http"

    @property
    def status(self) -> int | None:
        text = self.span.attr(keys.STATUS)
        return int(text) if text.isdigit() else None

    @property
    def error_type(self) -> str:
        return self.span.attr(keys.ERROR_TYPE)

    @property
    def timed_out(self) -> bool:
        return self.error_type == keys.TIMEOUT

    @property
    def request_headers(self) -> tuple[tuple[str, str], ...]:
        return _headers(self.span, keys.REQUEST_HEADERS)

    @property
    def request_body(self) -> bytes:
        return _body(self.span, keys.REQUEST_BODY)

    @property
    def response_headers(self) -> tuple[tuple[str, str], ...]:
        return _headers(self.span, keys.RESPONSE_HEADERS)

    @property
    def response_body(self) -> bytes:
        return _body(self.span, keys.RESPONSE_BODY)

    @property
    def latency_s(self) -> float:
        return self.span.duration_ns / 1e9

    def describe(self) -> str:
        answer = "timeout" if self.timed_out else str(self.status)
        return f"#{self.order} {self.method} {self.url} -> {answer}"


@dataclass(frozen=True)
class DatabaseWrite:
    """A Client span for a database statement (`db.system.name`) the request made."""

    span: Span

    @property
    def operation(self) -> str:
        return self.span.attr(keys.DB_OPERATION).upper()

    @property
    def table(self) -> str:
        return self.span.attr(keys.DB_TABLE)

    @property
    def statement(self) -> str:
        return self.span.attr(keys.DB_STATEMENT)

    @property
    def outcome(self) -> str:
        return self.span.attr(keys.DB_OUTCOME)

    @property
    def params(self) -> tuple[str | None, ...]:
        raw = self.span.attr(keys.DB_PARAMS)
        try:
            values = json.loads(raw) if raw else []
        except json.JSONDecodeError:
            return (raw,)
        return tuple(None if v is None else str(v) for v in values)


def is_database_statement(span: Span) -> bool:
    return span.kind is SpanKind.CLIENT and bool(
        span.attr(keys.DB_SYSTEM) or span.attr(keys.DB_SYSTEM_OLD)
    )


def is_outbound_http(span: Span) -> bool:
    return span.kind is SpanKind.CLIENT and bool(span.attr(keys.URL))

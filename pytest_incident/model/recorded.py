# What the replay reads out of spans: a recorded request (Server span), its outbound HTTP
# calls and database writes (Client spans). Views over a Span that decode attributes through
# pytest_incident.model.conventions on access; they never mutate the span, and bodies are
# decoded only when asked for. Pure.
#
# Every value a replay uses is checked once (pytest_incident.model.replayable): `problem` is
# the first one of the request, or of one of its outbound calls, that cannot be replayed.
# A request with a problem is reported, never sent; the views of one without are total.
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from pytest_incident.model import conventions as keys
from pytest_incident.model.replayable import SpanProblem, check_call, check_request
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


def _status(span: Span) -> int | None:
    return keys.ascii_number(span.attr(keys.STATUS), 3)


def _split(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises for a port that is no number
    except ValueError:
        return None
    return parts


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

    @functools.cached_property
    def problem(self) -> SpanProblem | None:
        """Why this request cannot be replayed (its span's first invalid value, or that of
        one of its outbound calls), or None; checked once."""
        found = check_request(self.span)
        for call in self.outbound:
            found = found or call.problem
        return found

    @property
    def method(self) -> str:
        return (self.span.attr(keys.METHOD) or "GET").upper()

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
        return _status(self.span)

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
        return (self.span.attr(keys.METHOD) or "GET").upper()

    @property
    def url(self) -> str:
        return self.span.attr(keys.URL)

    @functools.cached_property
    def problem(self) -> SpanProblem | None:
        """Why this call cannot be replayed, or None; checked once."""
        return check_call(self.span)

    @property
    def host(self) -> str:
        parts = _split(self.url)
        return self.span.attr(keys.SERVER_ADDRESS) or ((parts and parts.hostname) or "")

    @property
    def port(self) -> int:
        number = keys.ascii_number(self.span.attr(keys.SERVER_PORT), 5)
        if number is not None:
            return number
        parts = _split(self.url)
        if parts is None:
            return 80
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def scheme(self) -> str:
        parts = _split(self.url)
        return (parts and parts.scheme) or "http"

    @property
    def status(self) -> int | None:
        return _status(self.span)

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
        except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
            return (raw,)
        if not isinstance(values, list):
            return (raw,)
        return tuple(None if v is None else _text(v) for v in values)


def _text(value: object) -> str:
    try:
        return str(value)
    except (ValueError, RecursionError):  # a huge int, or nesting too deep to show
        return "<unshowable>"


def is_database_statement(span: Span) -> bool:
    return span.kind is SpanKind.CLIENT and bool(
        span.attr(keys.DB_SYSTEM) or span.attr(keys.DB_SYSTEM_OLD)
    )


def is_outbound_http(span: Span) -> bool:
    return span.kind is SpanKind.CLIENT and bool(span.attr(keys.URL))

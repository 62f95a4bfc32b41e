# The span model: OpenTelemetry spans in the shape of the Collector's ClickHouse exporter
# table `otel_traces`, and the typed views the replay needs on top of them.
#
# Strategy: a Span is a frozen, flat copy of one `otel_traces` row (attributes are a
# str -> str map, exactly as ClickHouse stores them). Views (RecordedRequest, OutboundCall)
# interpret semantic-convention keys plus our `incident.*` keys; they never mutate the span.
# Nothing here performs I/O.
from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import urlsplit


class SpanKind(enum.Enum):
    UNSPECIFIED = "Unspecified"
    INTERNAL = "Internal"
    SERVER = "Server"
    CLIENT = "Client"
    PRODUCER = "Producer"
    CONSUMER = "Consumer"

    @classmethod
    def parse(cls, text: str) -> SpanKind:
        """Accept the exporter's names ("Server") and the protobuf names ("SPAN_KIND_SERVER")."""
        name = text.strip().upper().removeprefix("SPAN_KIND_")
        try:
            return cls[name]
        except KeyError:
            allowed = ", ".join(k.value for k in cls)
            raise ValueError(f"unknown SpanKind {text!r}; allowed: {allowed}") from None


@dataclass(frozen=True)
class SpanEvent:
    timestamp_ns: int
    name: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Span:
    timestamp_ns: int  # start, nanoseconds since the epoch (UTC)
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: SpanKind
    service: str
    attributes: Mapping[str, str]
    duration_ns: int
    status_code: str = "Unset"
    status_message: str = ""
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()

    @property
    def end_ns(self) -> int:
        return self.timestamp_ns + self.duration_ns

    def attr(self, key: str, default: str = "") -> str:
        return self.attributes.get(key, default)


def decode_body(span: Span, key: str) -> bytes:
    """The body stored under `key`, honouring `key.encoding: base64`."""
    raw = span.attributes.get(key, "")
    if span.attributes.get(f"{key}.encoding", "") == "base64":
        try:
            return base64.b64decode(raw, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"span {span.span_id}: {key} is not valid base64") from exc
    return raw.encode("utf-8")


def decode_headers(span: Span, key: str) -> tuple[tuple[str, str], ...]:
    """Headers are stored as a JSON object ({name: value | [values]}) or list of pairs."""
    raw = span.attributes.get(key, "")
    if not raw:
        return ()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"span {span.span_id}: {key} is not JSON") from exc
    pairs: list[tuple[str, str]] = []
    items = data.items() if isinstance(data, dict) else data
    for name, value in items:
        values = value if isinstance(value, list) else [value]
        pairs.extend((str(name), str(v)) for v in values)
    return tuple(pairs)


def format_timestamp(ns: int) -> str:
    """ClickHouse DateTime64(9) text form, UTC: `2024-05-14 14:03:12.123456789`."""
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp}.{frac:09d}"


def parse_timestamp(text: str | int | float) -> int:
    """Nanoseconds from ClickHouse text (`2024-05-14 14:03:12.5`), ISO 8601, or a number."""
    if isinstance(text, int | float):
        return int(text)
    value = text.strip().replace("T", " ").removesuffix("Z").removesuffix("+00:00")
    whole, _, frac = value.partition(".")
    try:
        base = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"not a UTC timestamp: {text!r}") from None
    if frac and not frac.isdigit():
        raise ValueError(f"not a UTC timestamp: {text!r}")
    return int(base.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])


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
        return self.span.attr("http.request.method", "GET").upper()

    @property
    def path(self) -> str:
        return self.span.attr("url.path", "/") or "/"

    @property
    def query(self) -> str:
        return self.span.attr("url.query")

    @property
    def target(self) -> str:
        return f"{self.path}?{self.query}" if self.query else self.path

    @property
    def route(self) -> str:
        return self.span.attr("http.route") or self.path

    @property
    def status(self) -> int | None:
        text = self.span.attr("http.response.status_code")
        return int(text) if text.isdigit() else None

    @property
    def failed(self) -> bool:
        """Failed in production: a 5xx answer, or no answer and an Error status."""
        if self.status is not None:
            return self.status >= 500
        return self.span.status_code.lower() == "error"

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        return decode_headers(self.span, "incident.request.headers")

    @property
    def body(self) -> bytes:
        return decode_body(self.span, "incident.request.body")


@dataclass(frozen=True)
class OutboundCall:
    """A Client span with `url.full`: an HTTP call the service made while handling a request."""

    span: Span
    order: int  # position among the outbound calls of its request

    @property
    def method(self) -> str:
        return self.span.attr("http.request.method", "GET").upper()

    @property
    def url(self) -> str:
        return self.span.attr("url.full")

    @property
    def host(self) -> str:
        return self.span.attr("server.address") or (urlsplit(self.url).hostname or "")

    @property
    def port(self) -> int:
        text = self.span.attr("server.port")
        if text.isdigit():
            return int(text)
        parts = urlsplit(self.url)
        return parts.port or (443 if parts.scheme == "https" else 80)

    @property
    def scheme(self) -> str:
        return urlsplit(self.url).scheme or "http"

    @property
    def status(self) -> int | None:
        text = self.span.attr("http.response.status_code")
        return int(text) if text.isdigit() else None

    @property
    def error_type(self) -> str:
        return self.span.attr("error.type")

    @property
    def timed_out(self) -> bool:
        return self.error_type == "timeout"

    @property
    def request_headers(self) -> tuple[tuple[str, str], ...]:
        return decode_headers(self.span, "incident.request.headers")

    @property
    def request_body(self) -> bytes:
        return decode_body(self.span, "incident.request.body")

    @property
    def response_headers(self) -> tuple[tuple[str, str], ...]:
        return decode_headers(self.span, "incident.response.headers")

    @property
    def response_body(self) -> bytes:
        return decode_body(self.span, "incident.response.body")

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
        return self.span.attr("db.operation.name").upper()

    @property
    def table(self) -> str:
        return self.span.attr("db.collection.name")

    @property
    def statement(self) -> str:
        return self.span.attr("db.query.text")

    @property
    def outcome(self) -> str:
        return self.span.attr("incident.db.outcome")

    @property
    def params(self) -> tuple[str | None, ...]:
        raw = self.span.attr("incident.db.params")
        try:
            values = json.loads(raw) if raw else []
        except json.JSONDecodeError:
            return (raw,)
        return tuple(None if v is None else str(v) for v in values)


def is_database_statement(span: Span) -> bool:
    return span.kind is SpanKind.CLIENT and bool(
        span.attr("db.system.name") or span.attr("db.system")
    )


def is_outbound_http(span: Span) -> bool:
    return span.kind is SpanKind.CLIENT and bool(span.attr("url.full"))

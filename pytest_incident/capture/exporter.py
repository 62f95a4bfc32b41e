# An OpenTelemetry span exporter that writes the ClickHouse exporter's `otel_traces` rows
# (README, "ClickHouse sources": the Map layout, events/clickhouse_layout.py) straight into
# ClickHouse through clickhouse-connect, for teams without a Collector; `chdb:///dir` writes
# into an in-process chDB directory (tests, local work).
#
# Strategy: each SDK span becomes a model Span (to_span) and is written by
# events/clickhouse_load.SpanWriter, which creates the table, its lookup table and view when
# absent. The client is opened on the first export and kept (closed at shutdown); each
# export call is one INSERT, so run it under the SDK's BatchSpanProcessor, which hands over
# batches. Attribute values that are not text are written as the Collector writes them
# (booleans and numbers as text, sequences as JSON). A Client span that ended on a timeout
# exception with no answer gets `error.type: timeout` (README, "The event log"). A failed
# insert is reported to the SDK as FAILURE (it logs it); the service goes on.
from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from threading import Lock
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind as OtelKind
from opentelemetry.trace import StatusCode

from pytest_incident.events.clickhouse import parse_reference
from pytest_incident.events.clickhouse_load import SpanWriter
from pytest_incident.model import conventions as keys
from pytest_incident.model.errors import SourceError
from pytest_incident.model.spans import Span, SpanEvent, SpanKind

_LOG = logging.getLogger(__name__)
ENV_URL = "PYTEST_INCIDENT_CAPTURE_URL"
_KINDS = {
    OtelKind.SERVER: SpanKind.SERVER,
    OtelKind.CLIENT: SpanKind.CLIENT,
    OtelKind.PRODUCER: SpanKind.PRODUCER,
    OtelKind.CONSUMER: SpanKind.CONSUMER,
    OtelKind.INTERNAL: SpanKind.INTERNAL,
}
_STATUS = {StatusCode.UNSET: "Unset", StatusCode.OK: "Ok", StatusCode.ERROR: "Error"}


class ClickHouseSpanExporter(SpanExporter):
    """Writes spans into `url`'s traces table: `clickhouse://user@host:8123/db?table=...`
    (the password from PYTEST_INCIDENT_CLICKHOUSE_PASSWORD or `environ`) or `chdb:///dir`;
    without `url`, PYTEST_INCIDENT_CAPTURE_URL (`OTEL_TRACES_EXPORTER=pytest_incident_clickhouse`
    makes the SDK create it so)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        variant: str = "map",
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        url = url or env.get(ENV_URL, "")
        if not url:
            raise SourceError(f"the ClickHouse span exporter needs a URL: set {ENV_URL}")
        self.ref = parse_reference(url, Path.cwd(), env)
        self.variant = variant
        self._writer: SpanWriter | None = None
        self._lock = Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        rows = [to_span(span) for span in spans]
        with self._lock:
            try:
                if self._writer is None:
                    self._writer = SpanWriter(self.ref, self.variant)
                self._writer.write(rows)
            except SourceError as exc:
                _LOG.warning("pytest-incident: spans not exported: %s", exc)
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def to_span(span: ReadableSpan) -> Span:
    """An SDK span as the `otel_traces` row the Collector's exporter writes."""
    context = span.get_span_context()
    assert context is not None
    start = span.start_time or 0
    end = span.end_time or start
    resource = _texts(span.resource.attributes)
    attributes = _texts(span.attributes or {})
    events = tuple(
        SpanEvent(event.timestamp, event.name, _texts(event.attributes or {}))
        for event in span.events
    )
    kind = _KINDS.get(span.kind, SpanKind.UNSPECIFIED)
    if kind is SpanKind.CLIENT and _timed_out(attributes, events):
        attributes[keys.ERROR_TYPE] = keys.TIMEOUT
    return Span(
        timestamp_ns=start,
        trace_id=f"{context.trace_id:032x}",
        span_id=f"{context.span_id:016x}",
        parent_span_id=f"{span.parent.span_id:016x}" if span.parent else "",
        name=span.name,
        kind=kind,
        service=resource.get("service.name", ""),
        attributes=attributes,
        duration_ns=max(0, end - start),
        status_code=_STATUS.get(span.status.status_code, "Unset"),
        status_message=span.status.description or "",
        resource_attributes=resource,
        events=events,
    )


def _timed_out(attributes: Mapping[str, str], events: Sequence[SpanEvent]) -> bool:
    if keys.STATUS in attributes:
        return False
    return any(
        event.name == "exception"
        and "timeout" in event.attributes.get("exception.type", "").lower()
        for event in events
    )


def _texts(attributes: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): _text(value) for key, value in attributes.items()}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps([_text(v) if not isinstance(v, int | float) else v for v in value])

"""Span builders shared by the tests: recorded requests, outbound calls and database writes in
the shape the frozen file and ClickHouse give (model.conventions names every attribute)."""

from __future__ import annotations

from collections.abc import Mapping

from pytest_incident.model.recorded import DatabaseWrite, OutboundCall, RecordedRequest
from pytest_incident.model.spans import Span, SpanKind

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
ROOT_SPAN = "00f067aa0ba902b7"


def server_span(
    *,
    trace: str = TRACE,
    span_id: str = ROOT_SPAN,
    at: int = 0,
    method: str = "POST",
    path: str = "/signup",
    status: int | None = 500,
    service: str = "signup",
    duration_ns: int = 1,
    status_code: str = "Unset",
    **attributes: str,
) -> Span:
    """A recorded inbound request (Server span); `status=None` records no status code."""
    attrs = {"http.request.method": method, "url.path": path}
    if status is not None:
        attrs["http.response.status_code"] = str(status)
    attrs.update(attributes)
    return Span(
        timestamp_ns=at,
        trace_id=trace,
        span_id=span_id,
        parent_span_id="",
        name=f"{method} {path}",
        kind=SpanKind.SERVER,
        service=service,
        attributes=attrs,
        duration_ns=duration_ns,
        status_code=status_code,
    )


def client_span(
    attributes: Mapping[str, str],
    *,
    trace: str = TRACE,
    span_id: str = "0" * 15 + "1",
    parent: str = ROOT_SPAN,
    at: int = 1,
    service: str = "signup",
    duration_ns: int = 1_000_000,
) -> Span:
    """An outbound call or database statement (Client span) with the given attributes."""
    method = attributes.get("http.request.method", "")
    name = f"{method} {attributes.get('url.full', '')}".strip() or "client"
    return Span(
        timestamp_ns=at,
        trace_id=trace,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        kind=SpanKind.CLIENT,
        service=service,
        attributes=dict(attributes),
        duration_ns=duration_ns,
    )


def db_span(
    operation: str,
    table: str,
    outcome: str,
    *,
    trace: str = TRACE,
    span_id: str = "0" * 15 + "2",
    at: int = 2,
    params: str | None = None,
) -> Span:
    """A recorded database write (DB Client span) and how it ended."""
    attributes = {
        "db.system.name": "postgresql",
        "db.operation.name": operation,
        "db.collection.name": table,
        "incident.db.outcome": outcome,
    }
    if params is not None:
        attributes["incident.db.params"] = params
    return client_span(attributes, trace=trace, span_id=span_id, at=at, duration_ns=1)


def outbound_call(
    order: int, attributes: Mapping[str, str], duration_ns: int = 1_000_000, trace: str = TRACE
) -> OutboundCall:
    """A recorded outbound call, `order`-th of its request."""
    span = client_span(
        attributes, trace=trace, span_id=f"{order:016x}", at=1_000 + order, duration_ns=duration_ns
    )
    return OutboundCall(span, order)


def recorded_request(
    *,
    writes: tuple[DatabaseWrite, ...] | None = None,
    calls: tuple[OutboundCall, ...] = (),
    **kw: object,
) -> RecordedRequest:
    """A recorded request (see `server_span` for the keywords) with its calls and writes."""
    return RecordedRequest(server_span(**kw), calls, writes)  # type: ignore[arg-type]

# Choosing the recorded requests of an incident: a stream of spans in, the Server spans inside
# the window that `select` keeps out, each with its outbound HTTP calls in recorded order.
#
# One pass over the stream: Server spans are filtered as they come; Client spans of the
# window are grouped by trace and attached at the end (a child may precede its parent in the
# file). Short request ids are trace-id prefixes, 8 hex digits unless that is ambiguous.
#
# The same pass counts what the recording holds (RequestCounts: services, routes, time range),
# in all and in the window, so a selection that keeps nothing can say what there was. Each
# kept request is checked once for what cannot be replayed (RecordedRequest.problem).
from __future__ import annotations

import fnmatch
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pytest_incident.model.recorded import (
    DatabaseWrite,
    OutboundCall,
    RecordedRequest,
    is_database_statement,
    is_outbound_http,
)
from pytest_incident.model.spans import Span, SpanKind
from pytest_incident.model.spec import Select, Window

ID_LENGTH = 8
SLACK_NS = 3_600 * 1_000_000_000  # children of a request may end after the window closes
MAX_COUNTED = 10_000  # distinct services or routes counted; the rest are counted as "others"
OTHERS = "(others)"


@dataclass
class RequestCounts:
    """Recorded requests (Server spans) by service and route, and their time range."""

    count: int = 0
    first_ns: int | None = None
    last_ns: int | None = None
    services: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)

    def add(self, request: RecordedRequest) -> None:
        at = request.span.timestamp_ns
        self.count += 1
        self.first_ns = at if self.first_ns is None else min(self.first_ns, at)
        self.last_ns = at if self.last_ns is None else max(self.last_ns, at)
        _count(self.services, request.span.service or "(no service)")
        _count(self.routes, f"{request.method} {request.route}")


def _count(counter: Counter[str], key: str) -> None:
    if key in counter or len(counter) < MAX_COUNTED:
        counter[key] += 1
    else:
        counter[OTHERS] += 1


@dataclass(frozen=True)
class Selection:
    requests: list[RecordedRequest]  # kept, in recorded order
    recorded: RequestCounts  # every recorded request in the stream
    in_window: RequestCounts  # those inside the window


def route_matches(pattern: str, request: RecordedRequest) -> bool:
    method, _, path = pattern.strip().partition(" ")
    if not path:  # a bare path: any method
        method, path = "*", method
    return fnmatch.fnmatchcase(request.method, method.upper()) and (
        fnmatch.fnmatchcase(request.route, path) or fnmatch.fnmatchcase(request.path, path)
    )


def keeps(select: Select, request: RecordedRequest) -> bool:
    if select.service is not None and request.span.service != select.service:
        return False
    if select.routes and not any(route_matches(r, request) for r in select.routes):
        return False
    if select.status is not None and (
        request.status is None or not select.status.matches(request.status)
    ):
        return False
    return not select.requests or any(
        request.request_id.lower().startswith(p) for p in select.requests
    )


def select_requests(spans: Iterable[Span], window: Window, select: Select) -> list[RecordedRequest]:
    return choose(spans, window, select).requests


def choose(spans: Iterable[Span], window: Window, select: Select) -> Selection:
    """The requests `select` keeps in `window`, and what the recording holds besides."""
    recorded, windowed = RequestCounts(), RequestCounts()
    servers: list[Span] = []
    children: dict[str, list[Span]] = defaultdict(list)
    writes: dict[str, list[Span]] = defaultdict(list)
    database_recorded = False  # any database span at all: the recording captures writes
    for span in spans:
        in_window = window.start_ns <= span.timestamp_ns < window.end_ns + SLACK_NS
        if span.kind is SpanKind.SERVER:
            request = RecordedRequest(span)
            recorded.add(request)
            if window.contains(span.timestamp_ns):
                windowed.add(request)
                if keeps(select, request):
                    servers.append(span)
        elif is_outbound_http(span) and in_window:
            children[span.trace_id].append(span)
        elif is_database_statement(span):
            database_recorded = True
            if in_window:
                writes[span.trace_id].append(span)
    servers.sort(key=lambda s: (s.timestamp_ns, s.trace_id))
    requests = []
    for server in servers:
        calls = sorted(
            (c for c in children.get(server.trace_id, ()) if c.timestamp_ns >= server.timestamp_ns),
            key=lambda c: (c.timestamp_ns, c.span_id),
        )
        outbound = tuple(OutboundCall(span, order) for order, span in enumerate(calls))
        db_writes = None
        if database_recorded:
            ordered = sorted(
                writes.get(server.trace_id, ()), key=lambda w: (w.timestamp_ns, w.span_id)
            )
            db_writes = tuple(DatabaseWrite(w) for w in ordered)
        request = RecordedRequest(server, outbound, db_writes)
        _ = request.problem  # checked once, here
        requests.append(request)
    return Selection(requests, recorded, windowed)


def short_ids(requests: Sequence[RecordedRequest]) -> dict[str, str]:
    """trace id -> the shortest prefix (at least 8 hex digits) no other request shares."""
    ids = sorted({r.request_id.lower() for r in requests})
    short: dict[str, str] = {}
    for i, trace in enumerate(ids):
        neighbours = [ids[j] for j in (i - 1, i + 1) if 0 <= j < len(ids)]
        length = ID_LENGTH
        while any(n.startswith(trace[:length]) for n in neighbours) and length < len(trace):
            length += 1
        short[trace] = trace[:length]
    return short

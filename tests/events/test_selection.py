"""Choosing an incident's recorded requests from a stream of spans."""

from __future__ import annotations

from pytest_incident.events.selection import SLACK_NS, select_requests, short_ids
from pytest_incident.model.recorded import RecordedRequest
from pytest_incident.model.spans import Span, SpanKind, parse_timestamp
from pytest_incident.model.spec import Select, StatusCondition, Window

from ..spans import client_span, server_span

T0 = parse_timestamp("2024-05-14T14:00:00Z")
T1 = parse_timestamp("2024-05-14T14:30:00Z")
WINDOW = Window(T0, T1)
SECOND = 1_000_000_000


def server(
    trace: str,
    at: int,
    *,
    method: str = "POST",
    path: str = "/signup",
    status: int | None = 500,
    service: str = "signup",
    route: str = "",
) -> Span:
    extra = {"http.route": route} if route else {}
    return server_span(
        trace=trace, span_id="a" * 16, at=at, method=method, path=path, status=status,
        service=service, duration_ns=SECOND, **extra,
    )  # fmt: skip


def client(trace: str, at: int, span_id: str, url: str = "https://api.example/x") -> Span:
    attributes = {"http.request.method": "POST", "url.full": url}
    return client_span(
        attributes, trace=trace, span_id=span_id, parent="a" * 16, at=at, duration_ns=SECOND // 10
    )


def traces(requests: list[RecordedRequest]) -> list[str]:
    return [r.request_id for r in requests]


def trace_id(n: int) -> str:
    return f"{n:08x}" + "0" * 24


def test_window_start_inclusive_end_exclusive() -> None:
    spans = [
        server(trace_id(1), T0 - 1),
        server(trace_id(2), T0),
        server(trace_id(3), T1 - 1),
        server(trace_id(4), T1),
    ]
    assert traces(select_requests(spans, WINDOW, Select())) == [trace_id(2), trace_id(3)]


def test_requests_come_out_in_time_order() -> None:
    spans = [server(trace_id(1), T0 + 3), server(trace_id(2), T0 + 1), server(trace_id(3), T0 + 2)]
    assert traces(select_requests(spans, WINDOW, Select())) == [
        trace_id(2),
        trace_id(3),
        trace_id(1),
    ]


def test_only_server_spans_are_requests() -> None:
    spans = [client(trace_id(1), T0 + 1, "b" * 16)]
    assert select_requests(spans, WINDOW, Select()) == []


def test_service_filter() -> None:
    spans = [server(trace_id(1), T0 + 1), server(trace_id(2), T0 + 2, service="billing")]
    assert traces(select_requests(spans, WINDOW, Select(service="billing"))) == [trace_id(2)]
    assert len(select_requests(spans, WINDOW, Select())) == 2


def test_routes_method_and_path() -> None:
    spans = [
        server(trace_id(1), T0 + 1, method="POST", path="/signup"),
        server(trace_id(2), T0 + 2, method="GET", path="/signup"),
        server(trace_id(3), T0 + 3, method="POST", path="/login"),
    ]
    assert traces(select_requests(spans, WINDOW, Select(routes=("POST /signup",)))) == [trace_id(1)]
    assert traces(select_requests(spans, WINDOW, Select(routes=("post /signup",)))) == [trace_id(1)]


def test_bare_path_route_means_any_method() -> None:
    spans = [
        server(trace_id(1), T0 + 1, method="POST", path="/signup"),
        server(trace_id(2), T0 + 2, method="GET", path="/signup"),
        server(trace_id(3), T0 + 3, method="POST", path="/login"),
    ]
    assert traces(select_requests(spans, WINDOW, Select(routes=("/signup",)))) == [
        trace_id(1),
        trace_id(2),
    ]


def test_route_glob_matches_path_or_http_route() -> None:
    spans = [
        server(trace_id(1), T0 + 1, method="GET", path="/users/42"),
        server(trace_id(2), T0 + 2, method="GET", path="/u/7", route="/users/{id}"),
        server(trace_id(3), T0 + 3, method="GET", path="/orders/1"),
        server(trace_id(4), T0 + 4, method="DELETE", path="/users/9"),
    ]
    chosen = select_requests(spans, WINDOW, Select(routes=("GET /users/*",)))
    assert traces(chosen) == [trace_id(1), trace_id(2)]
    either = select_requests(spans, WINDOW, Select(routes=("GET /orders/*", "DELETE /users/*")))
    assert traces(either) == [trace_id(3), trace_id(4)]


def test_status_condition() -> None:
    spans = [
        server(trace_id(1), T0 + 1, status=200),
        server(trace_id(2), T0 + 2, status=502),
        server(trace_id(3), T0 + 3, status=None),  # no answer recorded
        server(trace_id(4), T0 + 4, status=404),
    ]
    five = Select(status=StatusCondition.parse(">=500"))
    assert traces(select_requests(spans, WINDOW, five)) == [trace_id(2)]
    fours = Select(status=StatusCondition.parse("4xx"))
    assert traces(select_requests(spans, WINDOW, fours)) == [trace_id(4)]
    assert len(select_requests(spans, WINDOW, Select())) == 4


def test_request_id_prefixes() -> None:
    spans = [
        server("ABCDEF0123456789" * 2, T0 + 1),
        server("abcd9999" + "0" * 24, T0 + 2),
        server("12345678" + "0" * 24, T0 + 3),
    ]
    chosen = select_requests(spans, WINDOW, Select(requests=("abcdef01", "1234")))
    assert traces(chosen) == ["ABCDEF0123456789" * 2, "12345678" + "0" * 24]


def test_filters_combine() -> None:
    spans = [
        server(trace_id(1), T0 + 1, status=500, path="/signup"),
        server(trace_id(2), T0 + 2, status=500, path="/login"),
        server(trace_id(3), T0 + 3, status=200, path="/signup"),
    ]
    select = Select(routes=("/signup",), status=StatusCondition.parse("5xx"))
    assert traces(select_requests(spans, WINDOW, select)) == [trace_id(1)]


def test_children_attach_in_timestamp_order_even_before_their_parent() -> None:
    trace = trace_id(1)
    spans = [
        client(trace, T0 + 30, "c" * 16, "https://api.example/third"),
        client(trace, T0 + 10, "a" * 16, "https://api.example/first"),
        server(trace, T0 + 5),
        client(trace, T0 + 20, "b" * 16, "https://api.example/second"),
    ]
    (request,) = select_requests(spans, WINDOW, Select())
    assert [c.url.rsplit("/", 1)[1] for c in request.outbound] == ["first", "second", "third"]
    assert [c.order for c in request.outbound] == [0, 1, 2]


def test_children_near_the_window_end_are_kept() -> None:
    trace = trace_id(1)
    spans = [server(trace, T1 - 1), client(trace, T1 + 5 * SECOND, "b" * 16)]
    (request,) = select_requests(spans, WINDOW, Select())
    assert len(request.outbound) == 1
    late = [server(trace, T1 - 1), client(trace, T1 + SLACK_NS, "b" * 16)]
    assert select_requests(late, WINDOW, Select())[0].outbound == ()


def test_only_outbound_http_children_of_the_same_trace_attach() -> None:
    kept, dropped = trace_id(1), trace_id(2)
    db = Span(
        timestamp_ns=T0 + 3,
        trace_id=kept,
        span_id="d" * 16,
        parent_span_id="a" * 16,
        name="INSERT",
        kind=SpanKind.CLIENT,
        service="signup",
        attributes={"db.system.name": "postgresql", "db.query.text": "INSERT ..."},
        duration_ns=1,
    )
    spans = [
        client(dropped, T0 + 2, "e" * 16),  # child of an unselected request
        server(kept, T0 + 1, path="/signup"),
        server(dropped, T0 + 1, path="/login"),
        client(kept, T0 + 4, "b" * 16),
        db,
        client(trace_id(3), T0 + 4, "f" * 16),  # no parent in the file at all
    ]
    (request,) = select_requests(spans, WINDOW, Select(routes=("/signup",)))
    assert request.request_id == kept
    assert [c.span.span_id for c in request.outbound] == ["b" * 16]


def test_child_starting_before_its_request_is_not_attached() -> None:
    trace = trace_id(1)
    spans = [server(trace, T0 + 10), client(trace, T0 + 9, "b" * 16)]
    assert select_requests(spans, WINDOW, Select())[0].outbound == ()


def _requests(*ids: str) -> list[RecordedRequest]:
    return [RecordedRequest(server(i, T0)) for i in ids]


def test_short_ids_are_eight_digits_when_unique() -> None:
    ids = ["0123456789abcdef" * 2, "fedcba9876543210" * 2]
    assert short_ids(_requests(*ids)) == {ids[0]: "01234567", ids[1]: "fedcba98"}


def test_short_ids_extend_on_collision() -> None:
    a = "abcdef01" + "11" + "0" * 22
    b = "abcdef01" + "12" + "0" * 22
    c = "abcdef01" + "2" + "0" * 23
    d = "99999999" + "0" * 24
    short = short_ids(_requests(b, d, a, c))
    assert short == {a: "abcdef0111", b: "abcdef0112", c: "abcdef012", d: "99999999"}
    # each short id picks out exactly one request
    for trace, prefix in short.items():
        assert [t for t in short if t.startswith(prefix)] == [trace]


def test_short_ids_lowercase() -> None:
    upper = "ABCDEF0123456789" * 2
    assert short_ids(_requests(upper)) == {upper.lower(): "abcdef01"}

"""Matching live outbound requests to recorded calls, and the replay book that serves them."""

from __future__ import annotations

import math

import pytest

from pytest_incident.core.book import ReplayBook
from pytest_incident.core.matching import LiveRequest, differences, find_match, nearest
from pytest_incident.model.effects import Effect, EffectKind, Outcome
from pytest_incident.model.recorded import OutboundCall
from pytest_incident.model.spec import UnmatchedMode

from ..spans import outbound_call as client_call

API = "https://api.payments.example"


def call(
    order: int,
    method: str,
    url: str,
    *,
    status: int | None = 200,
    duration_ms: int = 100,
    error: str = "",
) -> OutboundCall:
    attributes = {"http.request.method": method, "url.full": url}
    if status is not None:
        attributes["http.response.status_code"] = str(status)
    if error:
        attributes["error.type"] = error
    return client_call(order, attributes, duration_ns=duration_ms * 1_000_000)


def live(method: str, target: str, host: str = "api.payments.example", **kw: object) -> LiveRequest:
    scheme = str(kw.get("scheme", "https"))
    port = int(kw.get("port", 443 if scheme == "https" else 80))  # type: ignore[call-overload]
    return LiveRequest(scheme=scheme, host=host, port=port, method=method, target=target)


# --- matching ------------------------------------------------------------------------------


def test_live_request_parts() -> None:
    request = live("post", "/v1/charges?a=1")
    assert request.path == "/v1/charges"
    assert request.query == "a=1"
    assert request.url == f"{API}/v1/charges?a=1"
    assert live("GET", "/x", port=8443).url == "https://api.payments.example:8443/x"
    assert live("GET", "?q=1").path == "/"


def test_outbound_call_port_and_host_from_url() -> None:
    assert call(0, "GET", f"{API}/x").port == 443
    assert call(0, "GET", "http://api.payments.example/x").port == 80
    assert call(0, "GET", "http://API.payments.example:8080/x").port == 8080
    assert call(0, "GET", f"{API}/x").host == "api.payments.example"


def test_all_parts_agree() -> None:
    recorded = call(0, "POST", f"{API}/v1/charges?currency=eur")
    assert differences(live("post", "/v1/charges?currency=eur"), recorded, _all()) == []


def _all() -> tuple[str, ...]:
    return ("method", "scheme", "host", "port", "path", "query")


@pytest.mark.parametrize(
    "request_, part",
    [
        (live("GET", "/v1/charges?currency=eur"), "method"),
        (live("POST", "/v1/charges?currency=eur", scheme="http", port=443), "scheme"),
        (live("POST", "/v1/charges?currency=eur", host="other.example"), "host"),
        (live("POST", "/v1/charges?currency=eur", port=8443), "port"),
        (live("POST", "/v1/refunds?currency=eur"), "path"),
        (live("POST", "/v1/charges?currency=usd"), "query"),
        (live("POST", "/v1/charges"), "query"),
    ],
)
def test_each_part_is_compared(request_: LiveRequest, part: str) -> None:
    recorded = call(0, "POST", f"{API}/v1/charges?currency=eur")
    assert differences(request_, recorded, _all()) == [part]


def test_host_is_case_insensitive() -> None:
    recorded = call(0, "GET", f"{API}/x")
    assert differences(live("GET", "/x", host="API.Payments.Example"), recorded, _all()) == []


def test_query_order_does_not_matter() -> None:
    recorded = call(0, "GET", f"{API}/search?a=1&b=2&b=3")
    assert find_match(live("GET", "/search?b=2&a=1&b=3"), [recorded], set()) is recorded
    # but repeated values are not a set
    assert find_match(live("GET", "/search?a=1&b=2"), [recorded], set()) is None


def test_match_on_restricts_the_parts() -> None:
    recorded = call(0, "POST", f"{API}/v1/charges?x=1")
    request = live("POST", "/v1/charges?x=2")
    assert find_match(request, [recorded], set()) is None
    assert find_match(request, [recorded], set(), match_on=("method", "path")) is recorded


def test_first_unused_match_in_recorded_order() -> None:
    calls = [
        call(0, "GET", f"{API}/other"),
        call(1, "POST", f"{API}/v1/charges", status=500),
        call(2, "POST", f"{API}/v1/charges", status=200),
    ]
    request = live("POST", "/v1/charges")
    assert find_match(request, calls, set()) is calls[1]
    assert find_match(request, calls, {1}) is calls[2]
    assert find_match(request, calls, {1, 2}) is None


def test_nearest_ranks_by_number_of_differing_parts() -> None:
    calls = [
        call(0, "GET", "http://other.example/v2/refunds?a=1"),  # all but query
        call(1, "GET", f"{API}/v1/charges?a=1"),  # method
        call(2, "POST", f"{API}/v1/refunds?a=2"),  # path, query
        call(3, "POST", f"{API}/v1/charges?a=1"),  # identical, but used
    ]
    ranked = nearest(live("POST", "/v1/charges?a=1"), calls, {3}, limit=10)
    assert [(c.call.order, c.differs, c.used) for c in ranked] == [
        (3, (), True),
        (1, ("method",), False),
        (2, ("path", "query"), False),
        (0, ("method", "scheme", "host", "port", "path"), False),
    ]
    assert "already served earlier" in ranked[0].describe()
    assert ranked[1].describe().endswith("(differs in method)")
    assert "differs in path, query" in ranked[2].describe()
    assert ranked[1].describe().startswith(f"#1 GET {API}/v1/charges?a=1 -> 200")


def test_nearest_is_limited() -> None:
    calls = [call(i, "GET", f"{API}/{i}") for i in range(5)]
    assert [c.call.order for c in nearest(live("GET", "/9"), calls, set())] == [0, 1, 2]


# --- the replay book -----------------------------------------------------------------------


def test_repeated_identical_calls_are_consumed_in_order() -> None:
    book = ReplayBook()
    calls = [
        call(0, "POST", f"{API}/v1/charges", status=402),
        call(1, "POST", f"{API}/v1/charges", status=200),
    ]
    book.begin(calls)
    first = book.serve(live("POST", "/v1/charges"))
    second = book.serve(live("POST", "/v1/charges"))
    assert first.call is calls[0]
    assert second.call is calls[1]
    third = book.serve(live("POST", "/v1/charges"))
    assert third.call is None
    assert "already served earlier in this request" in third.refusal


def test_served_effect_and_delay_follow_speed() -> None:
    book = ReplayBook(speed=2.0)
    recorded = call(0, "GET", f"{API}/v1/customers/cus_1", duration_ms=1500)
    book.begin([recorded])
    reply = book.serve(live("GET", "/v1/customers/cus_1"))
    assert reply.call is recorded
    assert reply.delay_s == pytest.approx(0.75)
    assert not reply.hold and not reply.drop and reply.refusal == ""
    assert book.end() == [
        Effect(
            Outcome.SERVED,
            f"GET {API}/v1/customers/cus_1",
            "-> 200 (recorded #0)",
            EffectKind.HTTP,
        )
    ]


def test_infinite_speed_means_no_delay() -> None:
    book = ReplayBook(speed=math.inf)
    book.begin([call(0, "GET", f"{API}/x", duration_ms=30_000)])
    assert book.serve(live("GET", "/x")).delay_s == 0.0


def test_recorded_timeout_is_held() -> None:
    book = ReplayBook()
    recorded = call(0, "POST", f"{API}/v1/charges", status=None, error="timeout")
    book.begin([recorded])
    reply = book.serve(live("POST", "/v1/charges"))
    assert reply.hold is True
    assert reply.call is recorded
    (effect,) = book.end()
    assert effect.outcome is Outcome.HELD
    assert "timed out" in effect.detail


def test_other_errors_are_not_held() -> None:
    book = ReplayBook()
    book.begin([call(0, "POST", f"{API}/x", status=503, error="503")])
    assert book.serve(live("POST", "/x")).hold is False


def test_miss_is_unmatched_and_names_the_nearest_calls() -> None:
    book = ReplayBook()
    book.begin(
        [
            call(0, "POST", f"{API}/v1/charges"),
            call(1, "GET", "http://mail.example/ping"),
        ]
    )
    reply = book.serve(live("POST", "/v1/refunds"))
    assert reply.call is None
    assert reply.drop is False  # ERROR answers (502) rather than dropping
    assert f"no recorded call matches POST {API}/v1/refunds" in reply.refusal
    (effect,) = book.end()
    assert effect.outcome is Outcome.UNMATCHED
    assert effect.what == f"POST {API}/v1/refunds"
    lines = effect.detail.splitlines()
    assert lines[0] == "nearest recorded calls:"
    assert f"#0 POST {API}/v1/charges" in lines[1] and "differs in path" in lines[1]
    assert "#1 GET http://mail.example/ping" in lines[2]
    assert effect.detail in reply.refusal


def test_miss_with_no_recorded_calls() -> None:
    book = ReplayBook()
    book.begin([])
    reply = book.serve(live("GET", "/x"))
    assert reply.call is None
    (effect,) = book.end()
    assert effect.outcome is Outcome.UNMATCHED
    assert "made no outbound calls" in effect.detail


def test_block_drops_unmatched_connections() -> None:
    book = ReplayBook(unmatched=UnmatchedMode.BLOCK)
    book.begin([call(0, "GET", f"{API}/a")])
    assert book.serve(live("GET", "/b")).drop is True
    assert book.serve(live("GET", "/a")).drop is False


def test_end_returns_effects_in_order_and_closes() -> None:
    book = ReplayBook()
    book.begin([call(0, "GET", f"{API}/a"), call(1, "GET", f"{API}/b")])
    assert not book.closed.is_set()
    book.serve(live("GET", "/b"))
    book.add(Effect(Outcome.BLOCKED, "connect 203.0.113.1:443", "nothing leaves the machine"))
    book.serve(live("GET", "/zzz"))
    book.serve(live("GET", "/a"))
    effects = book.end()
    assert [e.outcome for e in effects] == [
        Outcome.SERVED,
        Outcome.BLOCKED,
        Outcome.UNMATCHED,
        Outcome.SERVED,
    ]
    assert effects[0].detail == "-> 200 (recorded #1)"
    assert effects[3].detail == "-> 200 (recorded #0)"
    assert book.closed.is_set()


def test_begin_resets_for_the_next_request() -> None:
    book = ReplayBook()
    book.begin([call(0, "GET", f"{API}/a")])
    book.serve(live("GET", "/a"))
    book.end()
    book.begin([call(0, "GET", f"{API}/a")])
    assert not book.closed.is_set()
    assert book.serve(live("GET", "/a")).call is not None  # "used" was reset
    assert len(book.end()) == 1


def test_a_held_call_is_released_when_its_own_item_ends() -> None:
    """The next item's begin() must not revive the previous item's hold."""
    book = ReplayBook()
    book.begin([call(0, "POST", f"{API}/v1/charges", status=None, error="timeout")])
    reply = book.serve(live("POST", "/v1/charges"))
    assert reply.done is not None and not reply.done.is_set()
    book.end()
    book.begin([])  # the next item starts at once
    assert reply.done.is_set()
    assert not book.closed.is_set()

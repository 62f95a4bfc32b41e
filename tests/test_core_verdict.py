"""Judging a replayed request: every problem reported, and the resolved/regressed vocabulary."""

from __future__ import annotations

from pytest_incident.effects import Effect, Outcome
from pytest_incident.spans import RecordedRequest, Span, SpanKind
from pytest_incident.spec import StatusCondition
from pytest_incident.verdict import Expectations, Verdict, judge

SERVED = Effect(Outcome.SERVED, "GET https://api.example/a", "-> 200 (recorded #0)")
MISS = Effect(Outcome.UNMATCHED, "POST https://api.example/new", "nearest recorded calls: ...")
BLOCKED = Effect(Outcome.BLOCKED, "connect 203.0.113.1:443", "nothing leaves the machine")


def recorded(status: int | None, status_code: str = "Unset") -> RecordedRequest:
    attributes = {"http.response.status_code": str(status)} if status is not None else {}
    span = Span(
        timestamp_ns=0,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        span_id="00f067aa0ba902b7",
        parent_span_id="",
        name="POST /signup",
        kind=SpanKind.SERVER,
        service="signup",
        attributes=attributes,
        duration_ns=1,
        status_code=status_code,
    )
    return RecordedRequest(span)


def test_clean_pass() -> None:
    verdict = judge(recorded(500), 200, "", [SERVED, BLOCKED], Expectations())
    assert verdict.passed
    assert verdict.problems == ()
    assert (verdict.was, verdict.now) == (500, 200)


def test_status_mismatch() -> None:
    expect = Expectations(status=StatusCondition.parse("<500"))
    verdict = judge(recorded(500), 503, "", [], expect)
    assert not verdict.passed
    assert verdict.problems == ("status 503 does not satisfy expect.status <500",)
    assert judge(recorded(500), 201, "", [], expect).passed


def test_no_answer() -> None:
    verdict = judge(recorded(200), None, "connection reset", [], Expectations())
    assert verdict.problems == ("no answer from the target: connection reset",)
    unknown = judge(recorded(200), None, "", [], Expectations())
    assert unknown.problems == ("no answer from the target: unknown error",)


def test_no_answer_is_not_also_a_status_mismatch() -> None:
    expect = Expectations(status=StatusCondition.parse("200"))
    verdict = judge(recorded(200), None, "timeout", [], expect)
    assert len(verdict.problems) == 1
    assert verdict.problems[0].startswith("no answer")


def test_not_resolved() -> None:
    expect = Expectations(resolved=True)
    verdict = judge(recorded(500), 500, "", [], expect)
    assert len(verdict.problems) == 1
    assert "failed in production (500) and is not resolved (now 500" in verdict.problems[0]
    assert (
        judge(recorded(500), 404, "", [], expect)
        .problems[0]
        .endswith("(now 404; resolved means < 400)")
    )
    assert judge(recorded(500), 302, "", [], expect).passed


def test_not_resolved_without_any_answer() -> None:
    verdict = judge(recorded(None, "Error"), None, "hung", [], Expectations(resolved=True))
    assert verdict.problems == (
        "no answer from the target: hung",
        "failed in production (no answer) and is not resolved "
        "(now no answer; resolved means < 400)",
    )


def test_resolved_expectation_ignores_requests_that_did_not_fail() -> None:
    assert judge(recorded(200), 404, "", [], Expectations(resolved=True)).passed


def test_unmatched_calls_fail_each_one_named() -> None:
    other = Effect(Outcome.UNMATCHED, "GET https://api.example/other")
    verdict = judge(recorded(500), 200, "", [SERVED, MISS, BLOCKED, other], Expectations())
    assert verdict.problems == (
        "outbound call not in the recording: POST https://api.example/new",
        "outbound call not in the recording: GET https://api.example/other",
    )


def test_unmatched_calls_tolerated_when_configured() -> None:
    verdict = judge(recorded(500), 200, "", [MISS], Expectations(unmatched_fails=False))
    assert verdict.passed


def test_all_problems_are_reported_together() -> None:
    expect = Expectations(status=StatusCondition.parse("2xx"), resolved=True)
    verdict = judge(recorded(502), 500, "", [MISS], expect)
    assert len(verdict.problems) == 3


def test_resolved_and_regressed() -> None:
    fixed = judge(recorded(500), 200, "", [], Expectations())
    assert fixed.failed_before and not fixed.fails_now
    assert fixed.resolved and not fixed.regressed

    still = judge(recorded(500), 500, "", [], Expectations())
    assert not still.resolved and not still.regressed

    client_error = judge(recorded(500), 422, "", [], Expectations())
    assert not client_error.resolved  # < 400 is required
    assert not client_error.fails_now

    broke = judge(recorded(200), 500, "", [], Expectations())
    assert broke.regressed and not broke.resolved

    hung = judge(recorded(200), None, "", [], Expectations())
    assert hung.fails_now and hung.regressed

    no_answer_before = judge(recorded(None, "Error"), 200, "", [], Expectations())
    assert no_answer_before.failed_before and no_answer_before.resolved

    fine = judge(recorded(200), 200, "", [], Expectations())
    assert not fine.resolved and not fine.regressed


def test_transition_text() -> None:
    assert judge(recorded(500), 200, "", [], Expectations()).transition() == "500 -> 200"
    assert judge(recorded(None), 200, "", [], Expectations()).transition() == "no answer -> 200"
    assert Verdict(502, None, (), True, True).transition() == "502 -> no answer"

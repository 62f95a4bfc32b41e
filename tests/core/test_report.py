"""The failure report: pure text from the request, the replay's result and its verdict."""

from __future__ import annotations

from pytest_incident.core.report import render_failure
from pytest_incident.core.verdict import judge
from pytest_incident.model.effects import Effect, Outcome
from pytest_incident.model.mutations import COMMITTED, Mutation
from pytest_incident.model.recorded import DatabaseWrite, RecordedRequest
from pytest_incident.model.result import ReplayResult
from pytest_incident.model.spec import Expect, StatusCondition

from ..spans import TRACE, db_span, server_span

SERVED = Effect(Outcome.SERVED, "GET https://api.example/a", "-> 200 (recorded #0)")
EXPECT = Expect(status=StatusCondition.parse("<500"))


def request(with_db: bool) -> RecordedRequest:
    span = server_span(at=1_715_695_200_000_000_000)
    if not with_db:
        return RecordedRequest(span)
    write = db_span("INSERT", "accounts", COMMITTED)
    return RecordedRequest(span, (), (DatabaseWrite(write),))


def report(req: RecordedRequest, effects: tuple[Effect, ...], body: bytes = b"") -> str:
    result = ReplayResult(503, body, "", effects, "", "", 0.0)
    return render_failure("2024-05-signup", req, result, judge(req, result, EXPECT))


def test_calls_and_no_recorded_writes_print_no_stray_none() -> None:
    text = report(request(with_db=False), (SERVED,))
    assert "served    GET https://api.example/a  -> 200 (recorded #0)" in text
    assert "(none)" not in text


def test_writes_and_no_calls_say_none_under_the_calls_heading() -> None:
    text = report(request(with_db=True), ())
    lines = text.splitlines()
    calls = lines.index("outbound calls:")
    assert lines[calls + 1] == "  (none)"
    assert "database writes (production | replay):" in lines
    assert "INSERT accounts committed" in text


def test_the_report_names_status_problems_and_how_to_replay() -> None:
    text = report(request(with_db=False), (SERVED,), body=b"x" * 400)
    assert text.startswith(f"POST /signup  request {TRACE}  recorded 2024-05-14 14:00:00.000 UTC")
    assert "status: 500 -> 503   (was -> now)" in text
    assert "  - status 503 does not satisfy expect.status <500" in text
    assert "response body (now): " + "x" * 300 + "... (400 chars)" in text
    assert text.endswith(
        "replay with: pytest --incident=2024-05-signup --incident-request=4bf92f35"
    )


def test_late_effects_are_shown_marked() -> None:
    late = Effect(Outcome.EMAIL, "mail from a to b", "subject: hi", late_after="aaaa1111")
    assert "[late: after request aaaa1111]" in report(request(False), (late,))


def test_identical_writes_print_no_comparison() -> None:
    same = Mutation(1, "INSERT ...", (), "INSERT", "accounts", 1, 0, COMMITTED)
    req = request(with_db=True)
    result = ReplayResult(503, b"", "", (), "", "", 0.0, (same,))
    text = render_failure("x", req, result, judge(req, result, EXPECT))
    assert "database writes" not in text

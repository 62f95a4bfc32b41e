"""Judging a replayed request: every problem reported, and the resolved/regressed vocabulary."""

from __future__ import annotations

from collections.abc import Sequence

from pytest_incident.core.verdict import Verdict
from pytest_incident.core.verdict import judge as core_judge
from pytest_incident.model.effects import Effect, Outcome
from pytest_incident.model.mutations import COMMITTED, Mutation
from pytest_incident.model.recorded import DatabaseWrite, RecordedRequest
from pytest_incident.model.result import ReplayResult, SnapshotCheck
from pytest_incident.model.spec import RESOLVED_DEFAULT, Expect, StatusCondition, UnmatchedMode

from ..spans import db_span, recorded_request

SERVED = Effect(Outcome.SERVED, "GET https://api.example/a", "-> 200 (recorded #0)")
MISS = Effect(Outcome.UNMATCHED, "POST https://api.example/new", "nearest recorded calls: ...")
BLOCKED = Effect(Outcome.BLOCKED, "connect 203.0.113.1:443", "nothing leaves the machine")


def recorded(status: int | None, status_code: str = "Unset") -> RecordedRequest:
    return recorded_request(status=status, status_code=status_code)


def result(
    now: int | None,
    error: str = "",
    effects: Sequence[Effect] = (),
    crash: str = "",
    problems: Sequence[str] = (),
    mutations: Sequence[Mutation] = (),
) -> ReplayResult:
    return ReplayResult(
        now, b"", error, tuple(effects), crash, "", 0.0, tuple(mutations), tuple(problems)
    )


def judge(
    request: RecordedRequest,
    now: int | None,
    error: str,
    effects: Sequence[Effect],
    expect: Expect,
    unmatched: UnmatchedMode = UnmatchedMode.ERROR,
    snapshot: SnapshotCheck | None = None,
) -> Verdict:
    return core_judge(request, result(now, error, effects), expect, unmatched, snapshot)


def test_clean_pass() -> None:
    verdict = judge(recorded(500), 200, "", [SERVED, BLOCKED], Expect())
    assert verdict.passed
    assert verdict.problems == ()
    assert (verdict.was, verdict.now) == (500, 200)


def test_status_mismatch() -> None:
    expect = Expect(status=StatusCondition.parse("<500"))
    verdict = judge(recorded(500), 503, "", [], expect)
    assert not verdict.passed
    assert verdict.problems == ("status 503 does not satisfy expect.status <500",)
    assert judge(recorded(500), 201, "", [], expect).passed


def test_no_answer() -> None:
    verdict = judge(recorded(200), None, "connection reset", [], Expect())
    assert verdict.problems == ("no answer from the target: connection reset",)
    unknown = judge(recorded(200), None, "", [], Expect())
    assert unknown.problems == ("no answer from the target: unknown error",)


def test_no_answer_is_not_also_a_status_mismatch() -> None:
    expect = Expect(status=StatusCondition.parse("200"))
    verdict = judge(recorded(200), None, "timeout", [], expect)
    assert len(verdict.problems) == 1
    assert verdict.problems[0].startswith("no answer")


def test_not_resolved() -> None:
    expect = Expect(resolved=RESOLVED_DEFAULT)
    verdict = judge(recorded(500), 500, "", [], expect)
    assert len(verdict.problems) == 1
    assert "failed in production (500) and is not resolved (now 500" in verdict.problems[0]
    assert (
        judge(recorded(500), 404, "", [], expect)
        .problems[0]
        .endswith("(now 404; expect.resolved is <400)")
    )
    assert judge(recorded(500), 302, "", [], expect).passed


def test_not_resolved_without_any_answer() -> None:
    verdict = judge(recorded(None, "Error"), None, "hung", [], Expect(resolved=RESOLVED_DEFAULT))
    assert verdict.problems == (
        "no answer from the target: hung",
        "failed in production (no answer) and is not resolved "
        "(now no answer; expect.resolved is <400)",
    )


def test_a_fix_that_answers_409_can_count_as_resolved() -> None:
    """expect.resolved as a status condition: a correct fix may refuse the duplicate."""
    expect = Expect(resolved=StatusCondition.parse("2xx,409,422"))
    conflict = judge(recorded(500), 409, "", [], expect)
    assert conflict.passed and conflict.resolved
    assert judge(recorded(500), 201, "", [], expect).resolved
    other = judge(recorded(500), 404, "", [], expect)  # the twin: outside the condition
    assert not other.resolved
    assert other.problems == (
        "failed in production (500) and is not resolved (now 404; expect.resolved is 2xx,409,422)",
    )
    # without the condition, 409 is not resolved (< 400 is the default)
    assert not judge(recorded(500), 409, "", [], Expect(resolved=RESOLVED_DEFAULT)).passed


def test_snapshot_only_failures_are_told_apart() -> None:
    new = SnapshotCheck(False, "s.ambr", "x", "new snapshot: ...", new=True)
    changed = SnapshotCheck(False, "s.ambr", "x", "differs", ("-a", "+b"))
    assert judge(recorded(200), 200, "", [], Expect(), snapshot=new).snapshot_only == "new"
    assert judge(recorded(200), 200, "", [], Expect(), snapshot=changed).snapshot_only == "changed"
    both = judge(recorded(200), 500, "", [], Expect(), snapshot=changed)  # and a regression
    assert both.snapshot_only == "" and both.regressed


def test_resolved_expectation_ignores_requests_that_did_not_fail() -> None:
    assert judge(recorded(200), 404, "", [], Expect(resolved=RESOLVED_DEFAULT)).passed


def test_unmatched_calls_fail_each_one_named() -> None:
    other = Effect(Outcome.UNMATCHED, "GET https://api.example/other")
    verdict = judge(recorded(500), 200, "", [SERVED, MISS, BLOCKED, other], Expect())
    assert verdict.problems == (
        "outbound call not in the recording: POST https://api.example/new",
        "outbound call not in the recording: GET https://api.example/other",
    )


def test_unmatched_calls_tolerated_when_configured() -> None:
    verdict = judge(recorded(500), 200, "", [MISS], Expect(), UnmatchedMode.BLOCK)
    assert verdict.passed


def test_all_problems_are_reported_together() -> None:
    expect = Expect(status=StatusCondition.parse("2xx"), resolved=RESOLVED_DEFAULT)
    verdict = judge(recorded(502), 500, "", [MISS], expect)
    assert len(verdict.problems) == 3


def test_resolved_and_regressed() -> None:
    fixed = judge(recorded(500), 200, "", [], Expect())
    assert fixed.failed_before and not fixed.fails_now
    assert fixed.resolved and not fixed.regressed

    still = judge(recorded(500), 500, "", [], Expect())
    assert not still.resolved and not still.regressed

    client_error = judge(recorded(500), 422, "", [], Expect())
    assert not client_error.resolved  # < 400 is required
    assert not client_error.fails_now

    broke = judge(recorded(200), 500, "", [], Expect())
    assert broke.regressed and not broke.resolved

    hung = judge(recorded(200), None, "", [], Expect())
    assert hung.fails_now and hung.regressed

    no_answer_before = judge(recorded(None, "Error"), 200, "", [], Expect())
    assert no_answer_before.failed_before and no_answer_before.resolved

    fine = judge(recorded(200), 200, "", [], Expect())
    assert not fine.resolved and not fine.regressed


def test_transition_text() -> None:
    assert judge(recorded(500), 200, "", [], Expect()).transition() == "500 -> 200"
    assert judge(recorded(None), 200, "", [], Expect()).transition() == "no answer -> 200"
    assert Verdict(502, None, (), True, True).transition() == "502 -> no answer"


def test_a_crash_is_a_problem_first() -> None:
    replay = result(None, "connection reset", crash="target was killed by SIGKILL")
    verdict = core_judge(recorded(200), replay, Expect())
    assert verdict.problems[0] == "target was killed by SIGKILL"
    assert not verdict.passed


def test_tap_problems_fail_the_item() -> None:
    """A tap that lost track of a connection leaves the mutation log incomplete: never a pass."""
    replay = result(200, problems=["database tap: 127.0.0.1:5: the parser gave up"])
    verdict = core_judge(recorded(200), replay, Expect())
    assert verdict.problems == ("database tap: 127.0.0.1:5: the parser gave up",)
    assert not verdict.passed


def test_a_snapshot_mismatch_is_part_of_the_verdict() -> None:
    check = SnapshotCheck(False, "x.ambr", "POST /signup[1]", "the side-effect log differs")
    verdict = core_judge(recorded(200), result(200), Expect(), snapshot=check)
    assert verdict.problems == ("the side-effect log differs",)
    assert verdict.snapshot is check
    matched = SnapshotCheck(True, "x.ambr", "POST /signup[1]")
    assert core_judge(recorded(200), result(200), Expect(), snapshot=matched).passed


def test_a_late_unmatched_call_belongs_to_an_earlier_request() -> None:
    late = Effect(Outcome.UNMATCHED, "GET https://api.example/x", late_after="aaaa1111")
    assert core_judge(recorded(200), result(200, effects=[late]), Expect()).passed


def test_writes_are_compared_once_into_the_verdict() -> None:
    request = recorded(200)
    span = db_span("INSERT", "accounts", COMMITTED, trace=request.request_id)
    with_writes = RecordedRequest(request.span, (), (DatabaseWrite(span),))
    verdict = core_judge(with_writes, result(200), Expect())
    assert "INSERT accounts committed" in verdict.writes
    assert verdict.passed  # information, not a failure
    same = Mutation(1, "INSERT ...", (), "INSERT", "accounts", 1, 0, COMMITTED)
    assert core_judge(with_writes, result(200, mutations=[same]), Expect()).writes == ""


def test_an_answer_unlike_productions_fails_the_item_with_its_field_diff() -> None:
    from pytest_incident.model.spec import ResponseMatch

    request = recorded_request(
        status=201,
        **{
            "incident.response.body": '{"total": "5.00", "id": "a"}',
            "incident.response.headers": '{"content-type": "application/json"}',
        },
    )
    now = ReplayResult(201, b'{"total": "4.99", "id": "b"}', "", (), "", "", 0.0,
                       headers=(("Content-Type", "application/json"),))  # fmt: skip
    expect = Expect(response=ResponseMatch())
    verdict = core_judge(request, now, expect, noise=("body:id",))
    assert not verdict.passed
    assert verdict.response_diff == ('total: "5.00" -> "4.99"',)
    # the twin: without expect.response the answer's content is not judged
    assert core_judge(request, now, Expect()).passed

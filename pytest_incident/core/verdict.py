# Judging one replayed request: the recorded request, what the replay produced, the
# incident's expectations and the snapshot comparison in; one Verdict with every problem
# (not just the first) out. Pure; the only place that decides whether an item passes.
#
# Vocabulary: a request "failed" when it answered 5xx or not at all; it is "resolved" when it
# failed in production and now answers as `expect.resolved` says (below 400 unless the file
# says otherwise: a fix may answer 409). `regressed` = did not fail in production, fails now.
from __future__ import annotations

from dataclasses import dataclass

from pytest_incident.core.responses import Answer, compare_response
from pytest_incident.core.writes import compare_writes
from pytest_incident.model.effects import Outcome
from pytest_incident.model.recorded import RecordedRequest
from pytest_incident.model.result import ReplayResult, SnapshotCheck
from pytest_incident.model.spec import RESOLVED_DEFAULT, Expect, StatusCondition, UnmatchedMode


@dataclass(frozen=True)
class Verdict:
    was: int | None
    now: int | None
    problems: tuple[str, ...]  # every reason the item fails, in report order
    failed_before: bool
    fails_now: bool
    snapshot: SnapshotCheck | None = None  # None: no snapshot asserted
    writes: str = ""  # production's writes beside the replay's, when they differ
    resolves: StatusCondition = RESOLVED_DEFAULT  # what a resolved request answers now
    response_diff: tuple[str, ...] = ()  # how the body differs from production's, by field

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def resolved(self) -> bool:
        return self.failed_before and self.now is not None and self.resolves.matches(self.now)

    @property
    def regressed(self) -> bool:
        return not self.failed_before and self.fails_now

    @property
    def snapshot_only(self) -> str:
        """The snapshot's state, "new" or "changed", when it is the item's only problem and
        the request did not regress; else ""."""
        snapshot = self.snapshot
        if snapshot is None or snapshot.matched or self.problems != (snapshot.problem,):
            return ""
        if self.regressed:
            return ""
        return "new" if snapshot.new else "changed"

    def transition(self) -> str:
        def show(status: int | None) -> str:
            return "no answer" if status is None else str(status)

        return f"{show(self.was)} -> {show(self.now)}"


def judge(
    recorded: RecordedRequest,
    result: ReplayResult,
    expect: Expect,
    unmatched: UnmatchedMode = UnmatchedMode.ERROR,
    snapshot: SnapshotCheck | None = None,
    noise: tuple[str, ...] = (),
) -> Verdict:
    """`noise`: what the calibration file says varies in this route's answers."""
    now = result.status
    problems: list[str] = []
    if result.crash:
        problems.append(result.crash)
    if now is None:
        problems.append(f"no answer from the target: {result.error or 'unknown error'}")
    elif expect.status is not None and not expect.status.matches(now):
        problems.append(f"status {now} does not satisfy expect.status {expect.status}")
    resolves = expect.resolved or RESOLVED_DEFAULT
    if expect.resolved and recorded.failed and (now is None or not resolves.matches(now)):
        was = recorded.status if recorded.status is not None else "no answer"
        problems.append(
            f"failed in production ({was}) and is not resolved "
            f"(now {now if now is not None else 'no answer'}; expect.resolved is {resolves})"
        )
    response_diff: tuple[str, ...] = ()
    if expect.response is not None:
        answer = Answer(now, result.headers, result.body)
        comparison = compare_response(recorded, answer, expect.response, noise)
        problems.extend(comparison.problems)
        response_diff = comparison.diff
    if unmatched is UnmatchedMode.ERROR:
        for miss in result.effects:
            if miss.outcome is Outcome.UNMATCHED and not miss.late:
                problems.append(f"outbound call not in the recording: {miss.what}")
    problems.extend(result.problems)
    if snapshot is not None and not snapshot.matched:
        problems.append(snapshot.problem)
    writes = ""
    if recorded.db_writes is not None:
        writes = compare_writes(recorded.db_writes, result.mutations)
    return Verdict(
        was=recorded.status,
        now=now,
        problems=tuple(problems),
        failed_before=recorded.failed,
        fails_now=now is None or now >= 500,
        snapshot=snapshot,
        writes=writes,
        resolves=resolves,
        response_diff=response_diff,
    )

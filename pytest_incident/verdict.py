# Judging one replayed request against the incident's expectations. Pure: recorded request,
# replay outcome and expectations in; a Verdict with every problem (not just the first) out.
#
# Vocabulary: a request "failed" when it answered 5xx or not at all; it "succeeds" when it
# answered below 400. `resolved` = failed in production, succeeds now. `regressed` = did not
# fail in production, fails now.
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .effects import Effect, Outcome
from .spans import RecordedRequest


@dataclass(frozen=True)
class Expectations:
    status: object | None = None  # anything with .matches(int) -> bool and str()
    resolved: bool = False
    unmatched_fails: bool = True


@dataclass(frozen=True)
class Verdict:
    was: int | None
    now: int | None
    problems: tuple[str, ...]
    failed_before: bool
    fails_now: bool

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def resolved(self) -> bool:
        return self.failed_before and self.now is not None and self.now < 400

    @property
    def regressed(self) -> bool:
        return not self.failed_before and self.fails_now

    def transition(self) -> str:
        def show(status: int | None) -> str:
            return "no answer" if status is None else str(status)

        return f"{show(self.was)} -> {show(self.now)}"


def judge(
    recorded: RecordedRequest,
    now: int | None,
    error: str,
    effects: Sequence[Effect],
    expect: Expectations,
) -> Verdict:
    problems: list[str] = []
    if now is None:
        problems.append(f"no answer from the target: {error or 'unknown error'}")
    elif expect.status is not None and not expect.status.matches(now):  # type: ignore[attr-defined]
        problems.append(f"status {now} does not satisfy expect.status {expect.status}")
    if expect.resolved and recorded.failed and (now is None or now >= 400):
        was = recorded.status if recorded.status is not None else "no answer"
        problems.append(
            f"failed in production ({was}) and is not resolved "
            f"(now {now if now is not None else 'no answer'}; resolved means < 400)"
        )
    if expect.unmatched_fails:
        misses = [e for e in effects if e.outcome is Outcome.UNMATCHED]
        for miss in misses:
            problems.append(f"outbound call not in the recording: {miss.what}")
    return Verdict(
        was=recorded.status,
        now=now,
        problems=tuple(problems),
        failed_before=recorded.failed,
        fails_now=now is None or now >= 500,
    )

"""The effect log: stamped, in order, attributed; late effects kept for the next item."""

from __future__ import annotations

from pytest_incident.core.effect_log import EffectLog
from pytest_incident.model.effects import Effect, EffectKind, Outcome


class Clock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


def connect(at_ns: int = 0) -> Effect:
    return Effect(Outcome.BLOCKED, "connect 127.0.0.1:6543", "", EffectKind.NETWORK, at_ns=at_ns)


def test_effects_are_stamped_by_the_injected_clock() -> None:
    clock = Clock()
    log = EffectLog(clock)
    log.begin("aaaa1111")
    clock.now = 1_500
    log.add(Effect(Outcome.EMAIL, "mail"))
    (effect,) = log.end()
    assert effect.at_ns == 1_500 and effect.late_after is None
    assert effect.kind is EffectKind.EMAIL


def test_sandbox_events_after_the_answer_are_late_not_dropped() -> None:
    """The tracer reports through a file read after the answer: what it stamped before the
    item ended is the item's; what it stamped after is shown on the next item, marked."""
    clock = Clock()
    log = EffectLog(clock)
    log.begin("aaaa1111")
    clock.now = 2_000
    log.end()
    own = log.settle([connect(at_ns=1_999), connect(at_ns=2_001)])
    assert [e.at_ns for e in own] == [1_999]
    log.add(connect(at_ns=2_500))  # between items (read when the next one starts): late too
    log.begin("bbbb2222")
    late = log.end()
    assert [(e.at_ns, e.late_after) for e in late] == [(2_001, "aaaa1111"), (2_500, "aaaa1111")]
    assert late[0].render().endswith("[late: after request aaaa1111]")


def test_before_any_request_is_said_so() -> None:
    log = EffectLog(Clock())
    log.add(connect())
    log.begin("aaaa1111")
    (effect,) = log.end()
    assert effect.late_after == ""
    assert effect.render().endswith("[late: before any request]")

# The replay book: for the request being replayed, which recorded outbound calls remain and
# what each live outbound request gets. Decision logic only (thread-safe, no sockets): stubs
# ask `serve()` and act on the returned Reply; the item reads the effects at the end.
from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

from pytest_incident.core.effect_log import EffectLog
from pytest_incident.core.matching import LiveRequest, MatchRules, choose, nearest
from pytest_incident.model.effects import Effect, EffectKind, Outcome
from pytest_incident.model.recorded import OutboundCall
from pytest_incident.model.spec import DEFAULT_MATCH_ON, UnmatchedMode


@dataclass(frozen=True)
class Reply:
    call: OutboundCall | None  # the recorded call that answers, if any
    delay_s: float = 0.0
    hold: bool = False  # recorded as a timeout: never answer
    refusal: str = ""  # unmatched: the explanation (sent as a 502 body for ERROR)
    drop: bool = False  # unmatched with BLOCK: close without answering
    reset: bool = False  # recorded as a failed call (reset, refused): reset, after its latency
    done: threading.Event | None = None  # set when the item that asked has ended


class ReplayBook:
    """The call ledger of the request being replayed, and the effect log every stub and the
    sandbox write to (`add`)."""

    def __init__(
        self,
        unmatched: UnmatchedMode = UnmatchedMode.ERROR,
        speed: float = 1.0,
        match_on: Sequence[str] | MatchRules = DEFAULT_MATCH_ON,
        log: EffectLog | None = None,
    ) -> None:
        self.unmatched = unmatched
        self.speed = speed
        self.match_on = (
            match_on if isinstance(match_on, MatchRules) else MatchRules(tuple(match_on))
        )
        self.log = log if log is not None else EffectLog()
        self._lock = threading.Lock()
        self._calls: tuple[OutboundCall, ...] = ()
        self._used: set[int] = set()

    def begin(self, calls: Sequence[OutboundCall], label: str = "") -> None:
        with self._lock:
            self._calls = tuple(calls)
            self._used = set()
        self.log.begin(label)

    @property
    def closed(self) -> threading.Event:
        """Set once the current item has ended: stubs stop delaying and holding for it."""
        return self.log.closed

    def add(self, effect: Effect) -> None:
        """Record a side effect (see EffectLog: one that arrives after its item answered is
        shown on the next item, marked late)."""
        self.log.add(effect)

    def serve(self, live: LiveRequest) -> Reply:
        what = f"{live.method} {live.url}"
        with self._lock:
            choice = choose(live, self._calls, self._used, self.match_on)
            call = choice.call
            if choice.ambiguous:
                listed = "\n".join(f"  {c.describe()}" for c in choice.ambiguous)
                detail = (
                    "ambiguous: these recorded calls are equally near (add a part to "
                    f"sandbox.match_on, or a normalizer, that tells them apart):\n{listed}"
                )
                self.log.add(Effect(Outcome.UNMATCHED, what, detail, EffectKind.HTTP))
                text = f"pytest-incident: {what} is ambiguous\n{detail}\n"
                return Reply(None, refusal=text, drop=self.unmatched is UnmatchedMode.BLOCK)
            if call is not None:
                self._used.add(call.order)
                delay = call.latency_s / self.speed if self.speed > 0 else 0.0
                done = self.log.closed
                if call.timed_out:
                    detail = f"recorded #{call.order} timed out: never answered"
                    self.log.add(Effect(Outcome.HELD, what, detail, EffectKind.HTTP))
                    return Reply(call, hold=True, done=done)
                if call.status is None:  # failed without an answer: reproduced as a reset
                    error = call.error_type or "no answer recorded"
                    detail = f"-> connection reset (recorded #{call.order}: {error})"
                    self.log.add(Effect(Outcome.SERVED, what, detail, EffectKind.HTTP))
                    return Reply(call, delay_s=delay, reset=True, done=done)
                detail = f"-> {call.status} (recorded #{call.order})"
                self.log.add(Effect(Outcome.SERVED, what, detail, EffectKind.HTTP))
                return Reply(call, delay_s=delay, done=done)
            candidates = nearest(live, self._calls, self._used, self.match_on)
        if candidates:
            detail = "nearest recorded calls:\n" + "\n".join(
                f"  {c.describe()}" for c in candidates
            )
        else:
            detail = "this request made no outbound calls in production"
        self.log.add(Effect(Outcome.UNMATCHED, what, detail, EffectKind.HTTP))
        text = f"pytest-incident: no recorded call matches {what}\n{detail}\n"
        return Reply(None, refusal=text, drop=self.unmatched is UnmatchedMode.BLOCK)

    def end(self) -> list[Effect]:
        return list(self.log.end())

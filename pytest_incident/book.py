# The replay book: for the request being replayed, which recorded outbound calls remain and
# what each live outbound request gets. Decision logic only (thread-safe, no sockets): stubs
# ask `serve()` and act on the returned Reply; the item reads the effects at the end.
from __future__ import annotations

import enum
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from .effects import Effect, Outcome
from .matching import DEFAULT_MATCH_ON, LiveRequest, MatchRules, find_match, nearest
from .spans import OutboundCall


class UnmatchedAction(enum.Enum):
    ERROR = "error"  # answer 502 and fail the item
    BLOCK = "block"  # drop the connection; recorded, does not fail the item by itself


@dataclass(frozen=True)
class Reply:
    call: OutboundCall | None  # the recorded call that answers, if any
    delay_s: float = 0.0
    hold: bool = False  # recorded as a timeout: never answer
    refusal: str = ""  # unmatched: the explanation (sent as a 502 body for ERROR)
    drop: bool = False  # unmatched with BLOCK: close without answering
    done: threading.Event | None = None  # set when the item that asked has ended


class ReplayBook:
    def __init__(
        self,
        unmatched: UnmatchedAction = UnmatchedAction.ERROR,
        speed: float = 1.0,
        match_on: Sequence[str] | MatchRules = DEFAULT_MATCH_ON,
    ) -> None:
        self.unmatched = unmatched
        self.speed = speed
        self.match_on = (
            match_on if isinstance(match_on, MatchRules) else MatchRules(tuple(match_on))
        )
        self._lock = threading.Lock()
        self._calls: tuple[OutboundCall, ...] = ()
        self._used: set[int] = set()
        self._effects: list[Effect] = []
        self._done = threading.Event()  # the current item's; a new one for each item
        self._done.set()  # no item yet
        self._label = ""  # the current (or last) request's id
        self._late: list[Effect] = []  # effects that arrived while no item was running

    def begin(self, calls: Sequence[OutboundCall], label: str = "") -> None:
        with self._lock:
            self._calls = tuple(calls)
            self._used = set()
            self._effects, self._late = self._late, []  # late ones are shown on this item
            self._label = label
            self._done = threading.Event()

    @property
    def closed(self) -> threading.Event:
        """Set once the current item has ended: stubs stop delaying and holding for it."""
        return self._done

    def add(self, effect: Effect) -> None:
        """Record a side effect. One that arrives after its item answered (a mail sent from
        a background thread) is kept for the next item, marked with the request it came
        after, never dropped and never passed off as the next request's own."""
        with self._lock:
            if self._done.is_set():
                when = f"after request {self._label}" if self._label else "before any request"
                self._late.append(replace(effect, detail=f"{effect.detail}  [late: {when}]"))
            else:
                self._effects.append(effect)

    def serve(self, live: LiveRequest) -> Reply:
        what = f"{live.method} {live.url}"
        with self._lock:
            call = find_match(live, self._calls, self._used, self.match_on)
            if call is not None:
                self._used.add(call.order)
                delay = call.latency_s / self.speed if self.speed > 0 else 0.0
                if call.timed_out:
                    self._effects.append(
                        Effect(
                            Outcome.HELD,
                            what,
                            f"recorded #{call.order} timed out: never answered",
                        )
                    )
                    return Reply(call, hold=True, done=self._done)
                self._effects.append(
                    Effect(Outcome.SERVED, what, f"-> {call.status} (recorded #{call.order})")
                )
                return Reply(call, delay_s=delay, done=self._done)
            candidates = nearest(live, self._calls, self._used, self.match_on)
        if candidates:
            detail = "nearest recorded calls:\n" + "\n".join(
                f"  {c.describe()}" for c in candidates
            )
        else:
            detail = "this request made no outbound calls in production"
        self.add(Effect(Outcome.UNMATCHED, what, detail))
        text = f"pytest-incident: no recorded call matches {what}\n{detail}\n"
        return Reply(None, refusal=text, drop=self.unmatched is UnmatchedAction.BLOCK)

    def end(self) -> list[Effect]:
        self._done.set()
        with self._lock:
            return list(self._effects)

# The effect log: every side effect of the replay, in the order it happened, attributed to the
# request it belongs to. Decision logic only (thread-safe, no sockets); time comes from an
# injected monotonic clock, the same clock (CLOCK_MONOTONIC) the tracer stamps its events with.
#
# Items run one at a time: `begin(label)` opens one, `end()` closes it and returns its
# effects. An effect stamped after the open item ended (a mail sent from a background thread,
# a connect the tracer reported after the answer) is late: it is kept for the next item,
# marked `late_after` the request it came after, never dropped and never passed off as the
# next request's own. Effects that arrive while no item is open are late in the same way.
from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import replace

from pytest_incident.model.effects import Effect

Clock = Callable[[], int]  # nanoseconds, monotonic


class EffectLog:
    def __init__(self, clock: Clock = time.monotonic_ns) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._effects: list[Effect] = []
        self._late: list[Effect] = []  # for the next item
        self._label = ""  # the current (or last) request's id
        self._ended_ns: int | None = 0  # None while an item is open; 0 before the first
        self._done = threading.Event()  # the current item's; a new one for each item
        self._done.set()  # no item yet

    @property
    def closed(self) -> threading.Event:
        """Set once the current item has ended: stubs stop delaying and holding for it."""
        return self._done

    def begin(self, label: str) -> None:
        with self._lock:
            self._effects, self._late = self._late, []  # late ones are shown on this item
            self._label = label
            self._ended_ns = None
            self._done = threading.Event()

    def add(self, effect: Effect) -> Effect:
        """Log `effect`, stamped now unless it carries its own time; returns it as logged."""
        with self._lock:
            if not effect.at_ns:
                effect = replace(effect, at_ns=self.clock())
            if self._ended_ns is None:  # an item is open: it is this item's
                self._effects.append(effect)
                return effect
            late = replace(effect, late_after=self._label)
            self._late.append(late)
            return late

    def add_all(self, effects: Iterable[Effect]) -> None:
        for effect in effects:
            self.add(effect)

    def end(self) -> tuple[Effect, ...]:
        """Close the current item: what it did (late ones of earlier items first)."""
        with self._lock:
            self._ended_ns = self.clock()
            self._done.set()
            return tuple(self._effects)

    def settle(self, effects: Iterable[Effect]) -> tuple[Effect, ...]:
        """After `end()`: stamped effects that were reported late by their source (the
        tracer's events file) — those stamped before the end belong to the item just ended
        and are returned; those after it are kept for the next item."""
        own: list[Effect] = []
        with self._lock:
            ended = self._ended_ns or 0
            for effect in effects:
                if effect.at_ns and effect.at_ns <= ended:
                    own.append(effect)
                else:
                    stamped = effect if effect.at_ns else replace(effect, at_ns=self.clock())
                    self._late.append(replace(stamped, late_after=self._label))
        return tuple(own)

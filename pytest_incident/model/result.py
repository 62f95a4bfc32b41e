# What replaying one recorded request produced: the answer, every side effect, the database
# writes, and whatever went wrong on the way. Pure data, judged by pytest_incident.core.verdict.
from __future__ import annotations

from dataclasses import dataclass

from pytest_incident.model.effects import Effect
from pytest_incident.model.mutations import Mutation


@dataclass(frozen=True)
class ReplayResult:
    status: int | None  # None: no answer
    body: bytes
    error: str  # why there was no answer
    effects: tuple[Effect, ...]
    crash: str  # "" when the target is still alive
    output_tail: str
    elapsed_s: float
    mutations: tuple[Mutation, ...] = ()  # the database tap's log, in order
    # what the replay machinery could not do faithfully (a tap that lost track of a
    # connection, a plugin normalizer that is not one): the item fails, naming each
    problems: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # the answer's, in the order they came


@dataclass(frozen=True)
class SnapshotCheck:
    """The outcome of asserting one item's log against its snapshot."""

    matched: bool
    location: str  # the snapshot file, relative to rootdir when inside it
    name: str
    problem: str = ""  # one line for the item's problems; "" when matched
    diff: tuple[str, ...] = ()  # syrupy's diff: `-` snapshot, `+` now
    new: bool = False  # no snapshot recorded yet (not a change)

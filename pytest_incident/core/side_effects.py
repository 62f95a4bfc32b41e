# Snapshots of what a replayed request did (`expect.mutations: snapshot`), stored by syrupy.
#
# What is snapshotted: a SideEffectLog, plain text that depends only on what the request did:
# the emails and jobs the stubs caught (one line each, rendered as in the failure report) and
# the database mutations the database tap logged (MutationLog). Invariant: nothing in it comes
# from the clock, the order of the items or the process. Mutations keep the tap's order (the
# order the server settled them) and are numbered by position; transactions are numbered by
# first appearance (the tap counts both per connection, across items). UUIDs (RQ job ids,
# Celery task ids) become <uuid>. Side effects marked late belong to an earlier item and
# arrive by a race, so they are left out. Every value passes through the `expect.normalize`
# normalizers (volatile values: timestamps, generated keys).
#
# The syrupy glue that stores and compares it is pytest_incident.snapshots.
from __future__ import annotations

import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from pytest_incident.model.effects import Effect, Outcome
from pytest_incident.model.normalizers import BUILTIN_NORMALIZERS, Normalizer, normalize_text
from pytest_incident.model.result import ReplayResult

Normalizers = tuple[Normalizer, ...]
LOGGED_OUTCOMES = (Outcome.EMAIL, Outcome.JOB)
STABLE: Normalizers = (BUILTIN_NORMALIZERS["uuids"],)  # random identifiers only


class MutationEntry(Protocol):
    """One statement the database tap logged (pytest_incident.pgwire.Mutation has these)."""

    @property
    def sequence(self) -> int: ...  # per connection, across items: not shown
    @property
    def statement(self) -> str: ...
    @property
    def params(self) -> object: ...  # a sequence ($1, $2, ...), a mapping, or None
    @property
    def operation(self) -> str: ...  # "INSERT", "UPDATE", ...
    @property
    def table(self) -> str: ...
    @property
    def rows(self) -> object: ...  # rows affected, None when unknown
    @property
    def transaction(self) -> object: ...  # the tap's id of the transaction; 0 or None: none
    @property
    def outcome(self) -> object: ...  # "committed", "rolled back", "autocommit", "failed"


@dataclass(frozen=True)
class MutationRecord:
    """A logged statement as the snapshot shows it."""

    position: int  # 1, 2, ... in the request's log
    operation: str
    table: str
    rows: str  # "1", or "?" when unknown
    transaction: int  # 1, 2, ... by first appearance in the request's log; 0: none
    outcome: str
    statement: str
    params: tuple[str, ...]  # "$1='a'", or "name='a'" for named parameters

    def render(self) -> str:
        where = f"transaction {self.transaction}" if self.transaction else "no transaction"
        head = f"{self.position}. {self.operation} {self.table}  rows: {self.rows}  "
        lines = [head + f"{self.outcome}  ({where})"]
        lines.extend(f"   {line}" for line in self.statement.splitlines())
        if self.params:
            lines.append(f"   params: {', '.join(self.params)}")
        return "\n".join(lines)


@dataclass(frozen=True)
class MutationLog:
    """The database mutations of one replayed request, in the order the tap logged them
    (the order the server settled them)."""

    mutations: tuple[MutationRecord, ...] = ()

    @classmethod
    def of(cls, entries: Iterable[MutationEntry], normalizers: Normalizers = STABLE) -> MutationLog:
        transactions: dict[object, int] = {}
        mutations = []
        for position, entry in enumerate(entries, 1):
            transaction = 0
            if entry.transaction:  # 0 or None: outside BEGIN ... COMMIT
                transaction = transactions.setdefault(entry.transaction, len(transactions) + 1)
            statement = textwrap.dedent(entry.statement).strip()
            mutations.append(
                MutationRecord(
                    position=position,
                    operation=_apply(normalizers, str(entry.operation)),
                    table=_apply(normalizers, str(entry.table)),
                    rows="?" if entry.rows is None else _apply(normalizers, str(entry.rows)),
                    transaction=transaction,
                    outcome=_apply(normalizers, _text(entry.outcome)),
                    statement=_apply(normalizers, statement),
                    params=_params(entry.params, normalizers),
                )
            )
        return cls(tuple(mutations))

    def render(self) -> str:
        if not self.mutations:
            return "  (none)"
        return "\n".join(textwrap.indent(m.render(), "  ") for m in self.mutations)


def _text(value: object) -> str:
    """An enum as its value, anything else as str()."""
    return str(getattr(value, "value", value))


def _value(value: object, normalizers: Normalizers) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value)
    return _apply(normalizers, repr(value))


def _params(params: object, normalizers: Normalizers) -> tuple[str, ...]:
    """`$1='a'` for positional parameters, `name='a'` for named ones."""
    if not params:
        return ()
    if isinstance(params, Mapping):
        return tuple(f"{key}={_value(params[key], normalizers)}" for key in sorted(params, key=str))
    if isinstance(params, Sequence) and not isinstance(params, str | bytes):
        return tuple(f"${i}={_value(value, normalizers)}" for i, value in enumerate(params, 1))
    return (f"$1={_value(params, normalizers)}",)


@dataclass(frozen=True)
class SideEffectLog:
    """What one replayed request did that the snapshot pins down."""

    messages: tuple[str, ...]  # emails and jobs, one rendered line each
    mutations: MutationLog

    @classmethod
    def of(
        cls,
        effects: Iterable[Effect],
        mutations: Iterable[MutationEntry] = (),
        normalizers: Normalizers = STABLE,
    ) -> SideEffectLog:
        messages = tuple(
            _apply(normalizers, effect.render())
            for effect in effects
            if effect.outcome in LOGGED_OUTCOMES and not effect.late
        )
        return cls(messages, MutationLog.of(mutations, normalizers))

    @classmethod
    def of_result(cls, result: ReplayResult, normalizers: Normalizers = STABLE) -> SideEffectLog:
        return cls.of(result.effects, result.mutations, normalizers)

    def render(self) -> str:
        lines = ["emails and jobs:"]
        lines.extend(textwrap.indent(m, "  ") for m in self.messages)
        if not self.messages:
            lines.append("  (none)")
        lines.append("database mutations:")
        lines.append(self.mutations.render())
        return "\n".join(lines)


def _apply(normalizers: Normalizers, text: str) -> str:
    return normalize_text(normalizers, text)

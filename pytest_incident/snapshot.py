# Snapshots of what a replayed request did (`expect.mutations: snapshot`), stored by syrupy.
#
# What is snapshotted: a SideEffectLog, plain text that depends only on what the request did:
# the emails and jobs the stubs caught (one line each, rendered as in the failure report) and
# the database mutations the database tap logged (MutationLog). Invariant: nothing in it comes
# from the clock, the order of the items or the process. Mutations keep the tap's order (the
# order the server settled them) and are numbered by position; transactions are numbered by
# first appearance (the tap counts both per connection, across items). UUIDs (RQ job ids,
# Celery task ids) become <uuid>. Side effects marked late belong to an earlier item and
# arrive by a race, so they are left out. Every value passes through a TextNormalizer: the
# hook where normalizing volatile values (timestamps, generated keys) will plug in.
#
# How: each item of such a file requests syrupy's `snapshot` fixture and asserts its log with
# the amber extension pinned. syrupy's own location logic already puts it where it belongs:
# the item is a pytest.Function in incidents/<stem>.yaml, so the file is
# incidents/__snapshots__/<stem>.ambr and the snapshot's name is the item's name,
# `POST /signup[5983a437]`. --snapshot-update, the write locks under xdist, unused-snapshot
# detection and the report lines are syrupy's.
#
# Where syrupy needs help, runs that select some requests (--incident-request, --deselect,
# --lf): syrupy relates a snapshot to a test by the leading Python identifier of both names,
# "POST" for every request of a route, so each item that ran claimed the snapshots of the
# requests that did not, which were reported unused and deleted by --snapshot-update.
# exact_snapshot_names (the one patch of syrupy) compares incident items' names exactly. And
# plugin.py deselects for --incident-request after syrupy has recorded the collected items,
# or syrupy takes the selection for the whole collection.
from __future__ import annotations

import re
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .effects import Effect, Outcome

if TYPE_CHECKING:
    import pytest

    from .replay import ReplayResult

TextNormalizer = Callable[[str], str]

SNAPSHOT_FIXTURE = "snapshot"
LATE_MARK = "  [late: "  # book.py appends it to the detail of a side effect that came late
LOGGED_OUTCOMES = (Outcome.EMAIL, Outcome.JOB)
_UUID_RE = re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b")


def stable_text(text: str) -> str:
    """The default normalizer: random identifiers (UUIDs) replaced, everything else kept."""
    return _UUID_RE.sub("<uuid>", text)


# ISO 8601 / PostgreSQL timestamps: 2024-05-14T14:03:12Z, 2024-05-14 14:03:12.123456+00
_TIMESTAMP_RE = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}(?::?\d{2})?)?\b"
)
BUILTIN_NORMALIZERS: dict[str, tuple[re.Pattern[str], str]] = {
    "uuids": (_UUID_RE, "<uuid>"),
    "timestamps": (_TIMESTAMP_RE, "<timestamp>"),
}
DEFAULT_NORMALIZE = ("uuids", "timestamps")


def normalizer(rules: Sequence[str | tuple[re.Pattern[str], str]]) -> TextNormalizer:
    """A TextNormalizer from `expect.normalize`: built-in names (uuids, timestamps) and
    (pattern, replacement) pairs, applied in order to every statement and value."""
    steps = [BUILTIN_NORMALIZERS[r] if isinstance(r, str) else r for r in rules]

    def normalize(text: str) -> str:
        for pattern, replacement in steps:
            text = pattern.sub(replacement, text)
        return text

    return normalize


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
    def of(
        cls, entries: Iterable[MutationEntry], normalize: TextNormalizer = stable_text
    ) -> MutationLog:
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
                    operation=normalize(str(entry.operation)),
                    table=normalize(str(entry.table)),
                    rows="?" if entry.rows is None else normalize(str(entry.rows)),
                    transaction=transaction,
                    outcome=normalize(_text(entry.outcome)),
                    statement=normalize(statement),
                    params=_params(entry.params, normalize),
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


def _value(value: object, normalize: TextNormalizer) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bytes | bytearray | memoryview):
        value = bytes(value)
    return normalize(repr(value))


def _params(params: object, normalize: TextNormalizer) -> tuple[str, ...]:
    """`$1='a'` for positional parameters, `name='a'` for named ones."""
    if not params:
        return ()
    if isinstance(params, Mapping):
        return tuple(f"{key}={_value(params[key], normalize)}" for key in sorted(params, key=str))
    if isinstance(params, Sequence) and not isinstance(params, str | bytes):
        return tuple(f"${i}={_value(value, normalize)}" for i, value in enumerate(params, 1))
    return (f"$1={_value(params, normalize)}",)


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
        normalize: TextNormalizer = stable_text,
    ) -> SideEffectLog:
        messages = tuple(
            normalize(effect.render())
            for effect in effects
            if effect.outcome in LOGGED_OUTCOMES and LATE_MARK not in effect.detail
        )
        return cls(messages, MutationLog.of(mutations, normalize))

    @classmethod
    def of_result(
        cls, result: ReplayResult, normalize: TextNormalizer = stable_text
    ) -> SideEffectLog:
        return cls.of(result.effects, result.mutations, normalize)

    def render(self) -> str:
        lines = ["emails and jobs:"]
        lines.extend(textwrap.indent(m, "  ") for m in self.messages)
        if not self.messages:
            lines.append("  (none)")
        lines.append("database mutations:")
        lines.append(self.mutations.render())
        return "\n".join(lines)


# --- syrupy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotCheck:
    """The outcome of asserting one item's log against its snapshot."""

    matched: bool
    location: str  # the snapshot file, relative to rootdir when inside it
    name: str
    problem: str = ""  # one line for the item's problems; "" when matched
    diff: tuple[str, ...] = ()  # syrupy's diff: `-` snapshot, `+` now


def check_snapshot(fixture: object, log: SideEffectLog, config: pytest.Config) -> SnapshotCheck:
    """Assert `log` against the item's snapshot through syrupy (which also writes it under
    --snapshot-update and counts it for the report). `fixture` is the item's `snapshot`."""
    from syrupy.assertion import SnapshotAssertion
    from syrupy.extensions.amber import AmberSnapshotExtension
    from syrupy.terminal import disable_color

    from .replay import ReplayConfigError

    if not isinstance(fixture, SnapshotAssertion):
        raise ReplayConfigError(
            f"expect.mutations: snapshot needs syrupy's `{SNAPSHOT_FIXTURE}` fixture, but it "
            f"is a {type(fixture).__name__} here (overridden in a conftest.py?)"
        )
    snapshot = fixture.use_extension(AmberSnapshotExtension)
    matched = snapshot == log.render()
    result = snapshot.executions[snapshot.num_executions - 1]
    location = _shown_path(Path(result.snapshot_location), config.rootpath)
    if matched:
        return SnapshotCheck(True, location, result.snapshot_name)
    colorless = disable_color() if config.option.no_colors else nullcontext()
    with colorless:
        diff = snapshot.get_assert_diff(diff_mode=config.option.diff_mode)
    if result.exception is not None:
        problem = f"cannot check the side-effect log against {location}: {diff[0]}"
        diff = []
    elif result.recalled_data is None:
        problem = (
            f"no snapshot of the side-effect log in {location} yet; "
            "run with --snapshot-update to record it"
        )
        diff = [line for line in diff if not line.startswith("Snapshot '")]
    else:
        problem = (
            f"the side-effect log differs from its snapshot in {location} "
            "(--snapshot-update accepts the new one)"
        )
    return SnapshotCheck(False, location, result.snapshot_name, problem, tuple(diff))


def _shown_path(path: Path, rootdir: Path) -> str:
    try:
        return str(path.relative_to(rootdir))
    except ValueError:
        return str(path)


def exact_snapshot_names(config: pytest.Config, replay_function: Callable[..., Any]) -> None:
    """Make syrupy compare snapshot names exactly for incident items, until `config` ends.

    The one place this plugin changes syrupy: PyTestLocation.matches_snapshot_name compares
    the leading identifiers of two names (`test_x[1]` ~ `test_x`, so a parametrized test
    owns all its cases). Every request of a route has the same leading identifier, its
    method, so a partial run reported (and --snapshot-update deleted) the snapshots of the
    requests it did not run. Incident items are recognised by the function behind them
    (`replay_function`), which syrupy also knows for items it rebuilt on the xdist
    controller. Restored when `config` is cleaned up.
    """
    from syrupy.location import PyTestLocation

    original = PyTestLocation.matches_snapshot_name
    replay_id = (replay_function.__module__, replay_function.__name__)

    def matches_snapshot_name(self: PyTestLocation, snapshot_name: str) -> bool:
        if (self.modulename, self.methodname) == replay_id:
            return self.snapshot_name == snapshot_name
        return original(self, snapshot_name)

    PyTestLocation.matches_snapshot_name = matches_snapshot_name  # type: ignore[method-assign]

    def restore() -> None:
        PyTestLocation.matches_snapshot_name = original  # type: ignore[method-assign]

    config.add_cleanup(restore)

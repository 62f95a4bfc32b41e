# Production's database writes beside the replay's: the recorded database spans of a request
# against the mutation log the tap built while replaying it. Pure: both sides in, a
# side-by-side text out when what was written differs (operation, table and outcome, in
# order); parameter values are left to the snapshot, which normalizes them.
from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from pytest_incident.model.recorded import DatabaseWrite


class WriteEntry(Protocol):
    @property
    def operation(self) -> str: ...
    @property
    def table(self) -> str: ...
    @property
    def outcome(self) -> object: ...


def _shape(entry: WriteEntry | DatabaseWrite) -> str:
    outcome = str(entry.outcome or "")
    return " ".join(part for part in (entry.operation, entry.table, outcome) if part)


def compare_writes(recorded: Sequence[DatabaseWrite], replayed: Sequence[WriteEntry]) -> str:
    """'' when production and the replay wrote the same things; else the two columns."""
    before = [_shape(w) for w in recorded]
    now = [_shape(m) for m in replayed]
    if before == now:
        return ""
    width = max([len("production"), *(len(line) for line in before)])
    lines = [f"{'production':<{width}} | replay"]
    for i in range(max(len(before), len(now))):
        left = before[i] if i < len(before) else ""
        right = now[i] if i < len(now) else ""
        mark = " " if left == right else "*"
        lines.append(f"{left or '(nothing)':<{width}} |{mark}{right or '(nothing)'}")
    return "\n".join(lines)

# A structural diff of two JSON values: which fields changed, appeared or went away, each
# named by its dotted path (`items.1.sku`, the form `body:` entries and field normalizers
# use). Pure.
#
# Strategy: walk both values together; objects by key (the recorded order first, then keys
# that only the new value has), arrays by index, scalars by type and value (1 is not 1.0 nor
# true: strict clients tell them apart; NaN equals NaN). A pattern path (`*` for any key or
# index) ignores the VALUE of the field it names and everything below it, never its presence
# or its kind (null, boolean, number, string, array, object): a field that went away, or
# turned null, is a change even where its value is noise.
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

PathPart = str | int


class _Absent:
    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Any = _Absent()  # the side of a change where the field does not exist


@dataclass(frozen=True)
class Change:
    path: tuple[PathPart, ...]
    was: Any  # ABSENT when the field is new
    now: Any  # ABSENT when the field went away

    @property
    def where(self) -> str:
        return dotted(self.path)

    def render(self, limit: int = 80) -> str:
        return f"{self.where}: {shown(self.was, limit)} -> {shown(self.now, limit)}"


def dotted(path: Sequence[PathPart]) -> str:
    """`items.1.sku`; the whole value is `(the body)`."""
    return ".".join(str(part) for part in path) if path else "(the body)"


def shown(value: Any, limit: int = 80) -> str:
    if value is ABSENT:
        return "(absent)"
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _same(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and a != a:  # NaN
        return bool(b != b)
    return bool(a == b)


def kind(value: Any) -> str:
    """A JSON value's kind: absent, null, boolean, number, string, array or object."""
    if value is ABSENT:
        return "absent"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def diff_json(was: Any, now: Any, ignore: Sequence[str] = ()) -> list[Change]:
    """Every change from `was` to `now`, in document order, except under the `ignore`
    patterns (dotted paths, `*` for any key or index)."""
    patterns = [tuple(p.split(".")) for p in ignore]
    return list(_walk(was, now, (), patterns))


def is_ignored(path: Sequence[PathPart], patterns: Sequence[tuple[str, ...]]) -> bool:
    """True when a pattern names `path` or one of its ancestors."""
    for pattern in patterns:
        if len(pattern) <= len(path) and all(
            p == "*" or p == str(part) for p, part in zip(pattern, path, strict=False)
        ):
            return True
    return False


def _walk(
    was: Any, now: Any, path: tuple[PathPart, ...], patterns: Sequence[tuple[str, ...]]
) -> Iterator[Change]:
    if is_ignored(path, patterns):
        if kind(was) != kind(now):  # noise varies in value, not in presence or kind
            yield Change(path, was, now)
        return
    if isinstance(was, dict) and isinstance(now, dict):
        keys = [*was, *(k for k in now if k not in was)]
        for key in keys:
            yield from _walk(was.get(key, ABSENT), now.get(key, ABSENT), (*path, key), patterns)
    elif isinstance(was, list) and isinstance(now, list):
        for i in range(max(len(was), len(now))):
            yield from _walk(
                was[i] if i < len(was) else ABSENT,
                now[i] if i < len(now) else ABSENT,
                (*path, i),
                patterns,
            )
    elif not _same(was, now):
        yield Change(path, was, now)


def generalized(path: Sequence[PathPart]) -> str:
    """The dotted pattern that names this field in every element of its arrays."""
    return dotted(["*" if isinstance(part, int) else part for part in path])

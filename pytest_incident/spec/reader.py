# What every section of the incident file checks with: where a key path sits in the file, the
# value as the user wrote it, and the problems found so far.
#
# Strategy: sections never raise. Each reports through `SectionReader.fail` (a message at a key
# path's lines) and goes on, so one pass finds every mistake; `Problems.raise_first` then
# reports the earliest by line, which keeps the single message stable however many mistakes a
# file holds.
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pytest_incident.model.errors import IncidentFileError
from pytest_incident.spec.scalars import describe
from pytest_incident.spec.yaml_loader import KeyPath, YamlDocument, format_path

T = TypeVar("T")
Span = tuple[int, int]


class _Problem(NamedTuple):
    line: int
    seq: int
    end_line: int
    message: str


class Problems:
    """Collected mistakes; `raise_first` reports the earliest by line (then by discovery)."""

    def __init__(self, path: Path, text: str) -> None:
        self._path = path
        self._text = text
        self._items: list[_Problem] = []

    def add(self, span: Span, message: str) -> None:
        self._items.append(_Problem(span[0], len(self._items), span[1], message))

    def raise_first(self) -> None:
        if self._items:
            first = min(self._items)
            raise IncidentFileError(
                self._path, first.line, first.message, end_line=first.end_line, text=self._text
            )


class SectionReader:
    """One incident file's document and problems, as the sections see them."""

    def __init__(self, path: Path, document: YamlDocument, problems: Problems) -> None:
        self.path = path
        self.base = path.parent  # relative paths in the file are relative to it
        self.doc = document
        self.problems = problems

    # -- where --

    def span(self, path: KeyPath) -> Span:
        return self.doc.span_of(path)

    def start(self, path: KeyPath) -> Span:
        line = self.doc.line_of(path)
        return (line, line)

    def key(self, path: KeyPath) -> Span:
        line = self.doc.key_lines.get(path) or self.doc.line_of(path)
        return (line, line)

    # -- what the user wrote --

    def shown(self, path: KeyPath, value: Any) -> str:
        """A value as the user wrote it, for messages."""
        if isinstance(value, str):
            return repr(value)
        if path in self.doc.raw:
            return repr(self.doc.raw[path])
        return describe(value)

    def as_text(self, path: KeyPath, value: Any) -> str:
        """A scalar as text: strings as expanded, numbers and booleans as written."""
        if isinstance(value, str):
            return value
        return self.doc.raw.get(path, str(value))

    def items(self, data: dict[str, Any], key: str, path: KeyPath) -> list[tuple[KeyPath, Any]]:
        """A key holding one string or a list, as (path, item) pairs."""
        value = data.get(key)
        if value is None:
            return []
        if isinstance(value, list):
            return [((*path, key, i), item) for i, item in enumerate(value)]
        return [((*path, key), value)]

    # -- problems --

    def add(self, span: Span, message: str) -> None:
        self.problems.add(span, message)

    def fail(self, path: KeyPath, message: str) -> None:
        self.problems.add(self.span(path), f"{format_path(path)}: {message}")

    def attempt(self, path: KeyPath, parse: Callable[[], T]) -> T | None:
        """`parse()`, turning a ValueError into a problem at `path`."""
        try:
            return parse()
        except ValueError as exc:
            self.fail(path, str(exc))
            return None

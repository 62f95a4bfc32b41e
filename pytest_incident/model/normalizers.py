# Normalizers: what makes two values "the same" once the volatile parts (request ids, UUIDs,
# timestamps) are replaced. Pure values with pure methods; no I/O.
#
# One protocol for every normalizer, wherever it applies: `sandbox.normalize` (outbound
# request bodies before matching), `expect.normalize` (the side-effect log before its
# snapshot comparison) and plugins (`pytest_incident_normalizers`). A body is first
# canonicalised by its shape (pytest_incident.core.normalize): JSON values go through
# `normalize_json`, form fields through `normalize_form`, then the canonical text through
# `normalize_text`. A normalizer leaves alone what it does not know.
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

NORMALIZED = "<normalized>"


@runtime_checkable
class Normalizer(Protocol):
    """Replaces volatile values; each method returns its input when it has nothing to do."""

    def normalize_json(self, value: Any) -> Any: ...
    def normalize_form(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]: ...
    def normalize_text(self, text: str) -> str: ...


@dataclass(frozen=True)
class FieldNormalizer:
    """Replaces the value at a dotted path (`*` matches any key or index) in JSON bodies, or
    the value of a form field with exactly that name."""

    path: str
    replacement: str = NORMALIZED

    def normalize_json(self, value: Any) -> Any:
        return _replace_path(value, self.path.split("."), self.replacement)

    def normalize_form(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, self.replacement if k == self.path else v) for k, v in pairs]

    def normalize_text(self, text: str) -> str:
        return text


@dataclass(frozen=True)
class PatternNormalizer:
    """Replaces every match of a regular expression in the canonical text."""

    pattern: re.Pattern[str]
    replacement: str = NORMALIZED

    def normalize_json(self, value: Any) -> Any:
        return value

    def normalize_form(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return pairs

    def normalize_text(self, text: str) -> str:
        return self.pattern.sub(self.replacement, text)


@dataclass(frozen=True)
class HeaderNormalizer:
    """Replaces a header's value before headers are compared (`sandbox.normalize` entries
    `{header: Idempotency-Key}`): all of it, or only what `pattern` matches in it."""

    name: str  # compared case-insensitively
    pattern: re.Pattern[str] | None = None
    replacement: str = NORMALIZED

    def normalize_header(self, name: str, value: str) -> str:
        if name.lower() != self.name.lower():
            return value
        if self.pattern is None:
            return self.replacement
        return self.pattern.sub(self.replacement, value)


def _replace_path(value: Any, parts: list[str], replacement: str) -> Any:
    if not parts:
        return replacement
    head, rest = parts[0], parts[1:]
    if isinstance(value, dict):
        return {
            k: _replace_path(v, rest, replacement) if head in ("*", k) else v
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [
            _replace_path(v, rest, replacement) if head == "*" or head == str(i) else v
            for i, v in enumerate(value)
        ]
    return value


UUID_PATTERN = re.compile(r"\b[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}\b")
# ISO 8601 / PostgreSQL timestamps: 2024-05-14T14:03:12Z, 2024-05-14 14:03:12.123456+00
TIMESTAMP_PATTERN = re.compile(
    r"\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}(?::?\d{2})?)?\b"
)
BUILTIN_NORMALIZERS: Mapping[str, PatternNormalizer] = MappingProxyType(
    {
        "uuids": PatternNormalizer(UUID_PATTERN, "<uuid>"),
        "timestamps": PatternNormalizer(TIMESTAMP_PATTERN, "<timestamp>"),
    }
)
DEFAULT_NORMALIZE = ("uuids", "timestamps")  # expect.normalize when the file says nothing


def normalize_text(normalizers: tuple[Normalizer, ...], text: str) -> str:
    """`text` through every normalizer's `normalize_text`, in order."""
    for normalizer in normalizers:
        text = normalizer.normalize_text(text)
    return text

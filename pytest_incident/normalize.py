# Body canonicalisation and normalizers: what makes two request bodies "the same call" after
# a code change. Pure functions, no I/O.
#
# A body is canonicalised by its shape: JSON is parsed and re-dumped with sorted keys; a form
# (k=v&k=v, what the Stripe SDK sends) becomes sorted `k=v` lines; anything else is text.
# Normalizers then replace volatile values on both sides before comparison: a field path
# (`metadata.request_id`, `items.*.id`, or a form key such as `metadata[request_id]`) or a
# regular expression over the canonical text.
from __future__ import annotations

import base64
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

NORMALIZED = "<normalized>"


@dataclass(frozen=True)
class FieldNormalizer:
    """Replaces the value at a dotted path (`*` matches any key or index) in JSON bodies, or
    the value of a form field with exactly that name."""

    path: str
    replacement: str = NORMALIZED

    def apply_json(self, value: Any) -> Any:
        return _replace_path(value, self.path.split("."), self.replacement)

    def apply_form(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(k, self.replacement if k == self.path else v) for k, v in pairs]


@dataclass(frozen=True)
class PatternNormalizer:
    """Replaces every match of a regular expression in the canonical text."""

    pattern: re.Pattern[str]
    replacement: str = NORMALIZED

    def apply_text(self, text: str) -> str:
        return self.pattern.sub(self.replacement, text)


Normalizer = FieldNormalizer | PatternNormalizer


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


def _form_pairs(text: str) -> list[tuple[str, str]] | None:
    """The fields of an urlencoded form, or None when `text` is not one."""
    body = text.rstrip("&")
    if "=" not in body or any(c.isspace() for c in body):
        return None
    try:
        return parse_qsl(body, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None


def canonical_body(raw: bytes, normalizers: Sequence[Normalizer] = ()) -> str:
    """The body as comparable text, after the normalizers. A body that is not UTF-8 text is
    compared byte for byte (as base64); normalizers do not apply to it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode("ascii")
    stripped = text.strip()
    fields = [n for n in normalizers if isinstance(n, FieldNormalizer)]
    patterns = [n for n in normalizers if isinstance(n, PatternNormalizer)]
    canonical: str
    try:
        parsed = json.loads(stripped) if stripped[:1] in ("{", "[") else None
    except json.JSONDecodeError:
        parsed = None
    if parsed is not None:
        for field in fields:
            parsed = field.apply_json(parsed)
        canonical = json.dumps(parsed, sort_keys=True, indent=1, ensure_ascii=False)
    elif (pairs := _form_pairs(stripped)) is not None:
        for field in fields:
            pairs = field.apply_form(pairs)
        canonical = "\n".join(f"{k}={v}" for k, v in sorted(pairs))
    else:
        canonical = text
    for pattern in patterns:
        canonical = pattern.apply_text(canonical)
    return canonical

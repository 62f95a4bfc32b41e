# The redaction rules of a project: `[tool.pytest-incident.redact]` in its pyproject.toml
# (README "Redaction"), read from the file's text into RedactionRules. Pure: text in, rules
# or a ConfigFileError at the line out.
#
#   [tool.pytest-incident.redact]
#   headers = ["X-Session", "X-*-Signature"]     # more header names (case-insensitive, * wildcard)
#   fields = ["ssn", "date_of_birth"]            # more JSON keys / form fields / query parameters
#   json_paths = ["customer.address", "items.*.serial"]   # dotted, from a JSON body's root
#   patterns = ['sk_(live|test)_[0-9A-Za-z]+']   # regular expressions, redacted wherever they match
#   keep = ["cards", "header:x-csrf-token", "field:token_type"]   # defaults not to apply
#
# TOML has no line numbers after parsing: a mistake is placed at the line of its key in the
# table (or of the value in a list), found in the text; a TOML syntax error at tomllib's line.
from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytest_incident.core.redaction import (
    RedactionRules,
    looks_secret,
    looks_secret_header,
)
from pytest_incident.model.errors import ConfigFileError

TABLE = "tool.pytest-incident.redact"
KEYS = ("headers", "fields", "json_paths", "patterns", "keep")
_HEADER_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # an HTTP token; * is a wildcard
_TOML_LINE_RE = re.compile(r"\(at line ([0-9]+), column [0-9]+\)")
_TABLE_RE = re.compile(
    r"""^\s*\[\s*tool\s*\.\s*(?:"pytest-incident"|'pytest-incident'|pytest-incident)\s*\.\s*"""
    r"""(?:"redact"|redact)\s*\]"""
)
_KEEP_FORMS = "'cards', 'header:NAME' or 'field:NAME' (a header or field the defaults redact)"


def rules_from_pyproject(path: Path, text: str) -> RedactionRules:
    """The rules `text` (pyproject.toml's content) configures: the defaults when it has no
    [tool.pytest-incident.redact] table; ConfigFileError for a mistake, at its line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = _TOML_LINE_RE.search(str(exc))
        message = _TOML_LINE_RE.sub("", str(exc)).replace("(at end of document)", "").strip()
        line = int(found.group(1)) if found else max(1, len(text.splitlines()))
        raise ConfigFileError(path, line, f"not valid TOML: {message}", text=text) from None
    table: Any = data
    for part in ("tool", "pytest-incident", "redact"):
        table = table.get(part) if isinstance(table, dict) else None
    if table is None:
        return RedactionRules()
    lines = _Lines(path, text)
    if not isinstance(table, dict):
        raise lines.error(None, f"[{TABLE}] must be a table")
    for key in table:
        if key not in KEYS:
            raise lines.error(key, f"unknown key {key!r}; allowed: {', '.join(KEYS)}")
    headers = _strings(lines, table, "headers", _header)
    fields = _strings(lines, table, "fields", _field)
    paths = _strings(lines, table, "json_paths", _json_path)
    patterns = _strings(lines, table, "patterns", _pattern)
    keep = _strings(lines, table, "keep", _keep)
    return RedactionRules(
        headers=tuple(headers),
        fields=tuple(fields),
        json_paths=tuple(tuple(p.split(".")) for p in paths),
        patterns=tuple(re.compile(p) for p in patterns),
        cards="cards" not in keep,
        keep_headers=frozenset(k.removeprefix("header:") for k in keep if k.startswith("header:")),
        keep_fields=frozenset(k.removeprefix("field:") for k in keep if k.startswith("field:")),
    )


class _Lines:
    """Where a key of the table (or a value in its list) is written."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text
        self.rows = text.splitlines()
        self.table = next((i for i, row in enumerate(self.rows) if _TABLE_RE.match(row)), None)

    def line(self, key: str | None, value: str | None = None) -> int:
        if self.table is None:  # written as dotted keys or an inline table: the first mention
            at = next((i for i, row in enumerate(self.rows) if "pytest-incident" in row), 0)
            return at + 1
        if key is None:
            return self.table + 1
        key_re = re.compile(rf"""^\s*(?:{re.escape(key)}|"{re.escape(key)}")\s*=""")
        for index in range(self.table + 1, len(self.rows)):
            row = self.rows[index]
            if row.lstrip().startswith("["):
                break
            if key_re.match(row):
                return self._value_line(index, value) if value is not None else index + 1
        return self.table + 1

    def _value_line(self, start: int, value: str) -> int:
        for index in range(start, len(self.rows)):
            if value in self.rows[index]:
                return index + 1
            if index > start and (self.rows[index].lstrip().startswith(("[", "]"))):
                break
        return start + 1

    def error(self, key: str | None, message: str, value: str | None = None) -> ConfigFileError:
        where = f"[{TABLE}] {key}: " if key else ""
        return ConfigFileError(
            self.path, self.line(key, value), f"{where}{message}", text=self.text
        )


def _strings(
    lines: _Lines, table: dict[str, Any], key: str, check: Callable[[str], str | None]
) -> list[str]:
    """The list of strings under `key`, each checked (`check` says what is wrong, or None)."""
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise lines.error(key, 'expected a list of strings, e.g. ["..."]')
    found = []
    for item in value:
        problem = check(item)
        if problem:
            raise lines.error(key, problem, item)
        found.append(item.lower() if key in ("headers", "fields", "keep") else item)
    return found


def _header(name: str) -> str | None:
    if not _HEADER_RE.fullmatch(name):
        return f"{name!r} is not a header name; allowed: letters, digits, -, and * for any text"
    return None


def _field(name: str) -> str | None:
    if not name or name != name.strip():
        return f"{name!r} is not a field name; allowed: a JSON key or form field, * for any text"
    return None


def _json_path(path: str) -> str | None:
    if not path or "" in path.split("."):
        return (
            f"{path!r} is not a JSON path; allowed: keys and indexes joined by dots, "
            "* for any one (e.g. items.*.card)"
        )
    return None


def _pattern(text: str) -> str | None:
    try:
        pattern = re.compile(text)
    except re.error as exc:
        return f"{text!r} is not a regular expression: {exc}"
    except (OverflowError, RecursionError):
        return f"{text!r} is not a regular expression the re module can compile"
    if pattern.fullmatch(""):
        return f"{text!r} matches the empty string; a pattern must match a secret's text"
    return None


def _keep(entry: str) -> str | None:
    lower = entry.lower()
    if lower == "cards":
        return None
    kind, colon, name = lower.partition(":")
    if colon and kind == "header" and name:
        if looks_secret_header(name):
            return None
        return f"{entry!r}: the defaults do not redact header {name!r}; nothing to keep"
    if colon and kind == "field" and name:
        if looks_secret(name):
            return None
        return f"{entry!r}: the defaults do not redact field {name!r}; nothing to keep"
    return f"{entry!r} is not something to keep; allowed: {_KEEP_FORMS}"

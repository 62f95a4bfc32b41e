# The incident file (README "The incident file"): one YAML file -> one frozen IncidentSpec.
#
# Strategy: three passes, each reporting the first problem by line order, so a file with many
# mistakes always gives the same single message.
#   1. yaml_loader composes the file and keeps, for every key path, its line span; YAML syntax
#      errors, duplicate keys and a non-mapping top level stop here.
#   2. `${NAME}` expansion, keys that are not supported yet, and JSON Schema (Draft 2020-12)
#      structure errors, each mapped through its `absolute_path` to a line and reworded. The
#      schema is assembled from the sections' fragments.
#   3. Each section (`sections/`) checks its meaning on data whose shape pass 2 guaranteed.
# Every mistake is one IncidentFileError(path, line, message) whose text is
# `path:line: message` followed by the offending source lines; never a traceback. The only I/O
# is reading the file and checking that `target.cwd` exists.
from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

from pytest_incident.model.errors import IncidentFileError
from pytest_incident.model.spec import IncidentSpec, noise_path
from pytest_incident.spec.document import parse_document, read_file
from pytest_incident.spec.noise import load_noise
from pytest_incident.spec.reader import Problems, SectionReader, Span
from pytest_incident.spec.scalars import describe
from pytest_incident.spec.sections import PLANNED_SECTIONS, SECTIONS
from pytest_incident.spec.sections.source import userinfo_end
from pytest_incident.spec.yaml_loader import (
    KeyPath,
    YamlDocument,
    format_path,
)

TOP_LEVEL_KEYS = tuple(section.key for section in SECTIONS)
REQUIRED_KEYS = tuple(section.key for section in SECTIONS if section.required)
# Keys of the README's roadmap this version does not implement: rejected by name, never ignored.
NOT_SUPPORTED_YET: tuple[KeyPath, ...] = PLANNED_SECTIONS + tuple(
    key for section in SECTIONS for key in section.planned
)
VERSION_LABEL = "pytest-incident 0.1"

_ENV_RE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TYPE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "a boolean (true/false)",
        "null": "nothing (null)",
    }
)


def file_error(
    path: Path, line: int, message: str, *, end_line: int | None = None
) -> IncidentFileError:
    """An IncidentFileError for a file read again for its excerpt (quietly none if it
    cannot be): for mistakes found after loading, e.g. by an event source."""
    return IncidentFileError(path, line, message, end_line=end_line, text=_read_quietly(path))


def _read_quietly(path: Path) -> str:
    try:
        return read_file(path).decode("utf-8")
    except (OSError, IncidentFileError, UnicodeDecodeError):
        return ""


def load_incident(path: Path, environ: Mapping[str, str]) -> IncidentSpec:
    """Load and validate one incident file; every mistake raises IncidentFileError."""
    path = Path(path)
    try:
        data = read_file(path)
    except FileNotFoundError as exc:
        raise IncidentFileError(path, 1, f"cannot read the file: {exc.strerror}", text="") from None
    text, document = parse_document(path, data)
    if document is None:
        required = ", ".join(REQUIRED_KEYS)
        message = f"the file is empty; expected a mapping with at least: {required}"
        raise IncidentFileError(path, 1, message, text=text)
    spec = _load(path, text, document, environ)
    return replace(spec, noise=load_noise(noise_path(path)))


def schema() -> dict[str, Any]:
    """The structure of an incident file, from its sections. Planned keys are accepted here
    (`True`) and rejected by name before the schema runs."""
    properties: dict[str, Any] = {section.key: section.schema for section in SECTIONS}
    properties.update({key[0]: True for key in PLANNED_SECTIONS if isinstance(key[0], str)})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "required": list(REQUIRED_KEYS),
    }


def _load(
    path: Path, text: str, document: YamlDocument, environ: Mapping[str, str]
) -> IncidentSpec:
    data = document.data
    if not isinstance(data, dict):
        keys = ", ".join(TOP_LEVEL_KEYS)
        message = f"the top level must be a mapping (keys: {keys}), got {describe(data)}"
        raise IncidentFileError(path, document.line_of(()), message, text=text)
    reader = SectionReader(path, document, Problems(path, text))
    data = _expand(reader, data, (), environ)
    _check_not_supported(reader, data)
    _check_schema(reader, data)
    reader.problems.raise_first()
    values = {
        section.field: section.parse(reader, data.get(section.key, section.default))
        for section in SECTIONS
    }
    reader.problems.raise_first()
    lines = {
        format_path(key_path): span[0] for key_path, span in document.spans.items() if key_path
    }
    return IncidentSpec(
        path=path, line=document.line_of(()), lines=MappingProxyType(lines), **values
    )


def _expand(reader: SectionReader, value: Any, path: KeyPath, environ: Mapping[str, str]) -> Any:
    """`${NAME}` and `${NAME:-default}` from the environment; `$${NAME}` is literal."""
    if isinstance(value, dict):
        return {k: _expand(reader, v, (*path, k), environ) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(reader, v, (*path, i), environ) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    # in a source URL's user info, a value is percent-encoded: a password holding `@` or `/`
    # must not end the user info early (and send the rest as the host)
    encoded_before = userinfo_end(value) if path == ("source",) else 0

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(2), match.group(3)
        if match.group(1):
            return match.group(0)[1:]
        if name not in environ and default is not None:
            found = default
        elif name not in environ:
            reader.fail(path, f"environment variable {name} is not set")
            return match.group(0)
        else:
            found = environ[name]
        return quote(found, safe="") if match.start() < encoded_before else found

    return _ENV_RE.sub(substitute, value)


def _check_not_supported(reader: SectionReader, data: dict[str, Any]) -> None:
    for key_path in NOT_SUPPORTED_YET:
        parent: Any = data
        for part in key_path[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if isinstance(parent, dict) and key_path[-1] in parent:
            message = f"{format_path(key_path)}: not supported yet by {VERSION_LABEL}"
            reader.add(reader.key(key_path), message)


def _check_schema(reader: SectionReader, data: dict[str, Any]) -> None:
    validator = Draft202012Validator(schema())
    found: list[tuple[Span, str]] = []
    for error in validator.iter_errors(data):
        found.extend(_reword(reader, error))
    for span, message in sorted(set(found)):
        reader.add(span, message)


def _reword(reader: SectionReader, error: Any) -> Iterator[tuple[Span, str]]:
    """A jsonschema error as `key.path: what is wrong; what is allowed` at its lines."""
    path: KeyPath = tuple(error.absolute_path)
    where = f"{format_path(path)}: " if path else ""
    kind = error.validator
    if kind == "additionalProperties":
        allowed = [
            key
            for key in error.schema.get("properties", {})
            if (*path, key) not in NOT_SUPPORTED_YET
        ]
        for key in error.instance:
            if key not in error.schema.get("properties", {}):
                message = f"{where}unknown key {key!r}; allowed: {', '.join(allowed)}"
                yield reader.key((*path, key)), message
    elif kind == "required":
        for key in error.validator_value:
            if key not in error.instance:
                yield reader.start(path), f"{where}missing required key {key!r}"
    elif kind == "enum":
        choices = ", ".join(str(v) for v in error.validator_value)
        shown = reader.shown(path, error.instance)
        yield reader.span(path), f"{where}{shown} is not allowed; allowed: {choices}"
    elif kind == "type":
        types = error.validator_value
        names = [types] if isinstance(types, str) else list(types)
        wanted = [_TYPE_NAMES.get(name, name) for name in names]
        expected = " or ".join([", ".join(wanted[:-1]), wanted[-1]] if len(wanted) > 1 else wanted)
        yield reader.span(path), f"{where}expected {expected}, got {describe(error.instance)}"
    elif kind == "minItems":
        yield reader.span(path), f"{where}expected at least {error.validator_value} item(s)"
    else:  # pragma: no cover - the schema uses no other keywords
        yield reader.span(path), f"{where}{error.message}"

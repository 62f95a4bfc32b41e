# `source:` a frozen events file beside the YAML, or a `scheme://location`. Only a reference:
# which event source reads it, and whether it can, is the source registry's to say
# (pytest_incident.events.sources), at this line.
from __future__ import annotations

import re
from pathlib import Path

from pytest_incident.model.spec import SourceRef
from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.section import Section

NAME_MAX = 255  # bytes of one file name (Linux)
PATH_MAX = 4096  # bytes of a path, with its NUL (Linux)
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def parse(reader: SectionReader, text: str) -> SourceRef | None:
    line = reader.span(("source",))[0]
    stripped = text.strip()
    if not stripped:
        reader.fail(("source",), "expected a frozen events file or a scheme://location")
        return None
    scheme = _SCHEME_RE.match(stripped)
    if scheme:
        return SourceRef(scheme.group(1).lower(), stripped, stripped, line)
    file = (reader.base / stripped).absolute()
    problem = _file_name_problem(file)
    if problem:
        reader.fail(("source",), problem)
        return None
    return SourceRef("file", str(file), stripped, line)


def _file_name_problem(file: Path) -> str:
    """Why `file` cannot name a file at all (decided here, without touching the disk: the
    event source that opens it later must not meet ENAMETOOLONG or a NUL)."""
    if "\0" in str(file):
        return "the path contains a NUL character (\\0)"
    if any(len(part.encode()) > NAME_MAX for part in file.parts):
        return f"a part of the path is longer than {NAME_MAX} bytes"
    if len(str(file).encode()) >= PATH_MAX:
        return f"the path is longer than {PATH_MAX - 1} bytes"
    return ""


SECTION = Section("source", "source", {"type": "string"}, parse, required=True)

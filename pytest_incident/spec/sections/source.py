# `source:` a frozen events file beside the YAML, or a `scheme://location`. Only a reference:
# which event source reads it, and whether it can, is the source registry's to say
# (pytest_incident.events.sources), at this line.
from __future__ import annotations

import re

from pytest_incident.model.spec import SourceRef
from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.section import Section

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
    return SourceRef("file", str(file), stripped, line)


SECTION = Section("source", "source", {"type": "string"}, parse, required=True)

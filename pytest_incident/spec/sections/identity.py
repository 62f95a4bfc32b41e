# `incident:` (the name `--incident` selects; defaults to the file stem) and `title:`.
from __future__ import annotations

import re

from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.section import Section

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def parse_name(reader: SectionReader, name: str | None) -> str:
    if name is None:
        stem = reader.path.name
        for suffix in (".yaml", ".yml"):
            stem = stem.removesuffix(suffix)
        return stem
    if not _NAME_RE.fullmatch(name):
        reader.fail(
            ("incident",),
            f"{name!r} is not a valid name; use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit",
        )
    return name


def parse_title(reader: SectionReader, title: str) -> str:
    return title


NAME = Section("incident", "name", {"type": "string"}, parse_name)
TITLE = Section("title", "title", {"type": "string"}, parse_title, default="")

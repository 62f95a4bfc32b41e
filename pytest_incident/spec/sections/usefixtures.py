# `usefixtures:` ordinary pytest fixtures every item of the incident uses.
from __future__ import annotations

from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.section import TEXT_OR_LIST, Section


def parse(reader: SectionReader, value: str | list[str] | None) -> tuple[str, ...]:
    names = reader.items({"usefixtures": value}, "usefixtures", ())
    for path, name in names:
        if not name.isidentifier():
            reader.fail(path, f"{name!r} is not a fixture name")
    return tuple(name for _, name in names)


SECTION = Section("usefixtures", "usefixtures", TEXT_OR_LIST, parse)

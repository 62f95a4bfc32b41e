# `window: START .. END`: the recorded time range, UTC, end after start.
from __future__ import annotations

import re

from pytest_incident.model.spans import parse_timestamp
from pytest_incident.model.spec import Window
from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.section import Section
from pytest_incident.spec.yaml_loader import KeyPath

_SEPARATOR_RE = re.compile(r"\s*\.\.\s*")


def parse(reader: SectionReader, text: str) -> Window | None:
    path: KeyPath = ("window",)
    parts = _SEPARATOR_RE.split(text.strip())
    if len(parts) != 2 or not all(parts):
        reader.fail(
            path,
            f"expected 'START .. END' in UTC, e.g. "
            f"'2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z', got {text!r}",
        )
        return None
    stamps: list[int] = []
    for part in parts:
        try:
            if not part.isascii():  # strptime's digits would take `२०२४` for 2024
                raise ValueError(part)
            stamps.append(parse_timestamp(part))
        except ValueError:
            reader.fail(
                path, f"{part!r} is not a UTC timestamp; expected e.g. 2024-05-14T14:00:00Z"
            )
            return None
    start, end = stamps
    if end <= start:
        reader.fail(path, f"the end {parts[1]} is not after the start {parts[0]}")
        return None
    return Window(start, end)


SECTION = Section("window", "window", {"type": "string"}, parse, required=True)

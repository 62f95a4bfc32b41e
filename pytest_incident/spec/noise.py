# The calibration file: `<incident>.noise.yaml` beside an incident file, written by
# `pytest --incident=NAME --incident-calibrate` and read with the incident. It lists, per
# route, the parts of an answer that differed between two replays of the same code, which
# `expect.response` then ignores:
#
#     incident: 2024-05-signup
#     routes:
#       POST /signup: [body:id, body:created_at, header:date]
#
# Read like the incident file itself (line numbers kept; every mistake `file:line: ...`);
# a file that is not there is no noise.
from __future__ import annotations

from pathlib import Path
from types import MappingProxyType
from typing import Any

from pytest_incident.model.spec import Noise
from pytest_incident.spec.document import parse_document, read_file
from pytest_incident.spec.reader import Problems, SectionReader
from pytest_incident.spec.scalars import describe
from pytest_incident.spec.sections.expect import checked_noise

MAX_BYTES = 4 * 1024 * 1024  # a calibration file lists every route: more than an incident file


def load_noise(path: Path) -> Noise:
    """The calibration file at `path`; an empty Noise when there is none."""
    try:
        data = read_file(path, MAX_BYTES)
    except FileNotFoundError:
        return Noise()
    text, document = parse_document(path, data)
    if document is None:
        return Noise(path)
    reader = SectionReader(path, document, Problems(path, text))
    top = document.data
    if not isinstance(top, dict):
        reader.add(reader.span(()), f"expected a mapping with `routes:`, got {describe(top)}")
        reader.problems.raise_first()
    for key in top:
        if key not in ("incident", "routes"):
            reader.add(reader.key((key,)), f"unknown key {key!r}; allowed: incident, routes")
    routes: dict[str, tuple[str, ...]] = {}
    given: Any = top.get("routes") or {}
    if not isinstance(given, dict):
        reader.fail(("routes",), f"expected a mapping of routes, got {describe(given)}")
    else:
        for route, entries in given.items():
            if not isinstance(entries, list | str):
                reader.fail(
                    ("routes", route), f"expected a list of entries, got {describe(entries)}"
                )
                continue
            wrong = [
                (i, e)
                for i, e in enumerate(entries if isinstance(entries, list) else [])
                if not isinstance(e, str)
            ]
            if wrong:
                i, entry = wrong[0]
                reader.fail(
                    ("routes", route, i),
                    f"expected an entry such as body:<dotted.path> or header:<name> (text), "
                    f"got {describe(entry)}",
                )
                continue
            checked = checked_noise(reader, given, route, ("routes",))
            if checked is not None:
                routes[str(route)] = checked
    reader.problems.raise_first()
    return Noise(path, MappingProxyType(routes))

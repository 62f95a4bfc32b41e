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

import os
import stat
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pytest_incident.model.errors import IncidentFileError
from pytest_incident.model.spec import Noise
from pytest_incident.spec.reader import Problems, SectionReader, parse_document
from pytest_incident.spec.scalars import describe
from pytest_incident.spec.sections.expect import checked_noise

MAX_BYTES = 4 * 1024 * 1024


def load_noise(path: Path) -> Noise:
    """The calibration file at `path`; an empty Noise when there is none."""
    try:
        # non-blocking: a FIFO in its place must not hang collection
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return Noise()
    except OSError as exc:
        raise IncidentFileError(path, 1, f"cannot read the file: {exc.strerror}", text="") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise IncidentFileError(path, 1, "not a regular file", text="")
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise IncidentFileError(path, 1, f"larger than {MAX_BYTES} bytes", text="")
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

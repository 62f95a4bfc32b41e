# `database:` what a replayed request finds in the database. `state: request` (the default):
# every request starts from the same database, which a `usefixtures` fixture restores before
# each. `state: window`: each request sees the writes of the requests recorded before it, in
# recorded order, from the state the `before` fixture restores once per run of the incident.
from __future__ import annotations

from typing import Any

from pytest_incident.model.spec import DatabaseSpec, DatabaseState
from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.section import Section, mapping
from pytest_incident.spec.yaml_loader import KeyPath


def parse(reader: SectionReader, data: dict[str, Any]) -> DatabaseSpec | None:
    state = DatabaseState(data.get("state", DatabaseState.REQUEST.value))
    before = data.get("before")
    path: KeyPath = ("database", "before")
    if before is None:
        if state is DatabaseState.WINDOW:
            reader.fail(
                ("database", "state"),
                "window needs database.before, the fixture (from conftest.py, like "
                "usefixtures) that puts the database in its state before the window; the "
                "first item of the incident that runs requests it, once",
            )
            return None
        return DatabaseSpec(state)
    if state is not DatabaseState.WINDOW:
        reader.fail(
            path,
            "before is only for state: window (add state: window); with state: request "
            "name the fixture that restores the database in usefixtures, which requests it "
            "before every request",
        )
        return None
    if not before.isidentifier():
        reader.fail(path, f"{before!r} is not a fixture name")
        return None
    # raw names: `usefixtures` is checked by its own section, and any shape mistake there
    # has stopped the load before the sections run
    usefixtures = reader.items(reader.doc.data, "usefixtures", ())
    if any(name == before for _, name in usefixtures):
        reader.fail(
            path,
            f"{before!r} is also in usefixtures, which requests it before every request and "
            "so restores the database each time; with state: window name it here only",
        )
        return None
    return DatabaseSpec(state, before)


SCHEMA = mapping(
    {
        "state": {"enum": [state.value for state in DatabaseState]},
        "before": {"type": "string"},
    }
)
SECTION = Section("database", "database", SCHEMA, parse, default={})

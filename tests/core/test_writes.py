"""Production's database writes beside the replay's, and how selection attaches them."""

from __future__ import annotations

from types import SimpleNamespace

from pytest_incident.core.writes import compare_writes
from pytest_incident.events.selection import select_requests
from pytest_incident.model.recorded import DatabaseWrite
from pytest_incident.model.spans import Span
from pytest_incident.model.spec import Select, Window

from ..spans import db_span, server_span


def db(span_id: str, at: int, operation: str, table: str, outcome: str) -> Span:
    return db_span(operation, table, outcome, span_id=span_id, at=at, params='["a", null]')


def mutation(operation: str, table: str, outcome: str) -> SimpleNamespace:
    return SimpleNamespace(operation=operation, table=table, outcome=outcome)


def test_same_writes_show_nothing() -> None:
    recorded = [DatabaseWrite(db("1", 5, "INSERT", "accounts", "committed"))]
    assert compare_writes(recorded, [mutation("INSERT", "accounts", "committed")]) == ""


def test_different_writes_are_shown_side_by_side() -> None:
    text = compare_writes([], [mutation("INSERT", "accounts", "committed")])
    assert text.splitlines() == ["production | replay", "(nothing)  |*INSERT accounts committed"]
    recorded = [DatabaseWrite(db("1", 5, "INSERT", "accounts", "committed"))]
    text = compare_writes(recorded, [mutation("INSERT", "accounts", "rolled back")])
    assert "INSERT accounts committed |*INSERT accounts rolled back" in text


def test_selection_attaches_database_writes_only_when_the_recording_has_them() -> None:
    window = Window(0, 100)
    server = server_span(span_id="s", at=1)
    [plain] = select_requests([server], window, Select())
    assert plain.db_writes is None  # no database span anywhere: not recorded
    writes = [db("2", 6, "UPDATE", "accounts", "committed"), db("1", 5, "INSERT", "a", "x")]
    [request] = select_requests([server, *writes], window, Select())
    assert request.db_writes is not None
    assert [w.operation for w in request.db_writes] == ["INSERT", "UPDATE"]
    assert request.db_writes[0].params == ("a", None)

"""Where the ClickHouse tests keep their tables: a database of the test's own in the
process's chDB directory (always), or a uniquely named table on the server
PYTEST_INCIDENT_CLICKHOUSE_URL names (opt-in); dropped afterwards. chDB opens one directory
per process and leaves threads behind each time its engine restarts, so the tests share one
directory that a session fixture holds open."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_incident.events.clickhouse import ClickHouseRef, connect, parse_reference
from pytest_incident.events.clickhouse_layout import LOOKUP_SUFFIX, LOOKUP_VIEW_SUFFIX
from pytest_incident.events.clickhouse_load import Loaded, load_spans
from pytest_incident.model.spans import Span

SERVER_ENV = "PYTEST_INCIDENT_CLICKHOUSE_URL"  # clickhouse://user@host:8123/db
NO_SERVER = (
    f"set {SERVER_ENV}=clickhouse://user@host:8123/db (password in "
    "PYTEST_INCIDENT_CLICKHOUSE_PASSWORD) to run the ClickHouse tests over HTTP as well"
)


@dataclass
class Store:
    """One table to fill and read: `reference` is what `source:` or `--source` names."""

    reference: str
    base: Path

    @property
    def ref(self) -> ClickHouseRef:
        return parse_reference(self.reference, self.base, os.environ, command_line=True)

    def load(self, spans: Iterable[Span], variant: str = "map") -> Loaded:
        return load_spans(self.ref, spans, variant)

    def run(self, *statements: str) -> None:
        """Statements with {db}, {table} (qualified, quoted) and {lookup} filled in."""
        ref = self.ref
        names = {
            "db": f"`{ref.database}`",
            "table": f"`{ref.database}`.`{ref.table}`",
            "lookup": f"`{ref.database}`.`{ref.table}{LOOKUP_SUFFIX}`",
            "view": f"`{ref.database}`.`{ref.table}{LOOKUP_VIEW_SUFFIX}`",
        }
        client = connect(ref, create=True)
        try:
            for statement in statements:
                client.command(statement.format(**names))
        finally:
            client.close()

    def drop(self) -> None:
        self.run(
            "DROP VIEW IF EXISTS {view}",
            "DROP TABLE IF EXISTS {lookup}",
            "DROP TABLE IF EXISTS {table}",
        )


def store_params() -> list[object]:
    return [
        pytest.param("chdb", id="chdb"),
        pytest.param(
            "http",
            id="http",
            marks=pytest.mark.skipif(not os.environ.get(SERVER_ENV), reason=NO_SERVER),
        ),
    ]


def make_store(kind: str, where: Path, chdb_dir: Path | None = None) -> Iterator[Store]:
    """A table of its own: in the process's chDB directory (tests/conftest.py `chdb_dir`),
    in a database of its own, or on the server."""
    if kind == "chdb":
        assert chdb_dir is not None
        store = Store(f"chdb://{chdb_dir}?database=t_{uuid.uuid4().hex[:12]}", where)
        try:
            yield store
        finally:
            store.run("DROP DATABASE IF EXISTS {db}")
        return
    url = os.environ[SERVER_ENV]
    separator = "&" if "?" in url else "?"
    store = Store(f"{url}{separator}table=pti_{uuid.uuid4().hex[:12]}", where)
    try:
        yield store
    finally:
        store.drop()

# Writing spans into ClickHouse in the exporter's layout: `pytest-incident load` (a frozen
# file into a server or a chDB directory), and the tests and benchmarks that need a table.
#
# Strategy: the database, the table, its lookup table and the view that fills it are created
# when absent, from clickhouse_layout's DDL (the variant chosen; an existing table keeps its
# own, checked like a read checks it). Spans are inserted in batches of BATCH_ROWS rows, so
# a file of any length is loaded in bounded memory; only the columns the table has are
# written (a table made by the exporter may lack the ones the reader never reads).
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pytest_incident.events.clickhouse import ClickHouseRef, _Session, connect, query_error
from pytest_incident.events.clickhouse_layout import (
    attribute_kind,
    check_columns,
    insert_columns,
    insert_row,
    quoted,
    schema_statements,
)
from pytest_incident.model.errors import SourceError
from pytest_incident.model.spans import Span

BATCH_ROWS = 10_000


@dataclass(frozen=True)
class Loaded:
    spans: int
    created: bool  # the table was created (else it existed)
    variant: str  # "map" or "json"


def load_spans(
    ref: ClickHouseRef,
    spans: Iterable[Span],
    variant: str = "map",
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> Loaded:
    """Insert `spans` into `ref`'s table, creating it (in `variant`) when absent."""
    writer = SpanWriter(ref, variant)
    try:
        count = 0
        batch: list[Span] = []
        for span in spans:
            batch.append(span)
            if len(batch) >= batch_rows:
                count += writer.write(batch)
                batch = []
                if progress is not None:
                    progress(count)
        if batch:
            count += writer.write(batch)
            if progress is not None:
                progress(count)
        return Loaded(count, writer.created, writer.variant)
    finally:
        writer.close()


class SpanWriter:
    """An open client of `ref`'s table (created in `variant` when absent, else checked):
    `write` inserts one batch of spans; the caller closes it (chDB opens one directory per
    process). `load` and the OpenTelemetry exporter (capture/exporter.py) write through it."""

    def __init__(self, ref: ClickHouseRef, variant: str = "map") -> None:
        self.ref = ref
        self._client = connect(ref, create=True)
        try:
            self._session = _Session(ref, self._client)
            self.created = _ensure_table(self._session, variant)
            described = self._session.rows(
                "DESCRIBE TABLE {db:Identifier}.{tbl:Identifier}",
                self._session.params(),
                "reading",
            )
            layout, problems = check_columns(described)
            if problems:
                raise SourceError(
                    f"{ref.shown}: {ref.qualified} is not in the exporter's layout: "
                    + "; ".join(problems)
                )
        except BaseException:
            self._client.close()
            raise
        self.variant = attribute_kind(layout.types["SpanAttributes"]) or variant
        names = insert_columns(self.variant)
        self._kept = [i for i, name in enumerate(names) if name in layout.types]
        self._columns = [names[i] for i in self._kept]

    def write(self, spans: Iterable[Span]) -> int:
        """Insert `spans` as one batch; how many."""
        rows = []
        for span in spans:
            row = insert_row(span, self.variant)
            rows.append([row[i] for i in self._kept])
        return _insert(self._session, self._columns, rows) if rows else 0

    def close(self) -> None:
        self._client.close()


def _ensure_table(session: _Session, variant: str) -> bool:
    ref = session.ref
    exists = session.rows(
        "SELECT count() FROM system.tables WHERE database = {db:String} AND name = {name:String}",
        {"db": ref.database, "name": ref.table},
        "looking for the table",
    )[0][0]
    if exists:
        return False
    statements = [f"CREATE DATABASE IF NOT EXISTS {quoted(ref.database)}"]
    statements += schema_statements(ref.database, ref.table, variant)
    for statement in statements:
        try:
            session.client.command(statement)
        except Exception as exc:
            raise query_error(ref, exc, "creating the table") from None
    return True


def _insert(session: _Session, columns: list[str], batch: list[list[object]]) -> int:
    try:
        session.client.insert(
            session.ref.table, batch, column_names=columns, database=session.ref.database
        )
    except Exception as exc:
        raise query_error(session.ref, exc, "inserting spans") from None
    return len(batch)

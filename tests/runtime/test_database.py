"""Repeatable database state: a template database restored before each replay (real
PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import psycopg
import pytest

from pytest_incident.runtime.database import PostgresServer, TemplateDatabase


@pytest.fixture
def accounts(postgres: PostgresServer, tmp_path: Path) -> Iterator[TemplateDatabase]:
    schema = tmp_path / "schema.sql"
    schema.write_text(
        "CREATE TABLE accounts (id serial PRIMARY KEY, email text UNIQUE NOT NULL);\n"
        f"-- {uuid4()} makes this template unique to the test\n"
    )
    seed = tmp_path / "seed.sql"
    seed.write_text("INSERT INTO accounts (email) VALUES ('seed@example.com');\n")
    database = TemplateDatabase(postgres, f"incident_test_{uuid4().hex[:8]}", (schema, seed))
    yield database
    database.drop()
    with postgres.admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database.template}" WITH (FORCE)')


def rows(dsn: str) -> list[tuple[int, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT id, email FROM accounts ORDER BY id").fetchall()


def test_every_restore_starts_from_the_same_rows(accounts: TemplateDatabase) -> None:
    dsn = accounts.restore()
    assert rows(dsn) == [(1, "seed@example.com")]
    with psycopg.connect(dsn) as conn:
        conn.execute("INSERT INTO accounts (email) VALUES ('new@example.com')")
    assert len(rows(dsn)) == 2
    dsn = accounts.restore()
    assert rows(dsn) == [(1, "seed@example.com")]
    with psycopg.connect(dsn) as conn:  # serial ids start over too
        new_id = conn.execute(
            "INSERT INTO accounts (email) VALUES ('again@example.com') RETURNING id"
        ).fetchone()
    assert new_id == (2,)


def test_restore_ends_connections_a_target_still_holds(accounts: TemplateDatabase) -> None:
    held = psycopg.connect(accounts.restore())
    accounts.restore()
    with pytest.raises(psycopg.OperationalError):
        held.execute("SELECT 1")
    held.close()


def test_the_template_is_built_once_per_schema(
    accounts: TemplateDatabase, postgres: PostgresServer
) -> None:
    first = accounts.build()
    assert accounts.build() == first
    with postgres.admin() as admin:
        count = admin.execute(
            "SELECT count(*) FROM pg_database WHERE datname LIKE %s", (f"{accounts.name}_tmpl_%",)
        ).fetchone()
    assert count == (1,)


def test_plain_names_only(postgres: PostgresServer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a plain database name"):
        TemplateDatabase(postgres, 'x"; DROP DATABASE postgres; --', ()).restore()

# Fixtures the project's own incident files name in `usefixtures:`.
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_incident.database import PostgresServer, TemplateDatabase

ROOT = Path(__file__).resolve().parent


@pytest.fixture
def signup_db() -> str:
    """The signup demo's database, restored from its template before each replayed request:
    every replay starts from the same (empty) accounts table. Under xdist each worker has
    its own (`signup<worker>`, matching DATABASE_URL in the incident file)."""
    server = PostgresServer.from_env()
    if not server.reachable():
        pytest.skip(
            f"no PostgreSQL at {server.host}:{server.port} for the signup demo: run ./dev demo "
            "(as root it sets up Debian's postgresql) or point PGHOST/PGPORT/PGUSER/PGPASSWORD "
            "at one"
        )
    name = "signup" + os.environ.get("PYTEST_XDIST_WORKER", "")  # one database per worker
    return TemplateDatabase(server, name, (ROOT / "examples/signup/schema.sql",)).restore()

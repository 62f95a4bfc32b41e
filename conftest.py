# Fixtures the project's own incident files name in `usefixtures:`.
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_incident.runtime.database import PostgresServer, TemplateDatabase

ROOT = Path(__file__).resolve().parent


DATABASE_ENV = "SIGNUP_DB"  # read by incidents/2024-05-signup.yaml (DATABASE_URL)


def signup_database() -> TemplateDatabase:
    return TemplateDatabase(
        PostgresServer.from_env(),
        os.environ[DATABASE_ENV],
        (ROOT / "examples/signup/schema.sql",),
        family="signup",  # one template for all of them
    )


def pytest_configure(config: pytest.Config) -> None:
    # One database per process: xdist workers, and the runs tests start in-process or as
    # subprocesses, never share one.
    os.environ[DATABASE_ENV] = f"signup_{os.getpid()}"


def pytest_unconfigure(config: pytest.Config) -> None:
    if PostgresServer.from_env().reachable():
        signup_database().drop()


@pytest.fixture
def signup_db() -> str:
    """The signup demo's database, restored from its template before each replayed request:
    every replay starts from the same (empty) accounts table."""
    server = PostgresServer.from_env()
    if not server.reachable():
        pytest.skip(
            f"no PostgreSQL at {server.host}:{server.port} for the signup demo: run ./dev demo "
            "(as root it sets up Debian's postgresql) or point PGHOST/PGPORT/PGUSER/PGPASSWORD "
            "at one"
        )
    return signup_database().restore()

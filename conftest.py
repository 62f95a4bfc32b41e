# Fixtures the project's own incident files name in `usefixtures:` and `database.before:`.
from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_incident.runtime.database import PostgresServer, TemplateDatabase

ROOT = Path(__file__).resolve().parent


DATABASE_ENV = "SIGNUP_DB"  # read by incidents/2024-05-signup.yaml (DATABASE_URL)
WEBHOOKS_DATABASE_ENV = "WEBHOOKS_DB"  # read by incidents/2024-07-webhooks.yaml


def signup_database() -> TemplateDatabase:
    return TemplateDatabase(
        PostgresServer.from_env(),
        os.environ[DATABASE_ENV],
        (ROOT / "examples/signup/schema.sql",),
        family="signup",  # one template for all of them
    )


def webhooks_database() -> TemplateDatabase:
    return TemplateDatabase(
        PostgresServer.from_env(),
        os.environ[WEBHOOKS_DATABASE_ENV],
        (ROOT / "examples/webhooks/schema.sql", ROOT / "examples/webhooks/before_window.sql"),
        family="webhooks",
    )


def pytest_configure(config: pytest.Config) -> None:
    # One database per process: xdist workers, and the runs tests start in-process or as
    # subprocesses, never share one.
    os.environ[DATABASE_ENV] = f"signup_{os.getpid()}"
    os.environ[WEBHOOKS_DATABASE_ENV] = f"webhooks_{os.getpid()}"


def pytest_unconfigure(config: pytest.Config) -> None:
    if PostgresServer.from_env().reachable():
        signup_database().drop()
        webhooks_database().drop()


def reachable_or_skip(demo: str) -> None:
    server = PostgresServer.from_env()
    if not server.reachable():
        pytest.skip(
            f"no PostgreSQL at {server.host}:{server.port} for the {demo} demo: run ./dev demo "
            "(as root it sets up Debian's postgresql) or point PGHOST/PGPORT/PGUSER/PGPASSWORD "
            "at one"
        )


@pytest.fixture
def signup_db() -> str:
    """The signup demo's database, restored from its template before each replayed request:
    every replay starts from the same (empty) accounts table."""
    reachable_or_skip("signup")
    return signup_database().restore()


@pytest.fixture
def webhooks_db() -> str:
    """The webhooks demo's database as it was just before its incident window (orders, and
    the one event processed before it). Named in `database.before`: restored once, before the
    window's first request; the others see what the ones before them wrote."""
    reachable_or_skip("webhooks")
    return webhooks_database().restore()

# Repeatable database state for replays: a template database built once from SQL files, and
# a working database restored from it before each replayed request, so every replay (and
# every run) starts from the same rows. PostgreSQL through psycopg 3 (an optional
# dependency: `pip install pytest-incident[postgres]`).
#
# Restoring is `CREATE DATABASE work TEMPLATE tmpl` after `DROP DATABASE work WITH (FORCE)`,
# which also ends the connections a target still holds (a pool reconnects; an app that
# connects per request never notices). Use it from a fixture named in `usefixtures:`; see
# README ("Database state").
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise RuntimeError(
            "pytest_incident.runtime.database needs psycopg 3: "
            "pip install 'pytest-incident[postgres]'"
        ) from None
    return psycopg


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"{name!r} is not a plain database name (letters, digits, _)")
    return f'"{name}"'


@dataclass(frozen=True)
class PostgresServer:
    """Where a PostgreSQL server listens and how to log in as a user who may create
    databases. Defaults follow libpq's variables (PGHOST, PGPORT, PGUSER, PGPASSWORD)."""

    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""

    @classmethod
    def from_env(cls) -> PostgresServer:
        return cls(
            host=os.environ.get("PGHOST", "127.0.0.1"),
            port=int(os.environ.get("PGPORT", "5432")),
            user=os.environ.get("PGUSER", "postgres"),
            password=os.environ.get("PGPASSWORD", ""),
        )

    def dsn(self, dbname: str) -> str:
        password = f" password={self.password}" if self.password else ""
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}{password}"

    def url(self, dbname: str) -> str:
        auth = f"{self.user}:{self.password}" if self.password else self.user
        return f"postgresql://{auth}@{self.host}:{self.port}/{dbname}"

    def reachable(self) -> bool:
        try:
            with _psycopg().connect(self.dsn("postgres"), connect_timeout=2):
                return True
        except Exception:
            return False

    def admin(self) -> Any:
        return _psycopg().connect(self.dsn("postgres"), autocommit=True)


@dataclass(frozen=True)
class TemplateDatabase:
    """`name` restored from a template built from `sql` files (schema, then seed rows).

    The template is rebuilt only when the SQL changes (its name carries a hash of the
    files), so building it is a one-off per machine and schema."""

    server: PostgresServer
    name: str
    sql: Sequence[Path]
    family: str = ""  # shares one template among databases of one schema (default: name)

    @property
    def template(self) -> str:
        digest = hashlib.sha256()
        for path in self.sql:
            digest.update(Path(path).read_bytes())
        return f"{self.family or self.name}_tmpl_{digest.hexdigest()[:10]}"

    def build(self) -> str:
        """Create the template if it does not exist yet; returns its name."""
        template = self.template
        with self.server.admin() as admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (template,)
            ).fetchone()
            if exists:
                return template
            building = f"{template}_b{os.getpid()}"  # per process: xdist workers may race
            admin.execute(f"DROP DATABASE IF EXISTS {_ident(building)} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {_ident(building)}")
            try:
                with _psycopg().connect(self.server.dsn(building), autocommit=True) as conn:
                    for path in self.sql:
                        conn.execute(Path(path).read_text())
                # renamed only once complete: a half-built template is never used
                admin.execute(f"ALTER DATABASE {_ident(building)} RENAME TO {_ident(template)}")
            except _psycopg().errors.DuplicateDatabase:
                pass  # another process finished the same template first: use theirs
            finally:
                admin.execute(f"DROP DATABASE IF EXISTS {_ident(building)} WITH (FORCE)")
        return template

    def restore(self) -> str:
        """Replace `name` with a fresh copy of the template; returns its DSN."""
        template = self.build()
        with self.server.admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {_ident(self.name)} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {_ident(self.name)} TEMPLATE {_ident(template)}")
        return self.server.dsn(self.name)

    def drop(self) -> None:
        with self.server.admin() as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {_ident(self.name)} WITH (FORCE)")

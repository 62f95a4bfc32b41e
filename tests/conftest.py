from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

# Imported once here: in-process pytester runs restore sys.modules afterwards, and a second
# import of cryptography (through trustme) breaks its type checks in the next run.
import pytest_incident.runtime.replay  # noqa: F401
from pytest_incident.runtime.database import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
DEMO_YAML = "incidents/2024-05-signup.yaml"


@pytest.fixture
def demo(pytester: pytest.Pytester) -> pytest.Pytester:
    """A pytester project holding a copy of the demo service and its recorded incident."""
    shutil.copytree(
        ROOT / "examples", pytester.path / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(
        ROOT / "incidents",
        pytester.path / "incidents",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    # in-process pytester runs see the plugin already imported by the outer session
    shutil.copy(ROOT / "conftest.py", pytester.path / "conftest.py")  # signup_db
    pytester.makeini(
        "[pytest]\nfilterwarnings =\n"
        "    ignore:Module already imported:pytest.PytestAssertRewriteWarning\n"
    )
    return pytester


def write_incident(pytester: pytest.Pytester, name: str, body: str) -> Path:
    """An incident file beside the demo recording; `body` is YAML after the common header."""
    path = pytester.path / "incidents" / f"{name}.yaml"
    header = (
        "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\n"
        "source: 2024-05-signup.events.jsonl.gz\n"
    )
    path.write_text(header + body)
    return path


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A loopback listener (0.3 s accept timeout): a stand-in destination that the test's
    policy treats as external, or a live one it allows."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    sock.settimeout(0.3)
    yield sock
    sock.close()


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The one chDB directory of this process, held open for the session (a database per
    test inside it). chDB opens one directory per process, and each restart of its engine
    leaves threads behind: tests read and write here while this client keeps it up."""
    from pytest_incident.events.clickhouse import connect, parse_reference

    path = tmp_path_factory.mktemp("chdb") / "traces.chdb"
    keeper = connect(parse_reference(f"chdb://{path}", path.parent, {}), create=True)
    yield path
    keeper.close()


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """The PostgreSQL server the database tests use (libpq variables, default
    postgres@127.0.0.1:5432); `./dev test` sets one up on a fresh Debian machine."""
    server = PostgresServer.from_env()
    if not server.reachable():
        pytest.skip(
            f"no PostgreSQL at {server.host}:{server.port}: run ./dev test (as root it sets up "
            "Debian's postgresql) or point PGHOST/PGPORT/PGUSER/PGPASSWORD at one"
        )
    return server

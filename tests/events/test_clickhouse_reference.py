"""ClickHouse references: the URL forms, where the password comes from (never written in an
incident file, never on the command line as text), and the one-line errors for a server
that cannot be reached or refuses the credentials (a closed loopback port; a loopback stub
that answers as ClickHouse does)."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_incident.events.clickhouse import (
    ENV_PASSWORD,
    ClickHouseRef,
    parse_reference,
    query_error,
    read_clickhouse,
)
from pytest_incident.events.incident import open_incident
from pytest_incident.events.window import read_window
from pytest_incident.model.errors import IncidentFileError, SourceError
from pytest_incident.model.spans import parse_timestamp
from pytest_incident.model.spec import Window

WINDOW = Window(parse_timestamp("2024-05-14T14:00:00Z"), parse_timestamp("2024-05-14T14:30:00Z"))
BASE = Path("/srv/incidents")


def test_a_server_reference_and_its_defaults() -> None:
    ref = parse_reference("clickhouse://reader@ch.example:8123/otel?table=spans", BASE, {})
    assert (ref.interface, ref.host, ref.port, ref.username, ref.password) == (
        "http",
        "ch.example",
        8123,
        "reader",
        "",
    )
    assert (ref.database, ref.table) == ("otel", "spans")
    assert ref.shown == "clickhouse://reader@ch.example:8123/otel?table=spans"
    plain = parse_reference("clickhouse://ch.example", BASE, {})
    assert (plain.port, plain.username, plain.database, plain.table) == (
        8123,
        "default",
        "default",
        "otel_traces",
    )
    secure = parse_reference("clickhouse://ch.example/db?secure=true&timeout=30s", BASE, {})
    assert (secure.interface, secure.port, secure.timeout_s) == ("https", 8443, 30.0)


def test_chdb_references_are_directories_relative_to_the_incident() -> None:
    assert parse_reference("chdb:///var/lib/traces", BASE, {}).path == Path("/var/lib/traces")
    relative = parse_reference("chdb://data/traces?database=otel", BASE, {})
    assert relative.path == BASE / "data/traces"
    assert (relative.interface, relative.database) == ("chdb", "otel")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("clickhouse://h/db?tabel=x", "unknown option 'tabel'; allowed for clickhouse://: table"),
        ("clickhouse://h/db?table=a&table=b", "option 'table' is given twice"),
        ("clickhouse://h/db?table=x;DROP", "table 'x;DROP' is not a plain name"),
        ("clickhouse://h/a/b", "the database (the URL's path) 'a/b' is not a plain name"),
        ("clickhouse://h:99999/db", "not a URL (Port out of range"),
        ("clickhouse:///db", "no host"),
        ("clickhouse://h/db?secure=maybe", "secure='maybe'; allowed: true, false"),
        ("clickhouse://h/db?timeout=soon", "timeout: not a duration: 'soon'"),
        ("chdb://", "chdb://: no directory"),
        ("chdb://u@dir", "a chdb:// reference names a directory"),
        ("chdb:///d?database=a-b", "database 'a-b' is not a plain name"),
    ],
)
def test_a_reference_that_cannot_be_read_says_why(text: str, message: str) -> None:
    with pytest.raises(SourceError) as caught:
        parse_reference(text, BASE, {})
    assert message in str(caught.value)


def test_the_password_comes_from_the_environment() -> None:
    environ = {ENV_PASSWORD: "from-env", "CH_PW": "from-var"}
    assert parse_reference("clickhouse://u@h/db", BASE, environ).password == "from-env"
    # an incident file's ${CH_PW} is expanded by the loader before the source sees it
    assert parse_reference("clickhouse://u:expanded@h/db", BASE, environ).password == "expanded"
    on_command_line = parse_reference(
        "clickhouse://u:${CH_PW}@h/db", BASE, environ, command_line=True
    )
    assert on_command_line.password == "from-var"
    assert "from-var" not in on_command_line.shown and "from-var" not in repr(on_command_line)


def test_a_password_written_on_the_command_line_is_refused() -> None:
    with pytest.raises(SourceError) as caught:
        parse_reference("clickhouse://u:hunter2@h/db", BASE, {}, command_line=True)
    assert "hunter2" not in str(caught.value)
    assert f"set {ENV_PASSWORD}, or write user:${{VAR}}@" in str(caught.value)
    with pytest.raises(SourceError, match="environment variable NOPE is not set"):
        parse_reference("clickhouse://u:${NOPE}@h/db", BASE, {}, command_line=True)


def incident(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "live.yaml"
    path.write_text(
        "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\n"
        f"source: {source}\n"
        "target: {wsgi: 'app:app'}\n"
    )
    return path


@pytest.mark.parametrize(
    "source",
    ["clickhouse://u:hunter2@127.0.0.1:{port}/db", "clickhouse://u:${{X}}-2@127.0.0.1:{port}/db"],
)
def test_a_password_written_in_an_incident_file_is_refused_at_its_line(
    tmp_path: Path, source: str, closed_port: int
) -> None:
    with pytest.raises(IncidentFileError) as caught:
        open_incident(incident(tmp_path, source.format(port=closed_port)), {"X": "x"})
    assert caught.value.line == 2
    assert caught.value.message.startswith("source: the URL holds a password: written in the ")
    assert "write user:${VAR}@" in caught.value.message


def test_the_twin_a_password_from_the_environment_is_taken_and_never_shown(
    tmp_path: Path, closed_port: int
) -> None:
    path = incident(tmp_path, f"clickhouse://u:${{CH_PW}}@127.0.0.1:{closed_port}/db")
    with pytest.raises(IncidentFileError) as caught:
        open_incident(path, {"CH_PW": "s3cret"})
    assert caught.value.line == 2
    assert caught.value.message == (
        f"source: clickhouse://u@127.0.0.1:{closed_port}/db?table=otel_traces: cannot reach "
        f"ClickHouse at 127.0.0.1:{closed_port} (connection refused)"
    )


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_server_is_one_line(closed_port: int) -> None:
    with pytest.raises(SourceError) as caught:
        list(read_window(f"clickhouse://u@127.0.0.1:{closed_port}/db", BASE, WINDOW))
    assert str(caught.value) == (
        f"clickhouse://u@127.0.0.1:{closed_port}/db?table=otel_traces: cannot reach ClickHouse "
        f"at 127.0.0.1:{closed_port} (connection refused)"
    )


class _RefusesCredentials(http.server.BaseHTTPRequestHandler):
    """Answers every request as ClickHouse answers a wrong password."""

    def _refuse(self) -> None:
        body = (
            b"Code: 516. DB::Exception: u: Authentication failed: password is incorrect, or "
            b"there is no user with such name. (AUTHENTICATION_FAILED) (version 25.3.1.1)\n"
        )
        self.send_response(403)
        self.send_header("X-ClickHouse-Exception-Code", "516")
        self.send_header("Content-Type", "text/plain; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RefusesCredentials)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_bad_credentials_are_one_line_without_the_password(refusing_server: int) -> None:
    ref = parse_reference(
        f"clickhouse://u:${{PW}}@127.0.0.1:{refusing_server}/db",
        BASE,
        {"PW": "wrong-one"},
        command_line=True,
    )
    with pytest.raises(SourceError) as caught:
        list(read_clickhouse(ref, WINDOW))
    assert str(caught.value) == (
        f"clickhouse://u@127.0.0.1:{refusing_server}/db?table=otel_traces: ClickHouse refused "
        f"the credentials of user 'u' (password from the URL's ${{VAR}} or {ENV_PASSWORD})"
    )
    assert "wrong-one" not in str(caught.value)


class _Coded(Exception):
    def __init__(self, text: str, code: int | None) -> None:
        super().__init__(text)
        self.code = code


@pytest.mark.parametrize(
    ("code", "text", "message"),
    [
        (60, "Table db.t does not exist", "there is no table db.otel_traces"),
        (81, "Database db does not exist", "there is no database 'db'"),
        (497, "u: Not enough privileges", "user 'u' may not read db.otel_traces"),
        (159, "Timeout exceeded: elapsed 300 seconds", "timed out reading spans (timeout 300s"),
        (None, "Read timed out. (read timeout=300)", "timed out reading spans"),
        (None, "Error pw-123 HTTP 502", "cannot reach ClickHouse (Error *** HTTP 502)"),
        (62, "Syntax error\nline two", "ClickHouse error reading spans: Syntax error"),
    ],
)
def test_driver_errors_are_one_line(code: int | None, text: str, message: str) -> None:
    ref = ClickHouseRef("http", "db", "otel_traces", "clickhouse://u@h:8123/db", "h", 8123, "u")
    ref = ClickHouseRef(**{**vars(ref), "password": "pw-123"})
    error = query_error(ref, _Coded(text, code), "reading spans")
    assert message in str(error)
    assert "\n" not in str(error) and "pw-123" not in str(error)


class _ReadonlyClient:
    """A client of a `readonly=1` user: any query that changes a setting is refused."""

    def __init__(self) -> None:
        self.sent: list[dict[str, object]] = []

    def query(self, sql: str, parameters: object = None, settings: object = None) -> object:
        self.sent.append(dict(settings or {}))  # type: ignore[call-overload]
        if settings:
            raise _Coded("Cannot modify 'max_execution_time' setting in readonly mode", 164)
        return type("Result", (), {"result_rows": [(1,)]})()


def test_a_readonly_user_queries_without_settings() -> None:
    from pytest_incident.events.clickhouse import _Session

    ref = parse_reference("clickhouse://u@h/db", BASE, {})
    client = _ReadonlyClient()
    session = _Session(ref, client)  # type: ignore[arg-type]
    assert session.rows("SELECT {x:UInt8}", {"x": 1}, "counting") == [(1,)]
    assert session.rows("SELECT {x:UInt8}", {"x": 1}, "counting") == [(1,)]
    assert client.sent == [{"max_execution_time": 300}, {}, {}]
    # the twin: another error is not retried, and says what it is
    refusing = _ReadonlyClient()
    refusing.query = lambda *a, **k: (_ for _ in ()).throw(_Coded("Syntax error", 62))  # type: ignore[method-assign]
    with pytest.raises(SourceError, match="ClickHouse error counting: Syntax error"):
        _Session(ref, refusing).rows("SELECT {x:UInt8}", {"x": 1}, "counting")  # type: ignore[arg-type]

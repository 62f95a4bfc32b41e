"""ClickHouse sources under attack, on the real engine (chDB, a database per test in the
process's one chDB directory): hostile service names, routes and window bounds are values
bound on the server (each selects exactly its own request, in both layouts, and the table is
untouched); hostile table and database names are refused before any query; a password is
refused wherever it is written (command line, incident file), never shown in a message
however it is written, and a password from the environment that holds URL characters stays
the password (it does not move the host)."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_incident.cli import main, tail
from pytest_incident.cli.console import Console
from pytest_incident.events.frozen import read_spans
from pytest_incident.events.window import read_window
from pytest_incident.model.errors import IncidentFileError, SourceError
from pytest_incident.model.spans import parse_timestamp
from pytest_incident.model.spec import Window
from pytest_incident.spec import load_incident

pytest.importorskip("chdb")
clickhouse = pytest.importorskip("pytest_incident.events.clickhouse")
clickhouse_load = pytest.importorskip("pytest_incident.events.clickhouse_load")

from tests.spans import server_span  # noqa: E402

WINDOW = "2024-05-14T14:00:00Z..2024-05-14T14:30:00Z"
AT = parse_timestamp("2024-05-14T14:10:00Z")
SPAN_WINDOW = Window(
    parse_timestamp("2024-05-14T14:00:00Z"), parse_timestamp("2024-05-14T14:30:00Z")
)
HOSTILE = [
    "x' OR 1=1 --",
    "a\\",
    "\\'; --",
    "'",
    "{service:String}",
    "%s",
    "%(x)s",
    "?",
    "$1",
    "%",
    "_",
    "`; DROP TABLE otel_traces; --",
    "é ü 😀",
    "a" * 3000,
]
UNPRINTABLE = ["tab\there", "nl\nhere", "cr\rhere", "a\x00b", "\\N", "rlo\u202eevil"]


@pytest.fixture(params=["map", "json"])
def hostile_source(
    request: pytest.FixtureRequest, chdb_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """A table holding one request of each hostile service (its route hostile too)."""
    reference = f"chdb://{chdb_dir}?database=h_{uuid.uuid4().hex[:12]}"
    ref = clickhouse.parse_reference(reference, tmp_path, {}, command_line=True)
    spans = [
        server_span(
            trace=f"{index + 1:032x}",
            span_id=f"{index + 1:016x}",
            at=AT + index,
            service=service,
            path=f"/p/{index}'\\%_",
        )
        for index, service in enumerate(HOSTILE + UNPRINTABLE)
    ]
    clickhouse_load.load_spans(ref, spans, request.param)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\n')
    monkeypatch.chdir(tmp_path)
    yield reference
    client = clickhouse.connect(ref)
    try:
        client.command(f"DROP DATABASE IF EXISTS `{ref.database}`")
    finally:
        client.close()


def rows(reference: str) -> int:
    ref = clickhouse.parse_reference(reference, Path.cwd(), {}, command_line=True)
    client = clickhouse.connect(ref)
    try:
        return int(
            client.query(
                "SELECT count() FROM {db:Identifier}.otel_traces", parameters={"db": ref.database}
            ).result_rows[0][0]
        )
    finally:
        client.close()


def run(*argv: str) -> int:
    try:
        return main.main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def test_a_hostile_service_freezes_exactly_its_own_request(hostile_source: str) -> None:
    total = rows(hostile_source)
    for index, service in enumerate(HOSTILE):
        name = f"s{index}"
        assert run("freeze", name, "--source", hostile_source, "--window", WINDOW,
                   "--service", service) == 0, service  # fmt: skip
        frozen = list(read_spans(Path("incidents") / f"{name}.events.jsonl.gz"))
        assert [s.trace_id for s in frozen] == [f"{index + 1:032x}"], service
        # the scaffold's select names it as it is
        text = (Path("incidents") / f"{name}.yaml").read_text()
        incident = Path("incidents") / f"{name}.yaml"
        incident.write_text(text.replace("  wsgi: FILL-IN", "  wsgi: app:app"))
        assert load_incident(incident, {}).select.service == service
    assert rows(hostile_source) == total  # the twin: nothing was dropped or added


def test_unprintable_services_and_hostile_routes_are_values_too(hostile_source: str) -> None:
    for index, service in enumerate(UNPRINTABLE, len(HOSTILE)):
        spans = list(read_window(hostile_source, Path.cwd(), SPAN_WINDOW, service))
        assert [s.trace_id for s in spans] == [f"{index + 1:032x}"], repr(service)
        assert spans[0].service == service
    route = "route=POST /p/3'\\%_"
    assert run("freeze", "r", "--source", hostile_source, "--window", WINDOW,
               "--filter", route) == 0  # fmt: skip
    frozen = list(read_spans(Path("incidents") / "r.events.jsonl.gz"))
    assert [s.trace_id for s in frozen] == [f"{4:032x}"]  # `%` and `_` are no wildcards
    # the twin: a near miss of a hostile service selects nothing
    with pytest.raises(SourceError) as caught:
        list(read_window(hostile_source, Path.cwd(), SPAN_WINDOW, "x' OR 1=1 -- "))
    assert caught.value.key == "select"


@pytest.mark.parametrize(
    ("window", "status"),
    [
        ("1970-01-01T00:00:00Z..9999-12-31T23:59:59Z", 0),  # past int64 nanoseconds: clamped
        ("9000-01-01T00:00:00Z..9999-12-31T23:59:59Z", 1),
        ("1970-01-01T00:00:00Z..1970-01-01T00:00:01Z", 1),
    ],
)
def test_window_bounds_at_the_edges_of_time(hostile_source: str, window: str, status: int) -> None:
    out, err = io.StringIO(), io.StringIO()
    args = main.parser().parse_args(["tail", "--source", hostile_source, "--window", window])
    assert tail.run(args, console=Console(out, err, False)) == status, err.getvalue()


@pytest.mark.parametrize(
    "option",
    [
        "table=x;DROP TABLE otel_traces",
        "table=otel`traces",
        "table=o'tel",
        "table=%C3%BC",
        "table=otel_traces%00",
        "table=otel_traces%0A",
        "database=x`.`y",
        "database=system;",
    ],
)
def test_hostile_table_and_database_names_are_refused_before_any_query(
    hostile_source: str, capsys: pytest.CaptureFixture[str], option: str
) -> None:
    total = rows(hostile_source)
    reference = (
        f"{hostile_source}&{option}"
        if "table=" in option
        else hostile_source.replace(hostile_source.rpartition("?")[2], option)
    )
    assert run("tail", "--source", reference, "--window", WINDOW) in (2, 3)
    err = capsys.readouterr().err
    assert "is not a plain name" in err and err.count("\n") == 1
    assert rows(hostile_source) == total


# -- passwords -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        "clickhouse://reader:Zq9@Xw7@ch.example:8123/otel",
        "clickhouse://reader:Zq9/Xw7@ch.example:8123/otel",
        "clickhouse://reader:Zq9#Xw7@ch.example:8123/otel",
        "clickhouse://reader:Zq9?Xw7@ch.example:8123/otel",
        "clickhouse://reader@ch.example:8123/otel?password=Zq9Xw7",
    ],
)
def test_a_password_on_the_command_line_is_refused_and_never_shown(reference: str) -> None:
    with pytest.raises(SourceError) as caught:
        clickhouse.parse_reference(reference, Path("/srv"), {}, command_line=True)
    assert "Zq9" not in str(caught.value) and "Xw7" not in str(caught.value)
    assert "ch.example" in str(caught.value) or "reader:***@" in str(caught.value)


@pytest.mark.parametrize("password", ["Zq9/Xw7", "Zq9#Xw7", "Zq9?Xw7", "Zq9@Xw7"])
def test_a_password_with_url_characters_in_an_incident_file_is_refused_at_its_line(
    tmp_path: Path, password: str
) -> None:
    incident = tmp_path / "x.yaml"
    incident.write_text(
        f"window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\n"
        f"source: clickhouse://reader:{password}@ch.example:8123/otel\n"
        "target: {wsgi: 'app:app'}\n"
    )
    with pytest.raises(IncidentFileError) as caught:
        load_incident(incident, {})
    assert caught.value.line == 2
    assert caught.value.message.startswith("source: the URL holds a password")
    # the twin: a port, a path and a query with an @ hold no password
    incident.write_text(
        "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\n"
        "source: clickhouse://ch.example:8123/otel?table=otel_traces#a@b\n"
        "target: {wsgi: 'app:app'}\n"
    )
    assert load_incident(incident, {}).source.scheme == "clickhouse"


def test_a_password_from_the_environment_holding_url_characters_stays_the_password(
    tmp_path: Path,
) -> None:
    """`reader:${PW}@host` with PW=`a@evil.example/x`: the password, not a host named
    evil.example that the credentials would be sent to."""
    incident = tmp_path / "x.yaml"
    incident.write_text(
        "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\n"
        "source: clickhouse://${CH_USER}:${PW}@ch.example:8123/otel\n"
        "target: {wsgi: 'app:app'}\n"
    )
    environ = {"PW": "a@evil.example/x#?:", "CH_USER": "re@der"}
    spec = load_incident(incident, environ)
    ref = clickhouse.parse_reference(spec.source.text, tmp_path, environ)
    assert (ref.host, ref.port, ref.database) == ("ch.example", 8123, "otel")
    assert (ref.username, ref.password) == ("re@der", "a@evil.example/x#?:")
    assert "evil" not in ref.shown

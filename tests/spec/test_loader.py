"""The incident file: loading into dataclasses, and one precise error per mistake."""

from __future__ import annotations

import pickle
import re
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from pytest_incident.model.endpoints import LoopbackEndpoint
from pytest_incident.model.errors import IncidentFileError
from pytest_incident.model.normalizers import BUILTIN_NORMALIZERS, PatternNormalizer
from pytest_incident.model.spans import parse_timestamp
from pytest_incident.model.spec import (
    RESOLVED_DEFAULT,
    DatabaseSpec,
    DatabaseState,
    Expect,
    IncidentSpec,
    OutboundMode,
    SandboxSpec,
    Select,
    SourceRef,
    StatusCondition,
    Target,
    UnmatchedMode,
    Window,
)
from pytest_incident.spec import file_error, load_incident, parse_duration

START = "2024-05-14T14:00:00Z"
END = "2024-05-14T14:30:00Z"
MINIMAL = f"""\
window: {START} .. {END}
source: x.jsonl
target: {{wsgi: "examples.signup.app:app"}}
"""


def write(tmp_path: Path, text: str, name: str = "incident.yaml") -> Path:
    (tmp_path / "x.jsonl").write_text("")
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, environ: Mapping[str, str] | None = None) -> IncidentSpec:
    return load_incident(write(tmp_path, text), environ or {})


def error(tmp_path: Path, text: str, environ: Mapping[str, str] | None = None) -> IncidentFileError:
    with pytest.raises(IncidentFileError) as info:
        load(tmp_path, text, environ)
    return info.value


# --- valid files -------------------------------------------------------------------------------


def test_full_file_loads_into_dataclasses(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "2024-05-signup.events.jsonl.gz").write_bytes(b"")
    (tmp_path / "app").mkdir()
    spec = load(
        tmp_path,
        f"""\
        incident: 2024-05-signup
        title: Stripe timeouts broke signup
        window: {START} .. {END}
        source: ${{DATA}}/2024-05-signup.events.jsonl.gz
        select:
          service: signup
          routes: ["POST /signup", "get /users/*"]
          status: ">=500"
          requests: [550E8400, 12345678]
        target:
          command: gunicorn -b "127.0.0.1:{{port}}" app:app
          env: {{DATABASE_URL: "postgresql://localhost/signup", WORKERS: 2, LEVEL: 1.10}}
          cwd: app
          ready_timeout: 500ms
          request_timeout: 2m
        sandbox:
          outbound: block
          allow: ["localhost:5432", "[::1]:6380"]
          unmatched: block
        expect:
          status: "<500"
          resolved: true
        usefixtures: [signup_db]
        """,
        {"DATA": "data"},
    )
    assert spec.path == tmp_path / "incident.yaml"
    assert spec.name == "2024-05-signup"
    assert spec.title == "Stripe timeouts broke signup"
    assert spec.window == Window(parse_timestamp(START), parse_timestamp(END))
    assert spec.source == SourceRef(
        "file",
        str(tmp_path / "data" / "2024-05-signup.events.jsonl.gz"),
        "data/2024-05-signup.events.jsonl.gz",
        4,
    )
    assert spec.select == Select(
        service="signup",
        routes=("POST /signup", "GET /users/*"),
        status=StatusCondition(">=", 500, ">=500"),
        requests=("550e8400", "12345678"),
    )
    assert spec.target == Target(
        wsgi=None,
        command=("gunicorn", "-b", "127.0.0.1:{port}", "app:app"),
        env={"DATABASE_URL": "postgresql://localhost/signup", "WORKERS": "2", "LEVEL": "1.10"},
        cwd=tmp_path / "app",
        ready_timeout_s=0.5,
        request_timeout_s=120.0,
    )
    assert spec.sandbox == SandboxSpec(
        outbound=OutboundMode.BLOCK,
        allow=(LoopbackEndpoint.parse("localhost:5432"), LoopbackEndpoint.parse("[::1]:6380")),
        unmatched=UnmatchedMode.BLOCK,
    )
    assert spec.expect == Expect(
        status=StatusCondition("<", 500, "<500"), resolved=RESOLVED_DEFAULT
    )
    assert spec.usefixtures == ("signup_db",)
    assert spec.line == 1
    assert spec.lines["select.routes"] == 7
    assert spec.lines["select.routes[1]"] == 7
    assert spec.lines["expect.status"] == 21
    assert spec.lines["target.command"] == 11


def test_minimal_file_gets_the_defaults(tmp_path: Path) -> None:
    spec = load_incident(write(tmp_path, MINIMAL, name="2024-05-outage.yml"), {})
    assert spec.name == "2024-05-outage"
    assert spec.title == ""
    assert spec.select == Select()
    assert spec.target == Target(wsgi="examples.signup.app:app", command=None, env={}, cwd=None)
    assert spec.target.ready_timeout_s == 30.0
    assert spec.sandbox == SandboxSpec(OutboundMode.STUB, (), UnmatchedMode.ERROR)
    assert spec.expect == Expect(status=None, resolved=None)
    assert spec.usefixtures == ()
    assert spec.database == DatabaseSpec(DatabaseState.REQUEST, before=None)
    assert not spec.database.window


def test_spec_is_frozen(tmp_path: Path) -> None:
    spec = load(tmp_path, MINIMAL)
    with pytest.raises(AttributeError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.target.env["X"] = "1"  # type: ignore[index]


def test_command_as_list_stringifies_numbers_as_written(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        f"""\
        window: {START} .. {END}
        source: x.jsonl
        target: {{command: [python, -m, http.server, "{{port}}", --timeout, 010]}}
        """,
    )
    assert spec.target.command == ("python", "-m", "http.server", "{port}", "--timeout", "010")


def test_env_expansion_and_escape(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        MINIMAL + 'title: "${WHO} broke it, costs $${PRICE}"\n',
        {"WHO": "Stripe"},
    )
    assert spec.title == "Stripe broke it, costs ${PRICE}"


def test_anchors_and_merge_keys(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        MINIMAL
        + textwrap.dedent(
            """\
            select: {status: &failing 5xx}
            expect: {status: *failing}
            sandbox:
              <<: {outbound: block, unmatched: block}
              outbound: stub
            """
        ),
    )
    assert spec.select.status == spec.expect.status == StatusCondition("class", 5, "5xx")
    # a key given by `<<` may be overridden; that is not a duplicate key
    assert spec.sandbox == SandboxSpec(OutboundMode.STUB, (), UnmatchedMode.BLOCK)


# --- errors: structure (schema) ----------------------------------------------------------------


def test_bad_enum_message_and_excerpt(tmp_path: Path) -> None:
    err = error(
        tmp_path,
        f"""\
        incident: bad
        window: {START} .. {END}
        source: x.jsonl
        target: {{wsgi: "a.b:app"}}
        sandbox:
          allow: ["localhost:5432"]
          outbound: stubb
        """,
    )
    assert err.line == 7
    assert str(err) == (
        f"{tmp_path / 'incident.yaml'}:7: sandbox.outbound: 'stubb' is not allowed;"
        " allowed: stub, block\n"
        "     5 | sandbox:\n"
        '     6 |   allow: ["localhost:5432"]\n'
        "  >  7 |   outbound: stubb"
    )


def test_unknown_top_level_key_names_the_allowed_ones(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL + "tagret: {wsgi: 'a:b'}\n")
    assert err.line == 4
    assert err.message == (
        "unknown key 'tagret'; allowed: incident, title, window, source, select, target,"
        " sandbox, expect, database, usefixtures"
    )
    assert "  >  4 | tagret:" in str(err)


def test_unknown_nested_key(tmp_path: Path) -> None:
    err = error(
        tmp_path,
        f"""\
        window: {START} .. {END}
        source: x.jsonl
        target:
          wsgi: a:app
          ready_timeot: 5s
        """,
    )
    assert err.line == 5
    assert err.message.startswith(
        "target: unknown key 'ready_timeot'; allowed: wsgi, asgi, command, server, python, env,"
    )


@pytest.mark.parametrize(
    ("extra", "line", "message"),
    [
        ("select: [signup]\n", 4, "select: expected a mapping, got a list"),
        ("title: {a: 1}\n", 4, "title: expected a string, got a mapping"),
        (
            "expect: {resolved: [yes]}\n",
            4,
            "expect.resolved: expected a boolean (true/false), a string or an integer, got a list",
        ),
        (
            "sandbox:\n  allow: 5432\n",
            5,
            "sandbox.allow: expected a string or a list, got an integer (5432)",
        ),
        ("usefixtures: [db, 3]\n", 4, "usefixtures[1]: expected a string, got an integer (3)"),
    ],
)
def test_wrong_type(tmp_path: Path, extra: str, line: int, message: str) -> None:
    err = error(tmp_path, MINIMAL + extra)
    assert (err.line, err.message) == (line, message)


def test_wrong_type_lists_every_allowed_type(tmp_path: Path) -> None:
    err = error(
        tmp_path,
        f"window: {START} .. {END}\nsource: x.jsonl\ntarget:\n  wsgi: a:b\n  env: {{A: null}}\n",
    )
    assert err.line == 5
    assert err.message == (
        "target.env.A: expected a string, a number or a boolean (true/false), got nothing (null)"
    )


def test_wrong_type_on_a_block_marks_every_line(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL + "title:\n  - one\n  - two\n\n# trailing comment\n")
    assert (err.line, err.end_line) == (5, 6)
    assert str(err).splitlines()[1:] == [
        '     3 | target: {wsgi: "examples.signup.app:app"}',
        "     4 | title:",
        "  >  5 |   - one",
        "  >  6 |   - two",
    ]


def test_missing_required_key_points_at_the_mapping(tmp_path: Path) -> None:
    err = error(tmp_path, "# header\nsource: x.jsonl\ntarget: {wsgi: 'a:app'}\n")
    assert (err.line, err.message) == (2, "missing required key 'window'")


def test_first_error_by_line_wins(tmp_path: Path) -> None:
    err = error(
        tmp_path,
        f"""\
        window: {START} .. {END}
        source: x.jsonl
        target: {{wsgi: "a:app"}}
        sandbox: {{outbound: nope}}
        tilte: x
        """,
    )
    assert err.line == 4
    assert "'nope' is not allowed" in err.message


def test_first_semantic_error_by_line_wins(tmp_path: Path) -> None:
    err = error(
        tmp_path,
        f"""\
        usefixtures: [not-a-fixture]
        window: {END} .. {START}
        source: x.jsonl
        target: {{wsgi: "a:app"}}
        """,
    )
    assert err.line == 1
    assert err.message == "usefixtures[0]: 'not-a-fixture' is not a fixture name"


# --- errors: semantics -------------------------------------------------------------------------


def test_both_wsgi_and_command(tmp_path: Path) -> None:
    err = error(
        tmp_path,
        f"""\
        window: {START} .. {END}
        source: x.jsonl
        target:
          wsgi: a:app
          command: run --port {{port}}
        """,
    )
    assert err.line == 5
    assert err.message == "target needs exactly one of: wsgi, asgi, command; got wsgi and command"


def test_neither_wsgi_nor_command(tmp_path: Path) -> None:
    err = error(
        tmp_path,
        f"""\
        window: {START} .. {END}
        source: x.jsonl
        target:
          env: {{A: b}}
        """,
    )
    assert err.line == 4
    assert err.message == "target needs exactly one of: wsgi, asgi, command; got none"


def test_command_without_port(tmp_path: Path) -> None:
    err = error(
        tmp_path,
        f"window: {START} .. {END}\nsource: x.jsonl\ntarget: {{command: gunicorn app:app}}\n",
    )
    assert err.line == 3
    assert err.message.startswith("target.command: must contain {port}")


def test_bad_wsgi_reference(tmp_path: Path) -> None:
    err = error(tmp_path, f"window: {START} .. {END}\nsource: x.jsonl\ntarget: {{wsgi: app}}\n")
    assert (err.line, err.message) == (3, "target.wsgi: 'app' is not 'package.module:attribute'")


def test_window_end_before_start(tmp_path: Path) -> None:
    err = error(tmp_path, f"source: x.jsonl\nwindow: {END} .. {START}\ntarget: {{wsgi: 'a:b'}}\n")
    assert err.line == 2
    assert err.message == f"window: the end {START} is not after the start {END}"


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        (START, "expected 'START .. END' in UTC"),
        (f"{START} .. yesterday", "'yesterday' is not a UTC timestamp"),
    ],
)
def test_window_format(tmp_path: Path, window: str, expected: str) -> None:
    err = error(tmp_path, f"source: x.jsonl\ntarget: {{wsgi: 'a:b'}}\nwindow: {window}\n")
    assert err.line == 3
    assert expected in err.message


@pytest.mark.parametrize("where", ["select", "expect"])
def test_bad_status_condition(tmp_path: Path, where: str) -> None:
    err = error(tmp_path, MINIMAL + f"{where}:\n  status: '=>500'\n")
    assert err.line == 5
    assert err.message.startswith(f"{where}.status: '=>500' is not a status condition; allowed:")
    assert "5xx" in err.message


def test_routes_take_the_documented_forms(tmp_path: Path) -> None:
    """README: "METHOD /path" or "/path" (any method); fnmatch * in the path."""
    path = tmp_path / "x.yaml"
    path.write_text(MINIMAL + 'select: {routes: ["/signup", "post /signup", "GET /users/*"]}\n')
    spec = load_incident(path, {})
    assert spec.select.routes == ("/signup", "POST /signup", "GET /users/*")


def test_bad_route_and_request_prefix(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL + "select:\n  routes:\n    - /ok\n    - signup\n")
    assert err.line == 7
    assert err.message.startswith("select.routes[1]: 'signup' is not a route; expected")
    assert "'/path' for any method" in err.message
    for bad in ("POST", "POST signup", "/a b", "POST  /a /b"):
        err = error(tmp_path, MINIMAL + f"select: {{routes: ['{bad}']}}\n")
        assert err.message.startswith(f"select.routes[0]: {bad!r} is not a route"), bad
    err = error(tmp_path, MINIMAL + "select: {requests: [abc]}\n")
    assert err.line == 4
    assert err.message.startswith("select.requests[0]: 'abc' is not a trace id prefix")


@pytest.mark.parametrize("allow", ["localhost", "localhost:0", "localhost:70000", "[nope]:80"])
def test_bad_allow_destination(tmp_path: Path, allow: str) -> None:
    err = error(tmp_path, MINIMAL + f"sandbox:\n  allow: ['{allow}']\n")
    assert err.line == 5
    assert err.message.startswith("sandbox.allow[0]: ")
    assert "host:port" in err.message


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        ("true", RESOLVED_DEFAULT),
        ("false", None),
        ("'2xx,409,422'", StatusCondition.parse("2xx,409,422")),
        ("'!=500'", StatusCondition.parse("!=500")),
        ("409", StatusCondition.parse(409)),
    ],
)
def test_expect_resolved_is_a_flag_or_a_status_condition(
    tmp_path: Path, given: str, resolved: StatusCondition | None
) -> None:
    spec = load(tmp_path, MINIMAL + f"expect: {{resolved: {given}}}\n")
    assert spec.expect.resolved == resolved


def test_a_bad_resolved_condition_says_what_is_allowed(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL + "expect:\n  resolved: 'yes'\n")
    assert err.line == 5
    assert err.message.startswith("expect.resolved: 'yes' is not a status condition; allowed:")
    assert "2xx,409,422" in err.message


# --- database: state across requests ----------------------------------------------------------


def test_database_window_state_with_its_before_fixture(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        MINIMAL + "database: {state: window, before: webhooks_db}\nusefixtures: [other]\n",
    )
    assert spec.database == DatabaseSpec(DatabaseState.WINDOW, before="webhooks_db")
    assert spec.database.window
    assert spec.usefixtures == ("other",)
    assert load(tmp_path, MINIMAL + "database: {state: request}\n").database == DatabaseSpec()


@pytest.mark.parametrize(
    ("database", "line", "message"),
    [
        (
            "database:\n  state: windows\n",
            5,
            "database.state: 'windows' is not allowed; allowed: request, window",
        ),
        (
            "database:\n  state: window\n",
            5,
            "database.state: window needs database.before, the fixture (from "
            "conftest.py, like usefixtures) that puts the database in its state before the "
            "window; the first item of the incident that runs requests it, once",
        ),
        (
            "database:\n  before: signup_db\n",
            5,
            "database.before: before is only for state: window (add state: window); with "
            "state: request name the fixture that restores the database in usefixtures, which "
            "requests it before every request",
        ),
        (
            "database:\n  state: request\n  before: signup_db\n",
            6,
            "database.before: before is only for state: window (add state: window); with "
            "state: request name the fixture that restores the database in usefixtures, which "
            "requests it before every request",
        ),
        (
            "database:\n  state: window\n  before: signup-db\n",
            6,
            "database.before: 'signup-db' is not a fixture name",
        ),
        (
            "database:\n  state: window\n  before: [signup_db]\n",
            6,
            "database.before: expected a string, got a list",
        ),
        (
            "database:\n  state: window\n  begin: signup_db\n",
            6,
            "database: unknown key 'begin'; allowed: state, before",
        ),
        (
            "database: {state: window, before: signup_db}\nusefixtures: [env, signup_db]\n",
            4,
            "database.before: 'signup_db' is also in usefixtures, which requests it before "
            "every request and so restores the database each time; with state: window name it "
            "here only",
        ),
    ],
)
def test_database_mistakes_say_what_is_allowed(
    tmp_path: Path, database: str, line: int, message: str
) -> None:
    err = error(tmp_path, MINIMAL + database)
    assert (err.line, err.message) == (line, message)


def test_header_normalizers_in_sandbox_normalize(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        MINIMAL + "sandbox:\n  normalize:\n    - {header: Idempotency-Key}\n"
        "    - {header: X-Request-Id, pattern: 'req_[0-9a-f]+', replace: req}\n"
        "    - {field: metadata.id}\n",
    )
    whole, partial = spec.sandbox.normalize_headers
    assert whole.normalize_header("idempotency-key", "k-1") == "<normalized>"
    assert partial.normalize_header("x-request-id", "req_9f and more") == "req and more"
    assert len(spec.sandbox.normalize) == 1  # the body normalizer


def test_a_normalizer_with_header_and_field_is_an_error(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL + "sandbox:\n  normalize:\n    - {header: a, field: b}\n")
    assert err.line == 6
    assert "a header normalizer takes header and, optionally, pattern" in err.message


def test_unix_socket_files_in_allow(tmp_path: Path) -> None:
    spec = load(
        tmp_path,
        MINIMAL + "sandbox:\n  allow: [localhost:5432, unix:/run/postgresql/.s.PGSQL.5432]\n",
    )
    assert spec.sandbox.allow_unix == ("/run/postgresql/.s.PGSQL.5432",)
    assert [e.text for e in spec.sandbox.allow] == ["localhost:5432"]


@pytest.mark.parametrize(
    ("entry", "wrong"),
    [
        ("unix:run/app.sock", "an absolute path"),
        ("unix:/" + "x" * 200, "a path of at most 107 bytes"),
    ],
)
def test_bad_unix_socket_file_in_allow(tmp_path: Path, entry: str, wrong: str) -> None:
    err = error(tmp_path, MINIMAL + f"sandbox:\n  allow:\n    - localhost:5432\n    - {entry}\n")
    assert err.line == 7
    assert err.message.startswith(f"sandbox.allow[1]: {entry!r}: a unix: entry is {wrong}")
    assert "unix:/run/app.sock" in err.message  # what is allowed


def test_a_bad_destination_says_a_socket_file_is_allowed_too(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL + "sandbox:\n  allow: [postgres]\n")
    assert "or 'unix:/path' for a socket file" in err.message


def test_bad_incident_name_and_duration(tmp_path: Path) -> None:
    err = error(tmp_path, "incident: -bad name\n" + MINIMAL)
    assert err.line == 1
    assert err.message.startswith("incident: '-bad name' is not a valid name")
    err = error(
        tmp_path,
        f"window: {START} .. {END}\nsource: x.jsonl\n"
        "target:\n  wsgi: a:b\n  ready_timeout: 5 sec\n",
    )
    assert err.line == 5
    assert err.message.startswith("target.ready_timeout: not a duration: '5 sec'")


def test_unset_environment_variable(tmp_path: Path) -> None:
    err = error(tmp_path, f"window: {START} .. {END}\nsource: ${{EVENTS}}\ntarget: {{wsgi: a:b}}\n")
    assert (err.line, err.message) == (2, "source: environment variable EVENTS is not set")
    assert "  >  2 | source: ${EVENTS}" in str(err)


@pytest.mark.parametrize(
    ("source", "scheme", "location"),
    [
        ("clickhouse://host:8123/db", "clickhouse", "clickhouse://host:8123/db"),
        ("CHDB:///var/lib/chdb", "chdb", "CHDB:///var/lib/chdb"),
        ("gone.jsonl", "file", "{tmp}/gone.jsonl"),
    ],
)
def test_source_is_a_reference_resolved_later(
    tmp_path: Path, source: str, scheme: str, location: str
) -> None:
    """Which source reads it, and whether it can, is the event-source registry's to say."""
    spec = load(tmp_path, f"window: {START} .. {END}\nsource: {source}\ntarget: {{wsgi: a:b}}\n")
    assert spec.source == SourceRef(scheme, location.format(tmp=tmp_path), source, 2)


def test_empty_source_is_an_error(tmp_path: Path) -> None:
    err = error(tmp_path, f"window: {START} .. {END}\nsource: ' '\ntarget: {{wsgi: a:b}}\n")
    assert err.line == 2
    assert err.message == "source: expected a frozen events file or a scheme://location"


@pytest.mark.parametrize(
    ("extra", "line", "name"),
    [
        ("injections:\n  - {fail: connect, host: api.stripe.com}\n", 4, "injections"),
        ("repeat: {count: 10}\n", 4, "repeat"),
        ("target2: 1\n", 4, None),
    ],
)
def test_keys_not_supported_yet(tmp_path: Path, extra: str, line: int, name: str | None) -> None:
    err = error(tmp_path, MINIMAL + extra)
    assert err.line == line
    if name is None:  # an ordinary typo stays an unknown key
        assert err.message.startswith("unknown key 'target2'")
    else:
        assert err.message == f"{name}: not supported yet by pytest-incident 0.1"


# --- errors: YAML itself -----------------------------------------------------------------------


def test_duplicate_key_reported_at_the_second(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL + "sandbox:\n  outbound: stub\n  outbound: block\n")
    assert err.line == 6
    assert err.message == "sandbox: duplicate key 'outbound' (first defined on line 5)"
    err = error(tmp_path, "source: a.jsonl\n" + MINIMAL)
    assert (err.line, err.message) == (3, "duplicate key 'source' (first defined on line 1)")


def test_yaml_syntax_error(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL + "select: {service: signup\nexpect: {}\n")
    assert err.line == 5
    assert err.message.startswith("invalid YAML: ")
    assert "  >  5 | expect: {}" in str(err)
    err = error(tmp_path, "window: a\n  source: b: c\n")
    assert err.line == 2


@pytest.mark.parametrize(
    ("text", "line", "got"), [("- a\n- b\n", 1, "a list"), ("\n\njust text\n", 3, "a string")]
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, line: int, got: str) -> None:
    err = error(tmp_path, text)
    assert err.line == line
    assert err.message.startswith("the top level must be a mapping")
    assert f"got {got}" in err.message


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    err = error(tmp_path, text)
    assert err.line == 1
    assert err.message.startswith("the file is empty")


def test_unreadable_file_is_an_incident_error(tmp_path: Path) -> None:
    with pytest.raises(IncidentFileError) as info:
        load_incident(tmp_path / "missing.yaml", {})
    assert info.value.line == 1
    assert str(info.value).startswith(f"{tmp_path / 'missing.yaml'}:1: cannot read the file")


def test_error_survives_pickling(tmp_path: Path) -> None:
    err = error(tmp_path, MINIMAL + "sandbox: {outbound: nope}\n")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err)
    assert (again.line, again.message) == (err.line, err.message)


def test_error_built_elsewhere_reads_the_excerpt(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    err = file_error(path, 2, "source: something else is wrong")
    assert str(err).splitlines() == [
        f"{path}:2: source: something else is wrong",
        f"     1 | window: {START} .. {END}",
        "  >  2 | source: x.jsonl",
    ]


# --- StatusCondition, Window, parse_duration ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "value", "yes", "no"),
    [
        ("<500", "<", 500, [200, 499], [500, 503]),
        ("<=499", "<=", 499, [200, 499], [500]),
        (">200", ">", 200, [201, 500], [200, 199]),
        (">=500", ">=", 500, [500, 599], [499]),
        ("==200", "==", 200, [200], [201]),
        ("!=500", "!=", 500, [200, 501], [500]),
        ("500", "==", 500, [500], [501]),
        (" >= 500 ", ">=", 500, [500], [499]),
        ("5xx", "class", 5, [500, 599], [499, 600]),
        ("2XX", "class", 2, [200, 204], [300]),
        (404, "==", 404, [404], [400]),
    ],
)
def test_status_condition(
    text: str | int, op: str, value: int, yes: list[int], no: list[int]
) -> None:
    cond = StatusCondition.parse(text)
    assert (cond.op, cond.value) == (op, value)
    assert str(cond) == str(text).strip()
    assert all(cond.matches(s) for s in yes)
    assert not any(cond.matches(s) for s in no)


@pytest.mark.parametrize("text", ["=>500", "50", "600", "<99", "6xx", "5x", "", "ok", True])
def test_status_condition_rejects(text: str | int) -> None:
    with pytest.raises(ValueError, match=r"allowed: 500, ==500.*5xx"):
        StatusCondition.parse(text)


def test_window_contains_is_half_open() -> None:
    window = Window(10, 20)
    assert window.contains(10)
    assert window.contains(19)
    assert not window.contains(20)
    assert not window.contains(9)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("200us", 200e-6),
        ("200µs", 200e-6),
        ("2ms", 0.002),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
        ("500ns", 500e-9),
        ("30", 30.0),
        (" 2 s ", 2.0),
        (3, 3.0),
        (0.25, 0.25),
    ],
)
def test_parse_duration(text: str | int | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5 sec", "1d", "-1s", "1.5.2s", "10 20", -1, True])
def test_parse_duration_rejects(text: str | int | float) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


# --- side effects and matching (sandbox.email/jobs/queues/scheduled/match_on/normalize) ------


def test_side_effect_defaults(tmp_path: Path) -> None:
    sandbox = load(tmp_path, MINIMAL).sandbox
    assert sandbox.email.value == "stub"
    assert sandbox.jobs.value == "record"
    assert [q.text for q in sandbox.queues] == ["localhost:6379"]
    assert sandbox.queues[0].addresses == {("127.0.0.1", 6379), ("::1", 6379)}
    assert sandbox.scheduled.value == "hold"
    assert sandbox.match_on == ("method", "scheme", "host", "port", "path", "query")
    assert sandbox.normalize == ()


def test_side_effect_keys_load(tmp_path: Path) -> None:
    sandbox = load(
        tmp_path,
        MINIMAL
        + """\
sandbox:
  email: block
  jobs: record
  queues: ["127.0.0.1:6380", "localhost:6379"]
  scheduled: run
  match_on: [method, host, path, body, "header:Idempotency-Key"]
  normalize:
    - {field: metadata.request_id}
    - {pattern: "\\\\d{13}", replace: "<ms>"}
""",
    ).sandbox
    assert (sandbox.email.value, sandbox.jobs.value, sandbox.scheduled.value) == (
        "block",
        "record",
        "run",
    )
    assert [q.text for q in sandbox.queues] == ["127.0.0.1:6380", "localhost:6379"]
    assert sandbox.match_on == ("method", "host", "path", "body", "header:idempotency-key")
    field, pattern = sandbox.normalize
    assert field.path == "metadata.request_id"  # type: ignore[union-attr]
    assert pattern.pattern.pattern == "\\d{13}"  # type: ignore[union-attr]
    assert pattern.replacement == "<ms>"


def test_an_allowed_default_queue_is_an_error_not_a_live_redis(tmp_path: Path) -> None:
    problem = error(tmp_path, MINIMAL + 'sandbox: {allow: ["127.0.0.1:6379"]}\n')
    assert problem.line == 4
    assert "is the default job queue" in problem.message
    assert "set sandbox.queues" in problem.message


def test_allowing_the_default_queue_with_jobs_blocked_is_fine(tmp_path: Path) -> None:
    spec = load(tmp_path, MINIMAL + 'sandbox: {allow: ["localhost:6379"], jobs: block}\n')
    assert [a.text for a in spec.sandbox.allow] == ["localhost:6379"]
    assert spec.sandbox.queues == ()


def test_jobs_block_serves_no_queue(tmp_path: Path) -> None:
    assert load(tmp_path, MINIMAL + "sandbox: {jobs: block}\n").sandbox.queues == ()


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("sandbox:\n  match_on: [method, bodyy]\n", 5,
         "sandbox.match_on[1]: 'bodyy' is not a part of a call; allowed: method, scheme, host, "
         "port, path, query, body, header:<name>"),
        ("sandbox:\n  normalize:\n    - {field: a, pattern: b}\n", 6,
         "sandbox.normalize[0]: a normalizer needs exactly one of: field"),
        ("sandbox:\n  normalize:\n    - {pattern: '(unclosed'}\n", 6,
         "sandbox.normalize[0].pattern: not a regular expression"),
        ("sandbox:\n  email: smtp\n", 5,
         "sandbox.email: 'smtp' is not allowed; allowed: stub, block"),
        ("sandbox:\n  allow: [localhost:6379]\n  queues: ['127.0.0.1:6379']\n", 5,
         "sandbox.allow[0]: 'localhost:6379' is also in sandbox.queues"),
        ("sandbox:\n  queues: [redis.internal:6379]\n", 5,
         "sandbox.queues[0]: 'redis.internal:6379': only localhost or a numeric loopback"),
        ("sandbox:\n  allow: ['198.51.100.3:5432']\n", 5,
         "sandbox.allow[0]: '198.51.100.3:5432' is not a loopback address"),
        ("sandbox:\n  match_on: []\n", 5, "sandbox.match_on: an empty match_on"),
        ("sandbox:\n  match_on: [path, path]\n", 5, "sandbox.match_on[1]: 'path' is listed twice"),
        ("sandbox:\n  match_on: ['header: Idempotency-Key']\n", 5,
         "sandbox.match_on[0]: 'header: Idempotency-Key' is not a part of a call"),
    ],
)  # fmt: skip
def test_side_effect_mistakes_point_at_their_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    problem = error(tmp_path, MINIMAL + body)
    assert problem.line == line
    assert problem.message.startswith(message)


def test_env_default_when_the_variable_is_unset(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        'target: {wsgi: "examples.signup.app:app"}',
        'target: {wsgi: "examples.signup.app:app", env: {DB: "signup${WORKER:-}-${X:-x}"}}',
    )
    assert load(tmp_path, text, {}).target.env["DB"] == "signup-x"
    assert load(tmp_path, text, {"WORKER": "gw1", "X": "y"}).target.env["DB"] == "signupgw1-y"


def test_expect_normalize_defaults_and_rules(tmp_path: Path) -> None:
    builtins = (BUILTIN_NORMALIZERS["uuids"], BUILTIN_NORMALIZERS["timestamps"])
    assert load(tmp_path, MINIMAL).expect.normalize == builtins
    expect = load(
        tmp_path,
        MINIMAL + "expect:\n  normalize: [timestamps, {pattern: 'acct_\\w+', replace: '<acct>'}]\n",
    ).expect
    builtin, rule = expect.normalize
    assert builtin == BUILTIN_NORMALIZERS["timestamps"]
    assert rule == PatternNormalizer(re.compile("acct_\\w+"), "<acct>")


def test_expect_normalize_mistakes(tmp_path: Path) -> None:
    problem = error(tmp_path, MINIMAL + "expect:\n  normalize: [{pattern: '(unclosed'}]\n")
    assert problem.line == 5
    assert problem.message.startswith("expect.normalize[0].pattern: not a regular expression")
    problem = error(tmp_path, MINIMAL + "expect:\n  normalize: [serials]\n")
    assert problem.line == 5


def test_target_pass_env_names_variables(tmp_path: Path) -> None:
    path = tmp_path / "i.yaml"
    path.write_text(MINIMAL.replace("target: {", "target: {pass_env: [PGPASSWORD, HOME], "))
    assert load_incident(path, {}).target.pass_env == ("PGPASSWORD", "HOME")
    path.write_text(MINIMAL.replace("target: {", "target: {pass_env: ['A=B'], "))
    with pytest.raises(IncidentFileError, match=r":3: target.pass_env\[0\]: 'A=B' is not an "):
        load_incident(path, {})

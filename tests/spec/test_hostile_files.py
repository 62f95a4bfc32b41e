"""Hostile incident files: every one ends in `file:line: message` (an IncidentFileError) or a
valid spec, never another exception, a hang or a read of something that is not a file."""

from __future__ import annotations

import os
import re
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_incident.model.errors import IncidentFileError
from pytest_incident.model.spec import IncidentSpec
from pytest_incident.spec import load_incident
from pytest_incident.spec.document import MAX_FILE_BYTES, MAX_LINE_CHARS
from pytest_incident.spec.yaml_loader import MAX_DEPTH, MAX_VALUES, load_yaml

HEAD = """\
window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z
source: x.jsonl
"""
TARGET = 'target: {wsgi: "examples.signup.app:app"}\n'

# every section, every key: what the mutations start from (it loads as it is)
VALID = f"""\
incident: fuzz-1
title: a valid incident
window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z
source: x.events.jsonl
select: {{service: signup, routes: ["POST /signup"], status: ">=500", requests: [abcd1234]}}
target:
  command: ["{{python}}", -m, app, --port, "{{port}}"]
  python: {sys.executable}
  env: {{A: "1", B: 2}}
  pass_env: [PGPASSWORD]
  cwd: .
  ready_timeout: 30s
  request_timeout: 2
sandbox:
  outbound: stub
  allow: ["localhost:5432", "unix:/run/x.sock"]
  unmatched: error
  email: stub
  jobs: record
  queues: ["localhost:6379"]
  scheduled: hold
  match_on: [method, host, path]
  normalize: [{{field: a.b}}, {{pattern: "[0-9]+", replace: N}}, {{header: X-Id}}]
expect:
  status: "<500"
  resolved: true
  response: {{match: [status, body], ignore: ["header:date"]}}
  mutations: ignore
  normalize: [uuids, {{pattern: x}}]
database: {{state: window, before: db_fixture}}
usefixtures: [signup_db]
"""


def load_text(directory: Path, data: bytes | str) -> IncidentSpec:
    path = directory / "incident.yaml"
    path.write_bytes(data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data)
    return load_incident(path, {"HOME": "/root"})


def clean_error(directory: Path, data: bytes | str) -> IncidentFileError:
    with pytest.raises(IncidentFileError) as info:
        load_text(directory, data)
    return info.value


def assert_clean(directory: Path, data: bytes | str) -> None:
    """A valid spec, or `file:line: message`: any other exception fails the test."""
    try:
        load_text(directory, data)
    except IncidentFileError as exc:
        text = str(exc)
        assert re.match(rf"{re.escape(str(directory / 'incident.yaml'))}:[1-9][0-9]*: \S", text)
        assert exc.line >= 1


@pytest.fixture(scope="module")
def fuzz_dir() -> Iterator[Path]:
    """One directory for every example (hypothesis runs them in one test call)."""
    with tempfile.TemporaryDirectory(prefix="incident-fuzz-") as name:
        yield Path(name)


def test_the_valid_incident_loads(tmp_path: Path) -> None:
    spec = load_text(tmp_path, VALID)
    assert spec.name == "fuzz-1"


# --- the fuzz run's findings, one by one ---------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        ("title: !!int abc\n", 4, "invalid value 'abc': not an integer"),
        ("title: !!float x\n", 4, "invalid value 'x': not a number"),
        ("title: !!bool x\n", 4, "invalid value 'x': not a boolean (true/false, yes/no, on/off)"),
        ('title: "\\UFFFFFFFF"\n', 4, "invalid YAML: an escape past \\U0010FFFF"),
        ('title: "\\U00110000"\n', 4, "invalid YAML: an escape past \\U0010FFFF"),
        ('title: "\\uD800"\n', 4, "a \\uD800-\\uDFFF escape on its own is half"),
        ('"\\uDC00": 1\n', 4, "a \\uD800-\\uDFFF escape on its own is half"),
        ("title: " + "9" * 5000 + "\n", 4, "not an integer (decimal digits, at most 4300"),
        ("title: " + "[" * 3000 + "]" * 3000 + "\n", 4, f"nested deeper than {MAX_DEPTH}"),
        (
            "".join("  " * i + f"k{i}:\n" for i in range(MAX_DEPTH + 10)),
            4 + MAX_DEPTH,
            f"nested deeper than {MAX_DEPTH}",
        ),
        ('sandbox: {allow: ["localhost:²"]}\n', 4, "the port must be a number from 1 to 65535"),
        ('sandbox: {allow: ["localhost:५४३२"]}\n', 4, "the port must be a number from 1 to"),
        ('sandbox: {queues: ["[::1]:٦٣٧٩"]}\n', 4, "the port must be a number from 1 to 65535"),
        ('expect: {status: "<५००"}\n', 4, "'<५००' is not a status condition"),
        ("title: x\n" + "y: " + "a" * (MAX_LINE_CHARS + 1) + "\n", 5, "the line is longer than"),
    ],
    ids=lambda value: value[:30] if isinstance(value, str) else str(value),
)
def test_odd_yaml_values_are_errors_at_their_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    error = clean_error(tmp_path, HEAD + TARGET + body)
    assert error.line == line
    assert message in error.message


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ('{wsgi: "a.b:c", cwd: "' + "a" * 300 + '"}', "File name too long"),
        ('{wsgi: "a.b:c", cwd: "' + "a/" * 2100 + '"}', "File name too long"),
        ('{wsgi: "a.b:c", cwd: "a\\0b"}', "contains a NUL character"),
        ('{wsgi: "a.b:c", python: "' + "p" * 300 + '"}', "File name too long"),
        ('{wsgi: "a.b:c", python: "~\\0"}', "contains a NUL character"),
        ('{wsgi: "a.b:c", env: {A: "x\\0y"}}', "target.env.A: contains a NUL character"),
        ('{command: ["serve\\0", "{port}"]}', "target.command[0]: contains a NUL character"),
        ('{command: "serve\\0 {port}"}', "target.command: contains a NUL character"),
        ('{wsgi: "a.b:c", ready_timeout: "' + "9" * 400 + 's"}', "at most 604800s"),
        ('{wsgi: "a.b:c", ready_timeout: ' + "9" * 400 + "}", "at most 604800s"),
        ('{wsgi: "a.b:c", request_timeout: "५s"}', "not a duration"),
        ('{wsgi: "a²:app"}', "is not 'package.module:attribute'"),
    ],
    ids=lambda value: value[:40],
)
def test_paths_commands_and_values_the_kernel_would_refuse_are_errors_at_their_line(
    tmp_path: Path, target: str, message: str
) -> None:
    error = clean_error(tmp_path, HEAD + f"target: {target}\n")
    assert error.line == 3
    assert message in error.message


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("a" * 300 + ".jsonl", "a part of the path is longer than 255 bytes"),
        ("a/" * 2100 + "x.jsonl", "the path is longer than 4095 bytes"),
        ('"x\\0.jsonl"', "the path contains a NUL character (\\0)"),
    ],
    ids=["long name", "long path", "NUL"],
)
def test_a_source_path_no_file_can_have_is_an_error_at_its_line(
    tmp_path: Path, source: str, message: str
) -> None:
    error = clean_error(
        tmp_path,
        f"window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\nsource: {source}\n{TARGET}",
    )
    assert error.line == 2
    assert error.message == f"source: {message}"


def test_a_timestamp_in_other_digits_is_not_a_timestamp(tmp_path: Path) -> None:
    error = clean_error(
        tmp_path, "window: २०२४-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\nsource: x\n" + TARGET
    )
    assert (error.line, error.message) == (
        1,
        "window: '२०२४-05-14T14:00:00Z' is not a UTC timestamp; expected e.g. 2024-05-14T14:00:00Z",
    )


def test_the_twin_ascii_values_still_load(tmp_path: Path) -> None:
    """The valid forms next to the refused ones above."""
    spec = load_text(
        tmp_path,
        HEAD
        + 'target: {wsgi: "a.b:c", ready_timeout: 604800, request_timeout: "1m30s"}\n'
        + 'sandbox: {allow: ["localhost:5432"]}\nexpect: {status: "<500"}\n'
        + 'title: "\\U0001F600 \\u00e9"\n',
    )
    assert spec.target.ready_timeout_s == 604800.0
    assert spec.target.request_timeout_s == 90.0
    assert spec.title == "\U0001f600 é"


def test_an_alias_bomb_is_an_error_at_its_line(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    error = clean_error(tmp_path, HEAD + TARGET + "\n".join(lines) + "\n")
    assert error.message == f"more than {MAX_VALUES} values once aliases are expanded"
    assert 4 <= error.line <= 12


def test_a_merge_bomb_is_an_error_and_a_recursive_merge_too(tmp_path: Path) -> None:
    lines = ["m0: &m0 {}"]
    lines += [f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 4)}]}}" for i in range(1, 30)]
    error = clean_error(tmp_path, HEAD + TARGET + "\n".join(lines) + "\n")
    assert "values once aliases are expanded" in error.message
    error = clean_error(tmp_path, HEAD + TARGET + "m: &m {a: 1, <<: *m}\n")
    assert (error.line, error.message) == (4, "recursive alias: a value cannot contain itself")


def test_merges_follow_the_merge_key_type() -> None:
    """The first mapping of a `<<` list wins, a mapping's own keys win over merged ones, and
    an aliased mapping reads the same each time (yaml.org/type/merge.html; PyYAML 6.0.1)."""
    ours = load_yaml(
        "b: &b {outbound: block, email: block}\no: &o {outbound: stub, jobs: block}\n"
        "s: {<<: [*b, *o], email: stub}\nt: &t {<<: *b, outbound: x}\nu: *t\n"
    )
    assert ours is not None
    assert ours.data["s"] == {"outbound": "block", "jobs": "block", "email": "stub"}
    assert ours.data["t"] == ours.data["u"] == {"outbound": "x", "email": "block"}


# --- what is read at all -------------------------------------------------------------------


def test_a_fifo_is_refused_by_name_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "incident.yaml")
    with pytest.raises(IncidentFileError) as info:
        load_incident(tmp_path / "incident.yaml", {})
    assert str(info.value) == (
        f"{tmp_path / 'incident.yaml'}:1: not a regular file (a FIFO (named pipe)); not read"
    )


@pytest.mark.parametrize("kind", ["directory", "device", "socket"])
def test_other_special_files_are_refused_by_name(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "incident.yaml"
    if kind == "directory":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/zero")  # would read forever
    else:
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    with pytest.raises(IncidentFileError) as info:
        load_incident(path, {})
    assert info.value.line == 1
    assert info.value.message.startswith("not a regular file (a ")


def test_a_file_over_the_size_cap_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "incident.yaml"
    path.write_text(HEAD + TARGET + "title: " + "x" * 100 + "\n" + "#" * MAX_FILE_BYTES)
    error = clean_error(tmp_path, path.read_bytes())
    assert error.message == f"the file is larger than {MAX_FILE_BYTES} bytes; not read"


def test_the_twin_a_file_at_the_caps_loads(tmp_path: Path) -> None:
    text = HEAD + TARGET + "title: " + "x" * (MAX_LINE_CHARS - len("title: ")) + "\n"
    filler = MAX_FILE_BYTES - len(text.encode())
    rows = ("#" * 99 + "\n") * (filler // 100)
    text += rows + "#" * (filler - len(rows) - 1) + "\n"
    assert len(text.encode()) == MAX_FILE_BYTES
    assert load_text(tmp_path, text).title == "x" * (MAX_LINE_CHARS - len("title: "))


def test_an_error_excerpt_cuts_a_long_line(tmp_path: Path) -> None:
    error = clean_error(tmp_path, HEAD + TARGET + "titel: " + "x" * 5000 + "\n")
    assert error.line == 4
    marked = [line for line in str(error).splitlines() if line.startswith("  >")]
    assert len(marked) == 1 and len(marked[0]) < 300
    assert marked[0].endswith("(4807 more)")


# --- fuzz ----------------------------------------------------------------------------------------

HOSTILE_TEXT = [
    "!!int abc",
    "!!float x",
    "!!bool maybe",
    "!!binary '%'",
    "!!python/object:os.system x",
    "!custom x",
    '"\\UFFFFFFFF"',
    '"\\uD800"',
    '"\\x00"',
    "\x00",
    "\x1b[31m",
    "\x7f",
    "\t",
    "\ufeff",
    "\u2028",
    "५४३२",
    "localhost:²",
    "localhost:٥٤٣٢",
    "&a [*a]",
    "*nowhere",
    "<<: *a",
    "[" * 200,
    "{a: " * 80,
    "- " * 100,
    "? [a]\n: b",
    "${UNSET}",
    "%YAML 1.1\n---",
    "--- |\n",
    "...",
    "a" * 3000,
    "\\",
    "'",
    '"',
    ": :",
]

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(HOSTILE_TEXT),
    st.sampled_from(["localhost:५४३२", "..", "/", "~", "{port}", "a" * 300, "x\x00y", "5xx"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def key_paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from key_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from key_paths(item, (*path, index))


def mutate(data: Any, path: tuple[Any, ...], operation: str, value: Any) -> Any:
    if not path:
        return value if operation == "retype" else data
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    if operation == "delete":
        del parent[path[-1]]
    elif operation == "retype":
        parent[path[-1]] = value
    else:  # nest: the value as deep as the loader allows, and deeper
        for _ in range(MAX_DEPTH + 2):
            value = [value]
        parent[path[-1]] = value
    return data


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_fuzz_mutated_incidents_load_or_fail_cleanly(fuzz_dir: Path, data: st.DataObject) -> None:
    document = yaml.safe_load(VALID)
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        paths = list(key_paths(document))
        path = data.draw(st.sampled_from(paths), label="path")
        operation = data.draw(st.sampled_from(["delete", "retype", "nest"]), label="operation")
        value = data.draw(VALUES, label="value")
        document = mutate(document, path, operation, value)
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    assert_clean(fuzz_dir, text)


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.data())
def test_fuzz_text_edits_load_or_fail_cleanly(fuzz_dir: Path, data: st.DataObject) -> None:
    raw = VALID.encode()
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        at = data.draw(st.integers(0, len(raw)), label="at")
        insert = data.draw(
            st.one_of(
                st.sampled_from(HOSTILE_TEXT).map(str.encode),
                st.text(max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass")),
                st.binary(max_size=6),  # non-UTF-8 bytes, control bytes, NUL
            ),
            label="insert",
        )
        cut = data.draw(st.integers(0, 8), label="cut")
        raw = raw[:at] + insert + raw[at + cut :]
    assert_clean(fuzz_dir, raw)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.binary(max_size=300))
def test_fuzz_raw_bytes_fail_cleanly(fuzz_dir: Path, raw: bytes) -> None:
    assert_clean(fuzz_dir, raw)

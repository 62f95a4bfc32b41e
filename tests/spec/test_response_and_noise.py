"""`expect.response` in the incident file and the calibration file beside it: values, and
every mistake as `file:line: what is wrong, what is allowed`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_incident.model.errors import IncidentFileError
from pytest_incident.model.spec import DEFAULT_RESPONSE_MATCH, ResponseMatch
from pytest_incident.spec import load_incident

HEADER = """\
window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z
source: x.jsonl
target: {wsgi: "examples.orders.app:app"}
"""


def write(tmp_path: Path, expect: str, noise: str | None = None) -> Path:
    (tmp_path / "x.jsonl").write_text("")
    path = tmp_path / "orders.yaml"
    path.write_text(HEADER + textwrap.dedent(expect))
    if noise is not None:
        (tmp_path / "orders.noise.yaml").write_text(textwrap.dedent(noise))
    return path


def error(path: Path) -> IncidentFileError:
    with pytest.raises(IncidentFileError) as info:
        load_incident(path, {})
    return info.value


def test_response_match_takes_the_default_parts(tmp_path: Path) -> None:
    spec = load_incident(write(tmp_path, "expect: {response: match}\n"), {})
    assert spec.expect.response == ResponseMatch(DEFAULT_RESPONSE_MATCH, ())
    assert load_incident(write(tmp_path, "expect: {}\n"), {}).expect.response is None


def test_response_parts_and_ignore_entries(tmp_path: Path) -> None:
    text = """\
    expect:
      response:
        match: [status, Body, header:X-Total]
        ignore: [body:items.*.id, Header:Date, body]
    """
    response = load_incident(write(tmp_path, text), {}).expect.response
    assert response == ResponseMatch(
        ("status", "body", "header:x-total"), ("body:items.*.id", "header:date", "body")
    )


@pytest.mark.parametrize(
    ("expect", "line", "message"),
    [
        ("expect: {response: matches}\n", 4, "'matches' is not allowed; allowed: match"),
        ("expect: {response: 3}\n", 4, "expected a string or a mapping, got an integer"),
        (
            "expect:\n  response: {match: [status, headers]}\n",
            5,
            "'headers' is not a part of an answer; allowed: status, body, header:<name>",
        ),
        ("expect:\n  response: {match: []}\n", 5, "nothing to compare"),
        (
            'expect:\n  response:\n    ignore: ["body:"]\n',
            6,
            "'body:' is not a part of an answer; allowed: header:<name>, body:<dotted.path>",
        ),
        ("expect:\n  response: {matsch: [body]}\n", 5, "unknown key 'matsch'; allowed: match"),
    ],
)
def test_response_mistakes_name_the_line_and_what_is_allowed(
    tmp_path: Path, expect: str, line: int, message: str
) -> None:
    problem = error(write(tmp_path, expect))
    assert problem.line == line
    assert message in str(problem)
    assert str(problem).startswith(f"{tmp_path / 'orders.yaml'}:{line}: expect.response")


def test_the_calibration_file_beside_the_incident_is_read(tmp_path: Path) -> None:
    noise = """\
    # written by --incident-calibrate
    incident: orders
    routes:
      POST /orders: [body:order_id, header:X-Request-Id]
      GET /health: []
    """
    spec = load_incident(write(tmp_path, "expect: {response: match}\n", noise), {})
    assert spec.noise.path == tmp_path / "orders.noise.yaml"
    assert spec.noise.of("POST /orders") == ("body:order_id", "header:x-request-id")
    assert spec.noise.of("GET /health") == ()
    assert spec.noise.of("PUT /other") == ()


def test_no_calibration_file_is_no_noise(tmp_path: Path) -> None:
    spec = load_incident(write(tmp_path, "expect: {response: match}\n"), {})
    assert spec.noise.path is None and spec.noise.routes == {}


@pytest.mark.parametrize(
    ("noise", "line", "message"),
    [
        ("routes:\n  POST /orders: [bodies]\n", 2, "'bodies' is not a part of an answer"),
        ("routes: [a]\n", 1, "expected a mapping of routes, got a list"),
        ("- a\n", 1, "noise.yaml:1: expected a mapping with `routes:`, got a list"),
        ("routes:\n  POST /orders: [3]\n", 2, "expected an entry such as body:<dotted.path>"),
        ("incident: x\nroute: {}\n", 2, "unknown key 'route'; allowed: incident, routes"),
        ("routes:\n  POST /orders: {a: 1}\n", 2, "expected a list of entries, got a mapping"),
        ("routes: {a: [\n", 2, "invalid YAML"),
    ],
)
def test_calibration_file_mistakes_name_its_own_line(
    tmp_path: Path, noise: str, line: int, message: str
) -> None:
    problem = error(write(tmp_path, "expect: {response: match}\n", noise))
    assert problem.path == tmp_path / "orders.noise.yaml"
    assert problem.line == line, str(problem)
    assert message in str(problem)


def test_a_fifo_in_place_of_the_calibration_file_does_not_hang(tmp_path: Path) -> None:
    import os

    path = write(tmp_path, "expect: {response: match}\n")
    os.mkfifo(tmp_path / "orders.noise.yaml")
    problem = error(path)
    assert "orders.noise.yaml:1: not a regular file" in str(problem)


def test_aliases_that_expand_a_small_file_enormously_are_refused(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 8)]
    noise = "\n".join(lines) + "\n"
    problem = error(write(tmp_path, "expect: {response: match}\n", noise))
    assert "more than 100000 values once aliases are expanded" in str(problem)
    deep = write(tmp_path, "expect: {response: match}\n", "routes: " + "[" * 3000 + "]" * 3000)
    assert "nested deeper than 64 levels" in str(error(deep))

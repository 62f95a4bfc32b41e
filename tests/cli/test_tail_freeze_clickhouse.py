"""`tail` and `freeze` against the real ClickHouse engine (chDB): the demo recording loaded
with `pytest-incident load` gives tail the rows, and freeze the frozen spans and scaffold,
that the frozen file gives; an empty window is an answer (exit status 1), not a failure.
Needs chdb and the ClickHouse source (the `clickhouse` extra, events/clickhouse.py)."""

from __future__ import annotations

import io
import shlex
from collections.abc import Iterable
from pathlib import Path

import pytest

from pytest_incident.cli import main, tail
from pytest_incident.cli.console import Console
from pytest_incident.events.frozen import read_spans
from pytest_incident.model.spans import Span, parse_timestamp

pytest.importorskip("chdb")
pytest.importorskip("pytest_incident.events.clickhouse_load")

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "incidents" / "2024-05-signup.events.jsonl.gz"
WINDOW = "2024-05-14T14:00:00Z..2024-05-14T14:30:00Z"
FILTERS = ("--service", "signup", "--filter", "route=POST /signup")


@pytest.fixture
def chdb_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chdb_dir: Path, request: pytest.FixtureRequest
) -> str:
    """The demo recording in a database of this test's own, in the process's chDB directory
    (chDB opens one per process); the working directory is an empty project beside it."""
    database = "tail_" + request.node.name.removeprefix("test_")[:40]
    reference = f"chdb://{chdb_dir}?database={database}"
    assert main.main(["load", str(DEMO), "--source", reference]) == 0
    (tmp_path / "project").mkdir()
    (tmp_path / "project" / "pyproject.toml").write_text('[project]\nname = "app"\n')
    monkeypatch.chdir(tmp_path / "project")
    return reference


def tail_lines(*argv: str, sleep: object = None) -> tuple[int, list[str], str]:
    out, err = io.StringIO(), io.StringIO()
    args = main.parser().parse_args(["tail", *argv])
    status = tail.run(
        args,
        clock=lambda: parse_timestamp("2024-05-14T14:30:00Z"),
        sleep=sleep or (lambda seconds: None),  # type: ignore[arg-type]
        console=Console(out, err, False),
    )
    return status, out.getvalue().splitlines(), err.getvalue()


def ordered(spans: Iterable[Span]) -> list[Span]:
    return sorted(spans, key=lambda s: (s.timestamp_ns, s.span_id))


def test_tail_reads_chdb_as_it_reads_the_frozen_file(chdb_source: str) -> None:
    status, lines, err = tail_lines("--source", chdb_source, "--window", WINDOW, *FILTERS[:2])
    assert status == 0, err
    frozen_status, frozen_lines, _ = tail_lines(
        "--source", str(DEMO), "--window", WINDOW, *FILTERS[:2]
    )
    assert frozen_status == 0
    assert lines[:-1] == frozen_lines[:-1]  # all but the freeze command, which names the source
    command = f"  pytest-incident freeze NAME --source {shlex.quote(chdb_source)} "
    assert lines[-1].startswith(command)
    assert sum(line.startswith("2024-05-14 14:1") for line in lines) == 4


def test_an_empty_chdb_window_is_an_answer(chdb_source: str) -> None:
    status, lines, err = tail_lines(
        "--source", chdb_source, "--window", "2024-05-15T00:00:00Z..2024-05-15T01:00:00Z"
    )
    assert status == 1, err
    assert lines[0].startswith("0 of 0 requests failing in 2024-05-15 00:00:00")
    assert "no recorded request" in lines[1] and "the table holds" in lines[1]
    # following it polls on quietly, and Ctrl-C ends it
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 2:
            raise KeyboardInterrupt

    status, lines, err = tail_lines(
        "--source", chdb_source, "--since", "10m", "--follow", sleep=sleep
    )
    assert (status, err, len(polls)) == (1, "", 2)


def test_freeze_from_chdb_writes_what_freeze_from_the_file_writes(
    chdb_source: str, tmp_path: Path
) -> None:
    assert main.main(["freeze", "a", "--source", chdb_source, "--window", WINDOW, *FILTERS]) == 0
    assert main.main(["freeze", "b", "--source", str(DEMO), "--window", WINDOW, *FILTERS]) == 0
    incidents = Path("incidents")
    assert ordered(read_spans(incidents / "a.events.jsonl.gz")) == ordered(
        read_spans(incidents / "b.events.jsonl.gz")
    )
    a, b = ((incidents / f"{n}.yaml").read_text().splitlines() for n in "ab")
    assert a[0].endswith(f"from {chdb_source}:")
    differ = sorted((x, y) for x, y in zip(a[1:], b[1:], strict=True) if x != y)
    assert differ == [
        ("# Fill in target: below, then run: pytest --incident=a",
         "# Fill in target: below, then run: pytest --incident=b"),
        ("incident: a", "incident: b"),
        ("source: a.events.jsonl.gz", "source: b.events.jsonl.gz"),
    ]  # fmt: skip

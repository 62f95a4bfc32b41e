"""`pytest-incident tail`: the failing requests of a window and their per-minute counts, from
the demo recording; --since against an injected clock; --follow against a file that grows;
every usage mistake one line with exit status 2; a source that cannot be read, 3."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_incident.cli import main, tail
from pytest_incident.cli.console import Console
from pytest_incident.events.frozen import read_spans, write_spans
from pytest_incident.model.errors import SourceError
from pytest_incident.model.spans import parse_timestamp
from tests.spans import server_span

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "incidents" / "2024-05-signup.events.jsonl.gz"
WINDOW = "2024-05-14T14:00:00Z..2024-05-14T14:30:00Z"
FAILED = [  # the demo's four failed signups, in recorded order
    ("2024-05-14 14:11:20.884", "5983a437f1919d2e33dd28c7a1f4583b"),
    ("2024-05-14 14:12:48.016", "f6a57b9d5fd587a091b1a3dc3f836c9b"),
    ("2024-05-14 14:15:33.270", "ee588629e196976518b7f5a33badcd07"),
    ("2024-05-14 14:17:06.925", "579f287dc0d234dfc6952df7c8850b81"),
]


class Run:
    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err
        self.lines = out.splitlines()


def run_tail(
    *argv: str,
    now: str = "2024-05-14T15:00:00Z",
    sleep: Any = None,
    interactive: bool = False,
    cwd: Path = ROOT,
) -> Run:
    out, err = io.StringIO(), io.StringIO()
    args = main.parser().parse_args(["tail", *argv])
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        status = tail.run(
            args,
            clock=lambda: parse_timestamp(now),
            sleep=sleep or (lambda seconds: None),
            console=Console(out, err, interactive),
        )
    finally:
        os.chdir(previous)
    return Run(status, out.getvalue(), err.getvalue())


def test_the_demo_windows_failing_requests_and_where_they_start_and_end() -> None:
    run = run_tail("--source", str(DEMO), "--window", WINDOW, "--service", "signup")
    assert run.status == 0, run.err
    assert run.lines[0] == (
        "4 of 14 requests of service signup failing in 2024-05-14 14:00:00 .. "
        "2024-05-14 14:30:00 UTC"
    )
    rows = [line for line in run.lines if line.startswith("2024-05-14 14:1")]
    assert [(row[:23], row.split()[-1]) for row in rows] == FAILED
    assert all(" 500 " in row and "POST /signup" in row and " ms " in row for row in rows)
    histogram = {
        line.split()[1]: line.split()[2:5] for line in run.lines if line.startswith("  2024-05-14 ")
    }
    assert histogram["14:11"] == ["1", "/", "1"] and histogram["14:13"] == ["0", "/", "0"]
    assert sum(int(counts[0]) for counts in histogram.values()) == 4
    assert sum(int(counts[2]) for counts in histogram.values()) == 14
    assert run.lines[-1].endswith(
        "--service signup --window 2024-05-14T14:11:00Z..2024-05-14T14:18:00Z"
    )
    assert "\x1b[" not in run.out  # not a terminal: no colour


def test_filters_choose_what_counts_as_failing() -> None:
    run = run_tail("--source", str(DEMO), "--window", WINDOW, "--filter", "status=201")
    assert run.status == 0
    assert run.lines[0].startswith("7 of 16 requests with status 201 in")
    routes = run_tail("--source", str(DEMO), "--window", WINDOW, "--filter", "route=GET /health")
    assert routes.status == 1  # the health checks never failed
    assert routes.lines[0].startswith("0 of 2 requests failing in")
    one = run_tail("--source", str(DEMO), "--window", WINDOW, "--filter", "request=ee588629")
    assert [line.split()[-1] for line in one.lines if line.startswith("2024")] == [FAILED[2][1]]


def test_since_counts_back_from_now() -> None:
    run = run_tail(
        "--source", str(DEMO), "--since", "1h", "--service", "signup", now="2024-05-14T14:30:00Z"
    )
    assert run.status == 0
    assert run.lines[0] == (
        "4 of 15 requests of service signup failing in 2024-05-14 13:30:00 .. "
        "2024-05-14 14:30:00 UTC"
    )
    # the twin: an hour that ends before the incident holds none of its failures
    early = run_tail("--source", str(DEMO), "--since", "1h", now="2024-05-14T14:11:00Z")
    assert early.status == 1 and early.lines[0].startswith("0 of ")


def test_limit_lists_the_last_ones() -> None:
    run = run_tail("--source", str(DEMO), "--window", WINDOW, "--limit", "2")
    assert "... 2 earlier (--limit 2)" in run.lines
    assert [line.split()[-1] for line in run.lines if line.startswith("2024")] == [
        FAILED[2][1],
        FAILED[3][1],
    ]


def test_colour_only_on_a_terminal() -> None:
    run = run_tail("--source", str(DEMO), "--window", WINDOW, interactive=True)
    assert "\x1b[31m" in run.out  # 500 and the bars in red

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert Console.of(Terminal(), io.StringIO(), environ={}).interactive
    assert not Console.of(Terminal(), io.StringIO(), environ={"NO_COLOR": "1"}).interactive
    assert not Console.of(io.StringIO(), io.StringIO(), environ={}).interactive


def test_recorded_control_characters_cannot_reach_the_terminal(tmp_path: Path) -> None:
    at = parse_timestamp("2024-05-14T14:10:00Z")
    write_spans(tmp_path / "r.jsonl", [server_span(at=at, path="/x\x1b]0;owned\x07")])
    run = run_tail("--source", "r.jsonl", "--window", WINDOW, cwd=tmp_path)
    assert run.status == 0
    assert "\x1b" not in run.out and "\\x1b]0;owned\\x07" in run.out


def test_follow_prints_new_requests_as_the_file_grows(tmp_path: Path) -> None:
    recording = tmp_path / "live.jsonl"
    spans = list(read_spans(DEMO))
    late = server_span(trace="ab" * 16, at=parse_timestamp("2024-05-14T14:29:00Z"), path="/late")
    polls: list[int] = []

    def sleep(seconds: float) -> None:
        polls.append(1)
        if len(polls) == 1:
            write_spans(recording, [*spans, late])  # a request arrives
        elif len(polls) == 2:
            recording.write_text("not a recording\n")  # being rewritten: said once, not fatal
        elif len(polls) == 3:
            write_spans(recording, [*spans, late])
        else:
            raise KeyboardInterrupt

    write_spans(recording, spans)
    run = run_tail(
        "--source", "live.jsonl", "--window", WINDOW, "--follow", "--interval", "1s",
        sleep=sleep, cwd=tmp_path,
    )  # fmt: skip
    assert run.status == 0, run.err
    assert run.lines[0].startswith("pytest-incident tail: following requests failing")
    rows = [line.split()[-1] for line in run.lines if line.startswith("2024-05-14 14:")]
    assert rows == [request for _, request in FAILED] + ["ab" * 16]  # each shown once
    assert run.err.count("live.jsonl:1: first line must be") == 1
    assert "(trying again every 1s)" in run.err
    assert any(line.startswith("per minute (UTC): failing / all requests") for line in run.lines)


def test_follow_with_since_reads_on_as_the_clock_moves(tmp_path: Path) -> None:
    shutil.copy(DEMO, tmp_path / "demo.jsonl.gz")
    clock = iter(parse_timestamp(f"2024-05-14T14:{m}:00Z") for m in ("12", "16", "18"))
    now = [next(clock)]
    polls = 0

    def sleep(seconds: float) -> None:
        nonlocal polls
        polls += 1
        if polls == 3:
            raise KeyboardInterrupt
        now[0] = next(clock)

    out, err = io.StringIO(), io.StringIO()
    args = main.parser().parse_args(
        ["tail", "--source", str(tmp_path / "demo.jsonl.gz"), "--since", "30m", "--follow"]
    )
    status = tail.run(args, clock=lambda: now[0], sleep=sleep, console=Console(out, err, False))
    assert status == 0, err.getvalue()
    rows = [line.split()[-1] for line in out.getvalue().splitlines() if line.startswith("2024")]
    assert rows == [request for _, request in FAILED]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--window", "yesterday"], "--window 'yesterday': expected START..END in UTC"),
        (["--window", "2024-05-14T14:30:00Z..2024-05-14T14:00:00Z"], "the end is not after"),
        (["--since", "soon"], "--since 'soon': not a duration"),
        (["--window", WINDOW, "--filter", "colour=red"], "allowed: status>=500, status=5xx"),
        (["--window", WINDOW, "--filter", "status=600"], "is not a status condition"),
        (["--window", WINDOW, "--filter", "status>=500", "--filter", "status<503"], "one status"),
        (["--window", WINDOW, "--filter", "route=signup"], "a route is 'METHOD /path'"),
        (["--window", WINDOW, "--filter", "request=xyz"], "4 to 32 hex digits"),
        (["--window", WINDOW, "--limit", "0"], "--limit 0: must be 1 or more"),
        (["--window", WINDOW, "--follow", "--interval", "0"], "--interval '0': from 0.1s"),
    ],
)
def test_usage_mistakes_are_one_line(argv: list[str], message: str) -> None:
    run = run_tail("--source", str(DEMO), *argv)
    assert run.status == 2
    assert run.err.startswith("pytest-incident tail: ") and message in run.err
    assert run.err.count("\n") == 1 and not run.out


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("missing.jsonl", "tail: --source missing.jsonl: file not found: "),
        ("spans.csv", "unsupported file type 'spans.csv'"),
        ("broken.jsonl", "broken.jsonl:2: "),
        ("clickhouse://nobody@127.0.0.1:1/db", "clickhouse"),
    ],
)
def test_a_source_that_cannot_be_read_is_exit_status_3(
    tmp_path: Path, source: str, message: str
) -> None:
    (tmp_path / "spans.csv").write_text("")
    (tmp_path / "broken.jsonl").write_text('{"format": "pytest-incident-spans", "version": 1}\n{\n')
    run = run_tail("--source", source, "--window", WINDOW, cwd=tmp_path)
    assert run.status == 3
    assert run.err.startswith("pytest-incident tail: ") and message in run.err
    assert run.err.count("\n") == 1


def cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_incident.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_the_console_script_help_and_argparse_mistakes() -> None:
    helped = cli("tail", "--help")
    assert helped.returncode == 0
    assert "--since" in helped.stdout and "Exit status: 0 failing requests found" in helped.stdout
    for argv, message in [
        (["tail", "--source", str(DEMO)], "one of the arguments --since --window is required"),
        (["tail", "--source", str(DEMO), "--since", "1h", "--window", WINDOW], "not allowed with"),
        (["tail", "--window", WINDOW], "the following arguments are required: --source"),
        (["tail", "--source", str(DEMO), "--since", "1h", "--bogus"], "unrecognized arguments"),
    ]:
        proc = cli(*argv)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("pytest-incident tail: ") and message in proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    found = cli("tail", "--source", str(DEMO), "--window", WINDOW)
    assert found.returncode == 0 and FAILED[0][1] in found.stdout


def test_a_source_that_says_the_window_holds_nothing_is_an_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ClickHouse source says an empty window with a SourceError keyed "window": tail
    shows it as what the window holds (exit status 1); any other SourceError is a failure."""

    def empty(*args: object, **kwargs: object) -> None:
        error = SourceError("no recorded request (Server span) in the window; it is empty")
        error.key = "window"  # type: ignore[attr-defined]
        raise error

    monkeypatch.setattr(tail, "read_window", empty)
    run = run_tail("--source", "chdb:///x", "--window", WINDOW)
    assert run.status == 1 and not run.err
    assert run.lines[1] == "  (no recorded request (Server span) in the window; it is empty)"

    def unreachable(*args: object, **kwargs: object) -> None:
        raise SourceError("clickhouse://h:8123: cannot connect")

    monkeypatch.setattr(tail, "read_window", unreachable)
    run = run_tail("--source", "clickhouse://h:8123", "--window", WINDOW)
    assert run.status == 3
    assert run.err == "pytest-incident tail: --source clickhouse://h:8123: cannot connect\n"

"""`pytest-incident validate`: every demo recording is valid; a recording with a missing body
encoding, or any other problem, is named by span, field and line, all of them (capped by
--max), with exit status 1; rows that cannot be read do not stop the scan; usage mistakes
exit 2 and a source that cannot be read exits 3, each in one line."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_incident.cli import main, validate
from pytest_incident.cli.console import Console
from pytest_incident.events.frozen import read_spans, write_spans

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "incidents" / "2024-05-signup.events.jsonl.gz"
RECORDINGS = sorted((ROOT / "incidents").glob("*.events.jsonl*"))
WINDOW = "2024-05-14T14:00:00Z..2024-05-14T14:30:00Z"


class Run:
    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err
        self.lines = out.splitlines()


def run_validate(*argv: str, cwd: Path = ROOT) -> Run:
    out, err = io.StringIO(), io.StringIO()
    previous = Path.cwd()
    os.chdir(cwd)
    try:
        try:
            args = main.parser().parse_args(["validate", *argv])
        except SystemExit as exc:  # argparse's own mistakes
            return Run(int(exc.code or 0), "", "")
        status = validate.run(args, console=Console(out, err, False))
    finally:
        os.chdir(previous)
    return Run(status, out.getvalue(), err.getvalue())


def line_of(path: Path, span_id: str) -> int:
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if f'"SpanId": "{span_id}"' in line)


@pytest.mark.parametrize("recording", RECORDINGS, ids=[p.name for p in RECORDINGS])
def test_every_demo_recording_is_valid(recording: Path) -> None:
    run = run_validate(str(recording.relative_to(ROOT)))
    assert run.status == 0, run.out + run.err
    assert run.lines[-1].startswith(f"incidents/{recording.name}: valid: 0 problems, 0 warnings")


def demo_with(tmp_path: Path, changes: dict[str, dict[str, str | None]]) -> Path:
    """The demo recording as plain JSON Lines, with attributes changed (None: removed)."""
    spans = []
    for span in read_spans(DEMO):
        if span.span_id in changes:
            attributes = {**span.attributes, **changes[span.span_id]}
            span = replace(span, attributes={k: v for k, v in attributes.items() if v is not None})
        spans.append(span)
    path = tmp_path / "demo.events.jsonl"
    write_spans(path, spans)
    return path


def test_a_recording_with_a_missing_body_encoding_is_caught(tmp_path: Path) -> None:
    """The issue's done-when: bytes stored in base64 without `.encoding: base64`."""
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10").decode()
    path = demo_with(
        tmp_path,
        {
            "79c4a570047f722b": {
                "incident.response.headers": '{"content-type": "image/png"}',
                "incident.response.body": png,
            }
        },
    )
    run = run_validate(path.name, cwd=tmp_path)
    assert run.status == 1
    line = line_of(path, "79c4a570047f722b")
    assert run.lines[0] == (
        f"demo.events.jsonl:{line}: span 79c4a570047f722b: incident.response.body.encoding: "
        "missing: the body looks like base64 of binary data, but without "
        "incident.response.body.encoding: base64 replay sends the base64 text itself"
    )
    assert run.lines[-1].startswith("demo.events.jsonl: invalid: 1 problem, 0 warnings in 61 spans")
    # the twin: the same bytes with their encoding
    fixed = demo_with(
        tmp_path,
        {
            "79c4a570047f722b": {
                "incident.response.headers": '{"content-type": "image/png"}',
                "incident.response.body": png,
                "incident.response.body.encoding": "base64",
            }
        },
    )
    assert run_validate(fixed.name, cwd=tmp_path).status == 0


def test_every_problem_is_named_with_its_line_and_the_scan_goes_on(tmp_path: Path) -> None:
    path = demo_with(
        tmp_path,
        {
            "c8713290620762ea": {
                "incident.request.body": "not base64!",
                "incident.request.body.encoding": "base64",
            },
            "e267b7da3c9406a9": {"url.full": "http://[::1", "server.port": "²"},
            "79c4a570047f722b": {"incident.response.body": None},
        },
    )
    with path.open("a") as out:  # rows that cannot be read, at the end
        out.write('{"Timestamp": "2024-05-14 14:00:00", "SpanId": "0badc0de00000001"}\n')
        out.write("not json\n")
    run = run_validate(path.name, cwd=tmp_path)
    assert run.status == 1, run.err
    lines = {name: line_of(path, name) for name in ("c8713290620762ea", "e267b7da3c9406a9")}
    lines["79c4a570047f722b"] = line_of(path, "79c4a570047f722b")
    total = len(path.read_text().splitlines())
    expected = [
        f"demo.events.jsonl:{lines['79c4a570047f722b']}: warning: span 79c4a570047f722b: "
        "incident.response.body: missing: the answer's body was not recorded, so "
        "expect.response and snapshots have nothing to compare",
        f"demo.events.jsonl:{lines['c8713290620762ea']}: span c8713290620762ea: "
        "incident.request.body: is not valid base64",
        f"demo.events.jsonl:{lines['e267b7da3c9406a9']}: outbound call span e267b7da3c9406a9: "
        "url.full: 'http://[::1' is not a URL (Invalid IPv6 URL); allowed: an absolute http:// "
        "or https:// URL with a host, printable ASCII without spaces (percent-encode the rest)",
        f"demo.events.jsonl:{lines['e267b7da3c9406a9']}: outbound call span e267b7da3c9406a9: "
        "server.port: '²'; allowed: ASCII digits, 1-65535",
        f"demo.events.jsonl:{total - 1}: span 0badc0de00000001: missing column TraceId",
        f"demo.events.jsonl:{total}: Expecting value: line 1 column 1 (char 0)",
    ]
    assert sorted(run.lines[:-1]) == sorted(expected)
    assert run.lines[-1].startswith("demo.events.jsonl: invalid: 5 problems, 1 warning in 61 spans")


def test_max_caps_what_is_shown_not_what_is_counted(tmp_path: Path) -> None:
    spans = [
        replace(s, attributes={**s.attributes, "url.query": "a b"})
        for s in read_spans(DEMO)
        if s.kind.value == "Server"
    ]
    path = tmp_path / "many.events.jsonl"
    write_spans(path, spans)
    run = run_validate(path.name, "--max", "3", cwd=tmp_path)
    assert run.status == 1
    assert len(run.lines) == 5
    assert run.lines[3] == f"... and {len(spans) - 3} more problems (--max 3)"
    assert f"invalid: {len(spans)} problems" in run.lines[4]


def test_a_broken_file_stops_where_it_breaks(tmp_path: Path) -> None:
    path = tmp_path / "cut.events.jsonl.gz"
    path.write_bytes(DEMO.read_bytes()[:2000])
    run = run_validate(path.name, cwd=tmp_path)
    assert run.status == 1
    assert "the gzip file is truncated" in run.out
    assert "reading stopped at line" in run.lines[-1]
    header = tmp_path / "nohead.events.jsonl"
    header.write_text('{"format": "other"}\n')
    run = run_validate(header.name, cwd=tmp_path)
    assert run.status == 1
    assert run.lines[0] == (
        "nohead.events.jsonl:1: first line must be "
        '{"format": "pytest-incident-spans", "version": N}'
    )


def test_a_window_of_a_frozen_source() -> None:
    run = run_validate("--source", "incidents/2024-05-signup.events.jsonl.gz", "--window", WINDOW)
    assert run.status == 0, run.out + run.err
    assert "valid: 0 problems, 0 warnings" in run.lines[-1]
    empty = run_validate(
        "--source", "incidents/2024-05-signup.events.jsonl.gz", "--window",
        "2020-01-01T00:00:00Z..2020-01-01T01:00:00Z",
    )  # fmt: skip
    assert empty.status == 1
    assert "holds no recorded request" in empty.out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "give a frozen FILE or --source REF (one of them)"),
        (["a.jsonl", "--source", "b.jsonl"], "give a frozen FILE or --source REF (one of them)"),
        (["--source", "chdb:///tmp/x"], "a ClickHouse source is validated one window at a time"),
        (["x.jsonl", "--window", "yesterday"], "--window 'yesterday': expected START..END"),
        (["x.jsonl", "--max", "0"], "--max 0: must be 1 or more"),
    ],
)
def test_usage_mistakes_exit_2(argv: list[str], message: str) -> None:
    run = run_validate(*argv)
    assert run.status == 2
    assert run.err.startswith("pytest-incident validate: ") and message in run.err
    assert len(run.err.splitlines()) == 1


def test_an_unknown_option_exits_2() -> None:
    assert run_validate("x.jsonl", "--strict").status == 2


def test_a_source_that_cannot_be_read_exits_3(tmp_path: Path) -> None:
    run = run_validate("missing.events.jsonl", cwd=tmp_path)
    assert run.status == 3
    assert run.err.startswith("pytest-incident validate: missing.events.jsonl: file not found")
    (tmp_path / "dir.events.jsonl").mkdir()
    run = run_validate("--source", "dir.events.jsonl", cwd=tmp_path)
    assert run.status == 3
    assert run.err.startswith("pytest-incident validate: --source dir.events.jsonl: ")
    assert "is a directory, not a regular file" in run.err
    assert run_validate("notes.txt", cwd=tmp_path).status == 3


def test_the_console_script_runs_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "pytest_incident.cli", "validate", str(DEMO)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "valid: 0 problems" in done.stdout
    data = gzip.decompress(DEMO.read_bytes()).decode().splitlines()
    row = json.loads(data[1])
    row["SpanAttributes"]["incident.response.body"] = "\ufffd\ufffdPNG"
    bad = tmp_path / "bad.events.jsonl"
    bad.write_text("\n".join([data[0], json.dumps(row), *data[2:]]) + "\n")
    done = subprocess.run(
        [sys.executable, "-m", "pytest_incident.cli", "validate", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "incident.response.body: holds U+FFFD" in done.stdout

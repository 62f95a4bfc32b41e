"""docs/recording-format.md cannot rot: its example recording and incident file are replayed
(pytester) against a small service with every item passing and are valid to `validate`; the
outcome spans it shows are valid too; and a change to the example that breaks the contract is
caught by both (the twin)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from pytest_incident.core.contract import check_spans
from pytest_incident.events.frozen import parse_line, read_spans, row_to_span

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "recording-format.md"
BLOCK_RE = re.compile(r"<!-- ([a-z-]+)(?:: (\S+))? -->\n```[a-z]+\n(.*?)```", re.S)

SHOP_APP = """
import json
import urllib.request


def app(environ, start_response):
    size = int(environ.get("CONTENT_LENGTH") or 0)
    item = json.loads(environ["wsgi.input"].read(size))["item"]
    url = f"http://stock.example/v1/items/{item}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        stock = json.load(answer)
    body = json.dumps({"order": 7, "in_stock": stock["in_stock"]}).encode()
    start_response("201 Created", [("Content-Type", "application/json")])
    return [body]
"""


def blocks() -> dict[str, tuple[str, str]]:
    """marker -> (file name, text) of each marked block of the document."""
    found = {m[1]: (m[2] or "", m[3]) for m in BLOCK_RE.finditer(DOC.read_text())}
    assert {"example-recording", "example-incident", "outcome-spans"} <= set(found), found
    return found


def test_the_readme_links_the_format() -> None:
    assert "(docs/recording-format.md)" in (ROOT / "README.md").read_text()


def test_the_outcome_spans_are_valid() -> None:
    _, text = blocks()["outcome-spans"]
    spans = [row_to_span(parse_line(line)) for line in text.splitlines() if line.strip()]
    assert len(spans) == 4
    assert [f.message for f in check_spans(spans)] == []


def test_the_example_recording_is_valid(tmp_path: Path) -> None:
    name, text = blocks()["example-recording"]
    path = tmp_path / name
    path.write_text(text)
    spans = list(read_spans(path))
    assert [s.kind.value for s in spans] == ["Server", "Client"]
    assert [f.message for f in check_spans(spans)] == []


def write_example(pytester: pytest.Pytester, change: dict[str, str] | None = None) -> None:
    recording_name, recording = blocks()["example-recording"]
    incident_name, incident = blocks()["example-incident"]
    if change is not None:  # applied to the Client span (the third line)
        lines = recording.splitlines()
        row = json.loads(lines[2])
        row["SpanAttributes"].update(change)
        lines[2] = json.dumps(row)
        recording = "\n".join(lines) + "\n"
    incidents = pytester.mkdir("incidents")
    (incidents / recording_name).write_text(recording)
    (incidents / incident_name).write_text(incident)
    pytester.makepyfile(shop=SHOP_APP)
    pytester.makeini(
        "[pytest]\nfilterwarnings =\n"
        "    ignore:Module already imported:pytest.PytestAssertRewriteWarning\n"
    )


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")
def test_the_example_replays_with_every_item_passing(pytester: pytest.Pytester) -> None:
    write_example(pytester)
    result = pytester.runpytest("--incident=example", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*POST /orders*PASSED*"])


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")
def test_the_example_broken_errors_at_its_line(pytester: pytest.Pytester) -> None:
    """The twin: the same recording with a call whose URL has no host errors at setup."""
    write_example(pytester, {"url.full": "http:///v1/items/42"})
    result = pytester.runpytest("--incident=example")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*incidents/example.events.jsonl:3: outbound call span b1c2d3e4f5060718: url.full:*"]
    )

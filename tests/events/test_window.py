"""read_window: the spans of a window from a reference, as the command line reads them."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from pytest_incident.events.frozen import read_spans, write_spans
from pytest_incident.events.selection import choose
from pytest_incident.events.window import read_window
from pytest_incident.model.errors import RecordingError, SourceError
from pytest_incident.model.spans import parse_timestamp
from pytest_incident.model.spec import Select, Window
from tests.spans import client_span, server_span

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "incidents" / "2024-05-signup.events.jsonl.gz"
WINDOW = Window(parse_timestamp("2024-05-14T14:00:00Z"), parse_timestamp("2024-05-14T14:30:00Z"))


def test_the_demo_window_gives_the_requests_the_incident_selects() -> None:
    spans = list(read_window(DEMO.name, DEMO.parent, WINDOW))
    assert (
        choose(spans, WINDOW, Select()).requests
        == choose(read_spans(DEMO), WINDOW, Select()).requests
    )


def _at(text: str) -> int:
    return parse_timestamp(text)


def test_a_window_keeps_whole_traces_and_only_theirs(tmp_path: Path) -> None:
    inside = server_span(trace="a" * 32, at=_at("2024-05-14 14:10:00"))
    call = client_span(  # after the window closes: still the request's
        {"url.full": "http://api.example/x"}, trace="a" * 32, at=_at("2024-05-14 14:40:00")
    )
    outside = server_span(trace="b" * 32, at=_at("2024-05-14 15:10:00"))
    other = server_span(trace="c" * 32, at=_at("2024-05-14 14:10:00"), service="billing")
    path = tmp_path / "w.jsonl"
    write_spans(path, [inside, call, outside, other])
    assert list(read_window("w.jsonl", tmp_path, WINDOW)) == [inside, call, other]
    assert list(read_window("w.jsonl", tmp_path, WINDOW, service="billing")) == [other]
    assert list(read_window("w.jsonl", tmp_path, WINDOW, service="nothing")) == []
    # the twin: a window that starts later keeps the later request, alone
    later = Window(_at("2024-05-14T15:00:00Z"), _at("2024-05-14T16:00:00Z"))
    assert list(read_window(str(path), Path("/"), later)) == [outside]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("spans.csv", "unsupported file type 'spans.csv'"),
        ("missing.jsonl", "file not found"),
        ("dir.jsonl", "is a directory, not a regular file"),
    ],
)
def test_a_reference_that_is_no_frozen_file_is_a_source_error(
    tmp_path: Path, name: str, message: str
) -> None:
    (tmp_path / "spans.csv").write_text("")
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(SourceError, match=message):
        list(read_window(name, tmp_path, WINDOW))


def test_a_broken_frozen_file_is_a_recording_error_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"format": "pytest-incident-spans", "version": 1}\n{"x\n'))
    with pytest.raises(RecordingError) as caught:
        list(read_window(path.name, tmp_path, WINDOW))
    assert caught.value.line == 2


@pytest.mark.parametrize("service", ["signup", "billing-worker"])
def test_a_service_window_selects_as_the_whole_recording_does(service: str) -> None:
    """Database writes are compared only for a recording that captures them: a window whose
    traces hold no database statement carries one of the window's, so selection knows."""
    select = Select(service=service)
    spans = list(read_window(DEMO.name, DEMO.parent, WINDOW, service))
    requests = choose(spans, WINDOW, select).requests
    assert requests == choose(read_spans(DEMO), WINDOW, select).requests
    assert all(r.db_writes is not None for r in requests)

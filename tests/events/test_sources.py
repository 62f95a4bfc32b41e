"""Event sources: `source:` is a reference the registry resolves; a third-party source plugs
in by entry point; an unknown scheme is a file:line error naming the schemes available."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pytest_incident import IncidentFileError, SourceRegistry, open_incident

WINDOW = "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\n"

# A package that ships an event source: a module and its dist-info with the entry point.
SOURCE_MODULE = '''
from pytest_incident import Span, SpanKind

class MemorySource:
    """memory://N: N recorded GET /ping requests, made up in memory."""

    schemes = ("memory",)

    def read(self, spec):
        count = int(spec.source.location.removeprefix("memory://"))
        for i in range(count):
            yield Span(
                timestamp_ns=1_715_695_260_000_000_000 + i, trace_id=f"{i + 1:08x}" + "0" * 24,
                span_id=f"{i + 1:016x}", parent_span_id="", name="GET /ping",
                kind=SpanKind.SERVER, service="ping", duration_ns=1,
                attributes={"http.request.method": "GET", "url.path": "/ping",
                            "http.response.status_code": "200"},
            )
'''


def install_source(where: Path) -> None:
    (where / "memory_source.py").write_text(SOURCE_MODULE)
    info = where / "memory_source-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: memory-source\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[pytest_incident.sources]\nmemory = memory_source:MemorySource\n"
    )


def incident(pytester: pytest.Pytester, source: str) -> Path:
    path = pytester.path / "incidents" / "ping.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(WINDOW + f"source: {source}\ntarget: {{wsgi: 'app:app'}}\n")
    return path


def test_a_source_installed_by_entry_point_reads_its_scheme(pytester: pytest.Pytester) -> None:
    install_source(pytester.path)
    incident(pytester, "memory://3")
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess("--collect-only", "-q", "incidents")
    result.stdout.fnmatch_lines(
        [
            "incidents/ping.yaml::GET /ping[00000001]",
            "incidents/ping.yaml::GET /ping[00000003]",
            "*3 tests collected*",
        ]
    )


def test_without_the_entry_point_the_scheme_is_a_file_line_error(
    pytester: pytest.Pytester,
) -> None:
    incident(pytester, "memory://3")
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest_subprocess("--collect-only", "-q", "incidents")
    result.stdout.fnmatch_lines(
        [
            "incidents/ping.yaml:2: source: no event source reads memory:// references; "
            "available: a frozen file, clickhouse://, chdb://",
            "  >  2 | source: memory://3",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str()


def test_open_incident_uses_the_sources_it_is_given(tmp_path: Path) -> None:
    class Counting:
        schemes = ("memory",)
        calls = 0

        def read(self, spec: object) -> list[object]:
            Counting.calls += 1
            return []

    path = tmp_path / "x.yaml"
    path.write_text(WINDOW + "source: memory://0\ntarget: {wsgi: 'app:app'}\n")
    with pytest.raises(IncidentFileError, match="window: no recorded request") as info:
        open_incident(path, {}, SourceRegistry([Counting()]))  # type: ignore[list-item]
    assert Counting.calls == 1 and info.value.line == 1
    with pytest.raises(IncidentFileError) as info:
        open_incident(path, {}, SourceRegistry([]))
    assert info.value.line == 2
    assert info.value.message == ("source: no event source reads memory:// references; available: ")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("gone.jsonl", "source: file not found: {tmp}/gone.jsonl"),
        ("events.csv", "source: unsupported file type 'events.csv'; use a frozen .jsonl or "
         ".jsonl.gz file"),
    ],
)  # fmt: skip
def test_the_frozen_file_source_blames_the_source_line(
    tmp_path: Path, source: str, message: str
) -> None:
    (tmp_path / "events.csv").write_text("")
    path = tmp_path / "x.yaml"
    path.write_text(textwrap.dedent(f"{WINDOW}source: {source}\ntarget: {{wsgi: 'app:app'}}\n"))
    with pytest.raises(IncidentFileError) as info:
        open_incident(path, {})
    assert info.value.line == 2
    assert info.value.message == message.format(tmp=tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"timestamp_ns": None},
            "span '0b': timestamp_ns is None; a Span's timestamp_ns is an int",
        ),
        ({"timestamp_ns": -1}, "span '0b': timestamp_ns -1 is out of range (1970 to 9999)"),
        ({"trace_id": 7}, "span '0b': trace_id is 7; a Span's trace_id is a str"),
        ({"kind": "Server"}, "span '0b': kind is 'Server'; a Span's kind is a SpanKind"),
        ({"attributes": {"url.path": 5}}, "span '0b': attributes must map str to str"),
        (None, "dict where a Span belongs"),
    ],
)
def test_a_source_returning_malformed_spans_is_blamed_at_the_source_line(
    tmp_path: Path, change: dict[str, object] | None, message: str
) -> None:
    from dataclasses import replace

    from pytest_incident import Span, SpanKind

    good = Span(1_715_695_260_000_000_000, "0a", "0b", "", "GET /", SpanKind.SERVER, "s", {}, 1)
    bad: object = {"not": "a span"} if change is None else replace(good, **change)  # type: ignore[arg-type]

    class Broken:
        schemes = ("memory",)

        def read(self, spec: object) -> list[object]:
            return [good, bad]

    path = tmp_path / "x.yaml"
    path.write_text(WINDOW + "source: memory://0\ntarget: {wsgi: 'app:app'}\n")
    with pytest.raises(IncidentFileError) as info:
        open_incident(path, {}, SourceRegistry([Broken()]))  # type: ignore[list-item]
    assert info.value.line == 2
    assert info.value.message == f"source: the event source returned {message}"

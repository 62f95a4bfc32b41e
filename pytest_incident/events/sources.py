# Event sources: where an incident's recorded spans come from. `source:` in an incident file
# is a reference (scheme, location, line); the registry finds the source that reads that
# scheme and asks it for the spans.
#
# Sources, in the order they are asked:
#   1. `extra` sources the caller passes (the pytest plugin passes one that asks the
#      `pytest_incident_load_spans` hook, so a conftest.py can read any reference);
#   2. sources installed by packages under the entry-point group `pytest_incident.sources`
#      (each entry point names an EventSource class, built with no arguments);
#   3. the built-ins: `file` (a frozen .jsonl / .jsonl.gz file), and `clickhouse` / `chdb`
#      (events/clickhouse.py: the exporter's table on a server, or in a chDB directory).
# The first source that claims the scheme reads it. A reference no source claims is the
# user's mistake, reported at the `source:` line with the schemes that are available. The
# spans of a source other than the frozen file (which checks its own rows) are checked for
# the types selection relies on as they stream (`checked`), also at the `source:` line.
from __future__ import annotations

import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from importlib.metadata import entry_points
from typing import Protocol, runtime_checkable

from pytest_incident.events.clickhouse import ClickHouseSource
from pytest_incident.events.frozen import file_kind, read_spans
from pytest_incident.model.errors import IncidentFileError, ReplayConfigError
from pytest_incident.model.spans import MAX_TIMESTAMP_NS, Span, SpanKind
from pytest_incident.model.spec import IncidentSpec
from pytest_incident.spec import file_error

ENTRY_POINT_GROUP = "pytest_incident.sources"
FROZEN_SUFFIXES = (".jsonl", ".jsonl.gz")


@runtime_checkable
class EventSource(Protocol):
    """Reads the recorded spans an incident's `source:` names.

    `schemes` lists the reference schemes it reads (`file` for paths). `read` returns the
    spans in any order and may include spans outside the window (they are filtered); it
    raises RecordingError or IncidentFileError for what is wrong with the reference or the
    recording, with the file and line to blame.
    """

    schemes: tuple[str, ...]  # "*": any scheme; such a source may decline with None

    def read(self, spec: IncidentSpec) -> Iterable[Span] | None: ...


class FrozenFileSource:
    """`source: name.events.jsonl.gz`: a frozen file beside the incident file, streamed."""

    schemes: tuple[str, ...] = ("file",)

    def read(self, spec: IncidentSpec) -> Iterable[Span]:
        ref = spec.source
        frozen = "use a frozen .jsonl or .jsonl.gz file"
        if not ref.location.endswith(FROZEN_SUFFIXES):
            raise _at_source(spec, f"unsupported file type {ref.path.name!r}; {frozen}")
        try:
            mode = ref.path.stat().st_mode
        except FileNotFoundError:
            raise _at_source(spec, f"file not found: {ref.path}") from None
        except OSError as exc:
            raise _at_source(spec, f"cannot read {ref.path}: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            raise _at_source(spec, f"{ref.path} is {file_kind(mode)}, not a regular file; {frozen}")
        return read_spans(ref.path)


def _at_source(spec: IncidentSpec, message: str) -> IncidentFileError:
    return file_error(spec.path, spec.source.line, f"source: {message}")


class SourceRegistry:
    """The event sources available, asked in order (see the module comment)."""

    def __init__(self, sources: Sequence[EventSource]) -> None:
        self.sources = tuple(sources)

    @classmethod
    def default(cls, extra: Sequence[EventSource] = ()) -> SourceRegistry:
        """`extra`, then installed sources (entry points), then the built-ins."""
        return cls([*extra, *installed_sources(), FrozenFileSource(), ClickHouseSource()])

    def schemes(self) -> list[str]:
        found: list[str] = []
        for source in self.sources:
            found.extend(s for s in source.schemes if s not in found and s != "*")
        return found

    def read(self, spec: IncidentSpec) -> Iterable[Span]:
        """The spans `spec.source` names; IncidentFileError at the `source:` line when no
        source reads its scheme."""
        for source in self.sources:
            if spec.source.scheme not in source.schemes and "*" not in source.schemes:
                continue
            spans = source.read(spec)
            if spans is not None:  # a "*" source (the hook) may decline
                return spans if isinstance(source, FrozenFileSource) else checked(spans, spec)
        available = ", ".join(f"{s}://" if s != "file" else "a frozen file" for s in self.schemes())
        raise _at_source(
            spec,
            f"no event source reads {spec.source.scheme}:// references; available: {available}",
        )


def checked(spans: Iterable[Span], spec: IncidentSpec) -> Iterator[Span]:
    """The spans of a source other than the frozen file's (which checks its own), each
    checked for the types selection relies on: a mistake is the source's, reported at the
    `source:` line, never a traceback in selection."""
    if not isinstance(spans, Iterable):
        raise _at_source(spec, f"the event source returned {type(spans).__name__}, not spans")
    for span in spans:
        problem = span_shape(span)
        if problem:
            raise _at_source(spec, f"the event source returned {problem}")
        yield span


_SPAN_TEXT = ("trace_id", "span_id", "parent_span_id", "name", "service", "status_code")


def span_shape(span: object) -> str:
    """What is wrong with the shape of a span an event source returned, or ""."""
    if not isinstance(span, Span):
        return f"{type(span).__name__} where a Span belongs"
    shown = repr(span.span_id)[:40]
    for name in ("timestamp_ns", "duration_ns"):
        value = getattr(span, name)
        if isinstance(value, bool) or not isinstance(value, int):
            return f"span {shown}: {name} is {value!r}; a Span's {name} is an int"
    if not 0 <= span.timestamp_ns <= MAX_TIMESTAMP_NS:
        return f"span {shown}: timestamp_ns {span.timestamp_ns} is out of range (1970 to 9999)"
    for name in _SPAN_TEXT:
        if not isinstance(getattr(span, name), str):
            return f"span {shown}: {name} is {getattr(span, name)!r}; a Span's {name} is a str"
    if not isinstance(span.kind, SpanKind):
        return f"span {shown}: kind is {span.kind!r}; a Span's kind is a SpanKind"
    if not isinstance(span.attributes, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in span.attributes.items()
    ):
        return f"span {shown}: attributes must map str to str"
    return ""


def installed_sources() -> list[EventSource]:
    """The sources packages install under the `pytest_incident.sources` entry-point group."""
    found: list[EventSource] = []
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            factory = entry.load()
            source = factory()
        except Exception as exc:
            raise ReplayConfigError(
                f"cannot load the event source {entry.name} = {entry.value} "
                f"(entry point group {ENTRY_POINT_GROUP}): {exc!r}"
            ) from None
        if not isinstance(source, EventSource):
            raise ReplayConfigError(
                f"the event source {entry.name} = {entry.value} is not an EventSource "
                "(it needs `schemes` and `read(spec)`)"
            )
        found.append(source)
    return found

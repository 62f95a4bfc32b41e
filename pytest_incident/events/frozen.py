# The frozen event file: JSON Lines (optionally gzip), one `otel_traces` row per line, after
# a first line naming the format and its version.
#
# Strategy: rows use the exporter's column names (Timestamp, TraceId, ..., Events.Name), so
# ClickHouse reads the file with `file(path, JSONEachRow)`. Reading is a stream: spans are
# yielded one by one and never held here. Rows that fail to parse raise RecordingError with
# the line number.
#
# Also the built-in event source for `source: file.jsonl[.gz]` (FrozenFileSource).
from __future__ import annotations

import gzip
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from pytest_incident.model.errors import RecordingError
from pytest_incident.model.spans import (
    Span,
    SpanEvent,
    SpanKind,
    format_timestamp,
    parse_timestamp,
)

FORMAT_NAME = "pytest-incident-spans"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)


def _open_text(path: Path, mode: str) -> IO[str]:
    if path.suffix == ".gz":
        # mtime=0 keeps a re-frozen file byte-identical when its spans are.
        raw = gzip.GzipFile(filename=str(path), mode=mode + "b", mtime=0)
        return io.TextIOWrapper(raw, encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def header_row() -> dict[str, Any]:
    return {"format": FORMAT_NAME, "version": FORMAT_VERSION}


def span_to_row(span: Span) -> dict[str, Any]:
    return {
        "Timestamp": format_timestamp(span.timestamp_ns),
        "TraceId": span.trace_id,
        "SpanId": span.span_id,
        "ParentSpanId": span.parent_span_id,
        "TraceState": "",
        "SpanName": span.name,
        "SpanKind": span.kind.value,
        "ServiceName": span.service,
        "ResourceAttributes": dict(span.resource_attributes),
        "ScopeName": "",
        "ScopeVersion": "",
        "SpanAttributes": dict(span.attributes),
        "Duration": span.duration_ns,
        "StatusCode": span.status_code,
        "StatusMessage": span.status_message,
        "Events.Timestamp": [format_timestamp(e.timestamp_ns) for e in span.events],
        "Events.Name": [e.name for e in span.events],
        "Events.Attributes": [dict(e.attributes) for e in span.events],
    }


def _str_map(value: Any, column: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{column} must be an object of strings")
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()}


def row_to_span(row: dict[str, Any]) -> Span:
    try:
        names = row.get("Events.Name") or []
        stamps = row.get("Events.Timestamp") or []
        attrs = row.get("Events.Attributes") or [{}] * len(names)
        events = tuple(
            SpanEvent(parse_timestamp(t), str(n), _str_map(a, "Events.Attributes"))
            for t, n, a in zip(stamps, names, attrs, strict=True)
        )
        return Span(
            timestamp_ns=parse_timestamp(row["Timestamp"]),
            trace_id=str(row["TraceId"]),
            span_id=str(row["SpanId"]),
            parent_span_id=str(row.get("ParentSpanId", "")),
            name=str(row.get("SpanName", "")),
            kind=SpanKind.parse(str(row.get("SpanKind", "Unspecified"))),
            service=str(row.get("ServiceName", "")),
            attributes=_str_map(row.get("SpanAttributes"), "SpanAttributes"),
            duration_ns=int(row.get("Duration", 0)),
            status_code=str(row.get("StatusCode", "Unset")),
            status_message=str(row.get("StatusMessage", "")),
            resource_attributes=_str_map(row.get("ResourceAttributes"), "ResourceAttributes"),
            events=events,
        )
    except KeyError as exc:
        raise ValueError(f"missing column {exc.args[0]}") from None
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


def read_spans(path: Path) -> Iterator[Span]:
    """Stream the spans of a frozen file, checking its format line first."""
    with _open_text(path, "r") as stream:
        first = stream.readline()
        try:
            header = json.loads(first) if first.strip() else None
        except json.JSONDecodeError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
            raise RecordingError(
                path, 1, f'first line must be {{"format": "{FORMAT_NAME}", "version": N}}'
            )
        if header.get("version") not in SUPPORTED_VERSIONS:
            raise RecordingError(
                path,
                1,
                f"format version {header.get('version')!r} is not supported; "
                f"supported: {', '.join(map(str, SUPPORTED_VERSIONS))}",
            )
        for number, line in enumerate(stream, start=2):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("a row must be a JSON object")
                yield row_to_span(row)
            except ValueError as exc:  # JSONDecodeError is a ValueError
                raise RecordingError(path, number, str(exc)) from None


def write_spans(path: Path, spans: Iterable[Span]) -> int:
    """Write a frozen file (gzip when the name ends in .gz); returns the number of spans."""
    count = 0
    with _open_text(path, "w") as stream:
        stream.write(json.dumps(header_row()) + "\n")
        for span in spans:
            stream.write(json.dumps(span_to_row(span), sort_keys=True) + "\n")
            count += 1
    return count

# The frozen event file: JSON Lines (optionally gzip), one `otel_traces` row per line, after
# a first line naming the format and its version.
#
# Strategy: rows use the exporter's column names (Timestamp, TraceId, ..., Events.Name), so
# ClickHouse reads the file with `file(path, JSONEachRow)`. Reading is a stream: spans are
# yielded one by one and never held here.
#
# Reading is total and bounded. Whatever the bytes, it yields valid Spans or raises
# RecordingError at the line (of the decompressed text) where it stopped, with the span id
# when the row has a readable one. Only a regular file is opened (a FIFO or a device would
# block or never end), without blocking; the file, its decompressed text, each line and each
# row's JSON nesting are capped (ReadLimits, README "Limits"). Columns have the types the
# exporter writes: a number is never taken for a string nor a string for a number, numbers
# are finite, and numbers in text are ASCII digits.
#
# Also the built-in event source for `source: file.jsonl[.gz]` (FrozenFileSource).
from __future__ import annotations

import gzip
import io
import json
import math
import os
import re
import stat
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from pytest_incident.model.errors import RecordingError
from pytest_incident.model.spans import (
    Span,
    SpanEvent,
    SpanKind,
    SpanOrigin,
    format_timestamp,
    parse_timestamp,
)

FORMAT_NAME = "pytest-incident-spans"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)

MiB = 1 << 20
MAX_FILE_BYTES = 256 * MiB  # the file as stored (compressed or not)
MAX_TEXT_BYTES = 1024 * MiB  # its text once decompressed, all lines together
MAX_LINE_BYTES = 16 * MiB  # one span (bodies included), newline excluded
MAX_JSON_DEPTH = 64  # nested objects and arrays in one row
MAX_NUMBER_DIGITS = 40  # characters of one JSON number
MAX_DURATION_NS = 2**63 - 1  # ClickHouse's Duration is an Int64 of nanoseconds

_TRACE_ID_RE = re.compile(r"[0-9a-fA-F]{1,32}")
_SPAN_ID_RE = re.compile(r"[0-9a-fA-F]{1,16}")
_DIGITS_RE = re.compile(r"[0-9]{1,19}")
_SPAN_ID_IN_TEXT_RE = re.compile(r'"SpanId"\s*:\s*"([0-9a-fA-F]{1,16})"')


@dataclass(frozen=True)
class ReadLimits:
    """How much a frozen file may hold (README "Limits"); tests pass smaller ones."""

    file_bytes: int = MAX_FILE_BYTES
    text_bytes: int = MAX_TEXT_BYTES
    line_bytes: int = MAX_LINE_BYTES
    json_depth: int = MAX_JSON_DEPTH


def _size(count: int) -> str:
    return f"{count // MiB} MiB" if count >= MiB and count % MiB == 0 else f"{count} bytes"


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


# -- one row -----------------------------------------------------------------------------


def _kind_of(value: Any) -> str:
    """A JSON value's kind, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    text = value if len(value) <= 40 else value[:40] + "..."
    return repr(text)


def _text(row: dict[str, Any], column: str, default: str = "") -> str:
    """An optional string column (absent or null: `default`)."""
    value = row.get(column)
    if value is None:
        return default
    if not isinstance(value, str):
        raise ValueError(f"{column} must be a string, got {_kind_of(value)}")
    return value


def _id(row: dict[str, Any], column: str, pattern: re.Pattern[str], digits: int) -> str:
    value = row.get(column)
    if value is None and column == "ParentSpanId":
        return ""
    if value is None:
        raise ValueError(f"missing column {column}")
    empty_parent = column == "ParentSpanId" and value == ""
    if isinstance(value, str) and (empty_parent or pattern.fullmatch(value)):
        return value
    raise ValueError(
        f"{column} must be a string of hex digits (at most {digits}), got {_kind_of(value)}"
    )


def _timestamp(value: Any, column: str) -> int:
    try:
        return parse_timestamp(value)
    except ValueError:
        raise ValueError(
            f"{column}: {_kind_of(value)} is not a UTC timestamp; allowed: text like "
            "'2024-05-14 14:03:12.123456789' (or ISO 8601) or nanoseconds since 1970, "
            "up to the year 9999"
        ) from None


def _duration(value: Any) -> int:
    """Duration in nanoseconds: a whole number, or one as ASCII digits (ClickHouse quotes
    64-bit integers in JSON by default)."""
    allowed = f"a whole number of nanoseconds, 0 to {MAX_DURATION_NS}"
    number: int | float | None = None
    if isinstance(value, str):
        number = int(value) if _DIGITS_RE.fullmatch(value) else None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = value
    if isinstance(number, float):
        number = int(number) if math.isfinite(number) and number.is_integer() else None
    if number is None or not 0 <= number <= MAX_DURATION_NS:
        raise ValueError(f"Duration must be {allowed}, got {_kind_of(value)}")
    return number


def _str_map(value: Any, column: str) -> dict[str, str]:
    """An attribute map: strings as they are; numbers, booleans, objects and arrays as their
    JSON text (ClickHouse stores every value as a string)."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{column} must be an object of strings, got {_kind_of(value)}")
    found: dict[str, str] = {}
    for key, item in value.items():
        if item is None:
            raise ValueError(
                f"{column}: {key!r} is null; allowed: a string, number, boolean, object or array"
            )
        found[key] = item if isinstance(item, str) else json.dumps(item)
    return found


def _list(row: dict[str, Any], column: str) -> list[Any]:
    value = row.get(column)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{column} must be an array, got {_kind_of(value)}")
    return value


def _events(row: dict[str, Any]) -> tuple[SpanEvent, ...]:
    names = _list(row, "Events.Name")
    stamps = _list(row, "Events.Timestamp")
    attrs = _list(row, "Events.Attributes") or [{}] * len(names)
    if not len(names) == len(stamps) == len(attrs):
        raise ValueError(
            "Events.Name, Events.Timestamp and Events.Attributes must be arrays of one length, "
            f"got {len(names)}, {len(stamps)} and {len(attrs)}"
        )
    events = []
    for stamp, name, attributes in zip(stamps, names, attrs, strict=True):
        if not isinstance(name, str):
            raise ValueError(f"Events.Name must hold strings, got {_kind_of(name)}")
        at = _timestamp(stamp, "Events.Timestamp")
        events.append(SpanEvent(at, name, _str_map(attributes, "Events.Attributes")))
    return tuple(events)


def row_to_span(row: dict[str, Any], origin: SpanOrigin | None = None) -> Span:
    """The Span of one row; ValueError saying which column is wrong and what it allows
    (after `span ID: ` when the row's SpanId is readable)."""
    span_id = row.get("SpanId")
    named = isinstance(span_id, str) and _SPAN_ID_RE.fullmatch(span_id)
    try:
        if "Timestamp" not in row:
            raise ValueError("missing column Timestamp")
        timestamp = _timestamp(row["Timestamp"], "Timestamp")
        return Span(
            timestamp_ns=timestamp,
            trace_id=_id(row, "TraceId", _TRACE_ID_RE, 32),
            span_id=_id(row, "SpanId", _SPAN_ID_RE, 16),
            parent_span_id=_id(row, "ParentSpanId", _SPAN_ID_RE, 16),
            name=_text(row, "SpanName"),
            kind=SpanKind.parse(_text(row, "SpanKind", "Unspecified")),
            service=_text(row, "ServiceName"),
            attributes=_str_map(row.get("SpanAttributes"), "SpanAttributes"),
            duration_ns=_duration(row.get("Duration", 0)),
            status_code=_text(row, "StatusCode", "Unset"),
            status_message=_text(row, "StatusMessage"),
            resource_attributes=_str_map(row.get("ResourceAttributes"), "ResourceAttributes"),
            events=_events(row),
            origin=origin,
        )
    except ValueError as exc:
        raise ValueError(f"span {span_id}: {exc}" if named else str(exc)) from None


# -- one line ----------------------------------------------------------------------------


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number; numbers must be finite")


def _finite(text: str) -> float:
    if len(text) > MAX_NUMBER_DIGITS:
        raise ValueError(f"the number {text[:20]}... is longer than {MAX_NUMBER_DIGITS} characters")
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"the number {text} is out of range; allowed: finite numbers")
    return number


def _whole(text: str) -> int:
    if len(text) > MAX_NUMBER_DIGITS:
        raise ValueError(f"the number {text[:20]}... is longer than {MAX_NUMBER_DIGITS} characters")
    return int(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key!r} appears twice in one object")
        found[key] = value
    return found


_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _check_value(value: Any, limit: int, strings: bool) -> None:
    """ValueError when `value` nests objects and arrays deeper than `limit`, or (`strings`)
    holds a lone surrogate (a `\\ud800` escape: not text); iterative, never recursive."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > limit:
                raise ValueError(f"the JSON nests deeper than {limit} levels of objects and arrays")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif strings and isinstance(item, str) and _SURROGATE_RE.search(item):
            raise ValueError(f"{_kind_of(item)} holds a lone surrogate escape: it is not text")


def parse_line(text: str, depth: int = MAX_JSON_DEPTH) -> Any:
    """One line's JSON value: finite numbers, no repeated keys, text strings, at most `depth`
    levels; ValueError otherwise."""
    try:
        value = json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite,
            parse_int=_whole,
            object_pairs_hook=_unique_keys,
        )
    except RecursionError:
        raise ValueError(
            f"the JSON nests deeper than {depth} levels of objects and arrays"
        ) from None
    _check_value(value, depth, strings="\\u" in text)
    return value


# -- the file ----------------------------------------------------------------------------


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, for messages."""
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _open_regular(path: Path, limits: ReadLimits) -> BinaryIO:
    """The file for reading, when it is a regular file within the size cap. Opened without
    blocking (a FIFO would wait for a writer) and checked on the descriptor (no race)."""
    allowed = "a recording is a regular .jsonl or .jsonl.gz file"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise RecordingError(path, 1, f"cannot open the recording: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RecordingError(
                path, 1, f"is {file_kind(info.st_mode)}, not a regular file; {allowed}"
            )
        if info.st_size > limits.file_bytes:
            raise RecordingError(
                path,
                1,
                f"the file holds {info.st_size} bytes; the limit is {_size(limits.file_bytes)} "
                "(split the recording, or freeze a narrower window)",
            )
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


class _Lines:
    """The file's lines as bytes, numbered from 1, each within the limits; RecordingError at
    the line where the bytes stop making sense (corrupt or truncated gzip, a read error)."""

    def __init__(self, path: Path, raw: BinaryIO, limits: ReadLimits) -> None:
        self.path = path
        self.limits = limits
        self.gzipped = path.suffix == ".gz"
        self.stream: BinaryIO | gzip.GzipFile = (
            gzip.GzipFile(fileobj=raw, mode="rb") if self.gzipped else raw
        )
        self.number = 0
        self.total = 0

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        while True:
            line = self._read()
            if not line:
                return
            self.number += 1
            yield self.number, line

    def _read(self) -> bytes:
        limit = self.limits.line_bytes
        number = self.number + 1
        try:
            line = self.stream.readline(limit + 1)
        except EOFError:
            raise self._error(
                number, "the gzip file is truncated (it ends before its end marker)"
            ) from None
        except gzip.BadGzipFile as exc:
            raise self._error(number, f"not a valid gzip file ({exc})") from None
        except zlib.error as exc:
            raise self._error(number, f"the gzip data is corrupt ({exc})") from None
        except OSError as exc:
            raise self._error(number, f"cannot read the recording: {exc.strerror or exc}") from None
        if len(line) > limit and not line.endswith(b"\n"):
            raise self._error(
                number, f"the line is longer than {_size(limit)}; the limit is MAX_LINE_BYTES"
            )
        self.total += len(line)
        if self.total > self.limits.text_bytes:
            what = "decompressed text" if self.gzipped else "text"
            raise self._error(
                number,
                f"the recording's {what} is longer than {_size(self.limits.text_bytes)}; "
                "split the recording, or freeze a narrower window",
            )
        return line

    def _error(self, number: int, message: str) -> RecordingError:
        return RecordingError(self.path, number, message)


def _decode(line: bytes) -> str:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"not UTF-8 text (byte 0x{line[exc.start]:02x} at column {exc.start + 1}); "
            "a recording is UTF-8 JSON Lines"
        ) from None


def _check_header(path: Path, line: bytes | None, limits: ReadLimits) -> None:
    expected = f'first line must be {{"format": "{FORMAT_NAME}", "version": N}}'
    try:
        text = _decode(line) if line is not None else None
    except ValueError as exc:
        raise RecordingError(path, 1, str(exc)) from None
    try:
        header = parse_line(text, limits.json_depth) if text and text.strip() else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise RecordingError(path, 1, expected)
    version = header.get("version")
    if type(version) is not int or version not in SUPPORTED_VERSIONS:  # not 1.0, not true
        shown = json.dumps(version) if version is not None else "missing"
        raise RecordingError(
            path,
            1,
            f"format version {shown} is not supported; "
            f"supported: {', '.join(map(str, SUPPORTED_VERSIONS))}",
        )


def _row_span(path: Path, number: int, line: bytes, limits: ReadLimits) -> Span | None:
    """The span of one line (None for a blank one); ValueError for a row that is wrong."""
    text = _decode(line)
    if not text.strip():
        return None
    try:
        row = parse_line(text, limits.json_depth)
    except ValueError as exc:  # no row to read its span id from: find it
        found = _SPAN_ID_IN_TEXT_RE.search(text)
        raise ValueError(f"span {found[1]}: {exc}" if found else str(exc)) from None
    if not isinstance(row, dict):
        raise ValueError(f"a row must be a JSON object, got {_kind_of(row)}")
    return row_to_span(row, SpanOrigin(path, number))


def scan_spans(path: Path, limits: ReadLimits = ReadLimits()) -> Iterator[Span | RecordingError]:
    """Stream the spans of a frozen file, and a RecordingError in place of each row that
    is wrong (the scan goes on after it: `validate` reports them all). Raises RecordingError
    for what ends the file's reading: its format line, a corrupt gzip stream, a cap."""
    with _open_regular(path, limits) as raw:
        lines = iter(_Lines(path, raw, limits))
        first = next(lines, None)
        _check_header(path, first[1] if first else None, limits)
        for number, line in lines:
            try:
                span = _row_span(path, number, line, limits)
            except ValueError as exc:  # JSONDecodeError is a ValueError
                yield RecordingError(path, number, str(exc))
                continue
            if span is not None:
                yield span


def read_spans(path: Path, limits: ReadLimits = ReadLimits()) -> Iterator[Span]:
    """Stream the spans of a frozen file, checking its format line first; RecordingError at
    the line for anything else (see the module comment)."""
    for item in scan_spans(path, limits):
        if isinstance(item, RecordingError):
            raise item
        yield item


def write_spans(path: Path, spans: Iterable[Span]) -> int:
    """Write a frozen file (gzip when the name ends in .gz); returns the number of spans."""
    count = 0
    with _open_text(path, "w") as stream:
        stream.write(json.dumps(header_row()) + "\n")
        for span in spans:
            stream.write(json.dumps(span_to_row(span), sort_keys=True) + "\n")
            count += 1
    return count

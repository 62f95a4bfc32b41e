"""Reading a recording is total and bounded: every malformed frozen file ends in a
RecordingError at its line (and span, where known) saying what is allowed, never another
exception or a hang. Each hostile file has its twin: the same file made right reads the same
spans."""

from __future__ import annotations

import gzip
import json
import os
import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_incident import IncidentFileError, open_incident
from pytest_incident.events.frozen import (
    FORMAT_NAME,
    MAX_FILE_BYTES,
    MAX_JSON_DEPTH,
    MAX_LINE_BYTES,
    ReadLimits,
    read_spans,
    span_to_row,
)
from pytest_incident.model.errors import RecordingError
from pytest_incident.model.recorded import RecordedRequest
from pytest_incident.model.spans import SpanOrigin

from ..spans import server_span

HEADER = json.dumps({"format": FORMAT_NAME, "version": 1})
SPAN = server_span(at=1_715_695_392_000_000_000, status=500)
ROW = span_to_row(SPAN)


def row(**changes: Any) -> str:
    changed = dict(ROW)
    changed.update(changes)
    return json.dumps(changed)


def write(path: Path, text: str | bytes) -> Path:
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def failure(path: Path, limits: ReadLimits | None = None) -> RecordingError:
    with pytest.raises(RecordingError) as info:
        list(read_spans(path, limits or ReadLimits()))
    assert str(info.value).startswith(f"{path}:{info.value.line}: ")
    return info.value


def good(tmp_path: Path, name: str = "twin.jsonl") -> Path:
    return write(tmp_path / name, f"{HEADER}\n{row()}\n")


def test_the_twin_reads_the_span(tmp_path: Path) -> None:
    (span,) = read_spans(good(tmp_path))
    assert span == SPAN
    assert span.origin == SpanOrigin(tmp_path / "twin.jsonl", 2)


# -- gzip -----------------------------------------------------------------------------------


def test_truncated_gzip(tmp_path: Path) -> None:
    whole = gzip.compress(f"{HEADER}\n{row()}\n".encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[:-12])
    error = failure(tmp_path / "cut.jsonl.gz")
    assert "the gzip file is truncated" in error.message
    (tmp_path / "whole.jsonl.gz").write_bytes(whole)
    assert list(read_spans(tmp_path / "whole.jsonl.gz")) == [SPAN]


def test_corrupt_gzip(tmp_path: Path) -> None:
    whole = bytearray(gzip.compress(f"{HEADER}\n{row()}\n".encode()))
    corrupt = bytes(whole[:12]) + b"\xff" * 16 + bytes(whole[28:])
    (tmp_path / "bad.jsonl.gz").write_bytes(corrupt)
    error = failure(tmp_path / "bad.jsonl.gz")
    assert error.line == 1
    assert "corrupt" in error.message or "gzip" in error.message


def test_a_crc_mismatch_is_corruption(tmp_path: Path) -> None:
    whole = bytearray(gzip.compress(f"{HEADER}\n{row()}\n".encode()))
    whole[-8] ^= 0xFF  # the CRC32 of the trailer
    (tmp_path / "crc.jsonl.gz").write_bytes(bytes(whole))
    assert "not a valid gzip file (CRC check failed" in failure(tmp_path / "crc.jsonl.gz").message


def test_a_plain_file_named_gz(tmp_path: Path) -> None:
    (tmp_path / "plain.jsonl.gz").write_text(f"{HEADER}\n{row()}\n")
    error = failure(tmp_path / "plain.jsonl.gz")
    assert (error.line, error.message.split(" (")[0]) == (1, "not a valid gzip file")


# -- text -----------------------------------------------------------------------------------


def test_non_utf8_bytes_name_their_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "latin.jsonl", f"{HEADER}\n{row()}\n".encode() + b'{"a": "\xe9"}\n')
    error = failure(path)
    assert error.line == 3
    assert error.message == (
        "not UTF-8 text (byte 0xe9 at column 8); a recording is UTF-8 JSON Lines"
    )


def test_a_lone_surrogate_escape_is_not_text(tmp_path: Path) -> None:
    bad = row(SpanName="\\ud800").replace("\\\\ud800", "\\ud800")
    error = failure(write(tmp_path / "s.jsonl", f"{HEADER}\n{bad}\n"))
    assert "lone surrogate" in error.message
    paired = row(SpanName="😀")  # json.dumps escapes it as a surrogate pair
    assert "\\ud83d\\ude00" in paired
    (span,) = read_spans(write(tmp_path / "ok.jsonl", f"{HEADER}\n{paired}\n"))
    assert span.name == "😀"


# -- numbers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "duration, message",
    [
        ("Infinity", "Infinity is not a JSON number; numbers must be finite"),
        ("-Infinity", "-Infinity is not a JSON number"),
        ("NaN", "NaN is not a JSON number"),
        ("1e400", f"span {SPAN.span_id}: the number 1e400 is out of range; allowed: finite"),
        ("1" * 5000, "is longer than 40 characters"),
        ("-5", "Duration must be a whole number of nanoseconds"),
        ("2.5", "Duration must be a whole number of nanoseconds"),
        ('"²"', "Duration must be a whole number of nanoseconds"),
        ('"५४३२"', "Duration must be a whole number of nanoseconds"),
        ("true", "Duration must be a whole number of nanoseconds, 0 to 9223372036854775807, "
         "got a boolean"),
        ("9223372036854775808", "Duration must be"),
    ],
)  # fmt: skip
def test_hostile_numbers(tmp_path: Path, duration: str, message: str) -> None:
    line = row().replace('"Duration": 1', f'"Duration": {duration}')
    error = failure(write(tmp_path / "n.jsonl", f"{HEADER}\n{line}\n"))
    assert error.line == 2
    assert message in error.message


@pytest.mark.parametrize("duration", ["5", '"5"', "5.0"])
def test_durations_the_exporter_writes(tmp_path: Path, duration: str) -> None:
    line = row().replace('"Duration": 1', f'"Duration": {duration}')
    (span,) = read_spans(write(tmp_path / "n.jsonl", f"{HEADER}\n{line}\n"))
    assert span.duration_ns == 5


@pytest.mark.parametrize(
    "stamp",
    [None, True, [], "२०२४-05-14 14:03:12", "2024-05-14 14:03:12.५", -1, 1e30, "9999-99-99"],
)
def test_hostile_timestamps(tmp_path: Path, stamp: Any) -> None:
    error = failure(write(tmp_path / "t.jsonl", f"{HEADER}\n{row(Timestamp=stamp)}\n"))
    assert error.line == 2
    assert error.message.startswith(f"span {SPAN.span_id}: Timestamp: ")
    assert "is not a UTC timestamp; allowed: " in error.message


# -- types ----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [True, "1", 1.0, None, [1], 2])
def test_the_version_is_the_integer_1(tmp_path: Path, version: Any) -> None:
    header = json.dumps({"format": FORMAT_NAME, "version": version})
    error = failure(write(tmp_path / "v.jsonl", f"{header}\n{row()}\n"))
    assert error.line == 1
    assert "is not supported; supported: 1" in error.message


@pytest.mark.parametrize(
    "column, value",
    [
        ("SpanId", 12),
        ("SpanId", [1]),
        ("SpanId", "not hex"),
        ("TraceId", 4),
        ("TraceId", {"a": 1}),
        ("TraceId", "x" * 33),
        ("ParentSpanId", 0),
        ("SpanName", 7),
        ("ServiceName", ["signup"]),
        ("SpanKind", 2),
        ("StatusCode", False),
    ],
)
def test_columns_of_the_wrong_json_type_are_rejected_not_stringified(
    tmp_path: Path, column: str, value: Any
) -> None:
    error = failure(write(tmp_path / "c.jsonl", f"{HEADER}\n{row(**{column: value})}\n"))
    assert error.line == 2
    assert f"{column} must be a string" in error.message
    if column != "SpanId":
        assert error.message.startswith(f"span {SPAN.span_id}: ")


def test_null_optional_columns_are_absent(tmp_path: Path) -> None:
    line = row(ParentSpanId=None, StatusMessage=None, ResourceAttributes=None)
    (span,) = read_spans(write(tmp_path / "n.jsonl", f"{HEADER}\n{line}\n"))
    assert (span.parent_span_id, span.status_message, span.resource_attributes) == ("", "", {})


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"SpanAttributes": {"url.path": None}}, "'url.path' is null"),
        ({"Events.Name": "abc"}, "Events.Name must be an array"),
        ({"Events.Name": [1], "Events.Timestamp": [0]}, "Events.Name must hold strings"),
        ({"Events.Name": ["a"], "Events.Timestamp": [None]}, "Events.Timestamp: null is not"),
        ({"SpanAttributes": {"a": 1}, "x": 1}, None),  # the twin: unknown columns are ignored
    ],
)
def test_attributes_and_events(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    path = write(tmp_path / "a.jsonl", f"{HEADER}\n{row(**changes)}\n")
    if message is None:
        (span,) = read_spans(path)
        assert span.attributes == {"a": "1"}
        return
    assert message in failure(path).message


def test_a_repeated_key_is_ambiguous(tmp_path: Path) -> None:
    line = row()[:-1] + ', "SpanId": "ffff"}'
    path = write(tmp_path / "d.jsonl", f"{HEADER}\n{line}\n")
    message = failure(path).message
    assert message == f"span {SPAN.span_id}: the key 'SpanId' appears twice in one object"


# -- depth and size -------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 1_000, 200_000])
def test_deep_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    nested = "[" * (depth - 1) + "]" * (depth - 1)
    line = row(SpanAttributes={"deep": "x"}).replace('"x"', nested)
    error = failure(write(tmp_path / "deep.jsonl", f"{HEADER}\n{line}\n"))
    assert error.line == 2
    assert error.message == (
        f"span {SPAN.span_id}: the JSON nests deeper than {MAX_JSON_DEPTH} levels of objects "
        "and arrays"
    )


def test_nesting_up_to_the_limit_reads(tmp_path: Path) -> None:
    nested = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)  # row, map, then these
    line = row(SpanAttributes={"deep": "x"}).replace('"x"', nested)
    (span,) = read_spans(write(tmp_path / "deep.jsonl", f"{HEADER}\n{line}\n"))
    assert span.attributes["deep"].count("[") == MAX_JSON_DEPTH - 2


def test_a_long_line_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    limits = ReadLimits(line_bytes=len(row()))
    assert list(read_spans(good(tmp_path), limits)) == [SPAN]  # exactly at the limit: read
    long = row(SpanName="x" * 100)
    error = failure(write(tmp_path / "long.jsonl.gz", f"{HEADER}\n{long}\n"), limits)
    assert error.line == 2
    assert error.message.startswith(f"the line is longer than {len(row())} bytes")


def test_a_huge_line_inside_a_gzip_stops_at_the_cap(tmp_path: Path) -> None:
    # 64 MiB of one line compress to ~64 KiB; reading stops after the cap, not at the end
    path = tmp_path / "huge.jsonl.gz"
    with gzip.open(path, "wb") as stream:
        stream.write(f"{HEADER}\n".encode())
        chunk = b"x" * (1 << 20)
        for _ in range(64):
            stream.write(chunk)
    error = failure(path, ReadLimits(line_bytes=1 << 20))
    assert (error.line, error.message.split(";")[0]) == (2, "the line is longer than 1 MiB")


def test_a_line_above_the_default_cap_inside_a_gzip(tmp_path: Path) -> None:
    path = tmp_path / "long.jsonl.gz"
    with gzip.open(path, "wb", compresslevel=1) as stream:
        stream.write(f"{HEADER}\n{row()}\n".encode())
        stream.write(b"x" * (MAX_LINE_BYTES + 1) + b"\n")
    error = failure(path)
    assert (error.line, error.message.split(";")[0]) == (3, "the line is longer than 16 MiB")


def test_the_decompressed_text_is_capped(tmp_path: Path) -> None:
    path = write(tmp_path / "many.jsonl.gz", HEADER + "\n" + f"{row()}\n" * 10)
    limits = ReadLimits(text_bytes=len(HEADER) + 1 + 3 * (len(row()) + 1))
    assert len(list(read_spans(path, ReadLimits()))) == 10
    with pytest.raises(RecordingError) as info:
        for _ in read_spans(path, limits):
            pass
    assert info.value.line == 5
    assert "decompressed text is longer than" in info.value.message


def test_a_file_above_the_size_cap_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as stream:  # sparse: no disk is written
        stream.truncate(MAX_FILE_BYTES + 1)
    error = failure(path)
    assert error.line == 1
    assert error.message.startswith(
        f"the file holds {MAX_FILE_BYTES + 1} bytes; the limit is 256 MiB"
    )


# -- files that are not regular ------------------------------------------------------------


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "pipe.jsonl"
    os.mkfifo(path)
    error = failure(path)  # would block forever in open() or read() otherwise
    assert error.message == (
        "is a FIFO (named pipe), not a regular file; a recording is a regular .jsonl or "
        ".jsonl.gz file"
    )


def test_a_directory_and_a_device_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.jsonl").mkdir()
    assert failure(tmp_path / "dir.jsonl").message.startswith("is a directory, not a regular")
    assert failure(Path("/dev/zero")).message.startswith("is a device, not a regular file")


def test_an_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = good(tmp_path)

    def denied(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", denied)  # root reads any file: deny it the way EACCES does
    error = failure(path)
    assert (error.line, error.message) == (1, "cannot open the recording: Permission denied")


def test_missing_file(tmp_path: Path) -> None:
    error = failure(tmp_path / "gone.jsonl")
    assert error.message == "cannot open the recording: No such file or directory"


WINDOW = "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\n"


@pytest.mark.parametrize("kind", ["fifo", "directory"])
def test_the_frozen_source_names_what_the_source_is(tmp_path: Path, kind: str) -> None:
    events = tmp_path / "events.jsonl"
    if kind == "fifo":
        os.mkfifo(events)
    else:
        events.mkdir()
    path = tmp_path / "x.yaml"
    path.write_text(textwrap.dedent(f"{WINDOW}source: events.jsonl\ntarget: {{wsgi: 'a:b'}}\n"))
    with pytest.raises(IncidentFileError) as info:
        open_incident(path, {})
    assert info.value.line == 2
    shown = "a FIFO (named pipe)" if kind == "fifo" else "a directory"
    assert info.value.message == (
        f"source: {events} is {shown}, not a regular file; use a frozen .jsonl or .jsonl.gz file"
    )


# -- status codes and ports in text ---------------------------------------------------------


@pytest.mark.parametrize("status", ["²", "५४३", "5OO", "-500", "5000", " 500"])
def test_a_status_that_is_not_ascii_digits_is_no_status(status: str) -> None:
    request = RecordedRequest(server_span(status=None, **{"http.response.status_code": status}))
    assert request.status is None  # never int("²"), never 543 from Devanagari digits
    assert request.problem is not None
    assert request.problem.field == "http.response.status_code"
    twin = RecordedRequest(server_span(status=500))
    assert (twin.status, twin.failed, twin.problem) == (500, True, None)


def test_a_status_number_in_the_row_is_its_text(tmp_path: Path) -> None:
    line = row(SpanAttributes={"http.response.status_code": 503})
    (span,) = read_spans(write(tmp_path / "n.jsonl", f"{HEADER}\n{line}\n"))
    assert RecordedRequest(span).status == 503

# `expect.response`: is the answer a request gets now the one it got in production? Pure: the
# recorded request, the replay's answer, the rule and the route's noise in; the problems and a
# readable diff out. Only requests that succeeded in production are compared (the others are
# judged by `expect.resolved`), and only when the replay got an answer at all.
#
# What is compared is what `expect.response.match` names: the status, chosen headers (their
# values joined with ", " when repeated) and the body. JSON bodies are compared structurally
# (pytest_incident.core.json_diff), so key order and whitespace never matter and each changed
# field is named; other bodies byte for byte, shown as a line diff. `ignore` entries (from the
# file and from the calibration file) leave out a header (`header:date`), a body field
# (`body:items.*.id`) or the whole body (`body`). Nothing is guessed: no pattern replaces
# uuids or timestamps here; `--incident-calibrate` learns which fields vary.
from __future__ import annotations

import difflib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_incident.core.json_diff import diff_json
from pytest_incident.model.recorded import RecordedRequest
from pytest_incident.model.spec import ResponseMatch

MAX_DIFF_LINES = 40
HINT = (
    "ignore a field with `body:<path>` in expect.response.ignore, or let "
    "--incident-calibrate learn the fields that vary between runs"
)


@dataclass(frozen=True)
class Answer:
    """What a target answered: the parts `expect.response` may compare."""

    status: int | None
    headers: tuple[tuple[str, str], ...]
    body: bytes


@dataclass(frozen=True)
class ResponseComparison:
    problems: tuple[str, ...] = ()  # one line each, for the verdict
    diff: tuple[str, ...] = ()  # the body's differences, for the report


MAX_DECODED_BYTES = 64 * 1024 * 1024  # a compressed body is compared decoded up to this size
MAX_JSON_DEPTH = 100  # deeper bodies are compared whole, as text (no recursion to exhaust)


def parse_json(body: bytes) -> tuple[bool, Any]:
    """(True, value) for a JSON object or array nested at most MAX_JSON_DEPTH deep;
    (False, None) otherwise."""
    try:
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError:
        return False, None
    if not text or text[0] not in "{[":
        return False, None
    try:
        value = json.loads(text, object_pairs_hook=_unique_keys)
    except (ValueError, RecursionError):  # not JSON, a duplicate key, a 5000-digit number
        return False, None
    return (True, value) if _shallow(value) else (False, None)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys repeat is not compared as JSON: readers disagree on its value."""
    value = dict(pairs)
    if len(value) != len(pairs):
        raise ValueError("duplicate key")
    return value


def decoded(body: bytes, headers: Sequence[tuple[str, str]]) -> bytes:
    """The body without its Content-Encoding (gzip, deflate), as the client reads it; the
    body as it is when it is not encoded, or not validly."""
    encoding = (header_values(headers, "content-encoding") or [""])[-1].lower()
    if encoding in ("gzip", "x-gzip"):
        wbits = 16 + 15
    elif encoding == "deflate":  # zlib-wrapped as the RFC says, or raw as some servers send
        wbits = 15 if body[:1] == b"\x78" else -15
    else:
        return body
    inflater = zlib.decompressobj(wbits)
    try:
        plain = inflater.decompress(body, MAX_DECODED_BYTES)
    except zlib.error:
        return body
    return body if inflater.unconsumed_tail else plain  # a bomb is compared as it came


def _shallow(value: Any) -> bool:
    """True when `value` nests at most MAX_JSON_DEPTH deep (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return False
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return True


def header_values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    """Every value of header `name` (lower case), in order: repeated headers stay apart."""
    return [v.strip() for k, v in headers if k.lower() == name]


def compare_response(
    recorded: RecordedRequest, now: Answer, rule: ResponseMatch, noise: Sequence[str] = ()
) -> ResponseComparison:
    if recorded.failed or recorded.status is None or now.status is None:
        return ResponseComparison()
    try:
        recorded_headers = recorded.response_headers
        recorded_body = recorded.response_body
    except ValueError as exc:
        return ResponseComparison((f"the recorded answer cannot be read: {exc}",))
    ignore = (*rule.ignore, *noise)
    problems: list[str] = []
    if "status" in rule.parts and now.status != recorded.status:
        problems.append(
            f"answered {now.status}, production answered {recorded.status} (expect.response)"
        )
    for part in rule.parts:
        if not part.startswith("header:"):
            continue
        name = part.removeprefix("header:")
        if not recorded_headers:
            problems.append(
                f"the recording kept no response headers to compare {name} with; record "
                f"them, or leave header:{name} out of expect.response.match"
            )
            continue
        was, is_now = header_values(recorded_headers, name), header_values(now.headers, name)
        if part in ignore and bool(was) == bool(is_now):
            continue  # noise: its value varies, never whether it is sent
        if was != is_now:
            problems.append(
                f"header {name}: {_shown(is_now)}, production sent {_shown(was)} (expect.response)"
            )
    diff: tuple[str, ...] = ()
    if "body" in rule.parts and "body" not in ignore:
        was_body = None if recorded_body is None else decoded(recorded_body, recorded_headers)
        body_problem, diff = _compare_body(was_body, decoded(now.body, now.headers), ignore)
        if body_problem:
            problems.append(body_problem)
    return ResponseComparison(tuple(problems), diff)


def _shown(values: list[str]) -> str:
    if not values:
        return "none"
    return " + ".join(repr(v) for v in values)


def _compare_body(
    was: bytes | None, now: bytes, ignore: Sequence[str]
) -> tuple[str, tuple[str, ...]]:
    if was is None:
        return (
            "the recording kept no response body (incident.response.body) to compare with; "
            "record it, or leave body out of expect.response.match",
            (),
        )
    fields = [entry.removeprefix("body:") for entry in ignore if entry.startswith("body:")]
    was_json, was_value = parse_json(was)
    now_json, now_value = parse_json(now)
    if was_json and now_json:
        changes = diff_json(was_value, now_value, fields)
        if not changes:
            return "", ()
        names = ", ".join(change.where for change in changes[:5])
        more = f" and {len(changes) - 5} more" if len(changes) > 5 else ""
        lines = [change.render() for change in changes[:MAX_DIFF_LINES]]
        if len(changes) > MAX_DIFF_LINES:
            lines.append(f"... {len(changes) - MAX_DIFF_LINES} more")
        problem = (
            f"response body differs from production's in {len(changes)} field(s): "
            f"{names}{more} ({HINT})"
        )
        return problem, tuple(lines)
    if was == now:
        return "", ()
    lines = list(
        difflib.unified_diff(
            was.decode("utf-8", "replace").splitlines(),
            now.decode("utf-8", "replace").splitlines(),
            "production",
            "now",
            lineterm="",
            n=1,
        )
    )[2:]
    if len(lines) > MAX_DIFF_LINES:
        lines = [*lines[:MAX_DIFF_LINES], f"... {len(lines) - MAX_DIFF_LINES} more lines"]
    if was_json:
        problem = "response body is not JSON any more (production's was)"
    elif now_json:
        problem = "response body is JSON now; production's was not"
    else:
        problem = (
            "response body differs from production's (not JSON: compared whole; "
            "ignore it with `body` in expect.response.ignore)"
        )
    return problem, tuple(lines)

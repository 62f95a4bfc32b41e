# The options `tail` and `freeze` share: which event source (`--source`), which requests
# (`--service`, `--filter`) and when (`--window A..B`, or `--since 2h` back from now).
# Each value is checked here; a mistake is a UsageError that says what is allowed.
#
# Filters are `KEY OP VALUE`: `status>=500`, `status=5xx`, `status!=200`, `route=POST /signup`
# (`/path` for any method, `*` in the path), `request=5983a437` (a trace-id prefix). Several
# routes or requests: any of them; one status condition (list codes in it: `status=502,503`).
from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_incident.cli.console import UsageError
from pytest_incident.model.errors import SourceError
from pytest_incident.model.spans import format_timestamp, parse_timestamp
from pytest_incident.model.spec import Select, StatusCondition, Window
from pytest_incident.spec import parse_duration

NS = 1_000_000_000
FILTER_KEYS = ("status", "route", "request")
FILTER_FORMS = "status>=500, status=5xx, route=POST /signup, route=/signup, request=5983a437"
_FILTER_RE = re.compile(r"\s*([A-Za-z_]+)\s*(>=|<=|==|!=|=|<|>)\s*(.*?)\s*", re.S)
_REQUEST_RE = re.compile(r"[0-9a-fA-F]{4,32}")
_METHOD_RE = re.compile(r"[A-Za-z*?]+")
_SEPARATOR_RE = re.compile(r"\s*\.\.\s*")
_WINDOW_FORM = "START..END in UTC, e.g. 2024-05-14T14:00:00Z..2024-05-14T14:30:00Z"


def add_source_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--source",
        required=True,
        metavar="REF",
        help="the event log: a frozen .jsonl or .jsonl.gz file, clickhouse://USER@HOST:PORT/DB"
        "?table=otel_traces, or chdb:///PATH",
    )
    command.add_argument(
        "--service", metavar="S", default=None, help="only requests of this service (ServiceName)"
    )
    command.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="EXPR",
        help=f"only requests that match: {FILTER_FORMS}; repeatable (routes and requests: "
        "any of them)",
    )


def add_window_option(command: Any, required: bool) -> None:
    """`--window A..B` on `command` (a parser or a group of exclusive options)."""
    command.add_argument(
        "--window",
        metavar="A..B",
        default=None,
        required=required,
        help=f"the time window: {_WINDOW_FORM}",
    )


@dataclass(frozen=True)
class Filters:
    """What `--service` and `--filter` keep: a `select:` of an incident file."""

    select: Select
    status_given: bool  # a status filter was given (else tail shows the failed requests)


def parse_filters(service: str | None, filters: Sequence[str]) -> Filters:
    status: StatusCondition | None = None
    routes: list[str] = []
    requests: list[str] = []
    if service is not None and (not service.strip() or not service.isprintable()):
        raise UsageError(f"--service {service!r}: expected a service name (ServiceName)")
    for text in filters:
        match = _FILTER_RE.fullmatch(text)
        if not match or match.group(1).lower() not in FILTER_KEYS:
            raise UsageError(f"--filter {text!r}: expected KEY OP VALUE; allowed: {FILTER_FORMS}")
        key, op, value = match.group(1).lower(), match.group(2), match.group(3)
        if not value or not value.isprintable():
            raise UsageError(f"--filter {text!r}: a value is needed after {op}")
        if key == "status":
            if status is not None:
                raise UsageError(
                    f"--filter {text!r}: one status filter only; list codes in one "
                    "(status=502,503) or use a class (status=5xx)"
                )
            try:
                status = StatusCondition.parse(value if op in ("=", "==") else op + value)
            except ValueError as exc:
                raise UsageError(f"--filter {text!r}: {exc}") from None
            continue
        if op != "=":
            raise UsageError(f"--filter {text!r}: {key} takes =, as in {key}=...")
        if key == "route":
            routes.append(_route(text, value))
        elif not _REQUEST_RE.fullmatch(value):
            raise UsageError(
                f"--filter {text!r}: a request id is 4 to 32 hex digits (a trace-id prefix)"
            )
        else:
            requests.append(value.lower())
    select = Select(service=service, routes=tuple(routes), status=status, requests=tuple(requests))
    return Filters(select, status is not None)


def _route(text: str, value: str) -> str:
    method, _, path = value.partition(" ")
    path = path.strip()
    bare = not path and method.startswith("/")
    if bare or (path.startswith("/") and _METHOD_RE.fullmatch(method)):
        return f"{method.upper()} {path}" if path else method
    raise UsageError(
        f"--filter {text!r}: a route is 'METHOD /path' or '/path' (* in the path matches any "
        "text), e.g. route=POST /signup"
    )


def parse_window(text: str) -> Window:
    parts = _SEPARATOR_RE.split(text.strip())
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"--window {text!r}: expected {_WINDOW_FORM}")
    stamps = []
    for part in parts:
        try:
            if not part.isascii():
                raise ValueError(part)
            stamps.append(parse_timestamp(part))
        except ValueError:
            raise UsageError(
                f"--window {text!r}: {part!r} is not a UTC timestamp; expected {_WINDOW_FORM}"
            ) from None
    start, end = stamps
    if end <= start:
        raise UsageError(f"--window {text!r}: the end is not after the start")
    return Window(start, end)


def since_window(text: str, now_ns: int) -> Window:
    """`--since 2h`: from that long before `now_ns` to `now_ns`."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--since {text!r}: {exc}") from None
    if seconds <= 0:
        raise UsageError(f"--since {text!r}: must be more than 0 (e.g. 30m, 2h)")
    return Window(max(0, now_ns - int(seconds * NS)), now_ns + 1)


def nothing_in_window(exc: Exception) -> bool:
    """True for a source's SourceError that says the window (or the filters) keep no
    request: an answer for the command line, not a failure (a ClickHouse source says so
    with `key` "window" or "select"; a frozen file's window just holds nothing)."""
    return isinstance(exc, SourceError) and getattr(exc, "key", None) in ("window", "select")


def window_text(window: Window) -> str:
    """`2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z`, as an incident file writes it."""
    return f"{iso(window.start_ns)} .. {iso(window.end_ns)}"


def iso(ns: int) -> str:
    stamp = format_timestamp(ns)
    whole, _, fraction = stamp.partition(".")
    fraction = fraction.rstrip("0")
    return whole.replace(" ", "T") + (f".{fraction}" if fraction else "") + "Z"

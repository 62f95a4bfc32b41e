# The spans of a time window, for the command line (`tail`, `freeze`, `load`): a reference as
# `--source` names it (a frozen file, `clickhouse://...` or `chdb://...`) in, the recorded
# requests of the window out, each with its whole trace.
#
# Strategy: one function that dispatches on the reference. A frozen file is streamed twice:
# the first pass keeps the trace ids of the Server spans that start in the window (of
# `service`, when given), the second yields every span of those traces; memory holds the
# ids only (and one database statement, when the traces hold none: see read_window).
# ClickHouse and chDB are read by events/clickhouse.py (the same traces, queried on the
# server; a password only through an environment variable). An incident's own `source:`
# goes through the source registry (events/sources.py) instead; both read the same spans.
from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from pytest_incident.events.clickhouse import (
    MARGIN_NS,
    is_clickhouse,
    parse_reference,
    read_clickhouse,
)
from pytest_incident.events.frozen import file_kind, read_spans
from pytest_incident.model.errors import SourceError
from pytest_incident.model.recorded import is_database_statement
from pytest_incident.model.spans import Span, SpanKind
from pytest_incident.model.spec import Window

FROZEN_SUFFIXES = (".jsonl", ".jsonl.gz")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def read_window(
    reference: str, base: Path, window: Window, service: str | None = None
) -> Iterator[Span]:
    """Every span of each trace whose Server span starts in `window` (and, when `service`
    is given, belongs to it), in no guaranteed order; and when those traces hold no database
    statement, one of the window's (an hour either side), if there is one: a recording that
    captures database writes says so to selection (events/selection.py) in any span.

    `reference` is a frozen .jsonl / .jsonl.gz file (relative to `base`), `clickhouse://`
    or `chdb://`. Raises SourceError for a reference that cannot be read as such, and
    RecordingError at the line for a frozen file's mistakes (both IncidentErrors).
    """
    if is_clickhouse(reference):
        ref = parse_reference(reference, base, os.environ, command_line=True)
        return read_clickhouse(ref, window, service)
    scheme = _SCHEME_RE.match(reference.strip())
    if scheme:
        raise SourceError(
            f"{reference}: no event source reads {scheme.group(1).lower()}:// references "
            "here; use a frozen .jsonl or .jsonl.gz file, clickhouse:// or chdb://"
        )
    return _frozen_window(frozen_path(reference, base), window, service)


def frozen_path(reference: str, base: Path) -> Path:
    """The frozen file `reference` names, relative to `base`: a regular .jsonl or .jsonl.gz
    file; SourceError otherwise."""
    path = (base / reference.strip()).absolute()
    frozen = "use a frozen .jsonl or .jsonl.gz file"
    if not path.name.endswith(FROZEN_SUFFIXES):
        raise SourceError(f"{reference}: unsupported file type {path.name!r}; {frozen}")
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise SourceError(f"{reference}: file not found: {path}") from None
    except OSError as exc:
        raise SourceError(f"{reference}: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise SourceError(f"{reference}: {path} is {file_kind(mode)}, not a regular file; {frozen}")
    return path


def _frozen_window(path: Path, window: Window, service: str | None) -> Iterator[Span]:
    traces: set[str] = set()
    marker: Span | None = None  # a database statement of the window, for selection
    for span in read_spans(path):
        if (
            span.kind is SpanKind.SERVER
            and window.contains(span.timestamp_ns)
            and (service is None or span.service == service)
        ):
            traces.add(span.trace_id)
        elif marker is None and is_database_statement(span) and _near(window, span):
            marker = span
    if not traces:
        return
    statements = False
    for span in read_spans(path):
        if span.trace_id in traces:
            statements = statements or is_database_statement(span)
            yield span
    if not statements and marker is not None:
        yield marker


def _near(window: Window, span: Span) -> bool:
    return window.start_ns - MARGIN_NS <= span.timestamp_ns < window.end_ns + MARGIN_NS

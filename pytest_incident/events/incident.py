# Opening an incident: the file, its checked spec, and the recorded requests it selects, in
# one call that the pytest plugin, the benchmarks and the command line share.
#
# Every mistake is an exception of pytest_incident.model.errors: IncidentFileError for the
# YAML (at its line), RecordingError for the recording (at the recording's line), raised while
# reading; nothing is returned half-read. A window or `select` that keeps no request is the
# incident file's mistake, at the `select:` line (or `window:`, when the window holds no
# request at all), naming what the recording holds instead.
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_incident.events.selection import RequestCounts, Selection, choose
from pytest_incident.events.sources import SourceRegistry
from pytest_incident.model.errors import IncidentFileError
from pytest_incident.model.recorded import RecordedRequest
from pytest_incident.model.spans import format_timestamp
from pytest_incident.model.spec import IncidentSpec, Select
from pytest_incident.spec import file_error, load_incident

SHOWN_ROUTES = 5  # the most frequent routes named when a selection keeps nothing
SHOWN_SERVICES = 5


@dataclass(frozen=True)
class OpenedIncident:
    spec: IncidentSpec
    requests: tuple[RecordedRequest, ...]  # in recorded order


def open_incident(
    path: Path, environ: Mapping[str, str], registry: SourceRegistry | None = None
) -> OpenedIncident:
    """Load `path`, read its source through `registry` (default: installed and built-in
    sources) and select its recorded requests (at least one)."""
    spec = load_incident(path, environ)
    registry = registry if registry is not None else SourceRegistry.default()
    spans = registry.read(spec)
    selection = choose(spans, spec.window, spec.select)
    if not selection.requests:
        raise nothing_selected(spec, selection)
    return OpenedIncident(spec, tuple(selection.requests))


def nothing_selected(spec: IncidentSpec, selection: Selection) -> IncidentFileError:
    """The mistake of a window or select that keeps no recorded request."""
    window = f"{_stamp(spec.window.start_ns)} .. {_stamp(spec.window.end_ns)} UTC"
    if not selection.in_window.count:
        line = spec.lines.get("window", spec.line)
        held = describe(selection.recorded) if selection.recorded.count else "none at all"
        return file_error(
            spec.path,
            line,
            f"window: no recorded request (Server span) in {window}; the recording's "
            f"requests: {held}",
        )
    line = spec.lines.get("select", spec.lines.get("window", spec.line))
    return file_error(
        spec.path,
        line,
        f"select: {selected(spec.select)} matches none of the requests recorded in the window "
        f"({window}); the window holds {describe(selection.in_window)}",
    )


def selected(select: Select) -> str:
    parts = []
    if select.service is not None:
        parts.append(f"service {select.service!r}")
    if select.routes:
        parts.append("routes " + ", ".join(repr(r) for r in select.routes))
    if select.status is not None:
        parts.append(f"status {str(select.status)!r}")
    if select.requests:
        parts.append("requests " + ", ".join(select.requests))
    return " and ".join(parts) or "(everything)"


def describe(counts: RequestCounts) -> str:
    """`12 from 2024-05-14 14:03:12 to 14:27:00 UTC; services: signup (12); routes: POST
    /signup (8), GET /health (4)`."""
    assert counts.first_ns is not None and counts.last_ns is not None
    return (
        f"{counts.count} from {_stamp(counts.first_ns)} to {_stamp(counts.last_ns)} UTC; "
        f"services: {_top(counts.services, SHOWN_SERVICES)}; "
        f"routes: {_top(counts.routes, SHOWN_ROUTES)}"
    )


def _top(counter: Mapping[str, int], shown: int) -> str:
    ranked = sorted(counter.items(), key=lambda item: (-item[1], item[0]))
    text = ", ".join(f"{_printable(name)} ({count})" for name, count in ranked[:shown])
    if len(ranked) > shown:
        text += f", and {len(ranked) - shown} more"
    return text


def _printable(text: str) -> str:
    return text if text.isprintable() else repr(text)


def _stamp(ns: int) -> str:
    return format_timestamp(ns)[:19]

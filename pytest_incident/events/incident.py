# Opening an incident: the file, its checked spec, and the recorded requests it selects, in
# one call that the pytest plugin, the benchmarks and the command line share.
#
# Every mistake is an exception of pytest_incident.model.errors: IncidentFileError for the
# YAML (at its line), RecordingError for the recording (at the recording's line), raised while
# reading; nothing is returned half-read.
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_incident.events.selection import select_requests
from pytest_incident.events.sources import SourceRegistry
from pytest_incident.model.recorded import RecordedRequest
from pytest_incident.model.spec import IncidentSpec
from pytest_incident.spec import load_incident


@dataclass(frozen=True)
class OpenedIncident:
    spec: IncidentSpec
    requests: tuple[RecordedRequest, ...]  # in recorded order


def open_incident(
    path: Path, environ: Mapping[str, str], registry: SourceRegistry | None = None
) -> OpenedIncident:
    """Load `path`, read its source through `registry` (default: installed and built-in
    sources) and select its recorded requests."""
    spec = load_incident(path, environ)
    registry = registry if registry is not None else SourceRegistry.default()
    spans = registry.read(spec)
    requests = select_requests(spans, spec.window, spec.select)
    return OpenedIncident(spec, tuple(requests))

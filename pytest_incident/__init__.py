"""pytest-incident: replay a production incident as a permanent regression test.

The public API: what a plugin author needs to add event sources, normalizers and stub
servers, or to read replays (README, "Hooks and API"). Everything else is internal and may
change between releases.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_incident.core.book import ReplayBook
    from pytest_incident.core.verdict import Verdict
    from pytest_incident.events.incident import OpenedIncident, open_incident
    from pytest_incident.events.sources import EventSource, SourceRegistry
    from pytest_incident.model.effects import Effect, EffectKind, Outcome
    from pytest_incident.model.errors import (
        FileError,
        IncidentError,
        IncidentFileError,
        ProtocolError,
        RecordingError,
        ReplayConfigError,
        ReplayError,
        ReplayFailure,
        TargetError,
    )
    from pytest_incident.model.normalizers import FieldNormalizer, Normalizer, PatternNormalizer
    from pytest_incident.model.recorded import DatabaseWrite, OutboundCall, RecordedRequest
    from pytest_incident.model.result import ReplayResult
    from pytest_incident.model.spans import Span, SpanEvent, SpanKind
    from pytest_incident.model.spec import IncidentSpec, SourceRef, Window
    from pytest_incident.runtime.servers import PortStub

# Imported on first use (PEP 562), so `import pytest_incident` (and `pytest --help`) stays fast.
_EXPORTS = {
    "DatabaseWrite": "pytest_incident.model.recorded",
    "Effect": "pytest_incident.model.effects",
    "EffectKind": "pytest_incident.model.effects",
    "EventSource": "pytest_incident.events.sources",
    "FieldNormalizer": "pytest_incident.model.normalizers",
    "FileError": "pytest_incident.model.errors",
    "IncidentError": "pytest_incident.model.errors",
    "IncidentFileError": "pytest_incident.model.errors",
    "IncidentSpec": "pytest_incident.model.spec",
    "Normalizer": "pytest_incident.model.normalizers",
    "OpenedIncident": "pytest_incident.events.incident",
    "OutboundCall": "pytest_incident.model.recorded",
    "Outcome": "pytest_incident.model.effects",
    "PatternNormalizer": "pytest_incident.model.normalizers",
    "PortStub": "pytest_incident.runtime.servers",
    "ProtocolError": "pytest_incident.model.errors",
    "RecordedRequest": "pytest_incident.model.recorded",
    "RecordingError": "pytest_incident.model.errors",
    "ReplayBook": "pytest_incident.core.book",
    "ReplayConfigError": "pytest_incident.model.errors",
    "ReplayError": "pytest_incident.model.errors",
    "ReplayFailure": "pytest_incident.model.errors",
    "ReplayResult": "pytest_incident.model.result",
    "SourceRef": "pytest_incident.model.spec",
    "SourceRegistry": "pytest_incident.events.sources",
    "Span": "pytest_incident.model.spans",
    "SpanEvent": "pytest_incident.model.spans",
    "SpanKind": "pytest_incident.model.spans",
    "TargetError": "pytest_incident.model.errors",
    "Verdict": "pytest_incident.core.verdict",
    "Window": "pytest_incident.model.spec",
    "open_incident": "pytest_incident.events.incident",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pytest_incident' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__version__ = "0.1.0"

__all__ = [
    "DatabaseWrite",
    "Effect",
    "EffectKind",
    "EventSource",
    "FieldNormalizer",
    "FileError",
    "IncidentError",
    "IncidentFileError",
    "IncidentSpec",
    "Normalizer",
    "OpenedIncident",
    "OutboundCall",
    "Outcome",
    "PatternNormalizer",
    "PortStub",
    "ProtocolError",
    "RecordedRequest",
    "RecordingError",
    "ReplayBook",
    "ReplayConfigError",
    "ReplayError",
    "ReplayFailure",
    "ReplayResult",
    "SourceRef",
    "SourceRegistry",
    "Span",
    "SpanEvent",
    "SpanKind",
    "TargetError",
    "Verdict",
    "Window",
    "__version__",
    "open_incident",
]

# The incident file: YAML -> IncidentSpec (loader.py), one module per section (sections/).
from __future__ import annotations

from pytest_incident.spec.loader import file_error, load_incident
from pytest_incident.spec.scalars import parse_duration

__all__ = ["file_error", "load_incident", "parse_duration"]

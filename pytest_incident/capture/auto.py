# Capture turned on by the environment, for services started with `opentelemetry-instrument`
# (no code change): `PYTEST_INCIDENT_CAPTURE=1` makes the `opentelemetry_pre_instrument`
# entry point install capture's hooks into the requests and Flask instrumentations before
# the auto-instrumentation loads them (its own instrument() of the same instrumentors is then
# a no-op), and `OTEL_TRACES_EXPORTER=pytest_incident_clickhouse` picks the ClickHouse
# exporter (entry point `opentelemetry_traces_exporter`), which reads its URL from
# `PYTEST_INCIDENT_CAPTURE_URL`. An instrumentation whose library is missing is skipped;
# both share one Recorder (one placeholder key).
from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping

from pytest_incident.capture import install
from pytest_incident.capture.record import MAX_BODY_BYTES

ENV_ON = "PYTEST_INCIDENT_CAPTURE"
ENV_MAX_BODY = "PYTEST_INCIDENT_CAPTURE_MAX_BODY"


def enabled(environ: Mapping[str, str]) -> bool:
    return environ.get(ENV_ON, "").strip().lower() in ("1", "true", "yes", "on")


def pre_instrument() -> None:
    """The `opentelemetry_pre_instrument` entry point."""
    if not enabled(os.environ):
        return
    cap = os.environ.get(ENV_MAX_BODY, "").strip()
    max_body = int(cap) if cap.isascii() and cap.isdigit() else MAX_BODY_BYTES
    present = {
        library: _importable(library) and _importable(f"opentelemetry.instrumentation.{library}")
        for library in ("requests", "flask")
    }
    # one install, one Recorder: a secret gets the same placeholder on every span
    install(requests=present["requests"], flask=present["flask"], max_body_bytes=max_body)


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ImportError:  # a parent package is missing
        return False

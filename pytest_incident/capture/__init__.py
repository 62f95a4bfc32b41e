# OpenTelemetry capture for production Python services (README, "Recording with
# OpenTelemetry"): the `incident.*` request and response attributes a replay needs, added to
# the spans the standard instrumentations make, redacted before they are set.
#
# Strategy: `install()` returns a Capture, the one handle on what it turned on (no module
# state): the requests instrumentation with capture's hooks (capture/requests_hooks.py), and
# `capture.wsgi(app)` / `capture.flask(app)` for the server side (capture/wsgi.py), or
# OpenTelemetry's Flask instrumentation with capture's hooks (capture/flask_hooks.py);
# `PYTEST_INCIDENT_CAPTURE=1` under `opentelemetry-instrument` calls install (capture/auto.py). The
# exporter into ClickHouse is capture/exporter.py. This package runs inside production
# services: it imports the model, core's redaction and events' row layout, never pytest,
# and OpenTelemetry packages only when a function needs them.
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_incident.capture.record import MAX_BODY_BYTES, Recorder
from pytest_incident.core.redaction import RedactionRules

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from pytest_incident.capture.wsgi import WSGIApp

__all__ = ["Capture", "Recorder", "install"]


@dataclass
class Capture:
    """What install() turned on; `uninstall()` turns it off."""

    recorder: Recorder
    tracer_provider: TracerProvider | None = None
    _instrumentors: list[Any] = field(default_factory=list)
    _disconnect: list[Callable[[], None]] = field(default_factory=list)

    def wsgi(self, app: WSGIApp) -> WSGIApp:
        """`app` wrapped in OpenTelemetry's WSGI middleware, each request recorded."""
        from pytest_incident.capture.wsgi import instrument_wsgi

        return instrument_wsgi(app, self.recorder, self.tracer_provider)

    def flask(self, app: Any) -> Any:
        """A Flask app's `wsgi_app` instrumented and recorded (the route as `http.route`);
        returns the app."""
        from pytest_incident.capture.wsgi import instrument_flask

        instrument_flask(app, self.recorder, self.tracer_provider)
        return app

    def uninstall(self) -> None:
        for instrumentor in reversed(self._instrumentors):
            instrumentor.uninstrument()
        self._instrumentors.clear()
        for disconnect in self._disconnect:
            disconnect()
        self._disconnect.clear()


def install(
    *,
    tracer_provider: TracerProvider | None = None,
    rules: RedactionRules | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    requests: bool = True,
    flask: bool = False,
    app: Any = None,
) -> Capture:
    """Turn capture on: outbound `requests` calls are recorded (unless `requests=False`);
    `flask=True`: every Flask app created afterwards, through OpenTelemetry's
    FlaskInstrumentor (what `opentelemetry-instrument` uses); `app`: this Flask app, through
    the WSGI middleware. `rules`: the redaction rules (default: freeze's defaults;
    core/redaction_config.rules_from_pyproject reads a project's)."""
    capture = Capture(Recorder(rules or RedactionRules(), max_body_bytes), tracer_provider)
    if requests:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        from pytest_incident.capture.requests_hooks import hooks

        request_hook, response_hook = hooks(capture.recorder)
        instrumentor = RequestsInstrumentor()
        instrumentor.instrument(
            tracer_provider=tracer_provider,
            request_hook=request_hook,
            response_hook=response_hook,
        )
        capture._instrumentors.append(instrumentor)
    if flask:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        from pytest_incident.capture import flask_hooks

        flask_instrumentor = FlaskInstrumentor()
        flask_instrumentor.instrument(
            tracer_provider=tracer_provider,
            request_hook=flask_hooks.request_hook(capture.recorder),
        )
        capture._instrumentors.append(flask_instrumentor)
        capture._disconnect.append(flask_hooks.connect(capture.recorder))
    if app is not None:
        capture.flask(app)
    return capture

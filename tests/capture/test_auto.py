"""Capture turned on by the environment: a Flask service started with
`opentelemetry-instrument` and `PYTEST_INCIDENT_CAPTURE=1` (no code change) records its
requests and its `requests` calls, redacted, with the same placeholder for one secret on
both spans; without the variable, the same run records no `incident.*` attribute (the
twin). The ClickHouse exporter is found by its OTEL_TRACES_EXPORTER name. Loopback only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.distro")
pytest.importorskip("opentelemetry.instrumentation.flask")

from pytest_incident.capture.exporter import ENV_URL, ClickHouseSpanExporter
from pytest_incident.model.errors import SourceError

TOKEN = "tok-S3cr3t-auto-99"

# A service and its client in one script: a loopback upstream, the app driven through
# Flask's test client (no port of its own), the spans printed by the console exporter.
SCRIPT = """
import json, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from flask import Flask, request

class Up(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"42")
    def log_message(self, *a):
        pass

up = ThreadingHTTPServer(("127.0.0.1", 0), Up)
threading.Thread(target=up.serve_forever, daemon=True).start()
app = Flask(__name__)

@app.post("/ask")
def ask():
    auth = request.headers["Authorization"]
    answer = requests.get(f"http://127.0.0.1:{up.server_address[1]}/n",
                          headers={"Authorization": auth}, timeout=5)
    return {"n": int(answer.text), "seen": len(request.get_json()["q"])}

print(app.test_client().post("/ask", json={"q": "hello"},
                             headers={"Authorization": "Bearer %s"}).get_json())
up.shutdown()
"""


def run(tmp_path: Path, capture: str) -> list[dict[str, Any]]:
    script = tmp_path / "service.py"
    script.write_text(SCRIPT % TOKEN)
    instrument = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert instrument is not None
    env = {
        **os.environ,
        "PYTEST_INCIDENT_CAPTURE": capture,
        "OTEL_SERVICE_NAME": "ask",
        "OTEL_TRACES_EXPORTER": "console",
        "OTEL_METRICS_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
    }
    done = subprocess.run(
        [instrument, sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "{'n': 42, 'seen': 5}"
    text, spans, decoder = "\n".join(lines[1:]), [], json.JSONDecoder()
    at = 0
    while (at := text.find("{", at)) >= 0:
        span, at = decoder.raw_decode(text, at)
        spans.append(span)
    return spans


def by_kind(spans: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (span,) = [s for s in spans if s["kind"] == f"SpanKind.{kind}"]
    return span["attributes"]  # type: ignore[no-any-return]


def test_the_environment_variable_turns_capture_on(tmp_path: Path) -> None:
    spans = run(tmp_path, "1")
    server, client = by_kind(spans, "SERVER"), by_kind(spans, "CLIENT")
    assert server["http.route"] == "/ask" and server["url.path"] == "/ask"
    assert json.loads(server["incident.request.body"]) == {"q": "hello"}
    assert json.loads(server["incident.response.body"]) == {"n": 42, "seen": 5}
    assert client["incident.response.body"] == "42"
    sent = json.loads(server["incident.request.headers"])["authorization"]
    forwarded = json.loads(client["incident.request.headers"])["authorization"]
    assert sent.startswith("Bearer redacted-") and sent == forwarded
    assert TOKEN not in json.dumps(spans)


def test_without_the_variable_nothing_is_captured(tmp_path: Path) -> None:
    spans = run(tmp_path, "")
    assert len(spans) == 2
    assert not any(key.startswith("incident.") for span in spans for key in span["attributes"])


def test_the_exporter_takes_its_url_from_the_environment(tmp_path: Path) -> None:
    from importlib.metadata import entry_points

    (point,) = entry_points(
        group="opentelemetry_traces_exporter", name="pytest_incident_clickhouse"
    )
    assert point.load() is ClickHouseSpanExporter
    exporter = ClickHouseSpanExporter(environ={ENV_URL: f"chdb://{tmp_path}?database=x"})
    assert exporter.ref.path == tmp_path and exporter.ref.database == "x"
    with pytest.raises(SourceError, match=ENV_URL):
        ClickHouseSpanExporter(environ={})

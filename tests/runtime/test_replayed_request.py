"""The replayed request is the recorded one: method, target, every header in recorded order
(Host and Accept-Encoding as recorded, nothing added) and the body; only framing is the
replay's. And the wsgi harness invents no Content-Type or Content-Length."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_incident.runtime.replay import send_request

from ..spans import recorded_request

HARNESS = Path(__file__).parents[2] / "pytest_incident" / "target" / "harness.py"


def received(headers: list[list[str]], body: str = "", **kw: str) -> bytes:
    """The bytes a server receives when the recorded request is replayed."""
    request = recorded_request(
        status=200,
        **{"incident.request.headers": json.dumps(headers), "incident.request.body": body},
        **kw,
    )
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        send_request(conn, request, port)
        peer, _ = server.accept()
        peer.settimeout(1)
        data = b""
        while not data.endswith(b"\r\n\r\n" + body.encode()):
            data += peer.recv(65536)
        peer.close()
        return data
    finally:
        conn.close()
        server.close()


def test_the_recorded_headers_go_as_recorded_in_order() -> None:
    data = received(
        [
            ["Host", "shop.example.com"],
            ["X-Trace", "a"],
            ["Content-Type", "application/json"],
            ["X-Trace", "b"],
            ["Accept-Encoding", "gzip"],
            ["Content-Length", "99"],
            ["Connection", "keep-alive"],
        ],
        body='{"email": "ada@example.com"}',
        **{"url.query": "ref=mail"},
    )
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b"\r\n") == [
        b"POST /signup?ref=mail HTTP/1.1",
        b"Host: shop.example.com",
        b"X-Trace: a",
        b"Content-Type: application/json",
        b"X-Trace: b",
        b"Accept-Encoding: gzip",
        b"Content-Length: 28",  # the body's own length, not the recorded 99
    ]
    assert body == b'{"email": "ada@example.com"}'


def test_nothing_is_added_to_a_bare_request() -> None:
    """No Accept-Encoding, no Content-Type, no Content-Length: only the Host HTTP/1.1 needs,
    because the recording had none."""
    head = received([], method="GET").partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0] == b"GET /signup HTTP/1.1"
    assert len(head) == 2 and head[1].startswith(b"Host: 127.0.0.1:")


APP = """
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr((environ.get("CONTENT_TYPE"), environ.get("CONTENT_LENGTH"))).encode()]
"""


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[str]:
    (tmp_path / "echo_app.py").write_text(APP)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, str(HARNESS), "wsgi", "echo_app:app", "--server", "wsgiref",
         "--port", str(port)],
        cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)}, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url, timeout=1).read()
                break
            except OSError:
                time.sleep(0.05)
        yield url
    finally:
        proc.kill()
        proc.wait()


def test_the_wsgi_harness_invents_no_content_type_or_length(harness: str) -> None:
    """wsgiref alone gives a bare request CONTENT_TYPE text/plain and an empty CONTENT_LENGTH
    (every server's view of the recorded request: tests/plugin/test_target_servers.py)."""
    assert urllib.request.urlopen(harness, timeout=5).read() == b"(None, None)"
    typed = urllib.request.Request(
        harness, data=b"{}", headers={"Content-Type": "application/json"}
    )
    assert urllib.request.urlopen(typed, timeout=5).read() == b"('application/json', '2')"

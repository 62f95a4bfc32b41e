"""A target is ready only when it listens on its port itself; a target that cannot start
costs one wait per incident file, not one per item; its output is read as a bounded tail."""

from __future__ import annotations

import sys

import pytest

from ..conftest import write_incident

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

# An HTTP server on {port} answering 200 to everything; with "reuseport" it shares the port.
SERVER = """
import http.server, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

class Server(http.server.HTTPServer):
    allow_reuse_port = sys.argv[2] == "reuseport"

print("target: serving", flush=True)
Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""

# Someone else on the port the replay chose: a listener in pytest's own process that answers
# 200 to anything (every GET /health would pass against it), and `free_port` made to choose it.
SQUATTER = """
import socket, threading
import pytest
from pytest_incident.runtime import replay

def squat(reuseport):
    sock = socket.socket()
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen()

    def answer():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    return sock

@pytest.fixture(autouse=True)
def squatter(monkeypatch):
    sock = squat(REUSEPORT)
    monkeypatch.setattr(replay, "free_port", lambda network=None: sock.getsockname()[1])
    yield
    sock.close()
"""


def serve_incident(demo: pytest.Pytester, mode: str) -> None:
    demo.makepyfile(target_server=SERVER)
    write_incident(
        demo,
        "squatted",
        f"""
select: {{routes: ["GET /health"]}}
target: {{command: ["{{python}}", "target_server.py", "{{port}}", "{mode}"], ready_timeout: 3s}}
""",
    )


def test_a_target_serving_its_port_passes(demo: pytest.Pytester) -> None:
    """The twin of the squatter tests: the same target, its port its own."""
    serve_incident(demo, "reuseport")
    result = demo.runpytest("--incident=squatted", "--incident-sandbox=ptrace")
    result.assert_outcomes(passed=2)


def test_a_listener_sharing_the_port_is_not_taken_for_the_target(
    demo: pytest.Pytester,
) -> None:
    """SO_REUSEPORT lets the target listen too, and the kernel would hand some of the recorded
    requests to the other listener: never ready, never green."""
    serve_incident(demo, "reuseport")
    demo.makeconftest((demo.path / "conftest.py").read_text() + "\nREUSEPORT = True\n" + SQUATTER)
    result = demo.runpytest("--incident=squatted", "--incident-sandbox=ptrace")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*incidents/squatted.yaml:*: target did not listen on 127.0.0.1:* within 3s "
            "(another process (not the target's) listens on 127.0.0.1:*; the recorded requests "
            "are not sent to it)",
            "*when an earlier item started it; not tried again*",
        ]
    )


def test_a_target_that_cannot_bind_its_port_fails_with_its_output(
    demo: pytest.Pytester,
) -> None:
    """The port taken before the target binds it: the target dies of EADDRINUSE, and the
    squatter answering the probe is not taken for it."""
    serve_incident(demo, "plain")
    demo.makeconftest((demo.path / "conftest.py").read_text() + "\nREUSEPORT = False\n" + SQUATTER)
    result = demo.runpytest("--incident=squatted", "--incident-sandbox=ptrace")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*incidents/squatted.yaml:*: target exited with status 1 before it listened on "
            "127.0.0.1:*",
            "target output (last lines):",
            "*Address already in use*",
        ]
    )
    assert "passed" not in result.stdout.lines[-1]


def test_a_target_that_never_listens_is_waited_for_once(demo: pytest.Pytester) -> None:
    demo.makepyfile(
        mute="import sys, time\nopen('starts.txt', 'a').write('start\\n')\nprint('mute: up', "
        "flush=True)\ntime.sleep(60)\n"
    )
    write_incident(
        demo,
        "mute",
        """
select: {routes: ["GET /health"]}
target: {command: ["{python}", "mute.py", "{port}"], ready_timeout: 1s}
""",
    )
    result = demo.runpytest("--incident=mute")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*incidents/mute.yaml:*: target did not listen on 127.0.0.1:* within 1s",
            "target output (last lines):",
            "*mute: up",
            "*incidents/mute.yaml:*: target did not listen on 127.0.0.1:* within 1s (when an "
            "earlier item started it; not tried again)",
        ]
    )
    assert (demo.path / "starts.txt").read_text() == "start\n"

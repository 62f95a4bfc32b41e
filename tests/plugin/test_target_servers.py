"""wsgi and asgi targets end to end, in the sandbox: each server serves the app the recorded
request and nothing else (exact headers and body), in the interpreter target.python names (a
real second venv) or in pytest's own; a server missing there is an item error that says what
to install; stopping a gunicorn target ends its worker too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import uuid
from pathlib import Path
from typing import Any

import pytest

from pytest_incident.events.frozen import write_spans
from pytest_incident.model.spec import SERVERS

from ..spans import server_span

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

START = "2024-05-14T14:00:00Z"
END = "2024-05-14T14:30:00Z"
AT = 1715695200_000_000_000  # 14:00:00 UTC
POST_HEADERS = [
    ["Host", "shop.example.com"],
    ["X-Request-Id", "r-1"],
    ["Content-Type", "application/json"],
    ["Accept-Encoding", "gzip"],
    ["User-Agent", "checkout/2.0"],
]
POST_BODY = '{"email": "ada@example.com"}'
GET_HEADERS = [["Accept", "*/*"], ["User-Agent", "probe/1"]]  # no Host, no Content-Type

# What each app saw, one JSON line per request in seen.jsonl (the target's cwd).
WSGI_APP = """
import json, os, sys

def app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    headers = sorted(
        (key[5:].replace("_", "-").lower() if key.startswith("HTTP_") else
         key.replace("_", "-").lower(), value)
        for key, value in environ.items()
        if key.startswith("HTTP_") or key in ("CONTENT_TYPE", "CONTENT_LENGTH")
    )
    seen = {
        "method": environ["REQUEST_METHOD"], "headers": headers, "body": body.decode(),
        "server": environ.get("SERVER_SOFTWARE", ""), "python": sys.executable,
        "virtual_env": os.environ.get("VIRTUAL_ENV", ""),
    }
    with open("seen.jsonl", "a") as out:
        out.write(json.dumps(seen) + "\\n")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""
ASGI_APP = """
import json, os, sys

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    servers = [name for name in ("uvicorn", "hypercorn") if name in sys.modules]
    seen = {
        "method": scope["method"], "body": body.decode(),
        "headers": [[name.decode(), value.decode()] for name, value in scope["headers"]],
        "server": ",".join(servers), "python": sys.executable,
        "virtual_env": os.environ.get("VIRTUAL_ENV", ""),
    }
    with open("seen.jsonl", "a") as out:
        out.write(json.dumps(seen) + "\\n")
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
"""
# The twin: the same WSGI app behind wsgiref as it comes, which invents Content-Type.
BARE_WSGIREF = """
import sys
from wsgiref.simple_server import make_server
from echo_wsgi import app

make_server("127.0.0.1", int(sys.argv[1]), app).serve_forever()
"""


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with a recording of two requests (a POST with a body, a bare GET) and the
    echo apps."""
    incidents = pytester.mkdir("incidents")
    write_spans(
        incidents / "echo.events.jsonl",
        [
            server_span(
                trace="a1" * 16, span_id="b1" * 8, at=AT + 1_000_000_000, path="/orders",
                status=500, **{"incident.request.headers": json.dumps(POST_HEADERS),
                               "incident.request.body": POST_BODY},
            ),
            server_span(
                trace="a2" * 16, span_id="b2" * 8, at=AT + 2_000_000_000, method="GET",
                path="/health", status=200,
                **{"incident.request.headers": json.dumps(GET_HEADERS)},
            ),
        ],
    )  # fmt: skip
    pytester.makepyfile(echo_wsgi=WSGI_APP, echo_asgi=ASGI_APP, bare_wsgiref=BARE_WSGIREF)
    pytester.makeini(
        "[pytest]\nfilterwarnings =\n"
        "    ignore:Module already imported:pytest.PytestAssertRewriteWarning\n"
    )
    return pytester


def run(project: pytest.Pytester, target: str, name: str = "echo") -> pytest.RunResult:
    (project.path / "incidents" / f"{name}.yaml").write_text(
        f"window: {START} .. {END}\nsource: echo.events.jsonl\ntarget:\n{target}"
    )
    return project.runpytest(f"--incident={name}")


def seen(project: pytest.Pytester) -> list[dict[str, Any]]:
    path = project.path / "seen.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def expected_headers(kind: str, get_host: str) -> tuple[list[list[str]], list[list[str]]]:
    """What the app must see of the POST and the GET: the recorded headers, the body's
    Content-Length, and for the GET (recorded without one) the Host HTTP/1.1 needs. In
    order for ASGI; WSGI's environ keeps no order, so sorted there."""
    post = [[name.lower(), value] for name, value in POST_HEADERS]
    post.append(["content-length", str(len(POST_BODY))])
    get = [["host", get_host], *([name.lower(), value] for name, value in GET_HEADERS)]
    return (post, get) if kind == "asgi" else (sorted(post), sorted(get))


def host_of(headers: list[list[str]]) -> str:
    return next(value for name, value in headers if name == "host")


def assert_exactly_recorded(project: pytest.Pytester, kind: str) -> list[dict[str, Any]]:
    post, get = seen(project)
    assert host_of(get["headers"]).startswith("127.0.0.1:")
    expected_post, expected_get = expected_headers(kind, host_of(get["headers"]))
    assert (post["method"], post["headers"], post["body"]) == ("POST", expected_post, POST_BODY)
    assert (get["method"], get["headers"], get["body"]) == ("GET", expected_get, "")
    return [post, get]


SERVER_SOFTWARE = {"wsgiref": "WSGIServer/", "gunicorn": "gunicorn/", "waitress": "waitress"}
# every server; the first of each interface is its default, used when `server:` is left out
CHOICES = [(kind, name, name == names[0]) for kind, names in SERVERS.items() for name in names]


@pytest.mark.parametrize(("kind", "server", "default"), CHOICES)
def test_each_server_serves_exactly_the_recorded_request(
    project: pytest.Pytester, kind: str, server: str, default: bool
) -> None:
    chosen = "" if default else f"  server: {server}\n"
    result = run(project, f"  {kind}: echo_{kind}:app\n{chosen}")
    result.assert_outcomes(passed=2)
    for request in assert_exactly_recorded(project, kind):
        assert request["server"].startswith(SERVER_SOFTWARE.get(server, server))
        assert request["python"] == sys.executable  # no target.python: pytest's interpreter


def test_a_server_that_invents_a_header_is_caught(project: pytest.Pytester) -> None:
    """The twin: wsgiref as it comes gives the bare GET a Content-Type it never had."""
    run(project, '  command: ["{python}", "bare_wsgiref.py", "{port}"]\n').assert_outcomes(passed=2)
    with pytest.raises(AssertionError):
        assert_exactly_recorded(project, "wsgi")
    assert ["content-type", "text/plain"] in seen(project)[1]["headers"]


# --- target.python -----------------------------------------------------------------------------


def make_venv(folder: Path, with_packages: bool) -> Path:
    """A real venv without pip; with_packages: it sees pytest's site-packages through a .pth
    file (the servers, nothing installed twice)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True)
    if with_packages:
        python = folder / "bin" / "python"
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()  # fmt: skip
        Path(site, "pytest-venv.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return folder


@pytest.fixture(scope="module")
def venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("venvs")
    return {
        "servers": make_venv(root / "servers", with_packages=True),
        "bare": make_venv(root / "bare", with_packages=False),
    }


def relative_to_incidents(project: pytest.Pytester, path: Path) -> str:
    return os.path.relpath(path, project.path / "incidents")


def test_target_python_runs_the_app_in_that_venv(
    project: pytest.Pytester, venvs: dict[str, Path]
) -> None:
    venv = venvs["servers"]
    result = run(
        project,
        f"  asgi: echo_asgi:app\n  python: {relative_to_incidents(project, venv)}\n",
    )
    result.assert_outcomes(passed=2)
    for request in assert_exactly_recorded(project, "asgi"):
        assert request["python"] == str(venv / "bin" / "python") != sys.executable
        assert request["virtual_env"] == str(venv)
        assert request["server"] == "uvicorn"


def test_target_python_is_the_python_of_a_command(
    project: pytest.Pytester, venvs: dict[str, Path]
) -> None:
    venv = venvs["bare"]  # wsgiref only: nothing but the standard library needed
    result = run(
        project,
        f'  command: ["{{python}}", "bare_wsgiref.py", "{{port}}"]\n  python: {venv}/bin/python\n',
    )
    result.assert_outcomes(passed=2)
    assert {request["python"] for request in seen(project)} == {str(venv / "bin" / "python")}


def test_wsgiref_needs_nothing_installed_in_the_target_python(
    project: pytest.Pytester, venvs: dict[str, Path]
) -> None:
    venv = venvs["bare"]
    result = run(project, f"  wsgi: echo_wsgi:app\n  server: wsgiref\n  python: {venv}\n")
    result.assert_outcomes(passed=2)
    assert {request["python"] for request in seen(project)} == {str(venv / "bin" / "python")}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("  asgi: echo_asgi:app\n", "target.asgi needs uvicorn in {python}: pip install uvicorn"),
        (
            "  wsgi: echo_wsgi:app\n",
            "target.wsgi needs gunicorn in {python}: pip install gunicorn (or target.server: "
            "wsgiref, from the standard library)",
        ),
    ],
)
def test_a_server_missing_in_the_target_python_is_an_item_error(
    project: pytest.Pytester, venvs: dict[str, Path], target: str, message: str
) -> None:
    """The twin of test_target_python_runs_the_app_in_that_venv: the same app, in a venv
    without the server."""
    venv = venvs["bare"]
    result = run(project, f"{target}  python: {venv}\n")
    result.assert_outcomes(failed=2)
    python = venv / "bin" / "python"
    # at the line of the app the target serves
    result.stdout.fnmatch_lines([f"*incidents/echo.yaml:4: {message.format(python=python)}"])
    output = result.stdout.str()
    assert "Traceback" not in output and "INTERNALERROR" not in output
    assert seen(project) == []


# --- stopping ----------------------------------------------------------------------------------

# Counts, after each item, the host's processes of this replay (their command line names the
# incident's own work folder) that run the harness itself: gunicorn's arbiter and its worker.
COUNTING_CONFTEST = """
import pathlib, pytest

def harness_processes(marker):
    found = 0
    for cmdline in pathlib.Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1].endswith(b"harness.py") and marker.encode() in b" ".join(argv):
            found += 1
    return found

@pytest.fixture
def count_processes(request):
    yield
    marker = request.node.parent.spec.name
    with open("counted.txt", "a") as out:
        out.write(f"{harness_processes(marker)}\\n")
"""


def harness_processes(marker: str) -> int:
    found = 0
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 1 and argv[1].endswith(b"harness.py") and marker.encode() in b" ".join(argv):
            found += 1
    return found


def test_stopping_a_gunicorn_target_ends_its_worker_too(project: pytest.Pytester) -> None:
    project.makeconftest(COUNTING_CONFTEST)
    name = f"stop-{uuid.uuid4().hex[:12]}"
    result = run(
        project, "  wsgi: echo_wsgi:app\n  server: gunicorn\nusefixtures: [count_processes]\n", name
    )
    result.assert_outcomes(passed=2)
    # while it served: the arbiter and the worker it forked
    assert (project.path / "counted.txt").read_text().split() == ["2", "2"]
    assert harness_processes(name) == 0  # after the run: neither is left

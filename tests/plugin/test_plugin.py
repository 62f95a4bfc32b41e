"""Plugin behaviour through pytester: collection, verdicts, reports, options."""

from __future__ import annotations

import socket
import sys

import pytest

from ..conftest import DEMO_YAML, write_incident

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")


def test_fixed_code_resolves_every_failed_request(demo: pytest.Pytester) -> None:
    result = demo.runpytest("--incident=2024-05-signup")
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(["2024-05-signup: 12 replayed, 12 passing (4 resolved)"])


def test_code_before_the_fix_reproduces_the_failures(demo: pytest.Pytester) -> None:
    yaml = demo.path / DEMO_YAML
    yaml.write_text(
        yaml.read_text().replace("examples.signup.app:app", "examples.signup.app_before_fix:app")
    )
    result = demo.runpytest("--incident=2024-05-signup")
    result.assert_outcomes(passed=8, failed=4)
    result.stdout.fnmatch_lines(
        [
            "*2024-05-signup: POST /signup*",
            "POST /signup  request *",
            "status: 500 -> 500   (was -> now)",
            "problems:",
            "  - status 500 does not satisfy expect.status <500",
            "  - failed in production (500) and is not resolved*",
            "outbound calls:",
            "  served    GET http://api.payments.example/v1/customers?email=*",
            "  held      POST http://api.payments.example/v1/charges  recorded #* timed out*",
            "2024-05-signup: 12 replayed, 8 passing, 4 still failing (0 regressed)",
        ]
    )
    assert "Traceback" not in result.stdout.str()
    assert "pytest_incident/" not in result.stdout.str()  # no plugin frames


def test_last_failed_and_failed_first_know_incident_items(demo: pytest.Pytester) -> None:
    yaml = demo.path / DEMO_YAML
    yaml.write_text(
        yaml.read_text().replace("examples.signup.app:app", "examples.signup.app_before_fix:app")
    )
    demo.runpytest("--incident=2024-05-signup", "-p", "cacheprovider").assert_outcomes(
        passed=8, failed=4
    )
    result = demo.runpytest("--incident=2024-05-signup", "-p", "cacheprovider", "--lf")
    result.assert_outcomes(failed=4, deselected=8)
    result.stdout.fnmatch_lines(["run-last-failure: rerun previous 4 failures"])
    result = demo.runpytest("--incident=2024-05-signup", "-p", "cacheprovider", "--ff", "-v")
    result.assert_outcomes(passed=8, failed=4)
    verdicts = [line for line in result.stdout.lines if line.startswith("incidents/")]
    outcomes = ["FAILED" if " FAILED " in line else "PASSED" for line in verdicts]
    assert outcomes == ["FAILED"] * 4 + ["PASSED"] * 8


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["one process", "xdist"])
def test_a_failed_item_is_summarised_in_one_line_on_ci(
    demo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, workers: list[str]
) -> None:
    """On CI pytest prints a failure's message untrimmed in the short summary: it must be
    the problems in one line, not the whole report a second time (nor in junitxml)."""
    monkeypatch.setenv("CI", "1")
    yaml = demo.path / DEMO_YAML
    yaml.write_text(
        yaml.read_text().replace("examples.signup.app:app", "examples.signup.app_before_fix:app")
    )
    result = demo.runpytest("--incident=2024-05-signup", "-rf", "--junitxml=report.xml", *workers)
    result.assert_outcomes(passed=8, failed=4)
    summary = "FAILED incidents/2024-05-signup.yaml::POST /signup?*? - status 500 does not "
    result.stdout.fnmatch_lines([summary + "satisfy expect.status <500; failed in production*"])
    output = result.stdout.str()
    assert output.count("outbound calls:") == 4  # each report once, in FAILURES
    assert output.count("problems:") == 4
    xml = (demo.path / "report.xml").read_text()
    assert xml.count('message="status 500 does not satisfy expect.status &lt;500; ') == 4
    assert xml.count("outbound calls:") == 4  # the report itself, as the failure's text


def test_items_are_named_by_route_and_request_id(demo: pytest.Pytester) -> None:
    result = demo.runpytest("--incident=2024-05-signup", "--collect-only", "-q")
    lines = [line for line in result.stdout.lines if "::" in line]
    assert len(lines) == 12
    assert all(line.startswith(f"{DEMO_YAML}::POST /signup[") for line in lines)
    ids = [line.split("[")[1].rstrip("]") for line in lines]
    assert all(len(i) == 8 and int(i, 16) >= 0 for i in ids)


def test_select_keeps_only_matching_requests(demo: pytest.Pytester) -> None:
    write_incident(
        demo,
        "failed-only",
        """
select: {service: signup, routes: ["POST /signup"], status: ">=500"}
target: {wsgi: examples.signup.app:app}
""",
    )
    result = demo.runpytest("--incident=failed-only", "--collect-only", "-q")
    assert sum("::POST /signup[" in line for line in result.stdout.lines) == 4
    write_incident(
        demo,
        "health",
        """
select: {routes: ["GET /health"]}
target: {wsgi: examples.signup.app:app}
""",
    )
    result = demo.runpytest("--incident=health", "--collect-only", "-q")
    assert sum("::GET /health[" in line for line in result.stdout.lines) == 2


def test_incident_request_replays_one_request(demo: pytest.Pytester) -> None:
    listing = demo.runpytest("--incident=2024-05-signup", "--collect-only", "-q")
    first = next(line for line in listing.stdout.lines if "::" in line)
    request_id = first.split("[")[1].rstrip("]")
    result = demo.runpytest("--incident=2024-05-signup", f"--incident-request={request_id}")
    result.assert_outcomes(passed=1, deselected=11)


def test_unknown_incident_is_a_usage_error(demo: pytest.Pytester) -> None:
    result = demo.runpytest("--incident=2099-01-nothing")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--incident 2099-01-nothing: no such incident*known: 2024-05-signup*"]
    )


def test_yaml_mistake_is_reported_with_file_and_line(demo: pytest.Pytester) -> None:
    write_incident(
        demo,
        "typo",
        """
select: {service: signup}
target: {wsgi: examples.signup.app:app}
sandbox:
  outbound: stubb
""",
    )
    result = demo.runpytest("--incident=typo")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "*incidents/typo.yaml:7: sandbox.outbound: 'stubb' is not allowed; "
            "allowed: stub, block",
            "*>  7 |   outbound: stubb",
        ]
    )
    output = result.stdout.str()
    assert "Traceback" not in output
    assert "INTERNALERROR" not in output


def test_broken_frozen_file_is_reported_with_its_line(demo: pytest.Pytester) -> None:
    (demo.path / "incidents" / "broken.jsonl").write_text(
        '{"format": "pytest-incident-spans", "version": 1}\n{"TraceId": "ab"}\n'
    )
    (demo.path / "incidents" / "broken.yaml").write_text(
        "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\nsource: broken.jsonl\n"
        "target: {wsgi: examples.signup.app:app}\n"
    )
    result = demo.runpytest("--incident=broken")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*incidents/broken.jsonl:2: missing column Timestamp*"])
    assert "INTERNALERROR" not in result.stdout.str()


def test_a_bad_incident_file_fails_only_itself_and_the_session_runs_on(
    demo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collected with the project's own tests and the good incidents: the bad file is one
    error at its line, everything else runs (a collection error would stop them all)."""
    (demo.path / "incidents" / "broken.yaml").write_text(
        "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\nsource: missing.jsonl\n"
        "target: {wsgi: examples.signup.app:app}\n"
    )
    demo.makepyfile(test_unit="def test_the_projects_own_test():\n    assert True\n")
    monkeypatch.setenv("CI", "1")
    result = demo.runpytest(DEMO_YAML, "incidents/broken.yaml", "test_unit.py", "-rE")
    result.assert_outcomes(passed=12 + 1, errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of broken: cannot be collected*",
            "incidents/broken.yaml:2: source: file not found: *missing.jsonl",
            "2024-05-signup: 12 replayed, 12 passing (4 resolved)",
            "broken: not replayed: the incident cannot be collected (the error above)",
        ]
    )
    # one line in the short summary, even on CI where pytest does not trim it
    (summary,) = [line for line in result.stdout.lines if line.startswith("ERROR incidents/")]
    assert summary.startswith(
        "ERROR incidents/broken.yaml::(cannot be collected) - incidents/broken.yaml:2: "
        "source: file not found: "
    )
    assert result.stdout.str().count("  >  2 | source: missing.jsonl") == 1
    assert "Interrupted" not in result.stdout.str()
    assert "Traceback" not in result.stdout.str()


UNMATCHED_APP = """
import json, os, requests

def app(environ, start_response):
    # the new code calls an endpoint the recording never saw
    r = requests.post(os.environ["PAYMENTS_URL"] + "/v1/refunds", json={}, timeout=2)
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps({"upstream": r.status_code}).encode()]
"""


def test_outbound_call_missing_from_recording_names_nearest(demo: pytest.Pytester) -> None:
    demo.makepyfile(refunds_app=UNMATCHED_APP)
    write_incident(
        demo,
        "refunds",
        """
select: {routes: ["POST /signup"], status: ">=500"}
target:
  wsgi: refunds_app:app
  env: {PAYMENTS_URL: "http://api.payments.example"}
""",
    )
    result = demo.runpytest("--incident=refunds", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "  - outbound call not in the recording: POST http://api.payments.example/v1/refunds",
            "  unmatched POST http://api.payments.example/v1/refunds  nearest recorded calls:",
            "*#1 POST http://api.payments.example/v1/charges -> timeout  (differs in path)",
            "*#0 GET http://api.payments.example/v1/customers?email=* -> 200  "
            "(differs in method, path, query)",
        ]
    )


BLOCKED_APP = """
import os, socket

def app(environ, start_response):
    try:
        socket.create_connection(("127.0.0.1", int(os.environ["LISTENER_PORT"])), timeout=2)
        status = "200 OK"
    except ConnectionRefusedError:
        status = "503 Service Unavailable"
    start_response(status, [("content-type", "text/plain")])
    return [status.encode()]
"""


@pytest.mark.parametrize("allowed", [False, True], ids=["blocked", "allowed"])
def test_destination_outside_sandbox_allow_is_refused(demo: pytest.Pytester, allowed: bool) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    demo.makepyfile(dialer=BLOCKED_APP)
    allow = f'allow: ["127.0.0.1:{port}"]' if allowed else "allow: []"
    write_incident(
        demo,
        "dialer",
        f"""
select: {{routes: ["GET /health"]}}
target:
  wsgi: dialer:app
  env: {{LISTENER_PORT: "{port}"}}
sandbox: {{{allow}}}
expect: {{status: "<500"}}
""",
    )
    try:
        result = demo.runpytest("--incident=dialer", "-x")
        if allowed:
            result.assert_outcomes(passed=2)
            conn, _ = listener.accept()  # the live connection arrived
            conn.close()
        else:
            result.assert_outcomes(failed=1)
            result.stdout.fnmatch_lines(
                [
                    "status: 200 -> 503   (was -> now)",
                    f"  blocked   connect 127.0.0.1:{port}  not in sandbox.allow",
                ]
            )
            with pytest.raises(TimeoutError):
                listener.accept()
    finally:
        listener.close()


def test_an_allowed_destination_that_is_down_fails_the_item(demo: pytest.Pytester) -> None:
    """The target reaches the tap, so its own connect succeeds and it answers 200; but the tap
    could not reach the live destination, so nothing it did there was logged: the item fails
    naming that, rather than passing green on a mutation log it never saw."""
    held = socket.socket()  # bound, not listening: refused, and no one else can take it
    held.bind(("127.0.0.1", 0))
    port = held.getsockname()[1]
    demo.makepyfile(dialer=BLOCKED_APP)
    write_incident(
        demo,
        "dialer",
        f"""
select: {{routes: ["GET /health"]}}
target:
  wsgi: dialer:app
  env: {{LISTENER_PORT: "{port}"}}
sandbox: {{allow: ["127.0.0.1:{port}"]}}
expect: {{status: "<500"}}
""",
    )
    try:
        result = demo.runpytest("--incident=dialer", "-x")
    finally:
        held.close()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*database tap: *cannot reach 127.0.0.1:{port}*"])


CRASHY_SERVER = """
import http.server, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["content-length"]))
        if b"erin" in body:
            print("crashy: cannot handle this signup, exiting", flush=True)
            os._exit(3)
        self.send_response(201)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def test_crashing_target_fails_its_item_and_is_restarted(demo: pytest.Pytester) -> None:
    demo.makepyfile(crashy=CRASHY_SERVER)
    write_incident(
        demo,
        "crashy",
        """
select: {routes: ["POST /signup"]}
target:
  command: ["{python}", "crashy.py", "{port}"]
expect: {status: "<500"}
""",
    )
    result = demo.runpytest("--incident=crashy")
    result.assert_outcomes(passed=11, failed=1)
    result.stdout.fnmatch_lines(
        [
            "status: 500 -> no answer   (was -> now)",
            "  - target exited with status 3",
            "target output (last lines):",
            "*crashy: cannot handle this signup, exiting",
        ]
    )


def test_usefixtures_runs_conftest_fixtures(demo: pytest.Pytester) -> None:
    demo.makeconftest("""
import pytest

@pytest.fixture
def seeded(request):
    request.config.rootpath.joinpath("seeded.txt").open("a").write("x")
""")
    write_incident(
        demo,
        "with-fixture",
        """
select: {routes: ["GET /health"]}
target: {wsgi: examples.signup.app:app}
usefixtures: [seeded]
""",
    )
    result = demo.runpytest("--incident=with-fixture")
    result.assert_outcomes(passed=2)
    assert (demo.path / "seeded.txt").read_text() == "xx"


def test_runs_under_xdist_with_junitxml(demo: pytest.Pytester) -> None:
    result = demo.runpytest("--incident=2024-05-signup", "-n", "2", "--junitxml=report.xml")
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(["2024-05-signup: 12 replayed, 12 passing (4 resolved)"])
    xml = (demo.path / "report.xml").read_text()
    assert xml.count("<testcase ") == 12
    assert 'name="POST /signup[' in xml


def test_plugin_can_be_disabled(demo: pytest.Pytester) -> None:
    result = demo.runpytest("-p", "no:incident", "incidents")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED


def test_target_that_cannot_start_fails_items_with_its_output(demo: pytest.Pytester) -> None:
    demo.makepyfile(broken_app="import no_such_module_anywhere\n")
    write_incident(
        demo,
        "broken",
        """
select: {routes: ["GET /health"]}
target: {wsgi: "broken_app:app", ready_timeout: 20s}
""",
    )
    result = demo.runpytest("--incident=broken")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*incidents/broken.yaml:*: cannot load the WSGI app broken_app:app: "
            "ModuleNotFoundError: No module named 'no_such_module_anywhere'",
            "target output (last lines):",
            "*ModuleNotFoundError: No module named 'no_such_module_anywhere'",
        ]
    )
    output = result.stdout.str()
    assert "harness: cannot load the WSGI app broken_app:app" in output
    assert 'harness.py", line' not in output  # only the user's frames
    assert "INTERNALERROR" not in output


def test_target_starts_after_the_fixtures_it_needs(demo: pytest.Pytester) -> None:
    demo.makepyfile(
        needs_db="""
import os, sys

if not os.path.exists("db-ready"):
    sys.exit("database not prepared")

def app(environ, start_response):
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"ok"]
"""
    )
    demo.makeconftest(
        """
import pytest

@pytest.fixture(scope="session")
def db(request):
    request.config.rootpath.joinpath("db-ready").write_text("yes")
"""
    )
    write_incident(
        demo,
        "needs-db",
        """
select: {routes: ["GET /health"]}
target: {wsgi: "needs_db:app"}
usefixtures: [db]
""",
    )
    result = demo.runpytest("--incident=needs-db")
    result.assert_outcomes(passed=2)


SCHEDULED_APP = """
import os, pathlib
from apscheduler.schedulers.background import BackgroundScheduler

def tick():
    pathlib.Path("ticked").write_text("the scheduled job ran")

scheduler = BackgroundScheduler()
scheduler.add_job(tick, "interval", seconds=0.05)
scheduler.start()

def app(environ, start_response):
    import time
    deadline = time.monotonic() + 1.0  # a fair chance for the job to fire, held or not
    while not pathlib.Path("ticked").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    start_response("200 OK", [("content-type", "text/plain")])
    return [os.environ.get("PYTEST_INCIDENT_REPLAY", "").encode()]
"""


@pytest.mark.parametrize(
    ("mode", "env"), [("hold", "{}"), ("run", "{}"), ("hold", "{PYTHONPATH: vendored}")]
)
def test_scheduled_jobs_are_held_during_a_replay(
    demo: pytest.Pytester, mode: str, env: str
) -> None:
    """Also when the target brings its own PYTHONPATH: the in-target hooks still load."""
    pytest.importorskip("apscheduler")
    demo.makepyfile(scheduled_app=SCHEDULED_APP)
    write_incident(
        demo,
        "scheduled",
        f"""
select: {{routes: ["GET /health"]}}
target: {{wsgi: "scheduled_app:app", env: {env}}}
sandbox: {{scheduled: {mode}}}
""",
    )
    result = demo.runpytest("--incident=scheduled")
    result.assert_outcomes(passed=2)
    assert (demo.path / "ticked").exists() is (mode == "run")


BODY_APP = """
import json, os, requests

def app(environ, start_response):
    # the new code charges a different amount than production did
    r = requests.post(os.environ["PAYMENTS_URL"] + "/v1/charges",
                      json={"customer": "cus_demo", "amount": 901, "currency": "usd"}, timeout=2)
    start_response("201 Created", [("content-type", "application/json")])
    return [json.dumps({"upstream": r.status_code}).encode()]
"""


def test_body_mismatch_names_the_nearest_call_with_a_diff(demo: pytest.Pytester) -> None:
    demo.makepyfile(body_app=BODY_APP)
    write_incident(
        demo,
        "bodies",
        """
select: {routes: ["POST /signup"], status: "201"}
target:
  wsgi: body_app:app
  env: {PAYMENTS_URL: "http://api.payments.example"}
sandbox:
  match_on: [method, host, path, body]
  normalize: [{field: customer}]
""",
    )
    result = demo.runpytest("--incident=bodies", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "  unmatched POST http://api.payments.example/v1/charges  nearest recorded calls:",
            "*POST http://api.payments.example/v1/charges -> 201  (differs in body)",
            "*--- recorded",
            "*+++ now",
            '*-*"amount": *900,',
            '*+*"amount": 901,',
        ]
    )
    assert "cus_demo" not in result.stdout.str()  # normalized away on both sides


SIDE_EFFECTS_APP = """
import smtplib
from email.message import EmailMessage
import redis, rq

def app(environ, start_response):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "shop@example.com", "ada@example.com", "Welcome!"
    msg.set_content("hello")
    with smtplib.SMTP("smtp.mail.example", 587, timeout=5) as smtp:
        smtp.starttls()
        smtp.login("shop", "secret")
        smtp.send_message(msg)
    queue = rq.Queue("welcome", connection=redis.Redis.from_url("redis://localhost:6379/0"))
    queue.enqueue("tasks.send_welcome", "ada@example.com")
    start_response("500 Internal Server Error", [("content-type", "text/plain")])
    return [b"failing on purpose so the side-effect log is shown"]
"""


def test_emails_and_jobs_are_recorded_not_delivered(demo: pytest.Pytester) -> None:
    pytest.importorskip("rq")
    demo.makepyfile(side_effects_app=SIDE_EFFECTS_APP)
    write_incident(
        demo,
        "side-effects",
        """
select: {routes: ["GET /health"]}
target: {wsgi: "side_effects_app:app"}
expect: {status: "<500"}
""",
    )
    result = demo.runpytest("--incident=side-effects", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "outbound calls:",
            "  email     mail from shop@example.com to ada@example.com  subject: Welcome!*"
            "not delivered*",
            "  job       rq welcome: tasks.send_welcome('ada@example.com')  job *, not dispatched",
        ]
    )


PORT_STUB_PLUGIN = """
import socket, threading
import pytest
from pytest_incident.model.effects import Effect, Outcome
from pytest_incident.model.normalizers import FieldNormalizer


class MemcacheStub:
    '''Answers every memcached command with END and records what was asked.'''

    def __init__(self, book):
        self.book = book
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.address = self.sock.getsockname()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            line = conn.makefile("rb").readline().decode().strip()
            self.book.add(Effect(Outcome.BLOCKED, f"memcache {line}", "served by the plugin"))
            conn.sendall(b"END\\r\\n")
            conn.close()

    def close(self):
        self.sock.close()


@pytest.hookimpl
def pytest_incident_port_stubs(spec, book):
    return {11211: MemcacheStub(book)}


@pytest.hookimpl
def pytest_incident_normalizers(spec, config):
    return [FieldNormalizer("customer")]


@pytest.hookimpl
def pytest_incident_replayed(item, result, verdict):
    rules = item.parent.replay.book.match_on
    item.config.rootpath.joinpath("normalizers.txt").write_text(repr(rules.normalizers))
"""

MEMCACHE_APP = """
import socket

def app(environ, start_response):
    with socket.create_connection(("cache.internal", 11211), timeout=2) as conn:
        conn.sendall(b"get session:42\\r\\n")
        answer = conn.recv(100)
    start_response("500 Internal Server Error", [("content-type", "text/plain")])
    return [answer]
"""


def test_plugins_add_port_stubs_and_normalizers(demo: pytest.Pytester) -> None:
    demo.makeconftest(PORT_STUB_PLUGIN)
    demo.makepyfile(memcache_app=MEMCACHE_APP)
    write_incident(
        demo,
        "memcache",
        """
select: {routes: ["GET /health"]}
target: {wsgi: "memcache_app:app"}
expect: {status: "<500"}
""",
    )
    result = demo.runpytest("--incident=memcache", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "  blocked   memcache get session:42  served by the plugin",
            "response body (now): END",
        ]
    )
    assert "FieldNormalizer(path='customer'" in (demo.path / "normalizers.txt").read_text()


def test_production_writes_are_shown_beside_the_replays(
    demo: pytest.Pytester, postgres: object
) -> None:
    """The four requests that failed in production wrote nothing; fixed, they write."""
    result = demo.runpytest("--incident=2024-05-signup", "-rP")
    result.assert_outcomes(passed=12)
    output = result.stdout.str()
    assert output.count("database writes (production | replay)") == 4
    result.stdout.fnmatch_lines(
        ["production | replay", "(nothing)  |*INSERT accounts committed"], consecutive=True
    )

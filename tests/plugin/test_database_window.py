"""`database: {state: window}` through pytester: the items of a window replay in recorded
order, the `before` fixture is requested once (by whichever item runs first, so a subset too
starts from it), and under `-n` the whole window goes to one worker while other items are
spread. The target appends "<worker> <email>" to a file for each request it serves, and the
`before` fixture "<worker> BEFORE": the file is the order the target saw."""

from __future__ import annotations

import json
import sys

import pytest

from pytest_incident.distribution import whole_windows
from pytest_incident.events.incident import open_incident

from ..conftest import write_incident

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

LEDGER_APP = """
import json, os

def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = json.loads(environ["wsgi.input"].read(length) or b"{}")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with open(os.environ["LEDGER"], "a") as ledger:
        ledger.write(f"{worker} {body['email']}\\n")
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"ok"]
"""

FIXTURES = """

@pytest.fixture
def ledger_start(request):
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    with request.config.rootpath.joinpath("window.log").open("a") as ledger:
        ledger.write(f"{worker} BEFORE\\n")


@pytest.hookimpl(wrapper=True)
def pytest_xdist_make_scheduler(config, log):
    scheduler = yield
    config.rootpath.joinpath("scheduler.txt").write_text(type(scheduler).__name__)
    return scheduler
"""

INCIDENT = """
select: {{routes: ["POST /signup"]}}
target:
  wsgi: ledger_app:app
  env: {{LEDGER: {log}}}
  pass_env: [PYTEST_XDIST_WORKER]
"""
WINDOW = "database: {state: window, before: ledger_start}\n"


@pytest.fixture
def ledger(demo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The demo project with two incidents over the demo's 12 signups, served by an app that
    notes each request: `window` (state window, before: ledger_start) and `request` (the
    default state). Run as a top-level session even when this test runs in an xdist worker:
    the notes name the worker from PYTEST_XDIST_WORKER."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    demo.makepyfile(ledger_app=LEDGER_APP)
    with (demo.path / "conftest.py").open("a") as conftest:
        conftest.write(FIXTURES)
    write_incident(demo, "window", INCIDENT.format(log="window.log") + WINDOW)
    write_incident(demo, "request", INCIDENT.format(log="request.log"))
    return demo


def recorded_emails(pytester: pytest.Pytester, name: str) -> list[str]:
    """The signups' emails in recorded (timestamp) order, from the recording itself."""
    opened = open_incident(pytester.path / "incidents" / f"{name}.yaml", {})
    requests = sorted(opened.requests, key=lambda r: (r.span.timestamp_ns, r.request_id))
    return [json.loads(r.body)["email"] for r in requests]


def ledger_lines(pytester: pytest.Pytester, log: str) -> list[tuple[str, str]]:
    path = pytester.path / log
    if not path.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in path.read_text().splitlines()]  # type: ignore[misc]


def request_ids(pytester: pytest.Pytester, name: str) -> list[str]:
    listing = pytester.runpytest(f"--incident={name}", "--collect-only", "-q")
    return [line.split("[")[1].rstrip("]") for line in listing.stdout.lines if "::" in line]


# another plugin reversing the items, in the last place there is to do it: after every plain
# hook, as --ff reorders
REVERSE_ITEMS = """

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_collection_modifyitems(items):
    result = yield
    items.reverse()
    return result
"""


def test_a_window_replays_in_recorded_order_from_before_once(ledger: pytest.Pytester) -> None:
    # the window is put back in recorded order, the request-state incident stays reversed
    # (the twin)
    with (ledger.path / "conftest.py").open("a") as conftest:
        conftest.write(REVERSE_ITEMS)
    result = ledger.runpytest("--incident=window", "--incident=request")
    result.assert_outcomes(passed=24)
    emails = recorded_emails(ledger, "window")
    assert len(emails) == 12
    assert ledger_lines(ledger, "window.log") == [
        ("main", "BEFORE"),
        *(("main", email) for email in emails),
    ]
    assert ledger_lines(ledger, "request.log") == [("main", e) for e in reversed(emails)]


@pytest.mark.parametrize("how", ["--incident-request", "-k"])
def test_a_subset_of_a_window_starts_from_before(ledger: pytest.Pytester, how: str) -> None:
    ids = request_ids(ledger, "window")
    emails = recorded_emails(ledger, "window")
    chosen = [4, 7]  # not the first recorded: the first item that runs requests `before`
    if how == "-k":
        args = ["-k", " or ".join(ids[i] for i in chosen)]
    else:
        args = [f"--incident-request={ids[i]}" for i in chosen]
    result = ledger.runpytest("--incident=window", *args)
    result.assert_outcomes(passed=2)
    assert ledger_lines(ledger, "window.log") == [
        ("main", "BEFORE"),
        *(("main", emails[i]) for i in chosen),
    ]


def test_an_unknown_before_fixture_is_reported_at_its_line(ledger: pytest.Pytester) -> None:
    path = write_incident(
        ledger,
        "window",
        INCIDENT.format(log="window.log") + "database: {state: window, before: ledger_strat}\n",
    )
    line = path.read_text().splitlines().index("database: {state: window, before: ledger_strat}")
    result = ledger.runpytest(
        "--incident=window", "--incident-request", request_ids(ledger, "window")[0]
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            f"incidents/window.yaml:{line + 1}: database.before: fixture 'ledger_strat' not "
            "found; it names a fixture of a conftest.py or plugin, like usefixtures",
            "*available fixtures: *ledger_start*",
        ]
    )
    for noise in ("Traceback", "pytest_incident/", "During handling", "SubRequest"):
        assert noise not in result.stdout.str()
    assert not (ledger.path / "window.log").exists()  # nothing replayed


def test_under_xdist_a_window_goes_to_one_worker_in_order(ledger: pytest.Pytester) -> None:
    result = ledger.runpytest("--incident=request", "--incident=window", "-n", "2")
    result.assert_outcomes(passed=24)
    assert (ledger.path / "scheduler.txt").read_text() == "WindowLoadScheduling"
    emails = recorded_emails(ledger, "window")
    window = ledger_lines(ledger, "window.log")
    workers = {worker for worker, _ in window}
    assert len(workers) == 1 and workers < {"gw0", "gw1"}, window
    assert [what for _, what in window] == ["BEFORE", *emails]
    # the twin: the request-state incident's items are spread over both workers
    spread = ledger_lines(ledger, "request.log")
    assert len(spread) == 12
    assert {worker for worker, _ in spread} == {"gw0", "gw1"}, spread


def test_an_explicit_dist_is_left_to_xdist(ledger: pytest.Pytester) -> None:
    ledger.makepyfile(test_plain="def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    for dist, scheduler in (("loadfile", "LoadFileScheduling"), ("load", "WindowLoadScheduling")):
        result = ledger.runpytest("test_plain.py", "-n", "2", f"--dist={dist}")
        result.assert_outcomes(passed=2)
        assert (ledger.path / "scheduler.txt").read_text() == scheduler


@pytest.mark.parametrize(
    ("count", "sent"),
    [
        (2, 2),  # ends before the window
        (3, 6),  # ends inside it: the rest of the window goes too
        (4, 6),
        (6, 6),  # ends with it
        (7, 7),
        (20, 8),  # more than there is: all there is
    ],
)
def test_a_chunk_never_ends_inside_a_window(count: int, sent: int) -> None:
    files = ["a", "b", "w", "w", "w", "w", "c", "d"]  # indices 2..5: one window-state incident
    pending = list(range(len(files)))

    def window_of(index: int) -> str | None:
        return files[index] if files[index] == "w" else None

    assert whole_windows(pending, count, window_of) == sent
    assert whole_windows([], count, window_of) == count

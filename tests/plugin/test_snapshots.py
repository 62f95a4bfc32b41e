"""syrupy snapshots of each replayed request's side-effect log (`expect.mutations: snapshot`):
the pure log (SideEffectLog, MutationLog), the incident-file key, and the plugin through
pytester (syrupy's fixture on incident items, --snapshot-update, diffs, unused snapshots,
partial runs, xdist)."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pytest_incident.core.side_effects import MutationLog, SideEffectLog
from pytest_incident.model.effects import Effect, Outcome
from pytest_incident.model.errors import IncidentFileError
from pytest_incident.model.normalizers import PatternNormalizer
from pytest_incident.model.spec import MutationsMode
from pytest_incident.spec import load_incident

from ..conftest import write_incident

linux_only = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")


# --- the log ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Logged:
    """Shaped like pytest_incident.pgwire.Mutation."""

    sequence: int
    statement: str
    params: object
    operation: str
    table: str
    rows: int | None
    transaction: int
    outcome: str


def mutation(sequence: int, transaction: int, **fields: object) -> Logged:
    values: dict[str, object] = {
        "statement": "INSERT INTO accounts (email) VALUES ($1)",
        "params": ("ada@example.com",),
        "operation": "INSERT",
        "table": "accounts",
        "rows": 1,
        "outcome": "committed",
        **fields,
    }
    return Logged(sequence=sequence, transaction=transaction, **values)  # type: ignore[arg-type]


def test_mutation_log_is_numbered_by_position_and_first_appearance() -> None:
    entries = [
        mutation(
            41,
            9,
            statement="\n    INSERT INTO accounts (email, plan)\n    VALUES ($1, $2)\n  ",
            params=("ada@example.com", None),
        ),
        mutation(
            42,
            9,
            statement="UPDATE accounts SET status = $1 WHERE id = $2",
            params=("active", "1"),
            operation="UPDATE",
        ),
        mutation(
            7,  # another connection of the pool counts on its own
            0,
            statement="DELETE FROM carts",
            params=(),
            operation="DELETE",
            table="carts",
            rows=None,
            outcome="failed",
        ),
        mutation(43, 10, outcome="rolled back"),
    ]
    log = MutationLog.of(entries)
    assert log.render() == "\n".join(
        [
            "  1. INSERT accounts  rows: 1  committed  (transaction 1)",
            "     INSERT INTO accounts (email, plan)",
            "     VALUES ($1, $2)",
            "     params: $1='ada@example.com', $2=NULL",
            "  2. UPDATE accounts  rows: 1  committed  (transaction 1)",
            "     UPDATE accounts SET status = $1 WHERE id = $2",
            "     params: $1='active', $2='1'",
            "  3. DELETE carts  rows: ?  failed  (no transaction)",
            "     DELETE FROM carts",
            "  4. INSERT accounts  rows: 1  rolled back  (transaction 2)",
            "     INSERT INTO accounts (email) VALUES ($1)",
            "     params: $1='ada@example.com'",
        ]
    )
    # the same request replayed later: the tap's counters have moved on, the log has not
    later = [
        replace(e, sequence=e.sequence + 100, transaction=e.transaction and e.transaction + 5)
        for e in entries
    ]
    assert MutationLog.of(later) == log
    assert MutationLog.of([]).render() == "  (none)"


def test_side_effect_log_keeps_emails_and_jobs_without_random_ids_or_late_arrivals() -> None:
    effects = [
        Effect(Outcome.SERVED, "GET http://api.payments.example/v1/customers", "-> 200"),
        Effect(Outcome.EMAIL, "mail from a@example.com to b@example.com", "subject: Hi  (9 bytes)"),
        Effect(
            Outcome.JOB,
            "rq welcome: tasks.send_welcome('b@example.com')",
            "job 0f8fad5b-d9cb-469f-a165-70867728950e, not dispatched",
        ),
        Effect(Outcome.EMAIL, "mail from a@example.com to c@example.com", "x", late_after="ab"),
    ]
    text = SideEffectLog.of(effects).render()
    assert text == (
        "emails and jobs:\n"
        "  email     mail from a@example.com to b@example.com  subject: Hi  (9 bytes)\n"
        "  job       rq welcome: tasks.send_welcome('b@example.com')  job <uuid>, not dispatched\n"
        "database mutations:\n"
        "  (none)"
    )
    assert SideEffectLog.of([]).render() == (
        "emails and jobs:\n  (none)\ndatabase mutations:\n  (none)"
    )
    upper = PatternNormalizer(re.compile(r"mail from \S+"), "MAIL FROM <sender>")
    shout = SideEffectLog.of(effects, normalizers=(upper,)).render()
    assert "MAIL FROM <sender> to b@example.com" in shout  # normalizers see every line


# --- the incident file -----------------------------------------------------------------------

MINIMAL = (
    "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\n"
    "source: events.jsonl\n"
    "target: {wsgi: app:app}\n"
)


@pytest.mark.parametrize(
    ("expect", "mode"),
    [("", MutationsMode.IGNORE), ("expect: {mutations: snapshot}\n", MutationsMode.SNAPSHOT)],
)
def test_expect_mutations_is_read(tmp_path: Path, expect: str, mode: MutationsMode) -> None:
    (tmp_path / "events.jsonl").write_text("")
    (tmp_path / "x.yaml").write_text(MINIMAL + expect)
    assert load_incident(tmp_path / "x.yaml", {}).expect.mutations is mode


def test_expect_mutations_names_the_allowed_values(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text("")
    (tmp_path / "x.yaml").write_text(MINIMAL + "expect:\n  mutations: snapshots\n")
    with pytest.raises(IncidentFileError) as info:
        load_incident(tmp_path / "x.yaml", {})
    assert (info.value.line, info.value.message) == (
        5,
        "expect.mutations: 'snapshots' is not allowed; allowed: snapshot, ignore",
    )


# --- the plugin, through pytester ------------------------------------------------------------

WELCOME_APP = """
import smtplib
from email.message import EmailMessage
import redis, rq

SUBJECT = "Welcome!"

def app(environ, start_response):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "shop@example.com", "ada@example.com", SUBJECT
    msg.set_content("hello")
    with smtplib.SMTP("smtp.mail.example", 587, timeout=5) as smtp:
        smtp.send_message(msg)
    queue = rq.Queue("welcome", connection=redis.Redis.from_url("redis://localhost:6379/0"))
    queue.enqueue("tasks.send_welcome", "ada@example.com")
    start_response("200 OK", [("content-type", "text/plain")])
    return [b"ok"]
"""

WELCOME_INCIDENT = """
select: {routes: ["GET /health"]}
target: {wsgi: "welcome_app:app"}
expect: {status: "<500", mutations: snapshot}
"""
SNAPSHOT_FILE = "incidents/__snapshots__/welcome.ambr"
EMAIL_LINE = "email     mail from shop@example.com to ada@example.com  subject: Welcome!"
JOB_LINE = "job       rq welcome: tasks.send_welcome('ada@example.com')  job <uuid>, not dispatched"


@pytest.fixture
def project(demo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """The demo project, run as a top-level session even when this test runs in an xdist
    worker: syrupy takes PYTEST_XDIST_WORKER to mean it is one, and then leaves writing,
    unused-snapshot detection and its report to a controller that is not there."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)
    return demo


@pytest.fixture
def welcome(project: pytest.Pytester) -> pytest.Pytester:
    """The demo project with an incident whose two requests each send a mail and enqueue a
    job (GET /health[...] x 2), snapshotting their side-effect logs."""
    pytest.importorskip("rq")
    project.makepyfile(welcome_app=WELCOME_APP)
    write_incident(project, "welcome", WELCOME_INCIDENT)
    return project


def snapshot_names(path: Path) -> list[str]:
    return [line[len("# name: ") :] for line in path.read_text().splitlines() if "# name: " in line]


def item_ids(pytester: pytest.Pytester, incident: str) -> list[str]:
    listing = pytester.runpytest(f"--incident={incident}", "--collect-only", "-q")
    return [line.split("[")[1].rstrip("]") for line in listing.stdout.lines if "::" in line]


RAW_FIXTURE_CONFTEST = """
import pytest

@pytest.hookimpl
def pytest_incident_replayed(item, result, verdict):
    assert item.funcargs["snapshot"] == f"answered {result.status}"
"""


@linux_only
def test_syrupys_own_fixture_on_incident_items(project: pytest.Pytester) -> None:
    """Exploration kept as a regression test: syrupy's `snapshot` fixture, requested by an
    incident file's `usefixtures`, works on IncidentItems as they are (a pytest.Function
    with a path, an obj and a name). The file lands in incidents/__snapshots__/<stem>.ambr
    and each snapshot is named after its item. What broke was a partial run: syrupy relates
    names by their leading identifier ("POST"), so the item that ran claimed the other
    requests' snapshots; they were reported unused and --snapshot-update deleted them."""
    project.makeconftest(RAW_FIXTURE_CONFTEST)
    write_incident(
        project,
        "raw",
        """
select: {routes: ["POST /signup"], status: ">=500"}
target:
  wsgi: examples.signup.app_before_fix:app
  env: {PAYMENTS_URL: "http://api.payments.example"}
usefixtures: [snapshot]
""",
    )
    result = project.runpytest("--incident=raw", "--snapshot-update")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["4 snapshots generated."])
    ambr = project.path / "incidents" / "__snapshots__" / "raw.ambr"
    ids = item_ids(project, "raw")
    assert sorted(snapshot_names(ambr)) == sorted(f"POST /signup[{i}]" for i in ids)
    assert "  'answered 500'" in ambr.read_text()

    for update in ([], ["--snapshot-update"]):
        result = project.runpytest("--incident=raw", f"--incident-request={ids[0]}", *update)
        result.assert_outcomes(passed=1, deselected=3)
        assert result.ret == pytest.ExitCode.OK
        result.stdout.no_fnmatch_line("*unused*")
        assert len(snapshot_names(ambr)) == 4


@linux_only
def test_first_update_records_each_requests_log(welcome: pytest.Pytester) -> None:
    result = welcome.runpytest("--incident=welcome", "--snapshot-update")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["2 snapshots generated."])
    ambr = welcome.path / SNAPSHOT_FILE
    text = ambr.read_text()
    assert sorted(snapshot_names(ambr)) == sorted(
        f"GET /health[{i}]" for i in item_ids(welcome, "welcome")
    )
    assert text.count(EMAIL_LINE) == 2
    assert text.count(JOB_LINE) == 2
    assert text.count("database mutations:\n    (none)") == 2

    again = welcome.runpytest("--incident=welcome")
    again.assert_outcomes(passed=2)
    again.stdout.fnmatch_lines(["2 snapshots passed."])


@linux_only
def test_missing_snapshot_fails_the_item_and_says_how_to_record_it(
    welcome: pytest.Pytester,
) -> None:
    result = welcome.runpytest("--incident=welcome")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "status: 200 -> 200   (was -> now)",
            "problems:",
            f"  - new snapshot: the side-effect log has none in {SNAPSHOT_FILE} yet; "
            "--snapshot-update accepts it",
            "side-effect log [[]GET /health[[]*]]  (- snapshot, + now):",
            f"*+*{EMAIL_LINE}*",
        ]
    )
    # new snapshots are not regressions
    result.stdout.fnmatch_lines(
        [
            "welcome: 2 replayed, 0 passing, 2 still failing "
            "(0 regressed, 2 new snapshot(s): --snapshot-update accepts them)"
        ]
    )
    assert not (welcome.path / SNAPSHOT_FILE).exists()


@linux_only
def test_changed_log_fails_with_a_diff_until_accepted(welcome: pytest.Pytester) -> None:
    welcome.runpytest("--incident=welcome", "--snapshot-update").assert_outcomes(passed=2)
    ambr = welcome.path / SNAPSHOT_FILE
    before = ambr.read_text()
    app = welcome.path / "welcome_app.py"
    app.write_text(WELCOME_APP.replace('SUBJECT = "Welcome!"', 'SUBJECT = "Hello again!"'))

    result = welcome.runpytest("--incident=welcome")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "GET /health  request *",
            "status: 200 -> 200   (was -> now)",
            "problems:",
            f"  - the side-effect log differs from its snapshot in {SNAPSHOT_FILE} "
            "(--snapshot-update accepts the new one)",
            "outbound calls:",
            "  email     mail from shop@example.com to ada@example.com  subject: Hello again!*",
            "side-effect log [[]GET /health[[]*]]  (- snapshot, + now):",
            "*-*subject: Welcome!*",
            "*+*subject: Hello again!*",
        ]
    )
    result.stdout.fnmatch_lines(["2 snapshots failed."])
    result.stdout.fnmatch_lines(
        ["welcome: 2 replayed, 0 passing, 2 still failing (0 regressed, 2 snapshot(s) changed)"]
    )
    output = result.stdout.str()
    assert "Traceback" not in output
    assert "pytest_incident/" not in output  # no plugin frames
    assert ambr.read_text() == before  # nothing written without --snapshot-update

    accepted = welcome.runpytest("--incident=welcome", "--snapshot-update")
    accepted.assert_outcomes(passed=2)
    accepted.stdout.fnmatch_lines(["2 snapshots updated."])
    after = ambr.read_text()
    assert after.count("subject: Hello again!") == 2
    assert "Welcome!" not in after
    welcome.runpytest("--incident=welcome").assert_outcomes(passed=2)


@linux_only
def test_unused_snapshot_is_reported_and_removed_on_update(welcome: pytest.Pytester) -> None:
    welcome.runpytest("--incident=welcome", "--snapshot-update").assert_outcomes(passed=2)
    ambr = welcome.path / SNAPSHOT_FILE
    orphan = "# name: GET /health[deadbeef]\n  '''\n  gone\n  '''\n# ---\n"
    ambr.write_text(ambr.read_text() + orphan)

    result = welcome.runpytest("--incident=welcome")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # syrupy fails a run with unused ones
    result.stdout.fnmatch_lines(["2 snapshots passed. 1 snapshot unused."])

    result = welcome.runpytest("--incident=welcome", "--snapshot-update")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*1 unused snapshot deleted.", "Deleted GET /health[[]deadbeef]*"])
    assert "GET /health[deadbeef]" not in snapshot_names(ambr)
    assert len(snapshot_names(ambr)) == 2


@linux_only
def test_a_partial_run_keeps_the_other_requests_snapshots(welcome: pytest.Pytester) -> None:
    """Deselected requests' snapshots are neither reported unused nor deleted: in-process, in
    a fresh process (where plugins register in entry-point order) and on the xdist
    controller, which decides from the workers' reports."""
    welcome.runpytest("--incident=welcome", "--snapshot-update").assert_outcomes(passed=2)
    ambr = welcome.path / SNAPSHOT_FILE
    before = ambr.read_text()
    first, second = item_ids(welcome, "welcome")
    node = f"incidents/welcome.yaml::GET /health[{second}]"
    runs = [
        (welcome.runpytest, [f"--incident-request={first}"]),
        (welcome.runpytest, ["--deselect", node]),
        (welcome.runpytest_subprocess, [f"--incident-request={first}"]),
        (welcome.runpytest, [f"--incident-request={first}", "-n", "2"]),
    ]
    for run, selection in runs:
        result = run("--incident=welcome", "--snapshot-update", *selection)
        assert result.parseoutcomes()["passed"] == 1
        assert result.ret == pytest.ExitCode.OK
        result.stdout.fnmatch_lines(["1 snapshot passed."])
        result.stdout.no_fnmatch_line("*unused*")
        assert ambr.read_text() == before


@linux_only
def test_logs_are_identical_between_runs_and_under_xdist(welcome: pytest.Pytester) -> None:
    ambr = welcome.path / SNAPSHOT_FILE
    texts = []
    for workers in ([], [], ["-n", "2"]):
        ambr.unlink(missing_ok=True)
        welcome.runpytest("--incident=welcome", "--snapshot-update", *workers).assert_outcomes(
            passed=2
        )
        texts.append(ambr.read_text())
    assert texts[0] == texts[1] == texts[2]
    assert texts[0].count(EMAIL_LINE) == 2

    result = welcome.runpytest("--incident=welcome", "-n", "2")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["2 snapshots passed."])
    ambr.write_text(texts[0].replace("Welcome!", "Welcome?"))
    result = welcome.runpytest("--incident=welcome", "-n", "2")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*-*subject: Welcome?*", "*+*subject: Welcome!*"])


@linux_only
def test_snapshot_without_syrupy_is_a_collection_error(welcome: pytest.Pytester) -> None:
    result = welcome.runpytest("--incident=welcome", "-p", "no:syrupy")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*incidents/welcome.yaml:6: expect.mutations: snapshot needs syrupy's pytest plugin*"]
    )
    assert "INTERNALERROR" not in result.stdout.str()


@linux_only
def test_a_conftest_snapshot_fixture_is_reported_not_used(welcome: pytest.Pytester) -> None:
    welcome.makeconftest(
        "import pytest\n\n@pytest.fixture\ndef snapshot():\n    return 'not syrupy'\n"
    )
    result = welcome.runpytest("--incident=welcome", "-x")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*incidents/welcome.yaml:*: expect.mutations: snapshot needs syrupy's `snapshot` "
            "fixture, but it is a str here (overridden in a conftest.py?)"
        ]
    )
    assert not (welcome.path / SNAPSHOT_FILE).exists()


def test_database_writes_are_snapshotted_and_a_changed_write_shows_a_diff(
    demo: pytest.Pytester, postgres: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Against the real PostgreSQL: the demo's snapshot is created and matches; a code change
    that writes a different status breaks it with a diff; --snapshot-update accepts; runs
    are identical."""
    for name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(name, raising=False)  # the inner runs are not xdist workers
    ambr = demo.path / "incidents" / "__snapshots__" / "2024-05-signup.ambr"
    committed = ambr.read_text()
    ambr.unlink()
    result = demo.runpytest("--incident=2024-05-signup", "--snapshot-update")
    result.assert_outcomes(passed=12)
    result.stdout.fnmatch_lines(["12 snapshots generated."])
    assert ambr.read_text() == committed  # created: the same as the committed one
    assert "INSERT accounts  rows: 1  committed" in committed

    result = demo.runpytest("--incident=2024-05-signup")
    result.assert_outcomes(passed=12)
    assert ambr.read_text() == committed  # matched, untouched

    app = demo.path / "examples" / "signup" / "app.py"
    app.write_text(app.read_text().replace('"payment_pending"', '"pending_payment"'))
    result = demo.runpytest("--incident=2024-05-signup")
    result.assert_outcomes(passed=8, failed=4)  # the four timed-out charges write differently
    output = result.stdout.str()
    assert "$5='payment_pending'" in output and "$5='pending_payment'" in output

    result = demo.runpytest("--incident=2024-05-signup", "--snapshot-update")
    result.assert_outcomes(passed=12)  # accepted
    updated = ambr.read_text()
    assert "pending_payment" in updated and "payment_pending" not in updated
    demo.runpytest("--incident=2024-05-signup", "--snapshot-update")
    assert ambr.read_text() == updated  # two consecutive replays: identical snapshots


def test_replaying_one_incident_leaves_other_incidents_snapshots_alone(
    demo: pytest.Pytester,
) -> None:
    """`--incident=X --snapshot-update` must not take Y's snapshots for unused ones."""
    ambr = demo.path / "incidents" / "__snapshots__" / "2024-05-signup.ambr"
    before = ambr.read_text()
    write_incident(
        demo,
        "health-only",
        """
select: {routes: ["GET /health"]}
target: {wsgi: examples.signup.app:app}
expect: {mutations: snapshot}
""",
    )
    result = demo.runpytest("--incident=health-only", "--snapshot-update")
    result.assert_outcomes(passed=2)
    assert "unused" not in result.stdout.str()
    assert ambr.read_text() == before


def test_expect_normalize_replaces_values_that_vary_between_runs() -> None:
    import re
    from types import SimpleNamespace

    from pytest_incident.core.side_effects import SideEffectLog
    from pytest_incident.model.normalizers import BUILTIN_NORMALIZERS, PatternNormalizer

    write = SimpleNamespace(
        sequence=1, statement="INSERT INTO audit VALUES ($1, $2)", operation="INSERT",
        table="audit", rows=1, transaction=0, outcome="autocommit",
        params=("2026-11-22 03:22:11.123456+00", "acct_9f2c"),
    )  # fmt: skip
    rules = (
        BUILTIN_NORMALIZERS["timestamps"],
        PatternNormalizer(re.compile(r"acct_\w+"), "<account>"),
    )
    text = SideEffectLog.of((), [write], rules).render()
    assert "$1='<timestamp>'" in text and "$2='<account>'" in text
    assert "2026-11-22" not in text
    plain = SideEffectLog.of((), [write], ()).render()
    assert "2026-11-22 03:22:11.123456+00" in plain

"""`pytest-incident freeze`: the demo window frozen and replayed with the same items and
verdicts as the demo incident; planted secrets absent from the frozen bytes; never an
overwrite without --force, never a half-written file; every mistake one line."""

from __future__ import annotations

import gzip
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_incident.cli import freeze, main
from pytest_incident.events.frozen import read_spans, write_spans
from pytest_incident.events.incident import open_incident
from pytest_incident.model.errors import IncidentFileError
from pytest_incident.model.spans import Span, parse_timestamp
from pytest_incident.spec import load_incident
from tests.spans import client_span, db_span, server_span

from ..conftest import DEMO_YAML

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "incidents" / "2024-05-signup.events.jsonl.gz"
WINDOW = "2024-05-14T14:00:00Z..2024-05-14T14:30:00Z"
DEMO_FILTERS = ("--service", "signup", "--filter", "route=POST /signup")


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty project folder as the working directory (its own pyproject.toml: none)."""
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\n')
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o022)
    yield tmp_path
    os.umask(old)


def run_freeze(*argv: str) -> int:
    """The exit status (argparse's own mistakes exit at once)."""
    try:
        return main.main(["freeze", *argv])
    except SystemExit as exc:
        return int(exc.code or 0)


def fill_in(text: str, app: str = "examples.signup.app:app") -> str:
    return text.replace("  wsgi: FILL-IN", f"  wsgi: {app}")


def test_the_demo_window_frozen_holds_the_demo_incidents_requests_whole(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_freeze("signup", "--source", str(DEMO), "--window", WINDOW, *DEMO_FILTERS) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        "froze 12 request(s) (4 failed in production) with their traces, 47 spans, into "
        "incidents/signup.events.jsonl.gz"
    )
    assert "redacted nothing (no value matched a redaction rule)" in out
    assert f"  (redaction rules: the defaults and {project / 'pyproject.toml'})" in out
    assert out[-1] == (
        "wrote incidents/signup.yaml: fill in its target: (how to start the current code), "
        "then run: pytest --incident=signup"
    )
    incident = project / "incidents" / "signup.yaml"
    events = project / "incidents" / "signup.events.jsonl.gz"
    for written in (incident, events):
        assert written.stat().st_mode & 0o777 == 0o644  # as any file, not mkstemp's 0600
    assert sorted(p.name for p in incident.parent.iterdir()) == [events.name, incident.name]
    # the scaffold loads, and says what to fill in
    with pytest.raises(IncidentFileError) as caught:
        load_incident(incident, {})
    assert "target.wsgi: fill in how to start the current code" in caught.value.message
    assert incident.read_text().splitlines()[caught.value.line - 1] == "  wsgi: FILL-IN"
    # filled in, it selects the demo incident's requests, and holds their traces whole
    incident.write_text(fill_in(incident.read_text()))
    frozen = open_incident(incident, {})
    original = open_incident(ROOT / DEMO_YAML, {})
    assert [r.request_id for r in frozen.requests] == [r.request_id for r in original.requests]
    assert frozen.requests == original.requests  # the same spans, calls and writes
    traces = {r.request_id for r in original.requests}

    def ordered(spans: Iterable[Span]) -> list[Span]:
        return sorted(spans, key=lambda s: (s.timestamp_ns, s.span_id))

    assert ordered(read_spans(events)) == ordered(
        s for s in read_spans(DEMO) if s.trace_id in traces
    )
    spec = frozen.spec
    assert (spec.name, spec.title, spec.select.service, spec.select.routes) == (
        "signup",
        "",
        "signup",
        ("POST /signup",),
    )
    assert str(spec.expect.status) == "<500" and str(spec.expect.resolved) == "<400"


SECRETS = {
    "bearer": "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
    "cookie": "s3ss10n-7f2a9d",
    "api_key_header": "AKIA5EXAMPLE0KEY9",
    "json_password": "correct-horse-battery-staple",
    "nested_token": "ghp_R4nd0mT0k3nV4lu3",
    "form_secret": "pi_123_secret_456xyz",
    "query_token": "qT0k3nInTheQuery",
    "url_api_key": "urlK3yInTheCall99",
    "db_password": "$2b$12$hashhashhashhash",
    "response_token": "eyJhbGciOiJIUzI1NiJ9.payload.sig",
    "card": "4111111111111111",
    "card_spaced": "5500 0000 0000 0004",
    "custom": "INTERNAL-7Q2-ZZ9",  # only the project's configured pattern finds it
}


def planted_recording(path: Path) -> None:
    at = parse_timestamp("2024-05-14T14:10:00Z")
    s = SECRETS
    inbound = server_span(
        at=at,
        **{
            "url.query": f"page=1&access_token={s['query_token']}",
            "incident.request.headers": json.dumps(
                {
                    "authorization": f"Bearer {s['bearer']}",
                    "cookie": f"session={s['cookie']}",
                    "x-api-key": s["api_key_header"],
                    "content-type": "application/json",
                }
            ),
            "incident.request.body": json.dumps(
                {
                    "email": "ann@example.org",
                    "password": s["json_password"],
                    "payment": {"card": s["card"], "meta": [{"github_token": s["nested_token"]}]},
                    "note": f"ref {s['custom']} / {s['card_spaced']}",
                }
            ),
            "incident.response.body": json.dumps({"ok": False, "echo": s["bearer"]}),
        },
    )
    outbound = client_span(
        {
            "http.request.method": "POST",
            "url.full": f"https://api.payments.example/v1/charges?api_key={s['url_api_key']}",
            "incident.request.headers": json.dumps(
                {"content-type": "application/x-www-form-urlencoded"}
            ),
            "incident.request.body": f"amount=4200&client_secret={s['form_secret']}",
            "http.response.status_code": "200",
            "incident.response.body": json.dumps({"access_token": s["response_token"]}),
        },
        at=at + 1_000,
    )
    statement = "UPDATE users SET password_hash = $1 WHERE email = $2"
    database = db_span("UPDATE", "users", "committed", at=at + 2_000,
                       params=json.dumps([s["db_password"], "ann@example.org"]))  # fmt: skip
    database = replace(database, attributes={**database.attributes, "db.query.text": statement})
    write_spans(path, [inbound, outbound, database])


def test_planted_secrets_never_reach_the_frozen_files(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    planted_recording(project / "planted.jsonl")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\n\n[tool.pytest-incident.redact]\n'
        "patterns = ['INTERNAL-[0-9A-Z]{3}-[0-9A-Z]{3}']\n"
    )
    assert run_freeze("planted", "--source", "planted.jsonl", "--window", WINDOW) == 0
    printed = capsys.readouterr()
    frozen = gzip.decompress((project / "incidents" / "planted.events.jsonl.gz").read_bytes())
    scaffold = (project / "incidents" / "planted.yaml").read_bytes()
    for name, secret in SECRETS.items():
        for written in (secret.encode(), json.dumps(secret)[1:-1].encode()):
            assert written not in frozen, name
            assert written not in scaffold, name
        assert secret not in printed.out + printed.err, name
    assert re.search(rb"redacted-[a-z]{12}", frozen)
    assert "field password" in printed.out and "card number" in printed.out
    assert "pattern #1 'INTERNAL-[0-9A-Z]{3}-[0-9A-Z]{3}'" in printed.out
    # the twin: the same recording holds every one of them before it is frozen
    original = (project / "planted.jsonl").read_bytes()
    assert all(json.dumps(secret)[1:-1].encode() in original for secret in SECRETS.values())


def test_never_overwrites_without_force(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ("demo", "--source", str(DEMO), "--window", WINDOW, *DEMO_FILTERS)
    assert run_freeze(*argv) == 0
    incident = project / "incidents" / "demo.yaml"
    incident.write_text(fill_in(incident.read_text()))  # the user's edits
    before = {p.name: p.read_bytes() for p in incident.parent.iterdir()}
    capsys.readouterr()
    assert run_freeze(*argv) == 2
    err = capsys.readouterr().err
    assert err == (
        "pytest-incident freeze: incidents/demo.yaml exists; pass --force to overwrite it\n"
    )
    assert {p.name: p.read_bytes() for p in incident.parent.iterdir()} == before
    (project / "incidents" / "other.events.jsonl.gz").write_bytes(b"mine")  # one of the two
    assert run_freeze("other", *argv[1:]) == 2
    assert not (project / "incidents" / "other.yaml").exists()
    # the twin: --force replaces both
    assert run_freeze(*argv, "--force") == 0
    assert "wsgi: FILL-IN" in incident.read_text()
    assert sorted(p.name for p in incident.parent.iterdir()) == sorted(
        [*before, "other.events.jsonl.gz"]
    )


def test_a_name_taken_while_freezing_is_not_overwritten(tmp_path: Path) -> None:
    taken = tmp_path / "x.yaml"
    taken.write_text("theirs")
    new = tmp_path / ".new"
    new.write_text("ours")
    with pytest.raises(freeze._Exists):
        freeze._place(new, taken, force=False)
    assert taken.read_text() == "theirs"
    freeze._place(new, taken, force=True)
    assert taken.read_text() == "ours"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--window", "2024-05-14T10:00:00Z..2024-05-14T11:00:00Z"],
            "nothing written: no recorded request in 2024-05-14T10:00:00Z .. "
            "2024-05-14T11:00:00Z UTC (pytest-incident tail shows when there are requests",
        ),
        (
            ["--window", WINDOW, "--filter", "status=404"],
            "nothing written: status '404' matches none of the requests in "
            "2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z UTC; the window holds 16 from",
        ),
        (
            ["--window", WINDOW, "--service", "billing"],
            "nothing written: no recorded request of service 'billing' in",
        ),
    ],
)
def test_a_window_that_keeps_nothing_writes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run_freeze("empty", "--source", str(DEMO), *argv) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"pytest-incident freeze: {message}") and err.count("\n") == 1
    assert not (project / "incidents").exists() or not any((project / "incidents").iterdir())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["../x", "--window", WINDOW], "NAME '../x': use letters, digits"),
        (["x.yaml", "--window", WINDOW], "without .yaml"),
        (["x", "--window", WINDOW, "--dir", "pyproject.toml"], "--dir pyproject.toml: not a dir"),
        (["x", "--window", "today"], "--window 'today': expected START..END"),
        (["x", "--window", WINDOW, "--filter", "status"], "expected KEY OP VALUE"),
        (["x"], "the following arguments are required: --window"),
        (["x", "--window", WINDOW, "--since", "2h"], "unrecognized arguments: --since 2h"),
    ],
)
def test_usage_mistakes_are_one_line(
    project: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert run_freeze(*argv[:1], "--source", str(DEMO), *argv[1:]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pytest-incident freeze: ") and message in err
    assert err.count("\n") == 1
    assert not (project / "incidents").exists()


def test_a_mistake_in_the_redaction_rules_is_at_its_line(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\n\n[tool.pytest-incident.redact]\nkeep = ["header:accept"]\n'
    )
    assert run_freeze("x", "--source", str(DEMO), "--window", WINDOW) == 2
    err = capsys.readouterr().err
    assert err == (
        f"pytest-incident freeze: {project / 'pyproject.toml'}:5: [tool.pytest-incident.redact] "
        "keep: 'header:accept': the defaults do not redact header 'accept'; nothing to keep\n"
    )
    assert not (project / "incidents").exists()


def test_a_source_that_cannot_be_read_writes_nothing(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (project / "broken.jsonl").write_text('{"format": "pytest-incident-spans", "version": 1}\n[\n')
    assert run_freeze("x", "--source", "broken.jsonl", "--window", WINDOW) == 3
    assert capsys.readouterr().err.startswith("pytest-incident freeze: ")
    assert run_freeze("x", "--source", "nothing.jsonl", "--window", WINDOW) == 3
    assert "nothing.jsonl: file not found" in capsys.readouterr().err
    assert not (project / "incidents").exists() or not any((project / "incidents").iterdir())


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")
def test_tail_freeze_replay_gives_the_demo_incidents_items_and_verdicts(
    demo: pytest.Pytester,
) -> None:
    """The README's path: tail finds the window, freeze takes it, the replay of the frozen
    incident (its target copied from the demo incident) has the demo incident's items and
    verdicts -- against the code before the fix, where four fail."""
    source = "incidents/2024-05-signup.events.jsonl.gz"
    assert main.main(["tail", "--source", source, "--window", WINDOW]) == 0
    assert main.main(["freeze", "frozen", "--source", source, "--window", WINDOW,
                      *DEMO_FILTERS]) == 0  # fmt: skip
    original = demo.path / DEMO_YAML
    before_fix = original.read_text().replace(
        "examples.signup.app:app", "examples.signup.app_before_fix:app"
    )
    original.write_text(before_fix)
    lines = before_fix.splitlines()
    target = lines[lines.index("target:") : lines.index("sandbox:")]
    allow = next(line for line in lines if line.startswith("  allow:"))
    scaffold = demo.path / "incidents" / "frozen.yaml"
    text = scaffold.read_text()
    start = text.index("target:\n")
    end = text.index("sandbox:\n")
    scaffold.write_text(
        text[:start]
        + "\n".join(target)
        + "\n"
        + text[end:].replace("sandbox:\n", f"sandbox:\n{allow}\n", 1)
        + "usefixtures: [signup_db]\n"
    )

    def verdicts(name: str) -> dict[str, str]:
        result = demo.runpytest(f"--incident={name}", "-v")
        found = re.findall(
            r"^incidents/[\w.-]+\.yaml::(.+?) (PASSED|FAILED|ERROR)", result.stdout.str(), re.M
        )
        return dict(found)

    expected = verdicts("2024-05-signup")
    assert sorted(expected.values()).count("FAILED") == 4 and len(expected) == 12
    assert verdicts("frozen") == expected


def test_a_recording_of_database_writes_says_so_when_the_frozen_requests_wrote_nothing(
    project: Path,
) -> None:
    """Selection tells "wrote nothing" (writes: ()) from "writes not recorded" (None) by
    whether the recording holds any database statement: freeze keeps one when the frozen
    traces hold none, so the frozen incident reads the request as the original does."""
    at = parse_timestamp("2024-05-14T14:10:00Z")
    quiet = server_span(trace="a" * 32, at=at, path="/health", method="GET", status=200)
    writer = server_span(trace="b" * 32, span_id="b" * 16, at=at + 10)
    write = db_span("INSERT", "accounts", "committed", trace="b" * 32, at=at + 20)
    write_spans(project / "r.jsonl", [quiet, writer, write])
    assert (
        run_freeze("q", "--source", "r.jsonl", "--window", WINDOW, "--filter", "route=/health") == 0
    )
    incident = project / "incidents" / "q.yaml"
    incident.write_text(fill_in(incident.read_text()))
    (request,) = open_incident(incident, {}).requests
    assert request.request_id == "a" * 32 and request.db_writes == ()
    frozen = list(read_spans(project / "incidents" / "q.events.jsonl.gz"))
    assert [s.span_id for s in frozen] == [quiet.span_id, write.span_id]  # not the writer

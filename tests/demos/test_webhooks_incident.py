"""The webhooks demo incident end to end, against the real PostgreSQL: payment events whose
retried delivery failed in production only because the first delivery had written a row.
With `database: {state: window}` the code before the fix fails on every retry again and the
fix answers them 409 Conflict; with every request starting from the same database (the twin,
`state: request`) the in-window retries do not reproduce, and the fix books them again."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET

import pytest

from pytest_incident import reporting

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux"),
    pytest.mark.usefixtures("demo", "postgres"),
]

WEBHOOKS = "incidents/2024-07-webhooks.yaml"
FIXED = "examples.webhooks.app:app"
BEFORE_FIX = "examples.webhooks.app_before_fix:app"
# the retries, by recorded time: the first delivery of the 09:01 one was before the window
# (before_window.sql holds its row); the other two were first delivered inside it
PRE_WINDOW_RETRY = "09:01:07.412"
IN_WINDOW_RETRIES = ("09:04:43.118", "09:14:51.302")


def use(demo: pytest.Pytester, app: str, *, window: bool = True) -> None:
    """Point the incident at `app`; without `window`, the database is restored before every
    request instead (today's default: the fixture in usefixtures, no database: section)."""
    yaml = demo.path / WEBHOOKS
    text = yaml.read_text().replace(FIXED, app)
    if not window:
        head, _, _ = text.partition("\ndatabase:\n")
        text = head + "\nusefixtures: [webhooks_db]\n"
    yaml.write_text(text)


def statuses(demo: pytest.Pytester) -> dict[str, tuple[bool, str]]:
    """Each replayed request's item name -> (failed in production, status now), from the
    junit report's properties."""
    found = {}
    for case in ET.parse(demo.path / "report.xml").iter("testcase"):
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        found[case.get("name", "")] = (
            props[reporting.FAILED_BEFORE] == "True",
            props.get(reporting.NOW, ""),
        )
    return found


def test_the_fix_answers_409_to_every_retry_within_the_window(demo: pytest.Pytester) -> None:
    result = demo.runpytest("--incident=2024-07-webhooks", "--junitxml=report.xml")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines(["2024-07-webhooks: 7 replayed, 7 passing (3 resolved)"])
    now = statuses(demo)
    assert sorted(status for failed, status in now.values() if failed) == ["409"] * 3
    assert sorted(status for failed, status in now.values() if not failed) == ["200"] * 4


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_before_the_fix_every_retry_fails_again(demo: pytest.Pytester, workers: list[str]) -> None:
    use(demo, BEFORE_FIX)
    result = demo.runpytest("--incident=2024-07-webhooks", *workers)
    result.assert_outcomes(passed=4, failed=3)
    text = result.stdout.str()
    for at in (PRE_WINDOW_RETRY, *IN_WINDOW_RETRIES):
        assert f"recorded 2024-07-09 {at} UTC" in text
    result.stdout.fnmatch_lines(
        [
            "status: 500 -> 500   (was -> now)",
            "  - failed in production (500) and is not resolved (now 500; "
            "expect.resolved is 2xx,409)",
            "2024-07-webhooks: 7 replayed, 4 passing, 3 still failing (0 regressed)",
        ]
    )


def test_from_the_same_database_each_time_in_window_retries_do_not_reproduce(
    demo: pytest.Pytester,
) -> None:
    use(demo, BEFORE_FIX, window=False)
    result = demo.runpytest("--incident=2024-07-webhooks")
    result.assert_outcomes(passed=6, failed=1)  # only the retry of the pre-window delivery
    text = result.stdout.str()
    assert f"recorded 2024-07-09 {PRE_WINDOW_RETRY} UTC" in text
    for at in IN_WINDOW_RETRIES:  # answered 200 on the buggy code: taken for resolved
        assert f"recorded 2024-07-09 {at} UTC" not in text
    result.stdout.fnmatch_lines(
        ["2024-07-webhooks: 7 replayed, 6 passing (2 resolved), 1 still failing (0 regressed)"]
    )


def test_from_the_same_database_each_time_the_fix_books_a_retry_again(
    demo: pytest.Pytester,
) -> None:
    use(demo, FIXED, window=False)
    result = demo.runpytest("--incident=2024-07-webhooks", "-rA", "--junitxml=report.xml")
    result.assert_outcomes(passed=7)
    assert sorted(status for failed, status in statuses(demo).values() if failed) == [
        "200",
        "200",
        "409",
    ]
    # production wrote nothing for an in-window retry (its insert failed); the replay books it
    result.stdout.fnmatch_lines(
        [
            "production                   | replay",
            "INSERT webhook_events failed |*INSERT webhook_events committed",
            "(nothing)                    |*INSERT payments committed",
            "(nothing)                    |*UPDATE orders committed",
        ]
    )


def test_calibration_replays_the_window_twice_each_from_its_before_state(
    demo: pytest.Pytester,
) -> None:
    """The second pass starts again from database.before: without that, every delivery of
    the second pass would find its own row and answer 409 (a replay that is not
    deterministic, and nothing written)."""
    result = demo.runpytest("--incident=2024-07-webhooks", "--incident-calibrate")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        [
            "2024-07-webhooks: 7 request(s) replayed twice; wrote "
            "incidents/2024-07-webhooks.noise.yaml: 1 varying part(s) in 1 route(s)",
            "  POST /webhooks/payments: header:date",
        ]
    )
    result.stdout.no_fnmatch_line("*not deterministic*")

"""An incident whose `source:` is chDB replays as its frozen copy does: the same items, the
same verdicts, the same summary (pytester, in this process: the runs read the process's one
chDB directory, tests/conftest.py `chdb_dir`, in a database of their own)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_incident.events.clickhouse import parse_reference
from pytest_incident.events.clickhouse_load import load_spans
from pytest_incident.events.frozen import read_spans
from tests.conftest import DEMO_YAML

FROZEN_SOURCE = "source: 2024-05-signup.events.jsonl.gz"
ITEM_RE = re.compile(r"^(incidents/\S+\.yaml::.*?) (PASSED|FAILED|ERROR|SKIPPED)", re.M)


def verdicts(result: pytest.RunResult) -> list[tuple[str, str]]:
    return sorted(ITEM_RE.findall(result.stdout.str()))


def test_a_chdb_source_gives_the_frozen_copys_items_and_verdicts(
    demo: pytest.Pytester, chdb_dir: Path
) -> None:
    yaml = demo.path / DEMO_YAML
    # the code before the fix: 8 requests pass and 4 fail, so both verdicts are compared
    yaml.write_text(
        yaml.read_text().replace("examples.signup.app:app", "examples.signup.app_before_fix:app")
    )
    frozen = demo.runpytest("--incident=2024-05-signup", "-v")
    frozen.assert_outcomes(passed=8, failed=4)

    recording = yaml.parent / "2024-05-signup.events.jsonl.gz"
    source = f"chdb://{chdb_dir}?database=signup_demo"  # the process's one directory
    ref = parse_reference(source, yaml.parent, {})
    assert load_spans(ref, read_spans(recording)).spans == 61
    recording.unlink()  # nothing is read from the frozen file any more
    assert FROZEN_SOURCE in yaml.read_text()
    yaml.write_text(yaml.read_text().replace(FROZEN_SOURCE, f"source: {source}"))
    live = demo.runpytest("--incident=2024-05-signup", "-v")
    live.assert_outcomes(passed=8, failed=4)

    assert verdicts(live) == verdicts(frozen)
    assert len(verdicts(live)) == 12
    summary = "2024-05-signup: 12 replayed, 8 passing, 4 still failing (0 regressed)"
    frozen.stdout.fnmatch_lines([summary])
    live.stdout.fnmatch_lines([summary])


def test_a_chdb_source_that_is_wrong_errors_only_its_incident(demo: pytest.Pytester) -> None:
    yaml = demo.path / DEMO_YAML
    yaml.write_text(yaml.read_text().replace(FROZEN_SOURCE, "source: chdb://missing.chdb"))
    result = demo.runpytest("--incident=2024-05-signup")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "incidents/2024-05-signup.yaml:9: source: chdb://*/incidents/missing.chdb"
            "?table=otel_traces: the chDB directory */incidents/missing.chdb does not exist",
            "  >  9 | source: chdb://missing.chdb",
        ]
    )
    assert "Traceback" not in result.stdout.str()

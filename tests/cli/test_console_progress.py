"""Progress while reading a long window: on a terminal only, rows and rate, cleared at the end."""

from __future__ import annotations

import io

from pytest_incident.cli.console import PROGRESS_EVERY, Console


def test_a_terminal_sees_rows_and_rate_then_a_clean_line() -> None:
    err = io.StringIO()
    console = Console(io.StringIO(), err, True)
    assert sum(console.counted(range(2 * PROGRESS_EVERY + 1), "spans")) > 0
    shown = err.getvalue()
    assert f"reading: {2 * PROGRESS_EVERY:,} spans, " in shown
    assert shown.count("/s") == 2
    assert shown.endswith("\r\x1b[2K")  # cleared: the results start on a clean line


def test_the_twin_a_pipe_sees_nothing() -> None:
    err = io.StringIO()
    console = Console(io.StringIO(), err, False)
    assert list(console.counted(range(2 * PROGRESS_EVERY + 1), "spans"))[-1] == 2 * PROGRESS_EVERY
    assert err.getvalue() == ""

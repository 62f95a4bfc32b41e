# The end-of-run summary: one line per incident, counted from the items' reports (so it works
# under xdist, where the reports reach the controller):
#
#     2024-05-signup: 47 replayed, 45 passing (3 resolved), 2 still failing (1 regressed)
#
# An item that errors before its replay (a fixture, a recorded request that cannot be sent) is
# counted as not replayed, and an incident file that cannot be collected at all as unreadable.
# A failing item whose only problem is its snapshot is counted apart, as a new snapshot or a
# changed one, never as a regression; "regressed" is an item that was fine in production and
# fails now for any other reason.
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

# user_properties an IncidentItem attaches to its reports
INCIDENT = "incident"
FAILED_BEFORE = "incident_failed_before"
NOW = "incident_now"
RESOLVED = "incident_resolved"
SNAPSHOT_ONLY = "incident_snapshot_only"  # "new" / "changed" when that is the only problem
NOT_ISOLATED = "incident_not_isolated"  # why the target shared the host's network
UNREADABLE = "incident_unreadable"  # the file could not be collected (UnreadableIncident)


@dataclass
class IncidentSummary:
    replayed: int = 0
    passing: int = 0
    failing: int = 0
    resolved: int = 0
    regressed: int = 0
    new_snapshots: int = 0
    changed_snapshots: int = 0
    not_replayed: int = 0  # errors before the replay
    unreadable: bool = False


class IncidentReporter:
    """Counts replayed requests per incident and prints one line per incident at the end."""

    def __init__(self) -> None:
        self.summaries: dict[str, IncidentSummary] = {}
        self.not_isolated: set[str] = set()  # why targets shared the host's network

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if INCIDENT not in props:
            return
        if not (report.when == "call" or (report.when == "setup" and report.failed)):
            return
        if props.get(NOT_ISOLATED):
            self.not_isolated.add(str(props[NOT_ISOLATED]))
        summary = self.summaries.setdefault(str(props[INCIDENT]), IncidentSummary())
        if props.get(UNREADABLE):
            summary.unreadable = True
            return
        if report.when == "setup":
            summary.not_replayed += 1
            return
        summary.replayed += 1
        if report.passed:
            summary.passing += 1
            summary.resolved += bool(props.get(RESOLVED))
        else:
            summary.failing += 1
            snapshot_only = props.get(SNAPSHOT_ONLY)
            if snapshot_only == "new":
                summary.new_snapshots += 1
            elif snapshot_only == "changed":
                summary.changed_snapshots += 1
            else:
                summary.regressed += not props.get(FAILED_BEFORE)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.summaries:
            return
        terminalreporter.section("incidents")
        for name, s in sorted(self.summaries.items()):
            terminalreporter.write_line(summary_line(name, s))
        for reason in sorted(self.not_isolated):
            terminalreporter.write_line(not_isolated_line(reason), red=True, bold=True)


def summary_line(name: str, s: IncidentSummary) -> str:
    if s.unreadable:
        return f"{name}: not replayed: the incident cannot be collected (the error above)"
    line = f"{name}: {s.replayed} replayed, {s.passing} passing"
    if s.resolved:
        line += f" ({s.resolved} resolved)"
    if s.failing:
        parts = [f"{s.regressed} regressed"]
        if s.new_snapshots:
            parts.append(f"{s.new_snapshots} new snapshot(s): --snapshot-update accepts them")
        if s.changed_snapshots:
            parts.append(f"{s.changed_snapshots} snapshot(s) changed")
        line += f", {s.failing} still failing ({', '.join(parts)})"
    if s.not_replayed:
        line += f", {s.not_replayed} not replayed (errors before the replay, above)"
    return line


def not_isolated_line(reason: str) -> str:
    return (
        f"sandbox: targets shared the host's network, kept off it by the tracer alone ({reason})"
        "; --incident-sandbox=strict refuses to replay that way"
    )

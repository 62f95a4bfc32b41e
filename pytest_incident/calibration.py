# `--incident-calibrate`: learn which parts of each route's answers are noise, and write them
# to the calibration file beside the incident (`<incident>.noise.yaml`, read back by
# pytest_incident.spec.noise), where `expect.response` ignores them.
#
# Every selected request is replayed twice against the same code, as two items: the first
# pass over the incident, then the second (`[id]#2`), each after its own fixtures, so a
# database restored per item is restored for both. Each calibration item reports its answer in
# its user_properties; this plugin gathers them from the reports (on the xdist controller too),
# compares the two answers of each request (pytest_incident.core.calibration) and, at the end
# of the session, merges what differed into the file: entries already there stay.
from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_incident.core.calibration import RouteNoise, noise_between
from pytest_incident.core.responses import Answer
from pytest_incident.model.errors import FileError
from pytest_incident.model.spec import noise_path

ANSWER = "incident_calibration"  # the user_property of a calibration item: its answer
MIN_GAP_S = 1.1  # between a request's two replays: second-resolution clocks must move

HEADER = """\
# What differed between two replays of incident {name} against the same code, per route:
# `expect.response` ignores these parts of an answer. Written by
#     pytest --incident={name} --incident-calibrate
# which adds what it finds to what is here (nothing is removed: delete an entry, or the file,
# to learn afresh). Entries: header:<name>, body:<dotted.path> (* = any key or index), body.
"""


def answer_property(
    incident: Path, name: str, route: str, request_id: str, answer: Answer
) -> tuple[str, dict[str, Any]]:
    """The user_property a calibration item reports (plain values: it crosses xdist)."""
    return ANSWER, {
        "file": str(incident),
        "incident": name,
        "route": route,
        "request": request_id,
        "status": answer.status,
        "headers": [list(pair) for pair in answer.headers],
        "body": base64.b64encode(answer.body).decode("ascii"),
    }


def _answer(data: dict[str, Any]) -> Answer:
    headers = tuple((str(k), str(v)) for k, v in data["headers"])
    return Answer(data["status"], headers, base64.b64decode(data["body"]))


@dataclass
class _Incident:
    name: str
    answers: dict[str, list[tuple[str, Answer]]] = field(default_factory=dict)  # id -> (route,)


class Calibrator:
    """Gathers calibration answers and writes each incident's calibration file at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.incidents: dict[Path, _Incident] = {}
        self.lines: list[tuple[str, str]] = []  # (text, color) for the summary

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return
        for key, value in report.user_properties:
            if key == ANSWER and isinstance(value, dict):
                incident = self.incidents.setdefault(
                    Path(value["file"]), _Incident(str(value["incident"]))
                )
                found = incident.answers.setdefault(str(value["request"]), [])
                found.append((str(value["route"]), _answer(value)))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if hasattr(self.config, "workerinput"):  # an xdist worker: the controller writes
            return
        written = [self._write(path, incident) for path, incident in sorted(self.incidents.items())]
        if not all(written) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _write(self, path: Path, incident: _Incident) -> bool:
        """Compare each request's two answers and write the incident's file; False when it
        could not be written (a run that is not deterministic, a file that is in the way)."""
        from pytest_incident.spec.noise import load_noise

        learned = RouteNoise()
        pairs = once = 0
        deterministic = True
        for request_id, answers in sorted(incident.answers.items()):
            if len(answers) != 2:
                once += 1  # a pass did not run (-x, -k, a failed fixture): nothing to compare
                continue
            (route, first), (_, second) = answers
            pairs += 1
            calibration = noise_between(first, second)
            learned.add(route, calibration.entries)
            deterministic = deterministic and calibration.deterministic
            for warning in calibration.warnings:
                self._say(f"{incident.name} {route} [{request_id[:8]}]: {warning}", "yellow")
        if once:
            self._say(
                f"{incident.name}: {once} request(s) replayed once only, not compared", "yellow"
            )
        target = noise_path(path)
        shown = _relative(target, self.config.invocation_params.dir)
        if not deterministic:
            self._say(
                f"{incident.name}: {shown} not written: the replay is not deterministic", "red"
            )
            return False
        if not pairs:
            self._say(f"{incident.name}: no request replayed twice; nothing written", "yellow")
            return True
        try:
            known = load_noise(target).routes
        except FileError as exc:
            self._say(f"{exc}\n{shown} not written: fix or delete it", "red")
            return False
        routes = learned.merged(known)
        text = HEADER.format(name=incident.name) + yaml.safe_dump(
            {"incident": incident.name, "routes": routes},
            sort_keys=False,
            default_flow_style=False,
            allow_unicode=True,
            width=100,
        )
        problem = _replace_file(target, text)
        if problem:
            self._say(f"{shown} not written: {problem}", "red")
            return False
        fields = sum(len(entries) for entries in routes.values())
        self._say(
            f"{incident.name}: {pairs} request(s) replayed twice; wrote {shown}: "
            f"{fields} varying part(s) in {len(routes)} route(s)"
        )
        for route, entries in routes.items():
            self._say(f"  {route}: {', '.join(entries) or '(nothing varies)'}")
        return True

    def _say(self, text: str, color: str = "") -> None:
        """A line for the summary: plain, "yellow" (a warning) or "red" (not written)."""
        self.lines.append((text, color))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.lines:
            return
        terminalreporter.section("incident calibration")
        for text, color in self.lines:
            terminalreporter.write_line(text, **({color: True} if color else {}))


def _replace_file(target: Path, text: str) -> str:
    """Write `text` to `target` through a temporary file beside it; why not, or ""."""
    if target.is_symlink() or (target.exists() and not target.is_file()):
        return "it is a symbolic link or not a regular file"
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        return exc.strerror or str(exc)
    return ""


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)

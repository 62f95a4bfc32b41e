# The collection tree: an incident YAML becomes an IncidentFile; each recorded request it
# selects becomes an IncidentItem (a pytest.Function, so fixtures, -k, -x, xdist and junitxml
# behave as for any test). YAML -> File -> Item, with `reportinfo` pointing at the YAML line.
#
# `database: {state: window}` incidents share the database along the window: their items run
# in recorded order (window_order), and the first of them that runs in a process requests the
# `database.before` fixture through WINDOW_FIXTURE (IncidentFile.enter_window); the others find
# the writes of the items before them.
#
# A request whose recording cannot be replayed (RecordedRequest.problem: an invalid value in
# its span or in one of its outbound calls' spans) is still an item, which errors at setup
# with the recording's `file:line:` and what is wrong; it is never sent, and its calls give
# the replay no stub. The incident's other items run.
#
# `runtest` is replay -> judge -> hook -> raise: the replay environment (stubs + sandboxed
# target) produces a ReplayResult, pytest_incident.core.verdict decides, the
# `pytest_incident_replayed` hook sees the whole verdict, and a failed verdict raises
# ReplayFailure carrying the report that `repr_failure` prints instead of a traceback.
from __future__ import annotations

import functools
import os
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_incident import reporting
from pytest_incident.model.errors import FileError, ReplayError, ReplayFailure, TargetError
from pytest_incident.model.spec import MutationsMode
from pytest_incident.options import state_key
from pytest_incident.termination import shielded

SECOND_PASS = "#2"  # the name suffix of a request's second calibration replay
UNREADABLE_NAME = "(cannot be collected)"  # the item of an incident file that cannot be

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

    from pytest_incident.core.book import ReplayBook
    from pytest_incident.model.normalizers import Normalizer
    from pytest_incident.model.recorded import RecordedRequest
    from pytest_incident.model.spans import Span
    from pytest_incident.model.spec import IncidentSpec
    from pytest_incident.runtime.replay import IncidentReplay
    from pytest_incident.runtime.servers import PortStub

# The fixture every item of a window-state incident uses (plugin.py defines it): the first
# one that runs requests `database.before`.
WINDOW_FIXTURE = "_incident_database_window"


class HookSource:
    """An EventSource for any scheme that asks the `pytest_incident_load_spans` hook (which
    may decline with None: the registry then asks the next source)."""

    schemes: tuple[str, ...] = ("*",)

    def __init__(self, config: pytest.Config, hook: Any) -> None:
        self.config = config
        self.hook = hook

    def read(self, spec: IncidentSpec) -> Iterable[Span] | None:
        spans: Iterable[Span] | None = self.hook.pytest_incident_load_spans(
            spec=spec, config=self.config
        )
        return spans


class IncidentFile(pytest.File):
    """One incident YAML: collects an item per selected recorded request."""

    spec: IncidentSpec
    replay: IncidentReplay | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None
    # the pass (0, or a calibration pass 1, 2) for which database.before has been requested in
    # this process: None before any
    window_entered: int | None = None

    @functools.cached_property
    def calibrated(self) -> dict[str, float]:
        """When each request's first calibration replay ended (time.monotonic)."""
        return {}

    def collect(self) -> Iterator[pytest.Item]:
        """The items of the selected requests; for a file that cannot be collected, one
        UnreadableIncident saying why, so that the session's other tests still run (with
        --collect-only, which runs nothing, a collection error: what checking a file asks)."""
        try:
            items = list(self._collect())
        except CollectError as exc:
            if self.config.option.collectonly:
                raise
            items = [UnreadableIncident.from_parent(self, name=UNREADABLE_NAME, message=str(exc))]
        yield from items

    def repr_failure(  # type: ignore[override]
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, CollectError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def _collect(self) -> Iterator[pytest.Item]:
        from pytest_incident.events.incident import open_incident
        from pytest_incident.events.selection import short_ids
        from pytest_incident.events.sources import SourceRegistry
        from pytest_incident.snapshots import SNAPSHOT_FIXTURE
        from pytest_incident.spec import load_incident

        registry = SourceRegistry.default(extra=[HookSource(self.config, self.ihook)])
        try:
            opened = open_incident(self.path, dict(os.environ), registry)
        except FileError as exc:
            raise CollectError(self._relative(str(exc), exc.path)) from None
        except ReplayError as exc:
            raise CollectError(f"{self.path}:1: {exc}") from None
        except OSError as exc:  # the recording could not be read: at the `source:` line
            what = exc.filename or "the recording"
            try:
                line = load_incident(self.path, os.environ).source.line
            except FileError:  # changed meanwhile
                line = 1
            message = f"{self.path}:{line}: source: cannot read {what}: {exc.strerror or exc}"
            raise CollectError(self._relative(message, self.path)) from None
        self.spec = opened.spec
        if self.spec.database.window:  # first: the user's fixtures find the restored state
            self.add_marker(pytest.mark.usefixtures(WINDOW_FIXTURE))
        if self.spec.usefixtures:
            self.add_marker(pytest.mark.usefixtures(*self.spec.usefixtures))
        if self.spec.expect.mutations is MutationsMode.SNAPSHOT:
            if not self.config.pluginmanager.hasplugin("syrupy"):
                raise CollectError(
                    self._relative(
                        f"{self.path}:{self.spec.lines.get('expect.mutations', 1)}: "
                        "expect.mutations: snapshot needs syrupy's pytest plugin, which is "
                        "not active (not installed, or disabled with -p no:syrupy)",
                        self.path,
                    )
                )
            self.add_marker(pytest.mark.usefixtures(SNAPSHOT_FIXTURE))
        self.add_marker(pytest.mark.incident(self.spec.name))
        ids = short_ids(opened.requests)
        line = self.spec.lines.get("select", self.spec.lines.get("window", 1))
        calibrating = self.config.stash[state_key].calibrate
        count = len(opened.requests)
        for calibration in (1, 2) if calibrating else (0,):
            suffix = SECOND_PASS if calibration == 2 else ""
            for position, request in enumerate(opened.requests):
                name = printable(
                    f"{request.method} {request.route}[{ids[request.request_id.lower()]}]"
                )
                yield IncidentItem.from_parent(
                    self,
                    name=name + suffix,
                    callobj=replay_request,
                    request=request,
                    line=line,
                    # a second calibration pass replays the window again, after the first
                    position=position + (count if calibration == 2 else 0),
                    calibration=calibration,
                )

    def _relative(self, message: str, path: Path) -> str:
        """`file:line: ...` with the file as the user typed it: relative to the invocation."""
        shown = os.path.relpath(path, self.config.invocation_params.dir)
        if message.startswith(str(path)) and not shown.startswith(".."):
            return shown + message[len(str(path)) :]
        return message

    def enter_window(self, request: pytest.FixtureRequest) -> None:
        """For a window-state incident's item about to run: the first one in this process
        requests `database.before` (whichever it is: a -k or --incident-request subset starts
        from the restored state too); later ones find the writes of the items before them.
        Until it succeeds (a skip or an error), each item tries again. A second calibration
        pass replays the window again from `before`."""
        replay_pass = getattr(request.node, "calibration", 0)
        if self.window_entered == replay_pass:
            return
        before = self.spec.database.before
        missing = ""
        if before is not None:
            try:
                request.getfixturevalue(before)
            except pytest.FixtureLookupError as exc:
                if exc.argname != before:
                    raise  # a fixture it needs is missing: pytest says which
                missing = exc.formatrepr().errorstring.partition("\n")[2]  # what is available
        if missing:
            line = self.spec.lines.get("database.before", self.spec.line)
            shown = self._relative(str(self.path), self.path)
            pytest.fail(
                f"{shown}:{line}: database.before: fixture {before!r} not found; it names a "
                f"fixture of a conftest.py or plugin, like usefixtures\n{missing}",
                pytrace=False,
            )
        self.window_entered = replay_pass

    def replay_environment(self) -> IncidentReplay:
        """The file's stubs and target, built by its first item (after that item's fixtures,
        so a fixture can prepare what the target needs) and reused by the others."""
        from pytest_incident.runtime.network import Isolation
        from pytest_incident.runtime.replay import IncidentReplay, ReplayOptions

        if self.replay is None:
            spec, hook = self.spec, self.ihook
            normalizers = plugin_normalizers(
                hook.pytest_incident_normalizers(spec=spec, config=self.config)
            )

            def port_stubs(book: ReplayBook) -> dict[int, PortStub]:
                found: dict[int, PortStub] = {}
                for stubs in hook.pytest_incident_port_stubs(spec=spec, book=book):
                    found.update(stubs)
                return found

            self._tmp = tempfile.TemporaryDirectory(prefix=f"incident-{self.spec.name}-")
            self.replay = IncidentReplay(
                spec,
                [i.request for i in self.collect_items() if i.request.problem is None],
                rootdir=self.config.rootpath,
                workdir=Path(self._tmp.name),
                options=ReplayOptions(
                    speed=self.config.stash[state_key].speed,
                    isolation=Isolation(self.config.stash[state_key].isolation),
                ),
                normalizers=normalizers,
                port_stubs=port_stubs,
            )
        return self.replay

    def collect_items(self) -> list[IncidentItem]:
        return [i for i in self.session.items if isinstance(i, IncidentItem) and i.parent is self]

    def teardown(self) -> None:
        with shielded(self.config):  # a SIGTERM now ends the session after it, not inside
            if self.replay is not None:
                self.replay.close()
                self.replay = None
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None


def plugin_normalizers(contributions: list[Any]) -> list[Normalizer]:
    """The normalizers plugins returned; anything that is not one is a configuration error
    naming it (never silently ignored)."""
    from pytest_incident.model.errors import ReplayConfigError
    from pytest_incident.model.normalizers import Normalizer

    found: list[Normalizer] = []
    for contribution in contributions:
        for normalizer in contribution:
            if not isinstance(normalizer, Normalizer):
                raise ReplayConfigError(
                    f"pytest_incident_normalizers returned {normalizer!r}, which is not a "
                    "Normalizer (it needs normalize_json, normalize_form and normalize_text)"
                )
            found.append(normalizer)
    return found


def window_order(items: Sequence[pytest.Item]) -> list[pytest.Item]:
    """`items` with the items of each window-state incident together, in recorded order, where
    its first item was; everything else where it was. Whatever reordered them before (another
    plugin, --ff), a window replays in the order production saw it."""
    windows: dict[IncidentFile, list[IncidentItem]] = {}
    for item in items:
        if isinstance(item, IncidentItem) and item.incident_file.spec.database.window:
            windows.setdefault(item.incident_file, []).append(item)
    if not windows:
        return list(items)
    ordered: list[pytest.Item] = []
    for item in items:
        if not isinstance(item, IncidentItem) or item.incident_file not in windows:
            ordered.append(item)
        elif group := windows[item.incident_file]:
            in_order = sorted(group, key=lambda i: i.position)
            ordered.extend(in_order)
            group.clear()  # placed: its other items are already in
    return ordered


def printable(text: str) -> str:
    """`text` with control characters (a recorded route may hold any) escaped, for names."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class CollectError(Exception):
    """An incident file that cannot be collected; str() is `file:line: message`."""


def failure_repr(report: str, summary: str, path: Path, line: int) -> TerminalRepr:
    """`report` as an item's failure and `summary` as its one line: the short test summary
    shows that line (on CI, where pytest does not trim it, too), not the report again."""
    from _pytest._code.code import ReprExceptionInfo, ReprFileLocation, ReprTracebackNative

    return ReprExceptionInfo(
        reprtraceback=ReprTracebackNative([report + "\n"]),
        reprcrash=ReprFileLocation(str(path), line, summary),
    )


class UnreadableIncident(pytest.Item):
    """An incident file that cannot be collected (a mistake in it or in its recording): one
    item that errors at setup with `file:line: ...`. A collection error would stop the whole
    session, the project's other tests included; this fails only the file's own run."""

    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message
        self.user_properties.append((reporting.INCIDENT, self.path.stem))
        self.user_properties.append((reporting.UNREADABLE, True))

    def setup(self) -> None:
        pytest.fail(self.message, pytrace=False)

    def runtest(self) -> None:
        pytest.fail(self.message, pytrace=False)  # setup failed already

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.path.stem}: cannot be collected"


def replay_request() -> None:
    """The Python object behind every IncidentItem, for pytest's fixture machinery only;
    IncidentItem.runtest performs the replay."""


class IncidentItem(pytest.Function):
    """One recorded request, replayed against the current code."""

    def __init__(
        self,
        *,
        request: RecordedRequest,
        line: int,
        position: int = 0,
        calibration: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if hasattr(self, "_id"):  # pytest 9 keys --lf/--ff/--nf by the parsed node id
            from _pytest.nodeid import NodeId

            # ...where `POST /signup[550e8400]` is the name `POST /signup`, params
            # `550e8400`; a Function without a callspec would keep the whole as its name
            self._id = NodeId.parse(self.nodeid)
        self.request = request
        self.line = line
        self.calibration = calibration  # 1, 2: the calibration pass; 0: a judged replay
        self.position = position  # in recorded order among the incident's requests
        self.incident: str = self.parent.spec.name  # type: ignore[union-attr]
        if not calibration:
            self.user_properties.append((reporting.INCIDENT, self.incident))
            self.user_properties.append((reporting.FAILED_BEFORE, request.failed))

    @property
    def route(self) -> str:
        """`POST /signup`: what the calibration file keys its entries by."""
        return f"{self.request.method} {self.request.route}"

    @property
    def incident_file(self) -> IncidentFile:
        assert isinstance(self.parent, IncidentFile)
        return self.parent

    def setup(self) -> None:
        """A request whose recording cannot be replayed errors here, before its fixtures,
        at the recording's line (the incident's `source:` line for a span with none)."""
        problem = self.request.problem
        if problem is not None:
            spec = self.incident_file.spec
            error = problem.error(spec.path, spec.source.line)
            message = self.incident_file._relative(str(error), error.path)
            pytest.fail(f"{message}\nthis recorded request cannot be replayed", pytrace=False)
        super().setup()

    def runtest(self) -> None:
        from pytest_incident.core.report import render_failure
        from pytest_incident.core.side_effects import SideEffectLog
        from pytest_incident.core.verdict import judge
        from pytest_incident.snapshots import SNAPSHOT_FIXTURE, check_snapshot

        spec = self.incident_file.spec
        replay = self.incident_file.replay_environment()
        if self.calibration:
            self._calibrate(replay)
            return
        result = replay.replay(self.request)
        if replay.isolation_note:
            self.user_properties.append((reporting.NOT_ISOLATED, replay.isolation_note))
        snapshot = None
        if spec.expect.mutations is MutationsMode.SNAPSHOT:
            log = SideEffectLog.of_result(result, spec.expect.normalize)
            snapshot = check_snapshot(self.funcargs[SNAPSHOT_FIXTURE], log, self.config)
        noise = spec.noise.of(self.route)
        verdict = judge(self.request, result, spec.expect, spec.sandbox.unmatched, snapshot, noise)
        self.user_properties.append((reporting.NOW, result.status))
        self.user_properties.append((reporting.RESOLVED, verdict.resolved))
        self.user_properties.append((reporting.SNAPSHOT_ONLY, verdict.snapshot_only))
        self.ihook.pytest_incident_replayed(item=self, result=result, verdict=verdict)
        if verdict.writes:  # information, not a failure: a fix may well write differently
            self.add_report_section("call", "database writes (production | replay)", verdict.writes)
        if not verdict.passed:
            raise ReplayFailure(
                render_failure(spec.name, self.request, result, verdict),
                "; ".join(verdict.problems),
            )

    def _calibrate(self, replay: IncidentReplay) -> None:
        """Replay without judging and report the answer (pytest_incident.calibration)."""
        from pytest_incident.calibration import MIN_GAP_S, answer_property
        from pytest_incident.core.responses import Answer

        replayed = self.incident_file.calibrated
        if self.calibration == 2 and self.request.request_id in replayed:
            time.sleep(max(0.0, replayed[self.request.request_id] + MIN_GAP_S - time.monotonic()))
        result = replay.replay(self.request)
        replayed[self.request.request_id] = time.monotonic()
        answer = Answer(result.status, result.headers, result.body)
        spec = self.incident_file.spec
        self.user_properties.append(
            answer_property(spec.path, spec.name, self.route, self.request.request_id, answer)
        )
        if result.status is None:
            raise ReplayFailure(
                f"calibration: no answer from the target ({result.error or result.crash})"
                + (
                    f"\ntarget output (last lines):\n{result.output_tail}"
                    if result.output_tail
                    else ""
                )
            )

    def repr_failure(  # type: ignore[override]  # Item.repr_failure takes no style
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, ReplayFailure):
            return self._report(excinfo.value.report, excinfo.value.summary)
        if isinstance(excinfo.value, ReplayError):
            line = self.line
            if isinstance(excinfo.value, TargetError):  # at the line that says how to start it
                spec = self.incident_file.spec
                kind = spec.target.interface or "command"
                line = spec.lines.get(f"target.{kind}", spec.lines.get("target", line))
            message = f"{self.incident_file.path}:{line}: {excinfo.value}"
            replay = self.incident_file.replay
            tail = replay.process.output_tail() if replay and replay.process else ""
            if not tail:
                return message
            shown = "\n".join("    " + line for line in tail.splitlines())
            return self._report(f"{message}\ntarget output (last lines):\n{shown}", message)
        return super().repr_failure(excinfo)

    def _report(self, report: str, summary: str) -> TerminalRepr:
        return failure_repr(report, summary, self.incident_file.path, self.line)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.incident_file.path, self.line - 1, f"{self.incident}: {self.name}"

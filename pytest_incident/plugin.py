# The pytest plugin: options, collection of incident files into items, and reporting.
#
# Thin wiring only. An incident YAML becomes an IncidentFile; each recorded request it
# selects becomes an IncidentItem (a pytest.Function, so fixtures, -k, -x, xdist and junitxml
# behave as for any test). The file's replay environment (stubs + sandboxed target) is
# started in IncidentFile.setup and torn down after its last item. The sandbox, stubs and
# spec modules are imported lazily so `pytest --help` stays fast. State lives in
# config.stash, never in globals.
from __future__ import annotations

import math
import os
import shlex
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from . import hookspecs

if TYPE_CHECKING:
    from _pytest._code.code import TerminalRepr

    from .book import ReplayBook
    from .hookspecs import PortStub
    from .replay import IncidentReplay, ReplayResult
    from .snapshot import SnapshotCheck
    from .spans import RecordedRequest
    from .spec import IncidentSpec
    from .verdict import Verdict

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class IncidentSummary:
    replayed: int = 0
    passing: int = 0
    failing: int = 0
    resolved: int = 0
    regressed: int = 0


@dataclass
class IncidentState:
    names: tuple[str, ...]
    request_ids: tuple[str, ...]
    speed: float
    dirs: tuple[Path, ...]
    selected: frozenset[Path] = frozenset()  # the files --incident named (resolved once)


state_key = pytest.StashKey[IncidentState]()


def positive_speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise pytest.UsageError(f"--incident-speed: {text!r} is not a number") from None
    if not value > 0 or math.isnan(value):
        raise pytest.UsageError(
            f"--incident-speed must be > 0 (got {text}); use inf to drop recorded latencies"
        )
    return value


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("incident", "replay production incidents (pytest-incident)")
    group.addoption(
        "--incident",
        action="append",
        dest="incident_names",
        default=[],
        metavar="NAME",
        help="replay only the incident NAME (file stem or `incident:`); repeatable. Without "
        "test paths on the command line, only incident files are collected.",
    )
    group.addoption(
        "--incident-request",
        action="append",
        dest="incident_requests",
        default=[],
        metavar="ID",
        help="replay only recorded requests whose id starts with ID; repeatable",
    )
    group.addoption(
        "--incident-speed",
        dest="incident_speed",
        default="1",
        metavar="X",
        help="divide recorded upstream latencies by X (default 1; inf = no latency)",
    )
    parser.addini(
        "incident_dirs",
        type="args",
        default=["incidents"],
        help="directories (relative to rootdir) holding incident YAML files",
    )


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_configure(config: pytest.Config) -> None:
    from .sources import FrozenFileSource

    requests = tuple(r.lower() for r in config.getoption("incident_requests"))
    for rid in requests:
        if len(rid) < 4 or any(c not in "0123456789abcdef" for c in rid):
            raise pytest.UsageError(
                f"--incident-request {rid!r}: expected at least 4 hex "
                "digits of a request (trace) id"
            )
    dirs = tuple(config.rootpath / d for d in config.getini("incident_dirs"))
    state = IncidentState(
        names=tuple(config.getoption("incident_names")),
        request_ids=requests,
        speed=positive_speed(str(config.getoption("incident_speed"))),
        dirs=dirs,
    )
    config.stash[state_key] = state
    config.pluginmanager.register(FrozenFileSource(), "incident-frozen-source")
    config.pluginmanager.register(IncidentReporter(), "incident-reporter")
    config.addinivalue_line("markers", "incident(name): a replayed request of incident NAME")
    if config.pluginmanager.hasplugin("syrupy"):
        from .snapshot import exact_snapshot_names

        exact_snapshot_names(config, _replay_request)
    if state.names:
        files = [find_incident(state, name) for name in state.names]
        state = config.stash[state_key] = replace(state, selected=frozenset(files))
        if config.args_source is not pytest.Config.ArgsSource.ARGS:
            config.args[:] = [str(f) for f in files]
            # the paths "given": syrupy judges unused snapshots only within them, so other
            # incidents' snapshots are not taken for unused (nor deleted by an update)
            config.option.file_or_dir = list(config.args)


def incident_files(state: IncidentState) -> Iterator[Path]:
    for directory in state.dirs:
        if directory.is_dir():
            for path in sorted(directory.rglob("*")):
                if path.suffix in YAML_SUFFIXES and "__snapshots__" not in path.parts:
                    yield path


def declared_name(path: Path) -> str:
    """The `incident:` value without validating the file (validation comes at collection)."""
    import yaml

    try:
        with open(path, encoding="utf-8") as stream:
            data = yaml.safe_load(stream)
    except (OSError, yaml.YAMLError):
        return path.stem
    name = data.get("incident") if isinstance(data, dict) else None
    return str(name) if name else path.stem


def find_incident(state: IncidentState, name: str) -> Path:
    files = list(incident_files(state))
    for path in files:
        if path.stem == name or declared_name(path) == name:
            return path
    known = ", ".join(sorted(declared_name(p) for p in files)) or "none"
    where = ", ".join(str(d) for d in state.dirs)
    raise pytest.UsageError(f"--incident {name}: no such incident in {where}; known: {known}")


def is_incident_path(state: IncidentState, path: Path) -> bool:
    return path.suffix in YAML_SUFFIXES and any(d in path.parents for d in state.dirs)


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    state = parent.config.stash[state_key]
    if not is_incident_path(state, file_path):
        return None
    if state.names and file_path not in state.selected:
        return None
    return IncidentFile.from_parent(parent, path=file_path)


@pytest.hookimpl(trylast=True)  # after plugins that record what was collected (syrupy)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[state_key]
    if not state.request_ids:
        return
    keep, drop = [], []
    for item in items:
        if isinstance(item, IncidentItem) and not any(
            item.request.request_id.lower().startswith(r) for r in state.request_ids
        ):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


class IncidentFileError(Exception):
    """A mistake in an incident file or its frozen events; str() is `file:line: message`."""


class IncidentFile(pytest.File):
    """One incident YAML: collects an item per selected recorded request."""

    spec: IncidentSpec
    replay: IncidentReplay | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    def collect(self) -> Iterator[pytest.Item]:
        from .frozen import FrozenFileError
        from .selection import select_requests, short_ids
        from .snapshot import SNAPSHOT_FIXTURE
        from .spec import IncidentFileError as SpecError
        from .spec import MutationsMode, load_incident

        try:
            self.spec = load_incident(self.path, dict(os.environ))
            spans = self.ihook.pytest_incident_load_spans(spec=self.spec, config=self.config)
            if spans is None:
                raise IncidentFileError(
                    f"{self.path}:{self.spec.lines.get('source', 1)}: "
                    f"source: no event source can read {self.spec.source}"
                )
            requests = select_requests(spans, self.spec.window, self.spec.select)
        except (SpecError, FrozenFileError) as exc:
            raise IncidentFileError(self._relative(str(exc), exc.path)) from None
        if self.spec.usefixtures:
            self.add_marker(pytest.mark.usefixtures(*self.spec.usefixtures))
        if self.spec.expect.mutations is MutationsMode.SNAPSHOT:
            if not self.config.pluginmanager.hasplugin("syrupy"):
                raise IncidentFileError(
                    self._relative(
                        f"{self.path}:{self.spec.lines.get('expect.mutations', 1)}: "
                        "expect.mutations: snapshot needs syrupy's pytest plugin, which is "
                        "not active (not installed, or disabled with -p no:syrupy)",
                        self.path,
                    )
                )
            self.add_marker(pytest.mark.usefixtures(SNAPSHOT_FIXTURE))
        self.add_marker(pytest.mark.incident(self.spec.name))
        ids = short_ids(requests)
        line = self.spec.lines.get("select", self.spec.lines.get("window", 1))
        for request in requests:
            name = f"{request.method} {request.route}[{ids[request.request_id.lower()]}]"
            yield IncidentItem.from_parent(
                self, name=name, callobj=_replay_request, request=request, line=line
            )

    def _relative(self, message: str, path: Path) -> str:
        """`file:line: ...` with the file as the user typed it: relative to the invocation."""
        shown = os.path.relpath(path, self.config.invocation_params.dir)
        if message.startswith(str(path)) and not shown.startswith(".."):
            return shown + message[len(str(path)) :]
        return message

    def repr_failure(  # type: ignore[override]
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> str | TerminalRepr:
        if isinstance(excinfo.value, IncidentFileError):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def replay_environment(self) -> IncidentReplay:
        """The file's stubs and target, built by its first item (after that item's fixtures,
        so a fixture can prepare what the target needs) and reused by the others."""
        from .replay import ReplayOptions, replay_for_spec

        if self.replay is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"incident-{self.spec.name}-")
            spec, hook = self.spec, self.ihook
            normalizers = hook.pytest_incident_normalizers(spec=spec, config=self.config)

            def port_stubs(book: ReplayBook) -> dict[int, PortStub]:
                found: dict[int, PortStub] = {}
                for stubs in hook.pytest_incident_port_stubs(spec=spec, book=book):
                    found.update(stubs)
                return found

            self.replay = replay_for_spec(
                spec,
                [i.request for i in self.collect_items()],
                rootdir=self.config.rootpath,
                workdir=Path(self._tmp.name),
                options=ReplayOptions(speed=self.config.stash[state_key].speed),
                normalizers=[n for found in normalizers for n in found],
                port_stubs=port_stubs,
            )
        return self.replay

    def collect_items(self) -> list[IncidentItem]:
        return [i for i in self.session.items if isinstance(i, IncidentItem) and i.parent is self]

    def teardown(self) -> None:
        if self.replay is not None:
            self.replay.close()
            self.replay = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _replay_request() -> None:
    """The Python object behind every IncidentItem, for pytest's fixture machinery only;
    IncidentItem.runtest performs the replay."""


class ReplayFailure(Exception):
    """The replayed request did not meet the incident's expectations."""

    def __init__(self, report: str) -> None:
        super().__init__(report)
        self.report = report


class IncidentItem(pytest.Function):
    """One recorded request, replayed against the current code."""

    def __init__(self, *, request: RecordedRequest, line: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.request = request
        self.line = line
        self.incident: str = self.parent.spec.name  # type: ignore[union-attr]
        self.user_properties.append(("incident", self.incident))
        self.user_properties.append(("incident_failed_before", request.failed))

    @property
    def incident_file(self) -> IncidentFile:
        assert isinstance(self.parent, IncidentFile)
        return self.parent

    def runtest(self) -> None:
        from .spec import MutationsMode
        from .verdict import Expectations, judge

        parent = self.incident_file
        spec = parent.spec
        result = parent.replay_environment().replay(self.request)
        verdict = judge(
            self.request,
            result.status,
            result.error,
            result.effects,
            Expectations(
                status=spec.expect.status,
                resolved=spec.expect.resolved,
                unmatched_fails=spec.sandbox.unmatched.value == "error",
            ),
        )
        self.user_properties.append(("incident_now", result.status))
        self.user_properties.append(("incident_resolved", verdict.resolved))
        self.ihook.pytest_incident_replayed(item=self, result=result, verdict=verdict)
        if self.request.db_writes is not None:
            from .writes import compare_writes

            writes = compare_writes(self.request.db_writes, result.mutations)
            if writes:  # information, not a failure: a fix may well write differently
                self.add_report_section("call", "database writes (production | replay)", writes)
        check = None
        if spec.expect.mutations is MutationsMode.SNAPSHOT:
            from .snapshot import SNAPSHOT_FIXTURE, SideEffectLog, check_snapshot, normalizer

            log = SideEffectLog.of_result(result, normalizer(spec.expect.normalize))
            check = check_snapshot(self.funcargs[SNAPSHOT_FIXTURE], log, self.config)
        if not verdict.passed or result.crash or (check is not None and not check.matched):
            raise ReplayFailure(render_failure(self.request, result, verdict, spec, check))

    def repr_failure(  # type: ignore[override]  # Item.repr_failure takes no style
        self, excinfo: pytest.ExceptionInfo[BaseException]
    ) -> str | TerminalRepr:
        from .replay import ReplayConfigError, TargetError

        if isinstance(excinfo.value, ReplayFailure):
            return excinfo.value.report
        if isinstance(excinfo.value, TargetError | ReplayConfigError):
            message = f"{self.incident_file.path}:{self.line}: {excinfo.value}"
            replay = self.incident_file.replay
            tail = replay.process.output_tail() if replay and replay.process else ""
            return message + (f"\ntarget output (last lines):\n{_indent(tail)}" if tail else "")
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.incident_file.path, self.line - 1, f"{self.incident}: {self.name}"


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def _preview(body: bytes, limit: int = 300) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def render_failure(
    request: RecordedRequest,
    result: ReplayResult,
    verdict: Verdict,
    spec: IncidentSpec,
    snapshot: SnapshotCheck | None = None,
) -> str:
    from .spans import format_timestamp

    lines = [
        f"{request.method} {request.target}  request {request.request_id}  recorded "
        f"{format_timestamp(request.span.timestamp_ns)[:23]} UTC",
    ]
    if request.body:
        lines.append(f"  request body: {_preview(request.body)}")
    lines.append(f"status: {verdict.transition()}   (was -> now)")
    problems = list(verdict.problems)
    if result.crash:
        problems.insert(0, result.crash)
    if snapshot is not None and not snapshot.matched:
        problems.append(snapshot.problem)
    lines.append("problems:")
    lines.extend(f"  - {p}" for p in problems)
    lines.append("outbound calls:")
    if result.effects:
        lines.extend(_indent(e.render(), "  ") for e in result.effects)
    if request.db_writes is not None:
        from .writes import compare_writes

        writes = compare_writes(request.db_writes, result.mutations)
        if writes:
            lines.append("database writes (production | replay):")
            lines.append(_indent(writes, "  "))
    else:
        lines.append("  (none)")
    if snapshot is not None and snapshot.diff:
        lines.append(f"side-effect log [{snapshot.name}]  (- snapshot, + now):")
        lines.extend(_indent(line, "  ") for line in snapshot.diff)
    if result.body:
        lines.append(f"response body (now): {_preview(result.body)}")
    if result.output_tail:
        lines.append("target output (last lines):")
        lines.append(_indent(result.output_tail))
    lines.append(
        f"replay with: pytest --incident={spec.name} "
        f"--incident-request={shlex.quote(request.request_id[:8])}"
    )
    return "\n".join(lines)


class IncidentReporter:
    """Counts replayed requests per incident (from reports, so it works under xdist) and
    prints one line per incident at the end of the run."""

    def __init__(self) -> None:
        self.summaries: dict[str, IncidentSummary] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if "incident" not in props:
            return
        if not (report.when == "call" or (report.when == "setup" and report.failed)):
            return
        summary = self.summaries.setdefault(str(props["incident"]), IncidentSummary())
        summary.replayed += 1
        if report.passed:
            summary.passing += 1
            summary.resolved += bool(props.get("incident_resolved"))
        else:
            summary.failing += 1
            summary.regressed += not props.get("incident_failed_before")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.summaries:
            return
        terminalreporter.section("incidents")
        for name, s in sorted(self.summaries.items()):
            terminalreporter.write_line(summary_line(name, s))


def summary_line(name: str, s: IncidentSummary) -> str:
    line = f"{name}: {s.replayed} replayed, {s.passing} passing"
    if s.resolved:
        line += f" ({s.resolved} resolved)"
    if s.failing:
        line += f", {s.failing} still failing ({s.regressed} regressed)"
    return line

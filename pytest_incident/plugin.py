# The pytest plugin: options, hooks, wiring. The collection tree is pytest_incident.nodes,
# the end-of-run summary pytest_incident.reporting, the syrupy glue pytest_incident.snapshots.
#
# Thin wiring only. The sandbox, stubs and event sources are imported lazily so `pytest
# --help` stays fast. State lives in config.stash, never in globals.
from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_incident import hookspecs
from pytest_incident.discovery import find_incident, incident_dirs, incident_files
from pytest_incident.nodes import (
    WINDOW_FIXTURE,
    IncidentFile,
    IncidentItem,
    UnreadableIncident,
    replay_request,
    window_order,
)
from pytest_incident.options import IncidentState, incident_speed, request_prefix, state_key
from pytest_incident.reporting import IncidentReporter
from pytest_incident.termination import Termination


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
    group.addoption(
        "--incident-sandbox",
        dest="incident_sandbox",
        default="auto",
        choices=["auto", "strict", "ptrace"],
        help="how the target is kept off the network: auto (default) = a network namespace "
        "of its own where the kernel allows one, else the tracer alone, said once; strict = "
        "a namespace or no replay; ptrace = the tracer alone",
    )
    group.addoption(
        "--incident-calibrate",
        action="store_true",
        dest="incident_calibrate",
        help="replay each selected request twice against the current code, without judging, "
        "and write the parts of the answers that differ (ids, timestamps) to "
        "<incident>.noise.yaml beside the incident file, where expect.response ignores them",
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
    requests = tuple(request_prefix(r) for r in config.getoption("incident_requests"))
    dirs = incident_dirs(config.rootpath, config.getini("incident_dirs"))
    state = IncidentState(
        names=tuple(config.getoption("incident_names")),
        request_ids=requests,
        speed=incident_speed(str(config.getoption("incident_speed"))),
        isolation=str(config.getoption("incident_sandbox")),
        dirs=dirs,
        calibrate=bool(config.getoption("incident_calibrate")),
    )
    config.stash[state_key] = state
    config.pluginmanager.register(IncidentReporter(), "incident-reporter")
    config.pluginmanager.register(WindowOrder(), "incident-window-order")
    config.pluginmanager.register(Termination(), "incident-termination")
    config.addinivalue_line("markers", "incident(name): a replayed request of incident NAME")
    if config.pluginmanager.hasplugin("syrupy"):
        from pytest_incident.snapshots import exact_snapshot_names

        exact_snapshot_names(config, replay_request)
        if state.calibrate:  # calibration asserts no snapshot: none is unused for it
            config.option.warn_unused_snapshots = True
    if state.calibrate:
        from pytest_incident.calibration import Calibrator

        config.pluginmanager.register(Calibrator(config), "incident-calibrator")
    if state.names:
        select_incidents(config, state)


def select_incidents(config: pytest.Config, state: IncidentState) -> None:
    """--incident NAME: the named files run, and of the incident files pytest finds walking
    a directory only they. Without test paths only they are collected; test paths given are
    collected as usual, and an incident file given as a path runs whatever its name."""
    available = incident_files(state.dirs, state.is_incident_path)
    files = list(dict.fromkeys(find_incident(available, name, state.dirs) for name in state.names))
    given = config.args_source is pytest.Config.ArgsSource.ARGS
    named = [path for path in argument_paths(config) if state.is_incident_path(path)]
    config.stash[state_key] = replace(state, selected=frozenset(files + named))
    if not given:
        config.args[:] = [str(f) for f in files]
    else:
        covered = set(argument_paths(config))
        config.args.extend(str(f) for f in files if f not in covered)
    # the paths "given": syrupy judges unused snapshots only within them, so other incidents'
    # snapshots are not taken for unused (nor deleted by an update)
    config.option.file_or_dir = list(config.args)


def argument_paths(config: pytest.Config) -> list[Path]:
    """The paths of the command line's test arguments (node ids without their `::` part)."""
    base = config.invocation_params.dir
    return [
        Path(os.path.abspath(base / arg.partition("::")[0])) for arg in config.args if arg.strip()
    ]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    state = parent.config.stash[state_key]
    if not state.is_incident_path(file_path):
        return None
    if state.names and file_path not in state.selected:
        return None
    return IncidentFile.from_parent(parent, path=file_path)


@pytest.hookimpl(trylast=True)  # after plugins that record what was collected (syrupy)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[state_key]
    if not state.request_ids:
        return
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    matched: set[str] = set()
    for item in items:
        if not isinstance(item, IncidentItem):
            keep.append(item)
            continue
        found = {r for r in state.request_ids if item.request.request_id.lower().startswith(r)}
        matched |= found
        (keep if found else drop).append(item)
    unmatched = [r for r in state.request_ids if r not in matched]
    # (an xdist worker sees only its share and cannot stop the run with a usage error)
    if unmatched and not hasattr(config, "workerinput"):
        raise pytest.UsageError(no_such_request(unmatched, items))
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """An incident's item that errors at setup with a `file:line: ...` message (the file, or
    its recorded request, cannot be replayed) is summarised by that message's first line:
    the short summary (untrimmed on CI) does not repeat the source excerpt."""
    report = yield
    crash = getattr(report.longrepr, "reprcrash", None)
    if (
        call.when == "setup"
        and isinstance(item, IncidentItem | UnreadableIncident)
        and crash is not None
        and call.excinfo is not None
        and isinstance(call.excinfo.value, pytest.fail.Exception)
    ):
        crash.message = str(call.excinfo.value.msg).partition("\n")[0]
    return report


def no_such_request(unmatched: list[str], items: list[pytest.Item]) -> str:
    """Which --incident-request ids match nothing, and the ids there are to choose from."""
    ids = sorted({item.request.request_id[:8] for item in items if isinstance(item, IncidentItem)})
    shown = ", ".join(ids[:12]) + (f", ... ({len(ids)} in all)" if len(ids) > 12 else "")
    which = ", ".join(repr(r) for r in unmatched)
    return f"--incident-request {which}: no collected request's id starts with it; " + (
        f"the collected requests: {shown}" if ids else "no incident request was collected"
    )


class WindowOrder:
    """Puts each window-state incident's items back in recorded order after every other
    plugin's reordering, wrappers included (--ff, --nf reorder after the plain hooks have run):
    registered in pytest_configure, after those plugins, as the outermost tryfirst wrapper."""

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> Generator[None]:
        result = yield
        items[:] = window_order(items)
        return result


@pytest.fixture(name=WINDOW_FIXTURE)
def database_window(request: pytest.FixtureRequest) -> None:
    """Every item of a `database: {state: window}` incident uses it: the first of them that
    runs in this process requests `database.before`, the others nothing."""
    if isinstance(request.node, IncidentItem):
        request.node.incident_file.enter_window(request)


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook, when it is installed
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`-n N` with the default distribution (load): xdist's own, except that the items of a
    window-state incident go to one worker together, in order. Another --dist is the user's
    choice, left alone."""
    if config.getvalue("dist") != "load":
        return None
    from pytest_incident.distribution import WindowLoadScheduling

    return WindowLoadScheduling(config, log)

# The pytest plugin: options, hooks, wiring. The collection tree is pytest_incident.nodes,
# the end-of-run summary pytest_incident.reporting, the syrupy glue pytest_incident.snapshots.
#
# Thin wiring only. The sandbox, stubs and event sources are imported lazily so `pytest
# --help` stays fast. State lives in config.stash, never in globals.
from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from pytest_incident import hookspecs
from pytest_incident.nodes import (
    WINDOW_FIXTURE,
    IncidentFile,
    IncidentItem,
    replay_request,
    window_order,
)
from pytest_incident.options import IncidentState, positive_speed, state_key
from pytest_incident.reporting import IncidentReporter
from pytest_incident.termination import PLUGIN as TERMINATION
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
        isolation=str(config.getoption("incident_sandbox")),
        dirs=dirs,
        calibrate=bool(config.getoption("incident_calibrate")),
    )
    config.stash[state_key] = state
    config.pluginmanager.register(IncidentReporter(), "incident-reporter")
    config.pluginmanager.register(WindowOrder(), "incident-window-order")
    config.pluginmanager.register(Termination(), TERMINATION)
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
                if state.is_incident_path(path) and "__snapshots__" not in path.parts:
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

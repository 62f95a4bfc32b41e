# syrupy glue: each item of an incident with `expect.mutations: snapshot` asserts its
# side-effect log (pytest_incident.core.side_effects) against a syrupy snapshot.
#
# syrupy's own location logic already puts it where it belongs: the item is a pytest.Function
# in incidents/<stem>.yaml, so the file is incidents/__snapshots__/<stem>.ambr and the
# snapshot's name is the item's name, `POST /signup[5983a437]`. --snapshot-update, the write
# locks under xdist, unused-snapshot detection and the report lines are syrupy's.
#
# Where syrupy needs help, runs that select some requests (--incident-request, --deselect,
# --lf): syrupy relates a snapshot to a test by the leading Python identifier of both names,
# "POST" for every request of a route, so each item that ran claimed the snapshots of the
# requests that did not, which were reported unused and deleted by --snapshot-update.
# exact_snapshot_names (the one patch of syrupy) compares incident items' names exactly. And
# the plugin deselects for --incident-request after syrupy has recorded the collected items,
# or syrupy takes the selection for the whole collection.
from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from pytest_incident.core.side_effects import SideEffectLog
from pytest_incident.model.errors import ReplayConfigError
from pytest_incident.model.result import SnapshotCheck

SNAPSHOT_FIXTURE = "snapshot"


def check_snapshot(fixture: object, log: SideEffectLog, config: pytest.Config) -> SnapshotCheck:
    """Assert `log` against the item's snapshot through syrupy (which also writes it under
    --snapshot-update and counts it for the report). `fixture` is the item's `snapshot`."""
    from syrupy.assertion import SnapshotAssertion
    from syrupy.extensions.amber import AmberSnapshotExtension
    from syrupy.terminal import disable_color

    if not isinstance(fixture, SnapshotAssertion):
        raise ReplayConfigError(
            f"expect.mutations: snapshot needs syrupy's `{SNAPSHOT_FIXTURE}` fixture, but it "
            f"is a {type(fixture).__name__} here (overridden in a conftest.py?)"
        )
    snapshot = fixture.use_extension(AmberSnapshotExtension)
    matched = snapshot == log.render()
    result = snapshot.executions[snapshot.num_executions - 1]
    location = _shown_path(Path(result.snapshot_location), config.rootpath)
    if matched:
        return SnapshotCheck(True, location, result.snapshot_name)
    colorless = disable_color() if config.option.no_colors else nullcontext()
    with colorless:
        diff = snapshot.get_assert_diff(diff_mode=config.option.diff_mode)
    if result.exception is not None:
        problem = f"cannot check the side-effect log against {location}: {diff[0]}"
        diff = []
    elif result.recalled_data is None:
        problem = (
            f"new snapshot: the side-effect log has none in {location} yet; "
            "--snapshot-update accepts it"
        )
        diff = [line for line in diff if not line.startswith("Snapshot '")]
        return SnapshotCheck(False, location, result.snapshot_name, problem, tuple(diff), new=True)
    else:
        problem = (
            f"the side-effect log differs from its snapshot in {location} "
            "(--snapshot-update accepts the new one)"
        )
    return SnapshotCheck(False, location, result.snapshot_name, problem, tuple(diff))


def _shown_path(path: Path, rootdir: Path) -> str:
    try:
        return str(path.relative_to(rootdir))
    except ValueError:
        return str(path)


def exact_snapshot_names(config: pytest.Config, replay_function: Callable[..., Any]) -> None:
    """Make syrupy compare snapshot names exactly for incident items, until `config` ends.

    The one place this plugin changes syrupy: PyTestLocation.matches_snapshot_name compares
    the leading identifiers of two names (`test_x[1]` ~ `test_x`, so a parametrized test
    owns all its cases). Every request of a route has the same leading identifier, its
    method, so a partial run reported (and --snapshot-update deleted) the snapshots of the
    requests it did not run. Incident items are recognised by the function behind them
    (`replay_function`), which syrupy also knows for items it rebuilt on the xdist
    controller. Restored when `config` is cleaned up.
    """
    from syrupy.location import PyTestLocation

    original = PyTestLocation.matches_snapshot_name
    replay_id = (replay_function.__module__, replay_function.__name__)

    def matches_snapshot_name(self: PyTestLocation, snapshot_name: str) -> bool:
        if (self.modulename, self.methodname) == replay_id:
            return self.snapshot_name == snapshot_name
        return original(self, snapshot_name)

    PyTestLocation.matches_snapshot_name = matches_snapshot_name  # type: ignore[method-assign]

    def restore() -> None:
        PyTestLocation.matches_snapshot_name = original  # type: ignore[method-assign]

    config.add_cleanup(restore)

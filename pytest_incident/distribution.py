# pytest-xdist's default distribution for `-n N` ("load"), with one change: the items of a
# window-state incident (`database: {state: window}`) are never split. They go to one worker
# together, in collection order (recorded order: nodes.window_order), so each finds the writes
# of the ones before it. Every other item is distributed exactly as xdist's LoadScheduling
# does (contiguous chunks, refilled as workers finish), so a run without window-state incidents
# is scheduled as it would be without this plugin.
#
# The controller does not collect: it knows items by node id. An incident item's node id
# starts with its file's path, so the controller reads that file's `database:` itself, once
# per file, with the same loader. A file it cannot load is not grouped: its workers report
# the mistake at collection.
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from xdist.scheduler import LoadScheduling

from pytest_incident.model.errors import IncidentFileError
from pytest_incident.options import state_key
from pytest_incident.spec import load_incident


def whole_windows(
    pending: Sequence[int], count: int, window_of: Callable[[int], str | None]
) -> int:
    """How many of `pending` (item indices) to send when `count` were asked for: more, so that
    the last one's window-state incident goes whole (its items are contiguous in `pending`)."""
    end = min(count, len(pending))
    if end == 0:
        return count
    window = window_of(pending[end - 1])
    while window is not None and end < len(pending) and window_of(pending[end]) == window:
        end += 1
    return end


class WindowLoadScheduling(LoadScheduling):  # type: ignore[misc]  # xdist has no type hints
    """LoadScheduling whose chunks never end inside a window-state incident."""

    def __init__(self, config: pytest.Config, log: Any = None) -> None:
        super().__init__(config, log)
        self._windows: dict[str, bool] = {}  # node id's file part -> a window-state incident

    def _send_tests(self, node: Any, num: int) -> None:
        super()._send_tests(node, whole_windows(self.pending, num, self._window_of))

    def _window_of(self, index: int) -> str | None:
        """The file of a window-state incident the item at `index` belongs to, else None."""
        file = self.collection[index].split("::", 1)[0]
        if file not in self._windows:
            self._windows[file] = is_window_incident(self.config, file)
        return file if self._windows[file] else None


def is_window_incident(config: pytest.Config, relative: str) -> bool:
    """Whether the file a node id starts with (relative to rootdir) is an incident file that
    says `database: {state: window}`."""
    path = Path(os.path.normpath(config.rootpath / relative))
    if not config.stash[state_key].is_incident_path(path):
        return False
    try:
        return load_incident(path, dict(os.environ)).database.window
    except IncidentFileError:
        return False

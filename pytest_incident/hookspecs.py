# Hooks pytest-incident adds to pytest (registered through `pytest_addhooks`). Plugins and
# conftest.py files implement them to add event sources or to watch replays.
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .replay import ReplayResult
    from .spans import Span
    from .spec import IncidentSpec
    from .verdict import Verdict


@pytest.hookspec(firstresult=True)
def pytest_incident_load_spans(spec: IncidentSpec, config: pytest.Config) -> Iterable[Span] | None:
    """Return the recorded spans for ``spec.source``, or None if this plugin cannot read it.

    The first non-None result wins. Spans may be returned in any order and outside the
    window; pytest-incident filters them by ``spec.window`` and ``spec.select``. The built-in
    implementation reads frozen ``.jsonl``/``.jsonl.gz`` files.
    """


@pytest.hookspec
def pytest_incident_replayed(item: pytest.Item, result: ReplayResult, verdict: Verdict) -> None:
    """Called after each recorded request was replayed and judged, before the item reports."""

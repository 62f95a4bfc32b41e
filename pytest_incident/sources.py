# Built-in event sources, as an implementation of `pytest_incident_load_spans`.
from __future__ import annotations

from collections.abc import Iterable

import pytest

from .frozen import read_spans
from .spans import Span
from .spec import IncidentSpec

FROZEN_SUFFIXES = (".jsonl", ".jsonl.gz")


class FrozenFileSource:
    """Reads the frozen JSON Lines file named by `source:` (streamed, gzip optional)."""

    @pytest.hookimpl(trylast=True)
    def pytest_incident_load_spans(
        self, spec: IncidentSpec, config: pytest.Config
    ) -> Iterable[Span] | None:
        if spec.source.name.endswith(FROZEN_SUFFIXES):
            return read_spans(spec.source)
        return None

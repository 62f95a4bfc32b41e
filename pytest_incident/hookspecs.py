# Hooks pytest-incident adds to pytest (registered through `pytest_addhooks`). Plugins and
# conftest.py files implement them to add event sources, normalizers and stub servers, or to
# watch replays. Every type they name is in the public API (`pytest_incident.__init__`).
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import pytest

from pytest_incident.runtime.servers import PortStub

if TYPE_CHECKING:
    from pytest_incident.core.book import ReplayBook
    from pytest_incident.core.verdict import Verdict
    from pytest_incident.model.normalizers import Normalizer
    from pytest_incident.model.result import ReplayResult
    from pytest_incident.model.spans import Span
    from pytest_incident.model.spec import IncidentSpec

__all__ = ["PortStub"]


@pytest.hookspec(firstresult=True)
def pytest_incident_load_spans(spec: IncidentSpec, config: pytest.Config) -> Iterable[Span] | None:
    """Return the recorded spans for ``spec.source``, or None if this plugin cannot read it.

    Asked before the event sources installed by entry point and the built-in frozen-file
    source, for any reference (``spec.source.scheme``, ``.location``); the first non-None
    result wins. Spans may be returned in any order and outside the window; pytest-incident
    filters them by ``spec.window`` and ``spec.select``. An installable source is better
    written as an ``EventSource`` (entry-point group ``pytest_incident.sources``).
    """


@pytest.hookspec
def pytest_incident_replayed(item: pytest.Item, result: ReplayResult, verdict: Verdict) -> None:
    """Called after each recorded request was replayed and judged, before the item reports.

    ``verdict`` is the whole judgement (status, resolved, unmatched calls, crash, snapshot,
    database tap problems): ``verdict.passed`` is exactly whether the item passes.
    """


@pytest.hookspec
def pytest_incident_normalizers(spec: IncidentSpec, config: pytest.Config) -> Iterable[Normalizer]:
    """Return extra normalizers for the outbound request bodies of ``spec``.

    They are applied, after those of ``sandbox.normalize``, to both the live and the
    recorded body before ``match_on: [body]`` compares them. Every implementation
    contributes (e.g. a plugin that knows an SDK's volatile fields). Each must implement
    the ``Normalizer`` protocol; anything else fails the incident's items, naming it.
    """
    raise NotImplementedError


@pytest.hookspec
def pytest_incident_port_stubs(spec: IncidentSpec, book: ReplayBook) -> Mapping[int, PortStub]:
    """Return stub servers for TCP ports: ``{port: stub}``.

    While ``spec`` replays, the target's connections to such a port at any address (unless
    ``sandbox.allow`` lets it through) go to ``stub.address`` instead, on loopback. A stub
    records what it receives with ``book.add(Effect(...))`` so it shows in the item's
    side-effect log, and is closed with ``stub.close()`` after the incident's last item.
    Called when the first item of the incident starts; every implementation contributes.
    """
    raise NotImplementedError

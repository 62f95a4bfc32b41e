# Hooks pytest-incident adds to pytest (registered through `pytest_addhooks`). Plugins and
# conftest.py files implement them to add event sources or to watch replays.
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

import pytest

if TYPE_CHECKING:
    from .book import ReplayBook
    from .normalize import Normalizer
    from .replay import ReplayResult
    from .spans import Span
    from .spec import IncidentSpec
    from .verdict import Verdict


class PortStub(Protocol):
    """A stub server a plugin runs for `pytest_incident_port_stubs`."""

    address: tuple[str, int]  # where it listens, on loopback

    def close(self) -> None: ...


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


@pytest.hookspec
def pytest_incident_normalizers(spec: IncidentSpec, config: pytest.Config) -> Iterable[Normalizer]:
    """Return extra normalizers for the outbound request bodies of ``spec``.

    They are applied, after those of ``sandbox.normalize``, to both the live and the
    recorded body before ``match_on: [body]`` compares them. Every implementation
    contributes (e.g. a plugin that knows an SDK's volatile fields).
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

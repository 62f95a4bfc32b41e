"""The incident file's sections: each IncidentSpec field comes from exactly one section, and the
schema the loader checks is assembled from theirs (a section added is a section checked)."""

from __future__ import annotations

import dataclasses
import textwrap
from pathlib import Path

import pytest

from pytest_incident.model.errors import IncidentFileError
from pytest_incident.model.spec import IncidentSpec
from pytest_incident.spec import load_incident, loader
from pytest_incident.spec.section import Section, mapping
from pytest_incident.spec.sections import SECTIONS


def test_every_spec_field_comes_from_one_section() -> None:
    # noise comes from the calibration file beside the incident, not from a section
    fields = {f.name for f in dataclasses.fields(IncidentSpec)} - {"path", "line", "lines", "noise"}
    produced = [section.field for section in SECTIONS]
    assert sorted(produced) == sorted(fields)
    assert len({section.key for section in SECTIONS}) == len(SECTIONS)


def test_schema_is_assembled_from_the_sections() -> None:
    properties = loader.schema()["properties"]
    for section in SECTIONS:
        assert properties[section.key] == section.schema


def test_a_new_section_is_checked_without_touching_the_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[object] = []

    def parse(reader: object, value: object) -> str:
        seen.append(value)
        return "built"

    extra = Section("probe", "title", mapping({"level": {"type": "integer"}}), parse)
    sections = (*(s for s in SECTIONS if s.field != "title"), extra)
    monkeypatch.setattr(loader, "SECTIONS", sections)
    base = "window: 2024-05-14T14:00:00Z .. 2024-05-14T15:00:00Z\nsource: x.jsonl\n"
    base += "target: {wsgi: 'examples.signup.app:app'}\n"
    good = tmp_path / "good.yaml"
    good.write_text(base + "probe: {level: 3}\n")
    assert load_incident(good, {}).title == "built"
    assert seen == [{"level": 3}]

    bad = tmp_path / "bad.yaml"
    bad.write_text(base + textwrap.dedent("probe:\n  level: high\n"))
    with pytest.raises(IncidentFileError) as caught:
        load_incident(bad, {})
    assert str(caught.value).startswith(f"{bad}:5: probe.level: expected an integer")

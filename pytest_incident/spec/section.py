# One top-level key of the incident file, pairing its JSON Schema fragment (its shape) with the
# function that checks its meaning and builds its value. A new section is a new module in
# `sections/` listed in `sections.SECTIONS`; the loader needs no change.
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.yaml_loader import KeyPath

# Shared schema fragments.
TEXT_OR_LIST: Mapping[str, Any] = {"type": ["string", "array"], "items": {"type": "string"}}
STATUS: Mapping[str, Any] = {"type": ["string", "integer"]}
DURATION: Mapping[str, Any] = {"type": ["string", "number"]}


def mapping(properties: Mapping[str, Any]) -> dict[str, Any]:
    """A closed mapping: keys other than `properties` are reported as unknown."""
    return {"type": "object", "additionalProperties": False, "properties": dict(properties)}


@dataclass(frozen=True)
class Section:
    """`key` in the file becomes `field` of the IncidentSpec.

    `parse(reader, value)` gets the value after `${NAME}` expansion and after the schema has
    guaranteed its shape (`default` when the key is absent); it reports mistakes through the
    reader and may return anything when it has reported one. `planned` names keys inside the
    section that a later version will take: rejected by name, never ignored.
    """

    key: str
    field: str
    schema: Mapping[str, Any]
    parse: Callable[[SectionReader, Any], Any]
    required: bool = False
    default: Any = None
    planned: tuple[KeyPath, ...] = ()

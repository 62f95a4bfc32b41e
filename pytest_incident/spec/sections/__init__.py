# The sections of an incident file, in the order the README documents them.
from __future__ import annotations

from pytest_incident.spec.section import Section
from pytest_incident.spec.sections import (
    database,
    expect,
    identity,
    sandbox,
    select,
    source,
    target,
    usefixtures,
    window,
)
from pytest_incident.spec.yaml_loader import KeyPath

SECTIONS: tuple[Section, ...] = (
    identity.NAME,
    identity.TITLE,
    window.SECTION,
    source.SECTION,
    select.SECTION,
    target.SECTION,
    sandbox.SECTION,
    expect.SECTION,
    database.SECTION,
    usefixtures.SECTION,
)

# Top-level keys a later version takes (the README's roadmap): rejected by name.
PLANNED_SECTIONS: tuple[KeyPath, ...] = (("injections",), ("repeat",))

# `expect:` what must now hold for every replayed request: a status condition, production
# failures resolved (`true` for "<400", or a status condition of its own), the mutation log
# snapshot, and what is normalized before comparing.
from __future__ import annotations

import re
from typing import Any

from pytest_incident.model.normalizers import (
    BUILTIN_NORMALIZERS,
    DEFAULT_NORMALIZE,
    NORMALIZED,
    Normalizer,
    PatternNormalizer,
)
from pytest_incident.model.spec import (
    RESOLVED_DEFAULT,
    Expect,
    MutationsMode,
    StatusCondition,
)
from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.section import STATUS, Section, mapping


def parse(reader: SectionReader, data: dict[str, Any]) -> Expect | None:
    status = None
    if "status" in data:
        status = reader.attempt(("expect", "status"), lambda: StatusCondition.parse(data["status"]))
        if status is None:
            return None
    resolved: StatusCondition | None = None
    given = data.get("resolved", False)
    if given is True:
        resolved = RESOLVED_DEFAULT
    elif given is not False:
        resolved = reader.attempt(("expect", "resolved"), lambda: StatusCondition.parse(given))
        if resolved is None:
            return None
    rules: list[Normalizer] = []
    for i, rule in enumerate(data.get("normalize", list(DEFAULT_NORMALIZE))):
        if isinstance(rule, str):
            rules.append(BUILTIN_NORMALIZERS[rule])
            continue
        try:
            pattern = re.compile(rule["pattern"])
        except re.error as exc:
            reader.fail(("expect", "normalize", i, "pattern"), f"not a regular expression: {exc}")
            return None
        rules.append(PatternNormalizer(pattern, rule.get("replace", NORMALIZED)))
    return Expect(
        status=status,
        resolved=resolved,
        mutations=MutationsMode(data.get("mutations", MutationsMode.IGNORE.value)),
        normalize=tuple(rules),
    )


_PATTERN_RULE = {
    **mapping({"pattern": {"type": "string"}, "replace": {"type": "string"}}),
    "required": ["pattern"],
}
SCHEMA = mapping(
    {
        "status": STATUS,
        "resolved": {"type": ["boolean", "string", "integer"]},
        "mutations": {"enum": [mode.value for mode in MutationsMode]},
        "normalize": {
            "type": "array",
            "items": {"anyOf": [{"enum": sorted(BUILTIN_NORMALIZERS)}, _PATTERN_RULE]},
        },
    }
)
SECTION = Section("expect", "expect", SCHEMA, parse, default={})

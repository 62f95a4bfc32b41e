# `expect:` what must now hold for every replayed request: a status condition, production
# failures resolved (`true` for "<400", or a status condition of its own), the answer equal to
# production's for requests that succeeded there (`response`), the mutation log snapshot, and
# what is normalized before comparing.
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
    DEFAULT_RESPONSE_MATCH,
    RESOLVED_DEFAULT,
    RESPONSE_PARTS,
    Expect,
    MutationsMode,
    ResponseMatch,
    StatusCondition,
    is_noise_entry,
    is_response_part,
)
from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.section import STATUS, TEXT_OR_LIST, Section, mapping
from pytest_incident.spec.yaml_loader import KeyPath

NOISE_FORMS = "header:<name>, body:<dotted.path> (* for any key or index), body"


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
    response = _response(reader, data.get("response"))
    if "response" in data and response is None:
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
        response=response,
    )


def _response(reader: SectionReader, given: Any) -> ResponseMatch | None:
    """`match` (the default parts) or `{match: [parts], ignore: [entries]}`."""
    path: KeyPath = ("expect", "response")
    if given is None:
        return None
    if isinstance(given, str):
        if given.strip() != "match":
            reader.fail(path, f"{given!r} is not allowed; allowed: match, or a mapping")
            return None
        return ResponseMatch()
    parts: list[str] = []
    for item_path, text in reader.items(given, "match", path):
        part = text.strip().lower()
        if not is_response_part(part):
            allowed = ", ".join(RESPONSE_PARTS)
            reader.fail(item_path, f"{text!r} is not a part of an answer; allowed: {allowed}")
            return None
        if part in parts:
            reader.fail(item_path, f"{text!r} is listed twice")
            return None
        parts.append(part)
    if "match" in given and not parts:
        reader.fail((*path, "match"), f"nothing to compare; allowed: {', '.join(RESPONSE_PARTS)}")
        return None
    ignore = checked_noise(reader, given, "ignore", path)
    if ignore is None:
        return None
    return ResponseMatch(tuple(parts) or DEFAULT_RESPONSE_MATCH, ignore)


def checked_noise(
    reader: SectionReader, data: dict[str, Any], key: str, path: KeyPath
) -> tuple[str, ...] | None:
    """A list of entries naming parts of an answer to ignore (normalized to lower-case
    header names; body paths keep their case)."""
    entries: list[str] = []
    for item_path, text in reader.items(data, key, path):
        entry = text.strip()
        if entry.lower().startswith("header:"):
            entry = entry.lower()
        if not is_noise_entry(entry) and entry != "body":
            reader.fail(item_path, f"{text!r} is not a part of an answer; allowed: {NOISE_FORMS}")
            return None
        entries.append(entry)
    return tuple(dict.fromkeys(entries))


_PATTERN_RULE = {
    **mapping({"pattern": {"type": "string"}, "replace": {"type": "string"}}),
    "required": ["pattern"],
}
SCHEMA = mapping(
    {
        "status": STATUS,
        "resolved": {"type": ["boolean", "string", "integer"]},
        "mutations": {"enum": [mode.value for mode in MutationsMode]},
        # `match`, or a mapping (properties apply to mappings only)
        "response": {
            **mapping({"match": TEXT_OR_LIST, "ignore": TEXT_OR_LIST}),
            "type": ["string", "object"],
        },
        "normalize": {
            "type": "array",
            "items": {"anyOf": [{"enum": sorted(BUILTIN_NORMALIZERS)}, _PATTERN_RULE]},
        },
    }
)
SECTION = Section("expect", "expect", SCHEMA, parse, default={})

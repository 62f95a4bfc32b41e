# `sandbox:` what the target may reach and what answers it: outbound calls stubbed from the
# recording or blocked, email and jobs kept, live endpoints (`allow`, resolved once here),
# how a call is matched to a recorded one and what is normalized before matching.
from __future__ import annotations

import re
from typing import Any

from pytest_incident.model.endpoints import LoopbackEndpoint, addresses_of
from pytest_incident.model.normalizers import (
    NORMALIZED,
    FieldNormalizer,
    HeaderNormalizer,
    Normalizer,
    PatternNormalizer,
)
from pytest_incident.model.spec import (
    DEFAULT_MATCH_ON,
    DEFAULT_QUEUES,
    MATCH_PARTS,
    EmailMode,
    JobsMode,
    OutboundMode,
    SandboxSpec,
    ScheduledMode,
    UnmatchedMode,
    is_match_part,
)
from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.scalars import check_host_port
from pytest_incident.spec.section import TEXT_OR_LIST, Section, mapping
from pytest_incident.spec.yaml_loader import KeyPath

UNIX_PREFIX = "unix:"
SUN_PATH_MAX = 107  # bytes of a socket file's path (sockaddr_un, less its NUL)


def parse(reader: SectionReader, data: dict[str, Any]) -> SandboxSpec | None:
    allow_unix = _unix_paths(reader, data)
    allow = _endpoints(reader, data, "allow", unix_ok=True)
    jobs = JobsMode(data.get("jobs", JobsMode.RECORD.value))
    explicit_queues = "queues" in data
    queues = (
        _endpoints(reader, data, "queues")
        if explicit_queues
        else tuple(LoopbackEndpoint.parse(q) for q in DEFAULT_QUEUES)
    )
    match_on = _match_on(reader, data)
    normalize, normalize_headers = _normalizers(reader, data.get("normalize") or [])
    if allow is None or queues is None or match_on is None or normalize is None:
        return None
    if allow_unix is None:
        return None
    if jobs is JobsMode.RECORD and not _queues_apart(reader, data, allow, queues, explicit_queues):
        return None
    return SandboxSpec(
        outbound=OutboundMode(data.get("outbound", OutboundMode.STUB.value)),
        allow=allow,
        allow_unix=allow_unix,
        unmatched=UnmatchedMode(data.get("unmatched", UnmatchedMode.ERROR.value)),
        email=EmailMode(data.get("email", EmailMode.STUB.value)),
        jobs=jobs,
        queues=queues if jobs is JobsMode.RECORD else (),
        scheduled=ScheduledMode(data.get("scheduled", ScheduledMode.HOLD.value)),
        match_on=match_on,
        normalize=normalize,
        normalize_headers=normalize_headers,
    )


def _queues_apart(
    reader: SectionReader,
    data: dict[str, Any],
    allow: tuple[LoopbackEndpoint, ...],
    queues: tuple[LoopbackEndpoint, ...],
    explicit: bool,
) -> bool:
    """An endpoint is either live or a job queue: compared as resolved addresses."""
    queued = addresses_of(queues)
    paths = [
        path
        for path, text in reader.items(data, "allow", ("sandbox",))
        if not text.strip().startswith(UNIX_PREFIX)
    ]
    for path, endpoint in zip(paths, allow, strict=True):
        if not endpoint.addresses & queued:
            continue
        if explicit:
            reader.fail(
                path,
                f"{endpoint.text!r} is also in sandbox.queues; an endpoint is "
                "either live or a job queue, not both",
            )
        else:
            reader.fail(
                path,
                f"{endpoint.text!r} is the default job queue (sandbox.jobs: "
                "record stubs localhost:6379); set sandbox.queues to your queue "
                "endpoints, or sandbox.jobs: block, to let it through live",
            )
        return False
    return True


def _unix_paths(reader: SectionReader, data: dict[str, Any]) -> tuple[str, ...] | None:
    """`unix:/path` entries of sandbox.allow: socket files that pass live."""
    found: list[str] = []
    ok = True
    for path, text in reader.items(data, "allow", ("sandbox",)):
        entry = text.strip()
        if not entry.startswith(UNIX_PREFIX):
            continue
        socket_file = entry[len(UNIX_PREFIX) :]
        problem = ""
        if not socket_file.startswith("/"):
            problem = "an absolute path to a socket file"
        elif "\0" in socket_file or len(socket_file.encode()) > SUN_PATH_MAX:
            problem = f"a path of at most {SUN_PATH_MAX} bytes, without NUL"
        if problem:
            reader.fail(path, f"{entry!r}: a unix: entry is {problem} (unix:/run/app.sock)")
            ok = False
        else:
            found.append(socket_file)
    return tuple(found) if ok else None


def _endpoints(
    reader: SectionReader, data: dict[str, Any], key: str, *, unix_ok: bool = False
) -> tuple[LoopbackEndpoint, ...] | None:
    """`host:port` entries that stand for loopback endpoints, resolved once here (`unix:`
    entries, where `unix_ok`, are _unix_paths')."""
    found: list[LoopbackEndpoint] = []
    ok = True
    for path, text in reader.items(data, key, ("sandbox",)):
        if unix_ok and text.strip().startswith(UNIX_PREFIX):
            continue
        problem = check_host_port(text.strip())
        if problem is not None and unix_ok:
            problem += ", or 'unix:/path' for a socket file"
        if problem is None:
            try:
                found.append(LoopbackEndpoint.parse(text.strip()))
            except ValueError as exc:
                problem = str(exc)
        if problem:
            reader.fail(path, problem)
            ok = False
    return tuple(found) if ok else None


def _match_on(reader: SectionReader, data: dict[str, Any]) -> tuple[str, ...] | None:
    if "match_on" not in data:
        return DEFAULT_MATCH_ON
    parts: list[str] = []
    entries = reader.items(data, "match_on", ("sandbox",))
    if not entries:
        reader.fail(
            ("sandbox", "match_on"),
            "an empty match_on would serve any call with "
            f"any recorded one; allowed parts: {', '.join(MATCH_PARTS)}",
        )
        return None
    for path, text in entries:
        part = text.strip().lower()
        if not is_match_part(part):
            reader.fail(
                path, f"{text!r} is not a part of a call; allowed: {', '.join(MATCH_PARTS)}"
            )
            return None
        if part in parts:
            reader.fail(path, f"{text!r} is listed twice")
            return None
        parts.append(part)
    return tuple(parts)


def _normalizers(
    reader: SectionReader, rules: list[dict[str, str]]
) -> tuple[tuple[Normalizer, ...] | None, tuple[HeaderNormalizer, ...]]:
    """Body normalizers (`field` or `pattern`) and header normalizers (`header`, with an
    optional `pattern` within the value); None for the first when one is wrong."""
    found: list[Normalizer] = []
    headers: list[HeaderNormalizer] = []
    for i, rule in enumerate(rules):
        path: KeyPath = ("sandbox", "normalize", i)
        replacement = rule.get("replace", NORMALIZED)
        pattern = None
        if "pattern" in rule:
            try:
                pattern = re.compile(rule["pattern"])
            except re.error as exc:
                reader.fail((*path, "pattern"), f"not a regular expression: {exc}")
                return None, ()
        if "header" in rule:
            if "field" in rule:
                reader.fail(path, "a header normalizer takes header and, optionally, pattern")
                return None, ()
            headers.append(HeaderNormalizer(rule["header"], pattern, replacement))
            continue
        if ("field" in rule) == (pattern is not None):
            reader.fail(
                path,
                "a normalizer needs exactly one of: field (a body field path such as "
                "metadata.request_id), pattern (a regular expression), header (a header name, "
                "with an optional pattern)",
            )
            return None, ()
        if "field" in rule:
            found.append(FieldNormalizer(rule["field"], replacement))
        elif pattern is not None:
            found.append(PatternNormalizer(pattern, replacement))
    return tuple(found), tuple(headers)


SCHEMA = mapping(
    {
        "outbound": {"enum": [mode.value for mode in OutboundMode]},
        "email": {"enum": [mode.value for mode in EmailMode]},
        "jobs": {"enum": [mode.value for mode in JobsMode]},
        "queues": TEXT_OR_LIST,
        "scheduled": {"enum": [mode.value for mode in ScheduledMode]},
        "allow": TEXT_OR_LIST,
        "unmatched": {"enum": [mode.value for mode in UnmatchedMode]},
        "match_on": TEXT_OR_LIST,
        "normalize": {
            "type": "array",
            "items": mapping(
                {
                    "field": {"type": "string"},
                    "header": {"type": "string"},
                    "pattern": {"type": "string"},
                    "replace": {"type": "string"},
                }
            ),
        },
    }
)
SECTION = Section("sandbox", "sandbox", SCHEMA, parse, default={})

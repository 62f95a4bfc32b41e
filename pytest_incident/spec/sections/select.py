# `select:` which recorded requests of the window become items: service, routes, production
# status, trace id prefixes. Every key narrows; none given takes every request.
from __future__ import annotations

import re
from typing import Any

from pytest_incident.model.spec import Select, StatusCondition
from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.section import STATUS, TEXT_OR_LIST, Section, mapping

_ROUTE_RE = re.compile(r"(?:([A-Za-z]+)\s+)?(/\S*)")  # "POST /signup", or "/signup": any method
_TRACE_PREFIX_RE = re.compile(r"[0-9a-fA-F]{4,32}")


def parse(reader: SectionReader, data: dict[str, Any]) -> Select | None:
    ok = True
    service = data.get("service")
    if service is not None and not service.strip():
        reader.fail(("select", "service"), "expected a service name, got an empty string")
        ok = False
    routes: list[str] = []
    for path, text in reader.items(data, "routes", ("select",)):
        match = _ROUTE_RE.fullmatch(text.strip())
        if match is None:
            reader.fail(
                path,
                f"{text!r} is not a route; expected 'METHOD /path' (e.g. 'POST /signup') or "
                "'/path' for any method, with * matching any characters in the path",
            )
            ok = False
        elif match.group(1) is None:
            routes.append(match.group(2))
        else:
            routes.append(f"{match.group(1).upper()} {match.group(2)}")
    status = None
    if "status" in data:
        status = reader.attempt(("select", "status"), lambda: StatusCondition.parse(data["status"]))
        ok = ok and status is not None
    requests: list[str] = []
    for path, value in reader.items(data, "requests", ("select",)):
        text = reader.as_text(path, value).strip()
        if not _TRACE_PREFIX_RE.fullmatch(text):
            reader.fail(path, f"{text!r} is not a trace id prefix; expected 4 to 32 hex digits")
            ok = False
        else:
            requests.append(text.lower())
    if not ok:
        return None
    return Select(service=service, routes=tuple(routes), status=status, requests=tuple(requests))


SCHEMA = mapping(
    {
        "service": {"type": "string"},
        "routes": TEXT_OR_LIST,
        "status": STATUS,
        "requests": {"type": ["string", "array"], "items": {"type": ["string", "number"]}},
    }
)
SECTION = Section("select", "select", SCHEMA, parse, default={})

# The incident file `freeze` writes beside the frozen recording: the window, the source, the
# select its filters said, a `target:` to fill in and the `expect` defaults, with comments
# that say what each part does. Text only; `freeze` checks that it loads.
#
# The target is the placeholder TARGET_PLACEHOLDER: loading the file says what to fill in
# (spec/sections/target.py), at its line, instead of replaying against nothing.
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from pytest_incident.model.spec import TARGET_PLACEHOLDER, Select

TARGET_LINE = f"  wsgi: {TARGET_PLACEHOLDER}"


@dataclass(frozen=True)
class Scaffold:
    name: str
    window: str  # `START .. END`
    source: str  # the frozen file, relative to the incident file
    frozen_from: str  # the --source it was frozen from (without a password)
    frozen_on: str  # the date, UTC
    select: Select
    requests: int
    failed: int
    services: Sequence[str]
    redacted: Sequence[str]  # the redaction report's lines
    database: bool  # the recording holds database statements

    def text(self) -> str:
        lines = [
            f"# Frozen by `pytest-incident freeze` on {self.frozen_on} from {self.frozen_from}:",
            f"# {self.requests} recorded request(s), {self.failed} failed in production, "
            "with their whole traces.",
            "# Secrets were replaced by placeholders (redacted-...): see README, Redaction.",
            *(f"#   {line.strip()}" for line in self.redacted[1:]),
            "# Fill in target: below, then run: pytest --incident=" + self.name,
            f"incident: {self.name}",
            'title: ""                   # one line on what happened',
            f"window: {self.window}",
            f"source: {self.source}",
            *self._select(),
            "target:",
            "  # FILL IN how to start the current code, one of:",
            "  #   wsgi: package.module:app    (served by gunicorn; server: waitress or wsgiref)",
            "  #   asgi: package.module:app    (served by uvicorn; server: hypercorn)",
            '  #   command: ["{python}", "-m", "myservice", "--port", "{port}"]',
            "  # and what it needs: env: {NAME: value}, pass_env: [NAME], python: path/to/venv",
            TARGET_LINE,
            "sandbox:",
            "  outbound: stub             # outbound HTTP is answered from the recording",
            "  unmatched: error           # a call the recording does not hold fails the request",
        ]
        if self.database:
            lines.append(
                '  # allow: ["localhost:5432"]   # the database, live (and usefixtures: to '
                "restore it)"
            )
        lines += [
            "expect:",
            '  status: "<500"             # every replayed request answers below 500',
            "  resolved: true             # and those that failed in production, below 400",
            "  # response: match          # those that worked answer exactly as then",
            "  # mutations: snapshot      # what each request wrote, kept as a snapshot",
        ]
        return "\n".join(lines) + "\n"

    def _select(self) -> list[str]:
        select = self.select
        lines = []
        if select.service is not None:
            lines.append(f"  service: {_quoted(select.service)}")
        if select.routes:
            lines.append(f"  routes: [{', '.join(_quoted(r) for r in select.routes)}]")
        if select.status is not None:
            lines.append(f"  status: {_quoted(str(select.status))}")
        if select.requests:
            lines.append(f"  requests: [{', '.join(select.requests)}]")
        if not lines:
            return []
        return ["select:", *lines]


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string is one; the values are printable)."""
    return json.dumps(text, ensure_ascii=False)


def without_password(reference: str) -> str:
    """A source reference as a comment may show it: a URL's password left out."""
    try:
        parts = urlsplit(reference)
    except ValueError:
        return "(a source reference)"
    if parts.password is None:
        return reference
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


def checkable(text: str, app: str) -> str:
    """The scaffold with `app` in place of the placeholder, to check that the rest loads."""
    return text.replace(TARGET_LINE, f"  wsgi: {app}", 1)

# The failure report of one replayed request: what a user reads instead of a traceback. Pure:
# the recorded request, the replay's result and its verdict in; text out.
#
# Shape: the request (method, target, id, when), was -> now, the problems, the outbound
# calls and other side effects, production's database writes beside the replay's, the
# snapshot diff, the answer's body fields that differ from production's, the response body,
# the target's last output lines, and the command that replays just this request. A section
# with nothing to say is left out, except the calls, which say "(none)".
from __future__ import annotations

import shlex

from pytest_incident.core.verdict import Verdict
from pytest_incident.model.recorded import RecordedRequest
from pytest_incident.model.result import ReplayResult
from pytest_incident.model.spans import format_timestamp

PREVIEW_CHARS = 300


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def preview(body: bytes, limit: int = PREVIEW_CHARS) -> str:
    text = body.decode("utf-8", "replace")
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def render_failure(
    incident: str, request: RecordedRequest, result: ReplayResult, verdict: Verdict
) -> str:
    lines = [
        f"{request.method} {request.target}  request {request.request_id}  recorded "
        f"{format_timestamp(request.span.timestamp_ns)[:23]} UTC",
    ]
    if request.body:
        lines.append(f"  request body: {preview(request.body)}")
    lines.append(f"status: {verdict.transition()}   (was -> now)")
    lines.append("problems:")
    lines.extend(f"  - {p}" for p in verdict.problems)
    lines.append("outbound calls:")
    if result.effects:
        lines.extend(indent(e.render(), "  ") for e in result.effects)
    else:
        lines.append("  (none)")
    if verdict.writes:
        lines.append("database writes (production | replay):")
        lines.append(indent(verdict.writes, "  "))
    snapshot = verdict.snapshot
    if snapshot is not None and snapshot.diff:
        lines.append(f"side-effect log [{snapshot.name}]  (- snapshot, + now):")
        lines.extend(indent(line, "  ") for line in snapshot.diff)
    if verdict.response_diff:
        lines.append("response body, against production's (production -> now):")
        lines.extend(indent(line, "  ") for line in verdict.response_diff)
    if result.body:
        lines.append(f"response body (now): {preview(result.body)}")
    if result.output_tail:
        lines.append("target output (last lines):")
        lines.append(indent(result.output_tail))
    lines.append(
        f"replay with: pytest --incident={incident} "
        f"--incident-request={shlex.quote(request.request_id[:8])}"
    )
    return "\n".join(lines)

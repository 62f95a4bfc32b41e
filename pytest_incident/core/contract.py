# A recording checked against the span format's contract (docs/recording-format.md): every
# span that breaks it (a problem: replay refuses the request, or its bytes are lost) and every
# span that replay tolerates at a loss of fidelity (a warning), not only the first. Pure:
# spans in, findings out; `pytest-incident validate` reads the source and prints them.
#
# Strategy: what replay refuses is decided by pytest_incident.model.replayable (the same
# functions the replay uses, collecting every field's problem); this module adds what only a
# validator says: bodies whose encoding is missing (binary bytes stored as text, base64 text
# without `.encoding: base64`), spans replay ignores or cannot place (a Client span with no
# url.full, one whose trace has no Server span or that starts before it), and values replay
# reads with a default (no method, no path, no status and no Error status). Memory: per trace,
# the earliest Server span's start, and a reference (id, origin, start) per child span.
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pytest_incident.model import conventions as keys
from pytest_incident.model.recorded import is_database_statement, is_outbound_http
from pytest_incident.model.replayable import SpanProblem, call_problems, request_problems
from pytest_incident.model.spans import Span, SpanKind, SpanOrigin

PROBLEM, WARNING = "problem", "warning"
BODY_KEYS = (keys.REQUEST_BODY, keys.RESPONSE_BODY, keys.MESSAGE_BODY)
MIN_BASE64_LOOKING = 16  # shorter text is too often a word or a token to call it base64
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_TEXT_TYPES = ("text/", "json", "xml", "x-www-form-urlencoded", "javascript", "yaml", "csv")
_HEADERS_OF = {
    keys.REQUEST_BODY: keys.REQUEST_HEADERS,
    keys.RESPONSE_BODY: keys.RESPONSE_HEADERS,
}


@dataclass(frozen=True)
class Finding:
    """One thing wrong (`severity` PROBLEM) or lossy (WARNING) about one span (`span_id`,
    with where it was read) or the whole recording (no span id)."""

    severity: str
    message: str  # `span ID: field: what is wrong; allowed: ...`
    origin: SpanOrigin | None = None

    @property
    def problem(self) -> bool:
        return self.severity == PROBLEM


def _finding(severity: str, span: Span, role: str, field_: str, message: str) -> Finding:
    return Finding(severity, f"{role} {span.span_id}: {field_}: {message}", span.origin)


def _from_problem(problem: SpanProblem) -> Finding:
    return Finding(PROBLEM, str(problem), problem.span.origin)


@dataclass(frozen=True)
class _Child:
    span_id: str
    role: str
    timestamp_ns: int
    origin: SpanOrigin | None


@dataclass
class Checker:
    """Feed it every span (`check`), then `finish`: the findings of the whole recording."""

    requests: int = 0
    spans: int = 0
    servers: dict[str, int] = field(default_factory=dict)  # trace -> earliest request start
    children: dict[str, list[_Child]] = field(default_factory=dict)

    def check(self, span: Span) -> Iterator[Finding]:
        self.spans += 1
        if span.kind is SpanKind.SERVER:
            self.requests += 1
            start = self.servers.get(span.trace_id)
            self.servers[span.trace_id] = (
                span.timestamp_ns if start is None else min(start, span.timestamp_ns)
            )
            if start is not None:
                yield _finding(
                    WARNING,
                    span,
                    "span",
                    "TraceId",
                    "a second Server span in the trace: each is replayed, and every outbound "
                    "call of the trace is served to both (a recording holds one request per "
                    "trace: the service under test's)",
                )
            yield from _request(span)
        elif is_outbound_http(span):
            self._child(span, "outbound call span")
            yield from _call(span)
        elif span.kind is SpanKind.CLIENT:
            yield from _other_client(span)
        elif span.kind is SpanKind.PRODUCER and not span.attr(keys.MESSAGING_SYSTEM):
            yield _finding(
                WARNING,
                span,
                "span",
                keys.MESSAGING_SYSTEM,
                "a Producer span (a job enqueued) without messaging.system: say which queue "
                "system (rq, celery); replay does not serve it, the job stub records it live",
            )
        yield from _bodies(span, "outbound call span" if is_outbound_http(span) else "span")

    def _child(self, span: Span, role: str) -> None:
        child = _Child(span.span_id, role, span.timestamp_ns, span.origin)
        self.children.setdefault(span.trace_id, []).append(child)

    def finish(self) -> Iterator[Finding]:
        for trace, children in self.children.items():
            start = self.servers.get(trace)
            for child in children:
                if start is None:
                    message = (
                        f"its trace {trace} holds no Server span: no recorded request makes "
                        "this call, and replay never serves it"
                    )
                elif child.timestamp_ns < start:
                    message = (
                        "starts before the Server span of its trace: replay serves only the "
                        "calls made while the request was handled"
                    )
                else:
                    continue
                text = f"{child.role} {child.span_id}: TraceId: {message}"
                yield Finding(WARNING, text, child.origin)
        if self.requests == 0:
            yield Finding(
                PROBLEM,
                f"the recording holds no recorded request (Server span) among its {self.spans} "
                "spans: there is nothing to replay",
            )


def check_spans(spans: Iterable[Span]) -> Iterator[Finding]:
    """Every finding of a stream of spans, in their order, then those of the whole."""
    checker = Checker()
    for span in spans:
        yield from checker.check(span)
    yield from checker.finish()


# -- one span --------------------------------------------------------------------------------


def _request(span: Span) -> Iterator[Finding]:
    problems = request_problems(span)
    yield from (_from_problem(p) for p in problems)
    failed = {p.field for p in problems}
    role = "span"
    if not span.attr(keys.METHOD):
        yield _finding(WARNING, span, role, keys.METHOD, "missing: the request is sent as GET")
    if keys.PATH not in span.attributes:
        yield _finding(WARNING, span, role, keys.PATH, "missing: the request is sent to /")
    if keys.REQUEST_HEADERS not in span.attributes:
        yield _finding(
            WARNING,
            span,
            role,
            keys.REQUEST_HEADERS,
            "missing: the request is sent with no header but Host (and Content-Length)",
        )
    status = keys.ascii_number(span.attr(keys.STATUS), 3)
    if keys.STATUS in failed:
        return
    if status is None and span.status_code.lower() != "error":
        yield _finding(
            WARNING,
            span,
            role,
            keys.STATUS,
            f"missing while StatusCode is {span.status_code!r}: read as a request that got no "
            "answer yet did not fail; a service that crashed has no status and StatusCode Error",
        )
    bodiless = status in (204, 304) or (status is not None and status < 200)
    answered = status is not None and not bodiless and span.attr(keys.METHOD).upper() != "HEAD"
    if answered and keys.RESPONSE_BODY not in span.attributes:
        yield _finding(
            WARNING,
            span,
            role,
            keys.RESPONSE_BODY,
            "missing: the answer's body was not recorded, so expect.response and "
            "snapshots have nothing to compare",
        )


def _call(span: Span) -> Iterator[Finding]:
    problems = call_problems(span)
    yield from (_from_problem(p) for p in problems)
    if keys.STATUS in {p.field for p in problems}:
        return
    role = "outbound call span"
    if not span.attr(keys.STATUS) and not span.attr(keys.ERROR_TYPE):
        yield _finding(
            WARNING,
            span,
            role,
            keys.ERROR_TYPE,
            "no http.response.status_code and no error.type: replayed as a connection reset; "
            "say what happened (error.type: timeout, connection_reset, connection_refused, ...)",
        )
    elif span.attr(keys.STATUS) and keys.RESPONSE_BODY not in span.attributes:
        yield _finding(
            WARNING,
            span,
            role,
            keys.RESPONSE_BODY,
            "missing: the call is answered with an empty body",
        )


def _other_client(span: Span) -> Iterator[Finding]:
    if is_database_statement(span):
        if not span.attr(keys.DB_STATEMENT):
            yield _finding(
                WARNING,
                span,
                "database span",
                keys.DB_STATEMENT,
                "missing: writes are compared by operation and table only",
            )
        params = span.attr(keys.DB_PARAMS)
        if params and not _json_list(params):
            yield _finding(
                WARNING,
                span,
                "database span",
                keys.DB_PARAMS,
                "not a JSON array: the parameters are shown as one text",
            )
        return
    if span.attr(keys.KIND) == "smtp":
        return
    http = any(span.attr(k) for k in (keys.METHOD, keys.SERVER_ADDRESS, keys.STATUS))
    what = "an HTTP call" if http else "a Client span"
    yield _finding(
        WARNING,
        span,
        "span",
        keys.URL,
        f"missing: {what} without url.full is not served by replay (nor is it a database "
        "statement, db.system.name, or an email, incident.kind: smtp)",
    )


def _json_list(text: str) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except (ValueError, RecursionError):
        return False


def _bodies(span: Span, role: str) -> Iterator[Finding]:
    for key in BODY_KEYS:
        body = span.attributes.get(key)
        if not isinstance(body, str) or not body:
            continue
        if span.attributes.get(key + keys.ENCODING_SUFFIX):
            continue  # checked by replayable
        if keys.LOST_BYTES in body:
            yield _finding(
                PROBLEM,
                span,
                role,
                key,
                "holds U+FFFD: bytes that were not UTF-8 were replaced when the body was "
                f"decoded, and are lost; allowed: text, or the bytes in base64 with "
                f"{key}.encoding: base64",
            )
        elif keys.BINARY_LOOKING_RE.search(body):
            yield _finding(
                WARNING,
                span,
                role,
                key,
                "holds control characters: binary data stored as text is replayed as its "
                f"UTF-8 encoding; record binary bytes in base64 with {key}.encoding: base64",
            )
        elif _binary_base64(body):
            severity = WARNING if _says_text(span, key) else PROBLEM
            yield _finding(
                severity,
                span,
                role,
                key + keys.ENCODING_SUFFIX,
                "missing: the body looks like base64 of binary data, but without "
                f"{key}.encoding: base64 replay sends the base64 text itself",
            )


def _binary_base64(body: str) -> bool:
    """Text that is base64 of bytes that are not UTF-8 (so not text base64-encoded)."""
    text = body.strip()
    if len(text) < MIN_BASE64_LOOKING or len(text) % 4 or not _BASE64_RE.fullmatch(text):
        return False
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _says_text(span: Span, key: str) -> bool:
    """The message's Content-Type says text (a base64-looking token may be the text)."""
    headers_key = _HEADERS_OF.get(key)
    if headers_key is None:
        return False
    try:
        headers = keys.decode_headers(span.attributes, headers_key)
    except ValueError:
        return False
    types = [v.lower() for n, v in headers if n.lower() == "content-type"]
    return any(t in v for v in types for t in _TEXT_TYPES)

# What a recorded request (Server span) and an outbound call (Client span) must hold to be
# replayed, checked once, where spans become RecordedRequest / OutboundCall
# (pytest_incident.model.recorded). Pure.
#
# Strategy: every recorded value that reaches the HTTP client (method, target, headers, body),
# the HTTP stub (h11: status, headers, body), the DNS stub and the stub's TLS certificate (the
# host), the matcher (URL, port) or an item's name (route, ids) is checked here against what
# those accept, so a replay never raises on a recorded value. The first value that fails is a
# SpanProblem: the span, the field, what is wrong and what is allowed. The item of its request
# reports it at the recording's line (pytest_incident.nodes), and the incident's other
# requests still run.
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pytest_incident.model import conventions as keys
from pytest_incident.model.errors import RecordingError
from pytest_incident.model.spans import Span

T = TypeVar("T")

_TOKEN_RE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 9110 token: methods, header names
_HEADER_VALUE_RE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")  # visible, space, tab, obs-text
_URL_CHARS_RE = re.compile(r"[\x21-\x7e]*")  # what a request line carries unescaped
_TRACE_ID_RE = re.compile(r"[0-9a-fA-F]{1,32}")
_SPAN_ID_RE = re.compile(r"[0-9a-fA-F]{1,16}")
_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")  # RFC 1123
MAX_HOST_LENGTH = 253
NO_BODY_STATUSES = (204, 304)  # answers that carry no body (so do 1xx and HEAD's)

ASCII_TEXT = "printable ASCII without spaces (percent-encode the rest)"
HEADERS = (
    "header names are tokens (letters, digits, !#$%&'*+.^_`|~-) and values are text without "
    "control characters (CR, LF, NUL), in Latin-1"
)


@dataclass(frozen=True)
class SpanProblem:
    """Why a recorded span cannot be replayed: `field` (an attribute or column) and what is
    wrong with it, with what is allowed."""

    span: Span
    field: str
    message: str
    role: str = "span"  # "span" (a request) or "outbound call span"

    def __str__(self) -> str:
        span_id = self.span.span_id
        shown = span_id if isinstance(span_id, str) and span_id.isprintable() else _shown(span_id)
        return f"{self.role} {shown}: {self.field}: {self.message}"

    def error(self, path: Path, line: int) -> RecordingError:
        """At the line of the recording that holds the span; else at (path, line)."""
        origin = self.span.origin
        if origin is not None:
            return RecordingError(origin.path, origin.line, str(self))
        return RecordingError(path, line, str(self))


class _Bad(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message


def _shown(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def check_request(span: Span) -> SpanProblem | None:
    """The first value of a Server span that cannot be replayed, or None."""
    return next(iter(request_problems(span)), None)


def check_call(span: Span) -> SpanProblem | None:
    """The first value of an outbound call's Client span that cannot be replayed, or None."""
    return next(iter(call_problems(span)), None)


def request_problems(span: Span) -> list[SpanProblem]:
    """Every value of a Server span that cannot be replayed (one per part checked), in the
    order check_request finds them."""
    return _problems(
        span,
        "span",
        (
            _check_span,
            _check_method,
            _check_path,
            _check_query,
            _check_route,
            lambda s: _status(s, 100, "a status code 100-599, or none (no answer)"),
            lambda s: _check_message(s, keys.REQUEST_HEADERS, keys.REQUEST_BODY),
            lambda s: _check_message(s, keys.RESPONSE_HEADERS, keys.RESPONSE_BODY),
        ),
    )


def call_problems(span: Span) -> list[SpanProblem]:
    """Every value of an outbound call's Client span that cannot be replayed."""
    return _problems(
        span,
        "outbound call span",
        (
            _check_span,
            _check_method,
            _url,
            _check_address,
            _check_port,
            _check_call_status,
            lambda s: _check_message(s, keys.REQUEST_HEADERS, keys.REQUEST_BODY),
            lambda s: _check_message(s, keys.RESPONSE_HEADERS, keys.RESPONSE_BODY),
            _check_bodiless,
        ),
    )


def _problems(
    span: Span, role: str, checks: tuple[Callable[[Span], object], ...]
) -> list[SpanProblem]:
    found: list[SpanProblem] = []
    for check in checks:
        try:
            check(span)
        except _Bad as bad:
            if not any(p.field == bad.field for p in found):  # one problem per field
                found.append(SpanProblem(span, bad.field, bad.message, role))
    return found


def _check_path(span: Span) -> None:
    path = _attr(span, keys.PATH) or "/"
    if not path.startswith("/") or not _URL_CHARS_RE.fullmatch(path):
        raise _Bad(keys.PATH, f"{_shown(path)}; allowed: a path from '/', {ASCII_TEXT}")


def _check_query(span: Span) -> None:
    query = _attr(span, keys.QUERY)
    if not _URL_CHARS_RE.fullmatch(query):
        raise _Bad(keys.QUERY, f"{_shown(query)}; allowed: {ASCII_TEXT}")


def _check_route(span: Span) -> None:
    route = _attr(span, keys.ROUTE)
    if not route.isprintable():
        raise _Bad(keys.ROUTE, f"{_shown(route)} holds control characters")


def _check_address(span: Span) -> None:
    host = _attr(span, keys.SERVER_ADDRESS)
    if host:
        _host(keys.SERVER_ADDRESS, host)


def _check_port(span: Span) -> None:
    port = _attr(span, keys.SERVER_PORT)
    number = keys.ascii_number(port, 5)
    if port and (number is None or not 0 < number < 65536):
        raise _Bad(keys.SERVER_PORT, f"{_shown(port)}; allowed: ASCII digits, 1-65535")


def _check_call_status(span: Span) -> None:
    status = _status(
        span,
        200,
        "a final answer's status 200-599, or none (a call that failed without an answer)",
    )
    if status is not None and _attr(span, keys.ERROR_TYPE) == keys.TIMEOUT:
        raise _Bad(
            keys.ERROR_TYPE,
            f"'{keys.TIMEOUT}' on a call answered with {status}; allowed: a call that timed out "
            f"has no {keys.STATUS} (or drop {keys.ERROR_TYPE} when it was answered)",
        )


def _check_bodiless(span: Span) -> None:
    try:
        method = _check_method(span)
        status = _status(span, 200, "")
        body = keys.decode_body(span.attributes, keys.RESPONSE_BODY)
    except (_Bad, ValueError):
        return  # reported by the checks of those fields
    if (method == "HEAD" or status in NO_BODY_STATUSES) and body:
        answer = "an answer to HEAD" if method == "HEAD" else f"a {status} answer"
        raise _Bad(keys.RESPONSE_BODY, f"{answer} carries no body; allowed: empty")


# -- the parts -------------------------------------------------------------------------------


def _attr(span: Span, key: str) -> str:
    value = span.attributes.get(key, "")
    if not isinstance(value, str):
        raise _Bad(key, f"{_shown(value)} is not a string; attribute values are strings")
    return value


def _check_span(span: Span) -> None:
    """What every span needs (a source other than a frozen file built it unchecked)."""
    if not isinstance(span.trace_id, str) or not _TRACE_ID_RE.fullmatch(span.trace_id):
        raise _Bad("TraceId", f"{_shown(span.trace_id)}; allowed: hex digits, at most 32")
    if not isinstance(span.span_id, str) or not _SPAN_ID_RE.fullmatch(span.span_id):
        raise _Bad("SpanId", f"{_shown(span.span_id)}; allowed: hex digits, at most 16")
    duration = span.duration_ns
    if isinstance(duration, bool) or not isinstance(duration, int) or duration < 0:
        raise _Bad("Duration", f"{_shown(duration)}; allowed: a whole number of nanoseconds >= 0")
    for key, value in span.attributes.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise _Bad(str(key), f"{_shown(value)} is not a string; attribute values are strings")


def _check_method(span: Span) -> str:
    method = _attr(span, keys.METHOD) or "GET"
    if not _TOKEN_RE.fullmatch(method):
        raise _Bad(keys.METHOD, f"{_shown(method)}; allowed: an HTTP method (a token: letters)")
    return method.upper()


def _status(span: Span, lowest: int, allowed: str) -> int | None:
    text = _attr(span, keys.STATUS)
    if not text:
        return None
    number = keys.ascii_number(text, 3)
    if number is None or not lowest <= number <= 599:
        raise _Bad(keys.STATUS, f"{_shown(text)}; allowed: {allowed}, in ASCII digits")
    return number


def _check_message(span: Span, headers_key: str, body_key: str) -> None:
    headers = _decode(keys.decode_headers, span, headers_key)
    for name, value in headers:
        if not _TOKEN_RE.fullmatch(name):
            raise _Bad(headers_key, f"header name {_shown(name)}; allowed: {HEADERS}")
        if not _HEADER_VALUE_RE.fullmatch(value):
            raise _Bad(headers_key, f"the value of {name} is {_shown(value)}; allowed: {HEADERS}")
    _attr(span, body_key)
    encoding = _attr(span, body_key + keys.ENCODING_SUFFIX)
    if encoding not in ("", "base64"):
        raise _Bad(
            body_key + keys.ENCODING_SUFFIX,
            f"{_shown(encoding)}; allowed: base64, or none (the body is text)",
        )
    _decode(keys.decode_body, span, body_key)


def _decode(decode: Callable[[Mapping[str, str], str], T], span: Span, key: str) -> T:
    try:
        return decode(span.attributes, key)
    except ValueError as exc:
        raise _Bad(key, str(exc).removeprefix(key + " ").removeprefix(key + ": ")) from None


def _url(span: Span) -> None:
    url = _attr(span, keys.URL)
    allowed = f"an absolute http:// or https:// URL with a host, {ASCII_TEXT}"
    if not _URL_CHARS_RE.fullmatch(url):
        raise _Bad(keys.URL, f"{_shown(url)}; allowed: {allowed}")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname or ""
    except ValueError as exc:
        raise _Bad(keys.URL, f"{_shown(url)} is not a URL ({exc}); allowed: {allowed}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise _Bad(keys.URL, f"{_shown(url)}; allowed: {allowed}")
    if port is not None and not 0 < port < 65536:
        raise _Bad(keys.URL, f"{_shown(url)}: port {port}; allowed: 1-65535")
    _host(keys.URL, host)


def _host(field: str, host: str) -> None:
    try:
        ipaddress.ip_address(host)
        return
    except ValueError:
        pass
    labels = host.split(".")
    if len(host) > MAX_HOST_LENGTH or not all(_LABEL_RE.fullmatch(label) for label in labels):
        raise _Bad(
            field,
            f"host {_shown(host)}; allowed: a host name (dot-separated labels of ASCII letters, "
            "digits and inner hyphens, at most 63 each; IDNA-encode the rest) or an IP address",
        )

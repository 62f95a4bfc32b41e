# Span attribute conventions: which `SpanAttributes` keys say what, encoded and decoded in
# this one place. Semantic-convention keys where OpenTelemetry has them, `incident.*` for what
# it lacks (README, "The event log"). Pure: attribute maps in, values out, and back.
#
# Bodies are text, or base64 with `<key>.encoding: base64` when they are not UTF-8. Headers
# are a JSON object ({name: value | [values]}) or a JSON list of [name, value] pairs.
from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

# recorded request (Server span) and outbound HTTP call (Client span)
METHOD = "http.request.method"
PATH = "url.path"
QUERY = "url.query"
ROUTE = "http.route"
STATUS = "http.response.status_code"
URL = "url.full"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"  # "timeout" for a call that never answered
USER = "enduser.id"
REQUEST_HEADERS = "incident.request.headers"
REQUEST_BODY = "incident.request.body"
RESPONSE_HEADERS = "incident.response.headers"
RESPONSE_BODY = "incident.response.body"
ENCODING_SUFFIX = ".encoding"
# database statement (Client span)
DB_SYSTEM = "db.system.name"
DB_SYSTEM_OLD = "db.system"  # the key before semantic conventions 1.26
DB_STATEMENT = "db.query.text"
DB_OPERATION = "db.operation.name"
DB_TABLE = "db.collection.name"
DB_PARAMS = "incident.db.params"
DB_OUTCOME = "incident.db.outcome"
DB_ROWS = "incident.db.rows"
# job enqueue (Producer span) and email (Client span)
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_DESTINATION = "messaging.destination.name"
MESSAGE_BODY = "incident.message.body"
KIND = "incident.kind"  # "smtp" for an email

TIMEOUT = "timeout"

# What text bodies do not hold: U+FFFD (bytes lost when they were decoded) and control
# characters other than tab, LF and CR (binary data). encode_body stores such bytes in base64.
LOST_BYTES = "\ufffd"
BINARY_LOOKING_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]")


def ascii_number(text: str, digits: int = 9) -> int | None:
    """The number `text` holds in ASCII digits (at most `digits` of them), else None:
    str.isdigit() and int() also take "²" and "५४३२", which no recorder writes."""
    if 0 < len(text) <= digits and text.isascii() and text.isdigit():
        return int(text)
    return None


def decode_body(attributes: Mapping[str, str], key: str) -> bytes:
    """The body stored under `key`, honouring `key.encoding: base64`; ValueError if bad."""
    raw = attributes.get(key, "")
    encoding = attributes.get(key + ENCODING_SUFFIX, "")
    if encoding == "base64":
        try:
            return base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"{key} is not valid base64") from None
    if encoding:
        raise ValueError(
            f"{key}{ENCODING_SUFFIX} is {encoding!r}; allowed: base64 (or none: the body is text)"
        )
    try:
        return raw.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{key} is not text (it holds a lone surrogate)") from None


def encode_body(key: str, body: bytes) -> dict[str, str]:
    """The attributes that store `body` under `key`: text, or base64 when it is not UTF-8
    or looks binary (BINARY_LOOKING_RE)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not BINARY_LOOKING_RE.search(text):
        return {key: text}
    return {key: base64.b64encode(body).decode("ascii"), key + ENCODING_SUFFIX: "base64"}


def decode_headers(attributes: Mapping[str, str], key: str) -> tuple[tuple[str, str], ...]:
    """Header pairs from a JSON object ({name: value | [values]}) or list of pairs; a value
    is a string or a whole number. ValueError for anything else."""
    raw = attributes.get(key, "")
    if not raw:
        return ()
    shape = "a JSON object {name: value or [values]} or a list of [name, value] pairs"
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise ValueError(f"{key} is not JSON; allowed: {shape}") from None
    if isinstance(data, dict):
        items = list(data.items())
    elif isinstance(data, list) and all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) for pair in data
    ):
        items = [(pair[0], pair[1]) for pair in data]
    else:
        raise ValueError(f"{key} is not {shape}")
    pairs: list[tuple[str, str]] = []
    for name, value in items:
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise ValueError(
                    f"{key}: the value of {name!r} is not a string (nor a list of strings)"
                )
            pairs.append((name, str(item)))
    return tuple(pairs)


def encode_headers(pairs: Iterable[tuple[str, str]]) -> str:
    """Headers as stored: a JSON object of lower-case names (repeated names: a list)."""
    found: dict[str, list[str]] = {}
    for name, value in pairs:
        found.setdefault(name.lower(), []).append(value)
    return json.dumps(
        {name: values[0] if len(values) == 1 else values for name, values in found.items()},
        sort_keys=True,
    )


def outbound_request(
    method: str, url: str, headers: Iterable[tuple[str, str]], body: bytes
) -> dict[str, str]:
    """The attributes of an outbound HTTP call's Client span, request side."""
    parts = urlsplit(url)
    return {
        METHOD: method,
        URL: url,
        SERVER_ADDRESS: parts.hostname or "",
        SERVER_PORT: str(parts.port or (443 if parts.scheme == "https" else 80)),
        REQUEST_HEADERS: encode_headers(headers),
        **encode_body(REQUEST_BODY, body),
    }


def response(status: int, headers: Iterable[tuple[str, str]], body: bytes) -> dict[str, str]:
    """The answer's attributes, for a Server span or an outbound call's Client span."""
    return {
        STATUS: str(status),
        RESPONSE_HEADERS: encode_headers(headers),
        **encode_body(RESPONSE_BODY, body),
    }


def database_statement(
    system: str,
    statement: str,
    operation: str,
    table: str,
    params: Iterable[object],
    outcome: str,
    rows: int | None = None,
) -> dict[str, str]:
    """The attributes of a database statement's Client span."""
    attributes = {
        DB_SYSTEM: system,
        DB_STATEMENT: statement,
        DB_OPERATION: operation.upper(),
        DB_TABLE: table,
        DB_PARAMS: json.dumps(list(params)),
        DB_OUTCOME: outcome,
    }
    if rows is not None:
        attributes[DB_ROWS] = str(rows)
    return attributes

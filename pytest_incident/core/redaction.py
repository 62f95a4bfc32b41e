# Redaction: the secrets of recorded spans replaced by placeholders before a recording is
# frozen into a repository. Pure: spans and rules in, spans and a report out; no I/O.
#
# What counts as a secret (README "Redaction"):
#   - the values of headers named Authorization, Proxy-Authorization (Basic credentials
#     decoded: the password replaced, the user too when it is the key), Cookie, Set-Cookie
#     (folded ones too), and of headers whose name looks like a secret (api-key, token,
#     secret, password, signature, auth);
#   - the values of JSON keys, form fields, multipart parts and query parameters named like a
#     secret (password, passwd, secret, token, signature, sig, api key, access key, private
#     key, credential, card number, cvv, ...), at any depth, in every body of every span, in
#     `url.query`, the query of any URL, `incident.db.params` and the literals of
#     `db.query.text` (a parameter's or literal's name is its column in the statement); the
#     password of a URL's user info (or the user, without a password: a token); the path
#     segments a route template names like a secret (`/reset/{token}`); attributes named
#     like a secret;
#   - card numbers anywhere in text: 13 to 19 digits (spaces or dashes between groups
#     allowed), the first one 2 to 6 (the card networks' ranges), Luhn-checked;
#   - what the rules of `[tool.pytest-incident.redact]` add (core/redaction_config.py):
#     header names, field names, JSON paths, regular expressions.
# A secret found by its name (6 characters or more) is then replaced wherever else it appears
# in the recording too, as it is, percent-encoded or JSON-escaped: an echoed token does not
# survive in a log line or a URL.
#
# Placeholders are consistent: the same secret gets the same placeholder within one freeze,
# wherever and however it appears, so recorded outbound calls still match the replayed ones.
# A placeholder is `redacted-` and 12 lower-case letters from an HMAC-SHA256 of the secret
# under a key the caller draws at random for each freeze and never stores: a placeholder
# cannot be brute-forced back into a short secret (a PIN, a card number). Letters only, so
# a placeholder is the same in a URL, a form, JSON and a header, and can never be part of a
# card number. Redaction is idempotent: placeholders are never redacted again.
#
# Every body, and every attribute value, is read as what it is: multipart (by its boundary),
# JSON (parsed, walked, written back only when something changed; JSON in its strings too),
# a URL, a form, base64 of JSON, JSON inside text (NDJSON, `data: {...}`, a log line), or
# text; a base64 body is decoded (and gunzipped or inflated when its Content-Encoding says
# so, or it starts as gzip does) and encoded back the same way; one in another encoding
# (br, zstd) cannot be read and is replaced whole. JSON nested too deep to walk (counting the
# JSON strings it is inside of) is replaced whole. The report counts what was redacted by
# rule and place, never a value.
from __future__ import annotations

import base64
import binascii
import fnmatch
import gzip
import hashlib
import hmac
import json
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus, urlsplit, urlunsplit

from pytest_incident.model import conventions as keys
from pytest_incident.model.spans import Span

PLACEHOLDER_PREFIX = "redacted-"
PLACEHOLDER_LETTERS = 12
PLACEHOLDER_RE = re.compile(rf"{PLACEHOLDER_PREFIX}[a-z]{{{PLACEHOLDER_LETTERS}}}")
MIN_SWEPT_CHARS = 6  # a secret found by name is replaced elsewhere too when at least this long
MAX_JSON_DEPTH = 64  # deeper JSON bodies are replaced whole
MAX_INFLATED_BYTES = 64 << 20  # a compressed body inflated beyond this is replaced whole

# Default header rules: these names, and names that look like a secret.
DEFAULT_HEADERS = ("authorization", "proxy-authorization", "cookie", "set-cookie")
_AUTH_HEADERS = ("authorization", "proxy-authorization")
# A name (header, JSON key, form field, query parameter, attribute) looks like a secret when,
# lower-cased and without separators, it contains one of these ...
SECRET_WORDS = (
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "privatekey",
    "credential",
    "authorization",
    "cardnumber",
    "ccnumber",
    "cvv",
    "cvc",
    "signature",
)
# ... or is one of these (`auth`, or `pin`, but not `author` or `spinner`; `sig`: a signed
# URL's signature, Azure's SAS `&sig=`, is the credential)
SECRET_NAMES = ("auth", "pwd", "pin", "otp", "cookie", "session", "sessionid", "sig")
# "tokens" counts things (max_tokens, total_tokens), it holds no secret
_SECRET_NAME_RE = re.compile("|".join(w if w != "token" else "token(?!s)" for w in SECRET_WORDS))
_NAME_SEPARATORS_RE = re.compile(r"[^a-z0-9]")
# a run of digits with single spaces or dashes between groups; cards are found inside runs
_DIGIT_RUN_RE = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])")
_GROUP_RE = re.compile(r"[0-9]+")
_CARD_DIGITS = (13, 19)
_CARD_FIRST_DIGITS = "23456"
_FORM_RE = re.compile(r"[^=&\s]+=[^&\s]*(?:&[^=&\s]+=[^&\s]*)*&?")
# SQL: `column = $1` (also %s, ?, :name, %(name)s, and a 'literal'), inside a function call
# (`password = crypt($1, ...)`), and INSERT's column list, for every row of its VALUES
_SQL_SLOT_RE = re.compile(
    r"'(?:[^']|'')*'|\$([0-9]+)|%\(([A-Za-z_]\w*)\)s|%s|\?|(?<![:\w]):([A-Za-z_]\w*)"
)
_SQL_COMPARED_RE = re.compile(
    r"([A-Za-z_][\w.\"]*)\s*(?:=|<>|!=|<=|>=|<|>|\bLIKE\b|\bILIKE\b|\bIN\b\s*\()\s*"
    r"(?:[A-Za-z_]\w*\s*\(\s*)*$",
    re.I,
)
_SQL_INSERT_RE = re.compile(r"\bINSERT\s+INTO\s+[\w.\"`]+\s*\(([^)]*)\)\s*VALUES\s*", re.I | re.S)
_SQL_VALUES_TOKEN_RE = re.compile(r"'(?:[^']|'')*'|[(),;]")
# a parameter of a route template: {name}, {name:type}, <name>, <type:name>, :name
_ROUTE_PARAM_RE = re.compile(r"\{(\w+)(?::[^}]*)?\}|<(?:[^:>]+:)?(\w+)>|:(\w+)\??")
# text that is a URL, or a path with a query (`http.target`)
_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+|/\S*\?\S*")
_BASE64_RE = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
# folded Set-Cookie values: `a=1; Path=/, b=2` (the comma of an Expires date is no fold)
_SET_COOKIE_FOLD_RE = re.compile(r"(,\s*)(?=[^;,=\s]+=)")
_BOUNDARY_RE = re.compile(r"boundary=(?:\"([^\"]+)\"|([^;\s]+))", re.I)
_PART_NAME_RE = re.compile(r"\bname=(?:\"([^\"]*)\"|([^;\s]+))", re.I)
_PART_TYPE_RE = re.compile(r"^content-type:\s*([^\r\n]+)", re.I | re.M)
_GZIP_MAGIC = b"\x1f\x8b"
# a Basic user that is a key, not a name: 16 or more letters, digits, `_-.`, with a digit
_KEY_SHAPED_RE = re.compile(r"(?=[^0-9]*[0-9])[A-Za-z0-9_.-]{16,}")
MAX_JSON_TRIES = 64  # brackets tried as the start of JSON inside a text
_HEADER_ATTRIBUTE_RE = re.compile(r"http\.(?:request|response)\.header\.(.+)")
_BODY_KEYS = (keys.REQUEST_BODY, keys.RESPONSE_BODY, keys.MESSAGE_BODY)
_HEADERS_OF_BODY = {
    keys.REQUEST_BODY: keys.REQUEST_HEADERS,
    keys.RESPONSE_BODY: keys.RESPONSE_HEADERS,
}
_PLACES = {
    keys.REQUEST_HEADERS: "request headers",
    keys.RESPONSE_HEADERS: "response headers",
    keys.REQUEST_BODY: "request body",
    keys.RESPONSE_BODY: "response body",
    keys.MESSAGE_BODY: "message body",
    keys.QUERY: "url.query",
    keys.URL: "url.full",
    keys.DB_PARAMS: "database parameters",
    keys.DB_STATEMENT: "database statement",
}
# attributes whose values are structure, never text that could hold a secret
_STRUCTURAL = frozenset(
    {
        keys.METHOD,
        keys.STATUS,
        keys.SERVER_PORT,
        keys.ERROR_TYPE,
        keys.DB_OUTCOME,
        keys.DB_ROWS,
        *(key + keys.ENCODING_SUFFIX for key in _BODY_KEYS),
    }
)

# rule names in the report
CARD = "card number"
SWEPT = "a secret found by name, seen again"


def normalized_name(name: str) -> str:
    return _NAME_SEPARATORS_RE.sub("", name.lower())


def looks_secret(name: str) -> bool:
    """True for a field, parameter or attribute name that looks like a secret's."""
    flat = normalized_name(name)
    return flat in SECRET_NAMES or bool(_SECRET_NAME_RE.search(flat))


def looks_secret_header(name: str) -> bool:
    """True for a header the default rules redact: the four named ones, and names that look
    like a secret (X-Api-Key, X-Auth-Token, X-Client-Secret, X-Auth)."""
    lower = name.lower()
    parts = re.split(r"[-_]", lower)
    return lower in DEFAULT_HEADERS or looks_secret(lower) or "auth" in parts


def is_placeholder(text: str) -> bool:
    return PLACEHOLDER_RE.fullmatch(text) is not None


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        number = ord(char) - 48
        if position % 2:
            number = number * 2 - 9 if number > 4 else number * 2
        total += number
    return total % 10 == 0


def is_card_number(digits: str) -> bool:
    """13-19 ASCII digits, the first 2-6, Luhn-valid."""
    low, high = _CARD_DIGITS
    return (
        low <= len(digits) <= high
        and digits.isascii()
        and digits.isdigit()
        and digits[0] in _CARD_FIRST_DIGITS
        and luhn_valid(digits)
    )


@dataclass(frozen=True)
class RedactionRules:
    """What is redacted. The defaults are the module comment's; `[tool.pytest-incident.redact]`
    adds to them and `keep`s some (core/redaction_config.py builds these)."""

    headers: tuple[str, ...] = ()  # extra header names, lower case, fnmatch `*`
    fields: tuple[str, ...] = ()  # extra field / parameter names, lower case, fnmatch `*`
    json_paths: tuple[tuple[str, ...], ...] = ()  # from a JSON body's root; "*": any key/index
    patterns: tuple[re.Pattern[str], ...] = ()  # redacted wherever they match in text
    cards: bool = True
    keep_headers: frozenset[str] = frozenset()  # default header rules not applied (lower case)
    keep_fields: frozenset[str] = frozenset()  # default field rules not applied (lower case)

    def header_rule(self, name: str) -> str | None:
        """The rule that redacts header `name`, or None."""
        lower = name.lower()
        if any(fnmatch.fnmatchcase(lower, p) for p in self.headers):
            return f"header {lower}"
        if lower in self.keep_headers or not looks_secret_header(lower):
            return None
        return f"header {_shown(lower)}"

    def field_rule(self, name: str) -> str | None:
        """The rule that redacts the value of field, parameter or attribute `name`, or None."""
        lower = name.lower()
        if any(fnmatch.fnmatchcase(lower, p) for p in self.fields):
            return f"field {_shown(lower)}"
        if lower in self.keep_fields or not looks_secret(lower):
            return None
        return f"field {_shown(lower)}"


@dataclass
class RedactionReport:
    """How many values each rule redacted, where; never a value."""

    counts: Counter[tuple[str, str]] = field(default_factory=Counter)

    def add(self, rule: str, place: str) -> None:
        self.counts[(rule, place)] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def lines(self) -> list[str]:
        if not self.counts:
            return ["redacted nothing (no value matched a redaction rule)"]
        rows = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        width = max(len(rule) for (rule, _), _ in rows)
        out = [f"redacted {self.total} value(s) (the values are not shown):"]
        out += [f"  {count:>6}  {rule:<{width}}  in {place}" for (rule, place), count in rows]
        return out


def placeholder(key: bytes, secret: str) -> str:
    """The placeholder of `secret` under `key`: `redacted-` and 12 letters."""
    digest = hmac.new(key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return PLACEHOLDER_PREFIX + "".join(chr(97 + b % 26) for b in digest[:PLACEHOLDER_LETTERS])


class Redactor:
    """Redacts spans under `rules` with placeholders keyed by `key` (draw it at random for
    each freeze: secrets.token_bytes(32)). `redact` takes every span of the freeze at once:
    secrets found by name in one span are swept from all of them."""

    def __init__(self, rules: RedactionRules, key: bytes) -> None:
        self.rules = rules
        self.key = key
        self.report = RedactionReport()
        self._placeholders: dict[str, str] = {}
        self._secrets: set[str] = set()  # found by name; swept everywhere
        self._sweep: _Sweep | None = None
        self._counting = False

    def redact(self, spans: Iterable[Span]) -> list[Span]:
        """The spans with their secrets replaced; `report` counts what was."""
        originals = list(spans)
        for span in originals:  # learn the secrets found by name (not counted)
            self._span(span)
        self._sweep = _Sweep.of(self._secrets)
        self._counting = True
        return [self._span(span) for span in originals]

    def redact_text(self, text: str, place: str) -> str:
        """`text` (not from a span: a filter written into the incident file) with the text
        rules of the spans redacted last: the secrets they held, card numbers, patterns."""
        return self._text(text, place)

    # -- the pieces of a span -------------------------------------------------------------

    def _span(self, span: Span) -> Span:
        attributes = self._attributes(span.attributes)
        events = tuple(
            replace(e, attributes=self._attributes(e.attributes), name=self._text(e.name, "event"))
            if e.attributes or e.name
            else e
            for e in span.events
        )
        return replace(
            span,
            name=self._text(span.name, "span name"),
            attributes=attributes,
            status_message=self._text(span.status_message, "status message"),
            resource_attributes=self._attributes(span.resource_attributes),
            events=events,
        )

    def _attributes(self, attributes: Mapping[str, str]) -> dict[str, str]:
        out = dict(attributes)
        for key, value in attributes.items():
            if not isinstance(value, str) or key in _STRUCTURAL:
                continue
            if key in (keys.REQUEST_HEADERS, keys.RESPONSE_HEADERS):
                out[key] = self._headers_attribute(value, _PLACES[key])
            elif key in _BODY_KEYS:
                headers = attributes.get(_HEADERS_OF_BODY.get(key, ""), "")
                out.update(self._body_attribute(attributes, key, headers))
            elif key == keys.QUERY:
                out[key] = self._query(value, _PLACES[key])
            elif key == keys.URL:
                out[key] = self._url(value, _PLACES[key])
            elif key == keys.DB_PARAMS:
                out[key] = self._db_params(value, attributes.get(keys.DB_STATEMENT, ""))
            elif key == keys.DB_STATEMENT:
                out[key] = self._statement(value, _PLACES[key])
            elif key == keys.PATH:
                out[key] = self._path(value, attributes.get(keys.ROUTE, ""), f"attribute {key}")
            elif header := _HEADER_ATTRIBUTE_RE.fullmatch(key):
                out[key] = self._captured_header(header.group(1).replace("_", "-"), value, key)
            elif (rule := self.rules.field_rule(key.rpartition(".")[2])) is not None:
                out[key] = self._whole(value, rule, f"attribute {key}")
            else:  # read as what it is: JSON, a URL, a form, JSON in a log line, or text
                out[key] = self._body_text(value, "", _PLACES.get(key, f"attribute {key}"))
        return out

    def _captured_header(self, name: str, value: str, place: str) -> str:
        """`http.request.header.<name>`: the semantic conventions' list of values (as JSON
        text), or one value; each redacted as the header's value is."""
        if value.startswith("["):
            try:
                values = json.loads(value)
            except (ValueError, RecursionError):
                values = None
            if isinstance(values, list) and all(isinstance(v, str) for v in values):
                new = [self._header_value(name, v, place) for v in values]
                return value if new == values else json.dumps(new, ensure_ascii=False)
        new_value = self._header_value(name, value, place)
        return new_value if isinstance(new_value, str) else value

    def _path(self, path: str, route: str, place: str) -> str:
        """`url.path`, with the segments its route template names like a secret replaced
        (`/reset/{token}`: a token in a path has no other name)."""
        template = route.split("/") if route else []
        segments = path.split("/")
        if len(template) == len(segments) > 1:
            for index, part in enumerate(template):
                param = _ROUTE_PARAM_RE.fullmatch(part)
                name = next((g for g in param.groups() if g), "") if param else ""
                rule = self.rules.field_rule(name) if name else None
                if rule and segments[index]:
                    secret = unquote(segments[index])
                    segments[index] = quote(self._replace(secret, rule, place), safe="")
            path = "/".join(segments)
        return self._text(path, place)

    # -- placeholders and text ------------------------------------------------------------

    def _replace(self, secret: str, rule: str, place: str) -> str:
        """The placeholder of `secret`, counted under (rule, place); learned for the sweep."""
        if not secret or is_placeholder(secret):
            return secret
        found = self._placeholders.get(secret)
        if found is None:
            found = self._placeholders[secret] = placeholder(self.key, secret)
        if self._counting:
            self.report.add(rule, place)
        elif len(secret) >= MIN_SWEPT_CHARS and rule not in (CARD,):
            self._secrets.add(secret)
        return found

    def _whole(self, value: str, rule: str, place: str) -> str:
        return self._replace(value, rule, place) if value else value

    def _text(self, text: str, place: str) -> str:
        """Text rules: card numbers, the configured patterns, then the sweep of secrets
        found by name; placeholders are left as they are."""
        if not text:
            return text
        if self.rules.cards and any(c.isdigit() for c in text):
            text = _DIGIT_RUN_RE.sub(lambda m: self._cards_in(m.group(0), place), text)
        for index, pattern in enumerate(self.rules.patterns, 1):
            text = _outside_placeholders(
                text, pattern, self._replacer(f"pattern #{index} {pattern.pattern!r}", place)
            )
        sweep = self._sweep
        if sweep is not None and sweep.pattern is not None:
            secret_of = sweep.secret_of
            text = _outside_placeholders(
                text,
                sweep.pattern,
                lambda m: self._replace(secret_of[m.group(0)], SWEPT, place),
            )
        return text

    def _replacer(self, rule: str, place: str) -> Callable[[re.Match[str]], str]:
        return lambda match: self._replace(match.group(0), rule, place)

    def _cards_in(self, run: str, place: str) -> str:
        """A run of digit groups with each card number in it replaced: from each group in
        turn, the longest sequence of whole groups that is a card number."""
        groups = list(_GROUP_RE.finditer(run))
        out: list[str] = []
        position = 0
        i = 0
        while i < len(groups):
            found = None
            digits = ""
            for j in range(i, len(groups)):
                digits += groups[j].group(0)
                if len(digits) > _CARD_DIGITS[1]:
                    break
                if is_card_number(digits):
                    found = (j, digits)
            if found is None:
                i += 1
                continue
            j, digits = found
            start, end = groups[i].start(), groups[j].end()
            out += [run[position:start], self._replace(digits, CARD, place)]
            position = end
            i = j + 1
        out.append(run[position:])
        return "".join(out)

    # -- headers ---------------------------------------------------------------------------

    def _headers_attribute(self, raw: str, place: str) -> str:
        if not raw:
            return raw
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):
            return self._replace(raw, "headers that are not JSON, whole", place)
        if isinstance(data, dict):
            new: Any = {name: self._header_values(name, v, place) for name, v in data.items()}
        elif isinstance(data, list) and all(
            isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in data
        ):
            new = [[p[0], self._header_values(p[0], p[1], place)] for p in data]
        else:
            return self._replace(raw, "headers that are not JSON, whole", place)
        return raw if new == data else json.dumps(new, ensure_ascii=False)

    def _header_values(self, name: str, value: Any, place: str) -> Any:
        if isinstance(value, list):
            return [self._header_value(name, v, place) for v in value]
        return self._header_value(name, value, place)

    def _header_value(self, name: Any, value: Any, place: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, str | int) or not isinstance(name, str):
            return value
        text = str(value)
        rule = self.rules.header_rule(name)
        if rule is None:
            new = self._text(text, place)
            return value if new == text else new
        lower = name.lower()
        if lower in _AUTH_HEADERS:  # keep the scheme: `Bearer <placeholder>`
            scheme, space, credentials = text.partition(" ")
            credentials = credentials.strip()
            if space and credentials and scheme.isalpha():
                basic = self._basic(credentials, rule, place) if scheme.lower() == "basic" else None
                return f"{scheme} {basic or self._replace(credentials, rule, place)}"
        if lower == "cookie" and "=" in text:
            return "; ".join(self._cookie(part, rule, place) for part in text.split(";"))
        if lower == "set-cookie" and "=" in text:  # folded: `a=1; Path=/, b=2; HttpOnly`
            pieces = _SET_COOKIE_FOLD_RE.split(text)
            for index in range(0, len(pieces), 2):
                first, semicolon, attributes = pieces[index].partition(";")
                pieces[index] = self._cookie(first, rule, place) + semicolon + attributes
            return "".join(pieces)
        return self._replace(text, rule, place)

    def _basic(self, credentials: str, rule: str, place: str) -> str | None:
        """`Basic` credentials with the password replaced, and the user when it is the
        credential (an empty password, as Stripe's key; or shaped like a key, as a token
        with `x-oauth-basic`), encoded again: a service that decodes them (and sends them
        on) sees the user it knows and a placeholder, and the password is swept from the
        other spans as any secret found by name. None when not base64 of `user:password`."""
        try:
            user, colon, password = (
                base64.b64decode(credentials, validate=True).decode().partition(":")
            )
        except (binascii.Error, ValueError):
            return None
        if not colon:
            return None
        if not password or _KEY_SHAPED_RE.fullmatch(user):
            user = self._replace(user, rule, place)
        pair = f"{user}:{self._replace(password, rule, place)}"
        return base64.b64encode(pair.encode()).decode("ascii")

    def _cookie(self, pair: str, rule: str, place: str) -> str:
        name, equals, value = pair.strip().partition("=")
        if not equals:
            return self._replace(pair.strip(), rule, place)
        return f"{name}={self._replace(value, rule, place)}"

    # -- bodies ------------------------------------------------------------------------------

    def _body_attribute(
        self, attributes: Mapping[str, str], key: str, headers_raw: str
    ) -> dict[str, str]:
        raw = attributes[key]
        place = _PLACES[key]
        content_type, content_encoding = _content_headers(headers_raw)
        if attributes.get(key + keys.ENCODING_SUFFIX) != "base64":
            return {key: self._body_text(raw, content_type, place)}
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            return {key: self._replace(raw, "a body that is not base64, whole", place)}
        new = self._body_bytes(data, content_type, content_encoding, place)
        if new == data:
            return {key: raw}
        return {key: base64.b64encode(new).decode("ascii")}

    def _body_bytes(self, data: bytes, content_type: str, encoding: str, place: str) -> bytes:
        """A base64 body's bytes, redacted: inflated and compressed again when its
        Content-Encoding is gzip or deflate (or, without one, when it is gzip's); text when
        UTF-8, else Latin-1. Another Content-Encoding (br, zstd) cannot be read: whole."""
        encoding = encoding.lower()
        if encoding in ("", "identity") and data[:2] == _GZIP_MAGIC:
            inflated = _inflate(data, "gzip")
            if inflated is not None:
                new = self._body_bytes(inflated, content_type, "", place)
                return data if new == inflated else _deflate(new, "gzip")
        elif encoding in ("gzip", "x-gzip", "deflate"):
            inflated = _inflate(data, encoding)
            if inflated is None:
                return self._replace(
                    data.decode("latin-1"), "a compressed body that cannot be read, whole", place
                ).encode("latin-1")
            new = self._body_bytes(inflated, content_type, "", place)
            return data if new == inflated else _deflate(new, encoding)
        elif encoding not in ("", "identity"):
            return self._replace(
                data.decode("latin-1"), "a compressed body that cannot be read, whole", place
            ).encode("latin-1")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._body_text(data.decode("latin-1"), content_type, place).encode("latin-1")
        return self._body_text(text, content_type, place).encode("utf-8")

    def _body_text(self, text: str, content_type: str, place: str, depth: int = 0) -> str:
        """Text read for what it is: a multipart body, JSON (also after a byte-order mark),
        a URL, a form, base64 of JSON, JSON inside lines of text (NDJSON, server-sent
        events, a log line), or plain text. `depth`: how deep in JSON this text is."""
        if not text:
            return text
        kind = content_type.lower()
        stripped = text.strip()
        if kind.startswith("multipart/") and (boundary := _BOUNDARY_RE.search(content_type)):
            return self._multipart(text, boundary.group(1) or boundary.group(2), place, depth)
        bom = "\ufeff" if stripped.startswith("\ufeff") else ""
        body = text.lstrip()[1:] if bom else text
        if stripped.lstrip("\ufeff")[:1] in ("{", "[") or "json" in kind:
            data = _json_value(body)
            if isinstance(data, dict | list):
                return text[: len(text) - len(body)] + self._json_text(data, body, place, depth)
        if _URL_RE.fullmatch(stripped) and stripped == text:
            return self._url(text, place)
        if _BASE64_RE.fullmatch(stripped) and len(stripped) % 4 == 0:
            inner = _base64_json(stripped)
            if inner is not None:
                new = self._json_text(inner[0], inner[1], place, depth)
                if new != inner[1]:
                    return text.replace(stripped, base64.b64encode(new.encode()).decode("ascii"))
                return text
        if "x-www-form-urlencoded" in kind or _FORM_RE.fullmatch(stripped):
            return self._form(text, place)
        if "{" in text or "[" in text:
            return self._json_in_text(text, place, depth)
        return self._text(text, place)

    def _json_text(
        self, data: dict[Any, Any] | list[Any], text: str, place: str, depth: int
    ) -> str:
        """JSON `data` parsed from `text`, redacted and written back like it (or `text` when
        nothing changed); nested too deep (counting the JSON it is inside of): whole."""
        if depth + _depth(data) > MAX_JSON_DEPTH:
            return self._replace(text, "a JSON body nested too deep, whole", place)
        new = self._json(data, (), place, depth)
        return text if new == data else _dump_like(new, text)

    def _json_in_text(self, text: str, place: str, depth: int) -> str:
        """Text with JSON objects or arrays inside (`data: {...}`, one JSON per line, a log
        line that ends in JSON): each redacted as JSON, the text around them as text."""
        decoder = json.JSONDecoder()
        out: list[str] = []
        position = 0
        tries = 0
        index = _next_bracket(text, 0)
        while index >= 0 and tries < MAX_JSON_TRIES:
            tries += 1
            try:
                data, end = decoder.raw_decode(text, index)
            except (ValueError, RecursionError):
                index = _next_bracket(text, index + 1)
                continue
            if isinstance(data, dict | list):
                out += [self._text(text[position:index], place)]
                out += [self._json_text(data, text[index:end], place, depth)]
                position = end
            index = _next_bracket(text, end)
        if not out:
            return self._text(text, place)
        out.append(self._text(text[position:], place))
        return "".join(out)

    def _multipart(self, text: str, boundary: str, place: str, depth: int) -> str:
        """A multipart body: each part's value redacted when its name looks like a secret's,
        else read for what its Content-Type says; the delimiters and part headers stay."""
        delimiter = "--" + boundary
        pieces = text.split(delimiter)
        if len(pieces) < 3:
            return self._text(text, place)
        out = [self._text(pieces[0], place)]
        for piece in pieces[1:]:
            if piece.startswith("--"):  # the closing delimiter, then the epilogue
                out.append(self._text(piece, place))
                continue
            separator = "\r\n\r\n" if "\r\n\r\n" in piece else "\n\n"
            head, found, rest = piece.partition(separator)
            if not found:
                out.append(self._text(piece, place))
                continue
            ending = "\r\n" if rest.endswith("\r\n") else "\n" if rest.endswith("\n") else ""
            value = rest[: len(rest) - len(ending)]
            name = _PART_NAME_RE.search(head)
            rule = self.rules.field_rule(name.group(1) or name.group(2) or "") if name else None
            part_type = _PART_TYPE_RE.search(head)
            if rule and value:
                value = self._replace(value, rule, place)
            else:
                value = self._body_text(
                    value, part_type.group(1).strip() if part_type else "", place, depth
                )
            out.append(self._text(head, place) + separator + value + ending)
        return delimiter.join(out)

    def _json(self, value: Any, path: tuple[str, ...], place: str, depth: int = 0) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for name, item in value.items():
                here = (*path, name)
                rule = self._json_rule(name, here)
                out[name] = (
                    self._json_secret(item, rule, place)
                    if rule
                    else self._json(item, here, place, depth)
                )
            return out
        if isinstance(value, list):
            out_list = []
            for index, item in enumerate(value):
                here = (*path, str(index))
                rule = self._path_rule(here)
                out_list.append(
                    self._json_secret(item, rule, place)
                    if rule
                    else self._json(item, here, place, depth)
                )
            return out_list
        if isinstance(value, str):  # JSON, a form or a URL in a string are read too
            return self._body_text(value, "", place, depth + len(path) + 1)
        if isinstance(value, int) and not isinstance(value, bool):
            text = str(value)
            new = self._text(text, place)
            return value if new == text else new
        return value

    def _json_rule(self, name: str, path: tuple[str, ...]) -> str | None:
        return self.rules.field_rule(name) or self._path_rule(path)

    def _path_rule(self, path: tuple[str, ...]) -> str | None:
        for pattern in self.rules.json_paths:
            if len(pattern) == len(path) and all(
                p == "*" or p == part for p, part in zip(pattern, path, strict=True)
            ):
                return "JSON path " + ".".join(pattern)
        return None

    def _json_secret(self, value: Any, rule: str, place: str) -> Any:
        """A secret JSON value: a placeholder string (nothing to hide in null, a boolean or
        an empty string)."""
        if value is None or isinstance(value, bool) or value == "":
            return value
        if isinstance(value, str):
            return self._replace(value, rule, place)
        if isinstance(value, int | float):
            return self._replace(json.dumps(value), rule, place)
        return self._replace(json.dumps(value, sort_keys=True, ensure_ascii=False), rule, place)

    def _form(self, text: str, place: str) -> str:
        """A form or query string: the values of secret-named fields replaced in place (the
        rest keeps its encoding byte for byte), text rules on the others."""
        parts = text.split("&")
        out = []
        for part in parts:
            name, equals, value = part.partition("=")
            decoded_name = unquote_plus(name)
            rule = self.rules.field_rule(decoded_name)
            if equals and rule and value:
                secret = unquote_plus(value)
                out.append(f"{name}={self._replace(secret, rule, place)}")
                continue
            new_value = value
            if value:
                decoded = unquote_plus(value)
                redacted = self._text(decoded, place)
                if redacted != decoded:
                    new_value = quote_plus(redacted, safe="")
            out.append(f"{name}{equals}{new_value}" if equals else self._text(part, place))
        return "&".join(out)

    def _query(self, query: str, place: str) -> str:
        return self._form(query, place) if query else query

    def _url(self, url: str, place: str) -> str:
        try:
            parts = urlsplit(url)
        except ValueError:
            return self._text(url, place)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user, colon, password = userinfo.partition(":")
            if colon and password:
                password = self._replace(unquote_plus(password), "the password of a URL", place)
            elif not colon and user:  # a user without a password is a token (https://TOKEN@host)
                user = self._replace(unquote_plus(user), "the user of a URL (no password)", place)
            netloc = f"{user}{colon}{password}@{host}"
        new = (
            parts.scheme,
            netloc,
            self._text(parts.path, place),
            self._query(parts.query, place),
            self._text(parts.fragment, place),
        )
        return url if new == tuple(parts) else urlunsplit(new)

    # -- database parameters ---------------------------------------------------------------------

    def _db_params(self, raw: str, statement: str) -> str:
        place = _PLACES[keys.DB_PARAMS]
        try:
            params = json.loads(raw)
        except (ValueError, RecursionError):
            return self._text(raw, place)
        new: Any
        if isinstance(params, dict):  # named parameters: their names, or their columns
            named = sql_named_columns(statement)
            new = {}
            for name, value in params.items():
                rule = self._json_rule(name, (name,))
                if rule is None and named.get(name):
                    rule = self.rules.field_rule(named[name])
                new[name] = (
                    self._json_secret(value, rule, place)
                    if rule
                    else self._json(value, (name,), place)
                )
        elif isinstance(params, list):
            columns = sql_parameter_columns(statement)
            new = []
            for index, value in enumerate(params):
                rule = self.rules.field_rule(columns[index]) if index in columns else None
                if rule:
                    new.append(self._json_secret(value, rule, place))
                else:
                    new.append(self._json(value, (), place))
        else:
            return self._text(raw, place)
        return raw if new == params else json.dumps(new, ensure_ascii=False)

    def _statement(self, statement: str, place: str) -> str:
        """A database statement: the 'literals' compared with or inserted into a column
        named like a secret replaced (`password = 'x'`), then the text rules."""
        out: list[str] = []
        position = 0
        for slot in _sql_slots(statement):
            rule = self.rules.field_rule(slot.column) if slot.column else None
            if slot.kind != "literal" or rule is None or slot.end - slot.start <= 2:
                continue
            literal = statement[slot.start + 1 : slot.end - 1].replace("''", "'")
            out += [statement[position : slot.start], f"'{self._replace(literal, rule, place)}'"]
            position = slot.end
        if not out:
            return self._text(statement, place)
        out.append(statement[position:])
        return self._text("".join(out), place)


_NOT_JSON = object()


def _json_value(text: str) -> Any:
    """The JSON value `text` holds, or _NOT_JSON."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return _NOT_JSON


def _base64_json(text: str) -> tuple[dict[Any, Any] | list[Any], str] | None:
    """The JSON object or array that base64 `text` encodes (as UTF-8), and its text."""
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    if decoded.strip()[:1] not in ("{", "["):
        return None
    data = _json_value(decoded)
    return (data, decoded) if isinstance(data, dict | list) else None


def _next_bracket(text: str, start: int) -> int:
    """Where the next `{` or `[` in `text` is, from `start`; -1 when none."""
    brace, bracket = text.find("{", start), text.find("[", start)
    if brace < 0 or bracket < 0:
        return max(brace, bracket)
    return min(brace, bracket)


def _shown(name: str) -> str:
    """A name as the report shows it (names come from the recording: cut, made printable)."""
    text = name if len(name) <= 60 else name[:60] + "..."
    return text if text.isprintable() else repr(text)


def _outside_placeholders(
    text: str, pattern: re.Pattern[str], replacement: Callable[[re.Match[str]], str]
) -> str:
    """`pattern`'s matches in `text` replaced, except those that touch a placeholder."""
    taken = [m.span() for m in PLACEHOLDER_RE.finditer(text)]
    out: list[str] = []
    position = 0
    for match in pattern.finditer(text):
        start, end = match.span()
        if start == end or any(start < t_end and t_start < end for t_start, t_end in taken):
            continue
        out += [text[position:start], replacement(match)]
        position = end
    out.append(text[position:])
    return "".join(out)


@dataclass(frozen=True)
class _Sweep:
    """The secrets found by name, in every form they may be seen in: as they are,
    percent-encoded, JSON-escaped."""

    pattern: re.Pattern[str] | None
    secret_of: Mapping[str, str]

    @classmethod
    def of(cls, secrets: Iterable[str]) -> _Sweep:
        forms: dict[str, str] = {}
        for secret in secrets:
            for form in (
                secret,
                quote(secret, safe=""),
                quote_plus(secret, safe=""),
                quote(secret),
                json.dumps(secret, ensure_ascii=False)[1:-1],
                json.dumps(secret)[1:-1],
            ):
                if len(form) >= MIN_SWEPT_CHARS:
                    forms.setdefault(form, secret)
        if not forms:
            return cls(None, {})
        ordered = sorted(forms, key=lambda f: (-len(f), f))
        # not inside a longer word or number: "123456" is not swept out of "91234567"
        alternatives = "|".join(re.escape(f) for f in ordered)
        return cls(re.compile(rf"(?<![A-Za-z0-9])(?:{alternatives})(?![A-Za-z0-9])"), forms)


def _content_headers(raw: str) -> tuple[str, str]:
    """The Content-Type (as written: a multipart boundary is case-sensitive) and the
    Content-Encoding (lower case) of recorded headers ("" if none)."""
    try:
        pairs = keys.decode_headers({"h": raw}, "h")
    except ValueError:
        return "", ""
    found = {name.lower(): value.strip() for name, value in pairs}
    return found.get("content-type", ""), found.get("content-encoding", "").lower()


def _inflate(data: bytes, encoding: str) -> bytes | None:
    try:
        if encoding == "deflate":
            try:
                inflater = zlib.decompressobj()
                out = inflater.decompress(data, MAX_INFLATED_BYTES)
            except zlib.error:
                inflater = zlib.decompressobj(-zlib.MAX_WBITS)
                out = inflater.decompress(data, MAX_INFLATED_BYTES)
        else:
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = inflater.decompress(data, MAX_INFLATED_BYTES)
    except zlib.error:
        return None
    if inflater.unconsumed_tail:  # larger than the cap
        return None
    return out


def _deflate(data: bytes, encoding: str) -> bytes:
    if encoding == "deflate":
        return zlib.compress(data)
    return gzip.compress(data, mtime=0)


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if depth > MAX_JSON_DEPTH:
                return depth
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _dump_like(value: Any, original: str) -> str:
    """JSON text for `value` spaced as `original` was (compact or with spaces)."""
    compact = '": ' not in original and ", " not in original
    separators = (",", ":") if compact else (", ", ": ")
    return json.dumps(value, ensure_ascii=False, separators=separators)


@dataclass(frozen=True)
class _SqlSlot:
    """A parameter or a 'literal' of a statement, and the column it goes with ("")."""

    kind: str  # "literal", "positional" or "named"
    key: int | str  # a positional parameter's index, a named one's name
    start: int
    end: int
    column: str


def _sql_slots(statement: str) -> list[_SqlSlot]:
    """The parameters and literals of `statement`, each with the column it is compared
    with (`col = $1`, `col = lower(?)`) or inserted into (`INSERT INTO t (a, b) VALUES
    ($1, $2), ($3, $4)`); a literal's `?` or `:name` is no parameter."""
    slots: list[_SqlSlot] = []
    positional = 0
    for match in _SQL_SLOT_RE.finditer(statement):
        text = match.group(0)
        key: int | str
        if text.startswith("'"):
            kind, key = "literal", len(slots)
        elif match.group(1):
            kind, key = "positional", int(match.group(1)) - 1
        elif text in ("%s", "?"):
            kind, key = "positional", positional
            positional += 1
        else:
            kind, key = "named", match.group(2) or match.group(3)
        # the column is close before it: a bounded look back (bulk statements are long)
        before = statement[max(0, match.start() - 200) : match.start()]
        compared = _SQL_COMPARED_RE.search(before)
        column = compared.group(1).strip('"').rpartition(".")[2] if compared else ""
        slots.append(_SqlSlot(kind, key, match.start(), match.end(), column))
    for insert in _SQL_INSERT_RE.finditer(statement):
        names = [n.strip().strip('"`') for n in insert.group(1).split(",")]
        items = _values_items(statement, insert.end())
        at = 0
        for index, slot in enumerate(slots):
            while at < len(items) and items[at][1] <= slot.start:
                at += 1
            if at == len(items):
                break
            first, _, position = items[at]
            if first <= slot.start and position < len(names):
                slots[index] = replace(slot, column=names[position])
    return slots


def _values_items(statement: str, start: int) -> list[tuple[int, int, int]]:
    """The items of the rows of a VALUES list that starts at `start`: (first character,
    end, position in its row), up to what follows the rows (ON CONFLICT, RETURNING)."""
    items: list[tuple[int, int, int]] = []
    depth = position = 0
    first = previous = start
    for token in _SQL_VALUES_TOKEN_RE.finditer(statement, start):
        between, previous = statement[previous : token.start()], token.end()
        text = token.group(0)
        if (depth == 0 and between.strip()) or text == ";":
            break
        if text == "(":
            depth += 1
            if depth == 1:
                position, first = 0, token.end()
        elif text == ")":
            if depth == 1:
                items.append((first, token.start(), position))
            depth -= 1
            if depth < 0:
                break
        elif text == "," and depth == 1:
            items.append((first, token.start(), position))
            position, first = position + 1, token.end()
    return items


def sql_parameter_columns(statement: str) -> dict[int, str]:
    """Parameter index (0-based) -> the column it is compared with or inserted into, for
    `col = $1`, `col = %s`, `col = ?`, `col = fn($1)` and `INSERT INTO t (a, b) VALUES ($1,
    $2), ...` (every row)."""
    columns: dict[int, str] = {}
    for slot in _sql_slots(statement):
        if slot.kind == "positional" and slot.column and isinstance(slot.key, int):
            columns.setdefault(slot.key, slot.column)
    return columns


def sql_named_columns(statement: str) -> dict[str, str]:
    """Named parameter (`:name`, `%(name)s`) -> the column it is compared with or inserted
    into."""
    columns: dict[str, str] = {}
    for slot in _sql_slots(statement):
        if slot.kind == "named" and slot.column and isinstance(slot.key, str):
            columns.setdefault(slot.key, slot.column)
    return columns

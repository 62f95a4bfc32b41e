# Redaction: the secrets of recorded spans replaced by placeholders before a recording is
# frozen into a repository. Pure: spans and rules in, spans and a report out; no I/O.
#
# What counts as a secret (README "Redaction"):
#   - the values of headers named Authorization, Proxy-Authorization, Cookie, Set-Cookie, and
#     of headers whose name looks like a secret (api-key, token, secret, password, auth);
#   - the values of JSON keys, form fields and query parameters named like a secret
#     (password, passwd, secret, token, api key, access key, private key, credential, card
#     number, cvv, ...), at any depth, in every body of every span, in `url.query`, the
#     query of `url.full` and `incident.db.params` (a parameter's name is its column in the
#     statement); the password of a URL's user info; attributes named like a secret;
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
# Every body is read as what it is: JSON (parsed, walked, written back only when something
# changed), a form, or text; a base64 body is decoded (and gunzipped or inflated when its
# Content-Encoding says so) and encoded back the same way. A JSON body nested too deep to
# walk is replaced whole. The report counts what was redacted by rule and place, never a value.
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
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

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
)
# ... or is one of these (`auth`, or `pin`, but not `author` or `spinner`)
SECRET_NAMES = ("auth", "pwd", "pin", "otp", "cookie", "session", "sessionid")
# "tokens" counts things (max_tokens, total_tokens), it holds no secret
_SECRET_NAME_RE = re.compile("|".join(w if w != "token" else "token(?!s)" for w in SECRET_WORDS))
_NAME_SEPARATORS_RE = re.compile(r"[^a-z0-9]")
# a run of digits with single spaces or dashes between groups; cards are found inside runs
_DIGIT_RUN_RE = re.compile(r"(?<![0-9])[0-9]+(?:[ -][0-9]+)*(?![0-9])")
_GROUP_RE = re.compile(r"[0-9]+")
_CARD_DIGITS = (13, 19)
_CARD_FIRST_DIGITS = "23456"
_FORM_RE = re.compile(r"[^=&\s]+=[^&\s]*(?:&[^=&\s]+=[^&\s]*)*&?")
# SQL: `column = $1` (also %s, ?, :name, %(name)s) and INSERT's column list
_SQL_PARAM_RE = re.compile(r"\$([0-9]+)|%\(([A-Za-z_]\w*)\)s|%s|\?|(?<![:\w]):([A-Za-z_]\w*)")
_SQL_COMPARED_RE = re.compile(
    r"([A-Za-z_][\w.\"]*)\s*(?:=|<>|!=|<=|>=|<|>|\bLIKE\b|\bILIKE\b|\bIN\b\s*\()\s*$", re.I
)
_SQL_INSERT_RE = re.compile(
    r"\bINSERT\s+INTO\s+[\w.\"]+\s*\(([^)]*)\)\s*VALUES\s*\(([^)]*)\)", re.I | re.S
)
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
            elif header := _HEADER_ATTRIBUTE_RE.fullmatch(key):
                rule = self.rules.header_rule(header.group(1).replace("_", "-"))
                out[key] = self._whole(value, rule, key) if rule else self._text(value, key)
            elif (rule := self.rules.field_rule(key.rpartition(".")[2])) is not None:
                out[key] = self._whole(value, rule, f"attribute {key}")
            else:
                out[key] = self._text(value, _PLACES.get(key, f"attribute {key}"))
        return out

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
            if space and credentials.strip() and scheme.isalpha():
                return f"{scheme} {self._replace(credentials.strip(), rule, place)}"
        if lower == "cookie" and "=" in text:
            return "; ".join(self._cookie(part, rule, place) for part in text.split(";"))
        if lower == "set-cookie" and "=" in text:
            first, semicolon, attributes = text.partition(";")
            return self._cookie(first, rule, place) + semicolon + attributes
        return self._replace(text, rule, place)

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
        Content-Encoding is gzip or deflate; text when UTF-8, else Latin-1."""
        if encoding in ("gzip", "x-gzip", "deflate"):
            inflated = _inflate(data, encoding)
            if inflated is None:
                return self._replace(
                    data.decode("latin-1"), "a compressed body that cannot be read, whole", place
                ).encode("latin-1")
            new = self._body_bytes(inflated, content_type, "", place)
            return data if new == inflated else _deflate(new, encoding)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._text(data.decode("latin-1"), place).encode("latin-1")
        return self._body_text(text, content_type, place).encode("utf-8")

    def _body_text(self, text: str, content_type: str, place: str) -> str:
        if not text:
            return text
        stripped = text.strip()
        if stripped[:1] in ("{", "[") or "json" in content_type:
            try:
                data = json.loads(text)
            except (ValueError, RecursionError):
                data = _NOT_JSON
            if data is not _NOT_JSON and isinstance(data, dict | list):
                if _depth(data) > MAX_JSON_DEPTH:
                    return self._replace(text, "a JSON body nested too deep, whole", place)
                new = self._json(data, (), place)
                return text if new == data else _dump_like(new, text)
        if "x-www-form-urlencoded" in content_type or _FORM_RE.fullmatch(stripped):
            return self._form(text, place)
        return self._text(text, place)

    def _json(self, value: Any, path: tuple[str, ...], place: str) -> Any:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for name, item in value.items():
                here = (*path, name)
                rule = self._json_rule(name, here)
                out[name] = (
                    self._json_secret(item, rule, place) if rule else self._json(item, here, place)
                )
            return out
        if isinstance(value, list):
            out_list = []
            for index, item in enumerate(value):
                here = (*path, str(index))
                rule = self._path_rule(here)
                out_list.append(
                    self._json_secret(item, rule, place) if rule else self._json(item, here, place)
                )
            return out_list
        if isinstance(value, str):
            return self._text(value, place)
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
        if isinstance(params, dict):  # named parameters: their names
            new: Any = self._json(params, (), place)
        elif isinstance(params, list):
            columns = sql_parameter_columns(statement)
            new = []
            for index, value in enumerate(params):
                rule = self.rules.field_rule(columns.get(index, "")) if index in columns else None
                if rule:
                    new.append(self._json_secret(value, rule, place))
                elif isinstance(value, str) and value.strip()[:1] in ("{", "["):
                    new.append(self._body_text(value, "", place))
                else:
                    new.append(self._json(value, (), place))
        else:
            return self._text(raw, place)
        return raw if new == params else json.dumps(new, ensure_ascii=False)


_NOT_JSON = object()


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
    """The Content-Type and Content-Encoding of recorded headers, lower case ("" if none)."""
    try:
        pairs = keys.decode_headers({"h": raw}, "h")
    except ValueError:
        return "", ""
    found = {name.lower(): value.lower().strip() for name, value in pairs}
    return found.get("content-type", ""), found.get("content-encoding", "")


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


def sql_parameter_columns(statement: str) -> dict[int, str]:
    """Parameter index (0-based) -> the column it is compared with or inserted into, for
    `col = $1`, `col = %s`, `col = ?`, `col = :name` and `INSERT INTO t (a, b) VALUES ($1, $2)`."""
    columns: dict[int, str] = {}
    positional = 0
    indexes: dict[int, int] = {}  # character offset of a parameter -> its index
    for match in _SQL_PARAM_RE.finditer(statement):
        if match.group(1):
            index = int(match.group(1)) - 1
        elif match.group(0) in ("%s", "?"):
            index = positional
            positional += 1
        else:  # named: no index in a positional list
            continue
        indexes[match.start()] = index
        compared = _SQL_COMPARED_RE.search(statement[: match.start()])
        if compared:
            columns.setdefault(index, compared.group(1).strip('"').rpartition(".")[2])
    for insert in _SQL_INSERT_RE.finditer(statement):
        names = [n.strip().strip('"') for n in insert.group(1).split(",")]
        offset = insert.start(2)
        values = insert.group(2)
        cursor = 0
        for position, value in enumerate(values.split(",")):
            start = offset + cursor + (len(value) - len(value.lstrip()))
            cursor += len(value) + 1
            if position < len(names) and start in indexes:
                columns[indexes[start]] = names[position]
    return columns

"""Redaction (core/redaction.py): every rule with its twin (what it must leave alone), and
hypothesis properties: a secret planted anywhere never survives, non-secrets are unchanged,
placeholders are consistent, and redacting twice is redacting once."""

from __future__ import annotations

import base64
import gzip
import json
import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_incident.core.redaction import (
    PLACEHOLDER_RE,
    RedactionRules,
    Redactor,
    is_card_number,
    looks_secret,
    looks_secret_header,
    placeholder,
    sql_parameter_columns,
)
from pytest_incident.events.frozen import span_to_row
from pytest_incident.model.recorded import RecordedRequest
from pytest_incident.model.spans import Span, SpanEvent
from tests.spans import client_span, db_span, server_span

KEY = b"k" * 32
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
VISA = "4111111111111111"
MASTERCARD = "5500000000000004"


DEFAULTS = RedactionRules()


def redact(*spans: Span, rules: RedactionRules = DEFAULTS, key: bytes = KEY) -> list[Span]:
    return Redactor(rules, key).redact(spans)


def text_of(spans: list[Span]) -> str:
    return "\n".join(json.dumps(span_to_row(s), sort_keys=True) for s in spans)


def headers(span: Span, key: str = "incident.request.headers") -> Any:
    return json.loads(span.attributes[key])


# -- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["password", "user_password", "passwd", "client_secret", "accessToken", "refresh_token",
     "api_key", "apiKey", "X-API-KEY", "private_key", "credentials", "card_number", "cvv",
     "auth", "pin", "session_id", "csrf-token", "password_hash"],
)  # fmt: skip
def test_names_that_look_like_secrets(name: str) -> None:
    assert looks_secret(name)


@pytest.mark.parametrize(
    "name",
    ["author", "email", "max_tokens", "total_tokens", "idempotency_key", "spinner", "plan",
     "status", "key", "id", "description", "authority"],
)  # fmt: skip
def test_names_that_do_not(name: str) -> None:
    """The twin: names near the secret ones are left alone."""
    assert not looks_secret(name)


@pytest.mark.parametrize(
    ("name", "secret"),
    [("Authorization", True), ("Proxy-Authorization", True), ("Cookie", True),
     ("Set-Cookie", True), ("X-Api-Key", True), ("X-Auth-Token", True), ("X-Auth", True),
     ("X-Client-Secret", True), ("Idempotency-Key", False), ("Content-Type", False),
     ("User-Agent", False), ("WWW-Authenticate", False), ("Stripe-Version", False)],
)  # fmt: skip
def test_header_names(name: str, secret: bool) -> None:
    assert looks_secret_header(name) is secret


# -- card numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [VISA, "4111 1111 1111 1111", "4111-1111-1111-1111", "5500 0000 0000 0004", "378282246310005"],
)
def test_card_numbers_in_text_are_redacted(written: str) -> None:
    span = server_span(**{"incident.request.body": f"pay with {written}, thanks"})
    (out,) = redact(span)
    body = out.attributes["incident.request.body"]
    assert written not in body and re.sub(r"[ -]", "", written) not in body
    assert re.fullmatch(r"pay with redacted-[a-z]{12}, thanks", body)


@pytest.mark.parametrize(
    "digits",
    [
        "4111111111111112",  # Luhn fails
        "1715695260000000000",  # a timestamp in ns: 19 digits, but no card starts with 1
        "41111111111111111111",  # 20 digits: longer than any card
        "411111111111",  # 12 digits
        "2024-05-14 14:11:20",  # a date
    ],
)
def test_numbers_that_are_not_cards_stay(digits: str) -> None:
    span = server_span(**{"incident.request.body": f"ref {digits} end"})
    assert redact(span) == [span]


def test_a_card_beside_another_number_is_found() -> None:
    body = f"qty 2 {VISA[:4]} {VISA[4:8]} {VISA[8:12]} {VISA[12:]} 7"
    (out,) = redact(server_span(**{"incident.request.body": body}))
    assert re.fullmatch(r"qty 2 redacted-[a-z]{12} 7", out.attributes["incident.request.body"])


def test_card_numbers_as_json_numbers() -> None:
    body = json.dumps({"n": int(VISA), "count": 4111})
    (out,) = redact(server_span(**{"incident.request.body": body}))
    data = json.loads(out.attributes["incident.request.body"])
    assert PLACEHOLDER_RE.fullmatch(data["n"]) and data["count"] == 4111


def test_keep_cards_turns_the_rule_off() -> None:
    span = server_span(**{"incident.request.body": f"card {VISA}"})
    assert redact(span, rules=RedactionRules(cards=False)) == [span]


def test_is_card_number() -> None:
    assert is_card_number(VISA) and is_card_number(MASTERCARD)
    assert not is_card_number("٤١١١١١١١١١١١١١١١")  # other scripts' digits are not ASCII


# -- headers -------------------------------------------------------------------------------


def test_authorization_keeps_its_scheme_and_cookies_their_names() -> None:
    span = server_span(
        **{
            "incident.request.headers": json.dumps(
                {
                    "authorization": "Bearer sk_live_51HxYz",
                    "cookie": "session=abc123xyz; theme=dark",
                    "x-api-key": "AKIA0000SECRET",
                    "accept": "application/json",
                }
            ),
            "incident.response.headers": json.dumps(
                {"set-cookie": "session=abc123xyz; Path=/; HttpOnly"}
            ),
        }
    )
    (out,) = redact(span)
    request, response = headers(out), headers(out, "incident.response.headers")
    token = placeholder(KEY, "sk_live_51HxYz")
    assert request["authorization"] == f"Bearer {token}"
    session = placeholder(KEY, "abc123xyz")
    assert request["cookie"] == f"session={session}; theme={placeholder(KEY, 'dark')}"
    assert request["x-api-key"] == placeholder(KEY, "AKIA0000SECRET")
    assert request["accept"] == "application/json"  # the twin
    assert response["set-cookie"] == f"session={session}; Path=/; HttpOnly"


def test_headers_as_a_list_of_pairs_and_repeated_values() -> None:
    raw = json.dumps([["Authorization", "Basic dXNlcjpwYXNz"], ["X-Trace", "1"]])
    (out,) = redact(client_span({"incident.request.headers": raw}))
    basic = f"user:{placeholder(KEY, 'pass')}"  # dXNlcjpwYXNz: user:pass
    assert headers(out) == [
        ["Authorization", f"Basic {base64.b64encode(basic.encode()).decode()}"],
        ["X-Trace", "1"],
    ]
    repeated = json.dumps({"x-api-key": ["first-key-1", "second-key-2"]})
    (out,) = redact(client_span({"incident.request.headers": repeated}))
    assert headers(out)["x-api-key"] == [
        placeholder(KEY, "first-key-1"),
        placeholder(KEY, "second-key-2"),
    ]


def test_extra_headers_and_kept_defaults() -> None:
    raw = json.dumps({"x-session": "s3ss10n-value", "cookie": "a=b", "x-signature": "sig"})
    rules = RedactionRules(headers=("x-session", "x-sig*"), keep_headers=frozenset({"cookie"}))
    (out,) = redact(server_span(**{"incident.request.headers": raw}), rules=rules)
    found = headers(out)
    assert found["cookie"] == "a=b"
    assert PLACEHOLDER_RE.fullmatch(found["x-session"])
    assert PLACEHOLDER_RE.fullmatch(found["x-signature"])


def test_captured_header_attributes_of_the_semantic_conventions() -> None:
    span = server_span(**{"http.request.header.authorization": '["Bearer abcdef123"]'})
    (out,) = redact(span)
    assert "abcdef123" not in text_of([out])


# -- bodies, queries, URLs -----------------------------------------------------------------


def test_json_fields_at_any_depth_in_requests_and_responses() -> None:
    request = {"user": {"email": "a@b.example", "profile": [{"password": "hunter2hunter2"}]}}
    response = {"access_token": "eyJhbGciOi", "token_type": "bearer", "expires_in": 3600}
    span = client_span(
        {
            "url.full": "http://auth.example/token",
            "incident.request.body": json.dumps(request),
            "incident.response.body": json.dumps(response, separators=(",", ":")),
        }
    )
    (out,) = redact(span)
    sent = json.loads(out.attributes["incident.request.body"])
    answered_text = out.attributes["incident.response.body"]
    answered = json.loads(answered_text)
    assert sent["user"]["email"] == "a@b.example"
    assert sent["user"]["profile"][0]["password"] == placeholder(KEY, "hunter2hunter2")
    assert answered["access_token"] == placeholder(KEY, "eyJhbGciOi")
    assert answered["expires_in"] == 3600
    assert ": " not in answered_text  # written back as compact as it came


def test_a_secret_object_is_replaced_whole_and_empty_values_stay() -> None:
    body = json.dumps({"credentials": {"user": "u", "key": "k"}, "password": "", "token": None})
    (out,) = redact(server_span(**{"incident.request.body": body}))
    data = json.loads(out.attributes["incident.request.body"])
    assert PLACEHOLDER_RE.fullmatch(data["credentials"])
    assert data["password"] == "" and data["token"] is None


def test_json_paths_and_extra_fields() -> None:
    body = json.dumps({"customer": {"ssn": "078-05-1120", "dob": "1970-01-01"}, "items": [
        {"serial": "SN-1"}, {"serial": "SN-2"}]})  # fmt: skip
    rules = RedactionRules(fields=("ssn",), json_paths=(("items", "*", "serial"),))
    (out,) = redact(server_span(**{"incident.request.body": body}), rules=rules)
    data = json.loads(out.attributes["incident.request.body"])
    assert PLACEHOLDER_RE.fullmatch(data["customer"]["ssn"])
    assert data["customer"]["dob"] == "1970-01-01"
    assert all(PLACEHOLDER_RE.fullmatch(item["serial"]) for item in data["items"])


def test_form_fields_keep_the_rest_of_the_form_byte_for_byte() -> None:
    body = "amount=4200&currency=usd&client_secret=pi_1_secret_2&receipt_email=a%40b.example"
    (out,) = redact(client_span({"incident.request.body": body}))
    assert out.attributes["incident.request.body"] == (
        "amount=4200&currency=usd&client_secret="
        f"{placeholder(KEY, 'pi_1_secret_2')}&receipt_email=a%40b.example"
    )


def test_queries_and_url_passwords() -> None:
    span = server_span(**{"url.query": "q=shoes&access_token=tok%2Fen&page=2"})
    client = client_span(
        {"url.full": "https://svc:p%40ss@api.example/v1/x?api_key=K-123&page=2#top"}
    )
    out, out_client = redact(span, client)
    assert (
        out.attributes["url.query"] == f"q=shoes&access_token={placeholder(KEY, 'tok/en')}&page=2"
    )
    assert out_client.attributes["url.full"] == (
        f"https://svc:{placeholder(KEY, 'p@ss')}@api.example/v1/x?"
        f"api_key={placeholder(KEY, 'K-123')}&page=2#top"
    )


def test_a_url_without_secrets_is_left_exactly_as_it_was() -> None:
    span = client_span({"url.full": "http://api.example/v1/customers?"})
    assert redact(span) == [span]


def test_a_gzip_body_is_read_and_compressed_again() -> None:
    raw = gzip.compress(json.dumps({"refresh_token": "r3fr3sh-t0k3n", "ok": True}).encode())
    span = client_span(
        {
            "url.full": "http://auth.example/",
            "incident.response.headers": json.dumps({"content-encoding": "gzip"}),
            "incident.response.body": base64.b64encode(raw).decode(),
            "incident.response.body.encoding": "base64",
        }
    )
    (out,) = redact(span)
    body = gzip.decompress(base64.b64decode(out.attributes["incident.response.body"]))
    assert json.loads(body) == {"refresh_token": placeholder(KEY, "r3fr3sh-t0k3n"), "ok": True}
    assert RecordedRequest(out).response_body is not None  # still a decodable body


def test_a_binary_body_keeps_its_bytes_apart_from_card_numbers() -> None:
    data = b"\xff\xfe binary " + VISA.encode() + b" \x00\x01"
    span = server_span(
        **{
            "incident.request.body": base64.b64encode(data).decode(),
            "incident.request.body.encoding": "base64",
        }
    )
    (out,) = redact(span)
    new = base64.b64decode(out.attributes["incident.request.body"])
    assert new.startswith(b"\xff\xfe binary redacted-") and new.endswith(b" \x00\x01")


def test_a_json_body_too_deep_to_walk_is_replaced_whole() -> None:
    body = '{"a": ' * 100 + '{"password": "deep-secret"}' + "}" * 100
    (out,) = redact(server_span(**{"incident.request.body": body}))
    assert PLACEHOLDER_RE.fullmatch(out.attributes["incident.request.body"])


# -- database parameters -------------------------------------------------------------------


def test_sql_parameter_columns() -> None:
    assert sql_parameter_columns(
        "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)"
    ) == {0: "id", 1: "email", 2: "password_hash"}
    assert sql_parameter_columns("UPDATE users SET api_token = %s WHERE email = %s") == {
        0: "api_token",
        1: "email",
    }
    assert sql_parameter_columns("SELECT 1 WHERE u.secret = ? AND id IN (?)") == {
        0: "secret",
        1: "id",
    }


def test_database_parameters_named_by_their_column() -> None:
    span = db_span(
        "INSERT", "users", "committed", params=json.dumps(["u1", "a@b.example", "s3cr3t-hash"])
    )
    statement = "INSERT INTO users (id, email, password_hash) VALUES ($1, $2, $3)"
    span = replace(span, attributes={**span.attributes, "db.query.text": statement})
    (out,) = redact(span)
    assert json.loads(out.attributes["incident.db.params"]) == [
        "u1",
        "a@b.example",
        placeholder(KEY, "s3cr3t-hash"),
    ]


# -- consistency, the sweep, the report ----------------------------------------------------


def test_the_same_secret_gets_the_same_placeholder_everywhere() -> None:
    token = "tok_5f2b9c1e7a"
    inbound = server_span(
        **{
            "incident.request.headers": json.dumps({"authorization": f"Bearer {token}"}),
            "url.query": f"access_token={token}",
        }
    )
    outbound = client_span(
        {
            "url.full": f"http://api.example/x?token={token}",
            "incident.request.body": json.dumps({"token": token, "other": "tok_different1"}),
        }
    )
    out = redact(inbound, outbound)
    expected = placeholder(KEY, token)
    assert headers(out[0])["authorization"] == f"Bearer {expected}"
    assert out[0].attributes["url.query"] == f"access_token={expected}"
    assert out[1].attributes["url.full"] == f"http://api.example/x?token={expected}"
    assert json.loads(out[1].attributes["incident.request.body"])["token"] == expected
    # the twins: another secret, another placeholder; another key, other placeholders
    assert placeholder(KEY, "tok_different1") != expected
    assert redact(inbound, key=b"other")[0] != out[0]


def test_a_secret_found_by_name_is_swept_from_everywhere_else() -> None:
    token = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
    span = server_span(
        **{
            "incident.request.headers": json.dumps({"x-api-key": token}),
            "incident.response.body": f"invalid key {token} (see /keys/{token})",
        }
    )
    log = replace(
        span,
        span_id="1" * 16,
        attributes={},
        status_message=f"rejected {token}",
        events=(SpanEvent(0, "log", {"message": f"key={token}"}),),
    )
    out = redact(span, log)
    assert token not in text_of(out)
    # the twin: a short secret (under 6 characters) is not swept out of other text
    short = server_span(
        **{"incident.request.headers": json.dumps({"x-api-key": "abc"}), "url.path": "/abc"}
    )
    (out_short,) = redact(short)
    assert out_short.attributes["url.path"] == "/abc"


def test_the_report_counts_and_never_shows_a_value() -> None:
    secret = "hunter2-very-secret"
    redactor = Redactor(RedactionRules(), KEY)
    redactor.redact(
        [
            server_span(**{"incident.request.body": json.dumps({"password": secret})}),
            server_span(**{"incident.request.body": f"card {VISA}"}),
        ]
    )
    lines = redactor.report.lines()
    assert lines[0] == "redacted 2 value(s) (the values are not shown):"
    assert any("field password" in line and "request body" in line for line in lines)
    assert any("card number" in line for line in lines)
    assert secret not in "\n".join(lines) and VISA not in "\n".join(lines)


# -- properties ----------------------------------------------------------------------------

SECRET = st.from_regex(r"[A-Z][A-Z0-9]{7,20}[0-9]", fullmatch=True)  # never in the filler
FILLER = st.text(alphabet="abcdefghijklmnopqrstuvwxyz ._-", max_size=20)
SAFE_KEY = st.text(alphabet="abcdefghijklmnoqrsuvwxyz_", min_size=1, max_size=8).filter(
    lambda k: not looks_secret(k)
)
SECRET_FIELDS = st.sampled_from(
    ["password", "client_secret", "api_key", "accessToken", "refresh_token", "cvv"]
)


def _card() -> st.SearchStrategy[str]:
    def finish(body: str) -> str:
        for check in "0123456789":
            if is_card_number(body + check):
                return body + check
        raise AssertionError

    body = st.builds(
        lambda first, rest: first + rest,
        st.sampled_from("23456"),
        st.text(alphabet="0123456789", min_size=14, max_size=14),
    )
    return body.map(finish)


def _group(card: str, separator: str) -> str:
    return separator.join(card[i : i + 4] for i in range(0, len(card), 4))


@st.composite
def _nested(draw: st.DrawFn, inner: Any) -> Any:
    """`inner` under a random path of objects and arrays, beside filler."""
    value = inner
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.booleans()):
            value = {draw(SAFE_KEY): value, "note": draw(FILLER)}
        else:
            value = [draw(FILLER), value]
    return value


@st.composite
def planted(draw: st.DrawFn) -> tuple[list[Span], list[str]]:
    """Spans with secrets planted in every place a rule covers, and those secrets."""
    s = [draw(SECRET) for _ in range(8)]
    card = draw(_card())
    written_card = _group(card, draw(st.sampled_from(["", " ", "-"])))
    field = draw(SECRET_FIELDS)
    body = _nested({field: s[2], "plan": draw(FILLER)})
    inbound = server_span(
        **{
            "incident.request.headers": json.dumps(
                {
                    "authorization": f"Bearer {s[0]}",
                    draw(st.sampled_from(["x-api-key", "x-auth-token", "cookie"])): s[1],
                    "accept": "application/json",
                }
            ),
            "incident.request.body": json.dumps(draw(body)),
            "url.query": f"{draw(SAFE_KEY)}=x&{field}={s[3]}",
            "incident.response.body": f"{draw(FILLER)} {written_card} {draw(FILLER)}",
        }
    )
    outbound = client_span(
        {
            "url.full": f"https://api.example/v1/x?{field}={s[4]}&page=2",
            "incident.request.body": f"amount=1&{field}={s[5]}&{draw(SAFE_KEY)}=y",
            "incident.response.body": json.dumps([{"data": {"password": s[6]}}]),
        },
        span_id="2" * 16,
    )
    database = db_span(
        "UPDATE", "users", "committed", span_id="3" * 16, params=json.dumps([s[7], "a"])
    )
    statement = "UPDATE users SET api_token = $1 WHERE email = $2"
    database = replace(database, attributes={**database.attributes, "db.query.text": statement})
    spans = [inbound, outbound, database]
    return draw(st.permutations(spans)), [*s, card, written_card]


@SETTINGS
@given(planted())
def test_a_planted_secret_never_survives(case: tuple[list[Span], list[str]]) -> None:
    spans, secrets = case
    text = text_of(redact(*spans))
    for secret in secrets:
        assert secret not in text


@SETTINGS
@given(planted(), st.binary(min_size=1, max_size=32))
def test_redaction_is_idempotent(case: tuple[list[Span], list[str]], key: bytes) -> None:
    spans, _ = case
    once = redact(*spans, key=key)
    assert redact(*once, key=key) == once


@SETTINGS
@given(planted())
def test_placeholders_are_consistent_across_spans(case: tuple[list[Span], list[str]]) -> None:
    spans, secrets = case
    out = text_of(redact(*spans))
    for secret in secrets[:8]:
        # every secret appears under its own placeholder, and only that one
        assert placeholder(KEY, secret) in out


JSON_LEAF = st.one_of(
    FILLER,
    st.integers(-(10**12), 10**12),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
)
JSON = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(SAFE_KEY, inner, max_size=4),
    max_leaves=20,
)


@SETTINGS
@given(
    headers_=st.dictionaries(
        st.sampled_from(
            ["accept", "content-type", "user-agent", "x-request-id", "idempotency-key"]
        ),
        FILLER,
    ),
    body=JSON,
    query=st.lists(st.tuples(SAFE_KEY, FILLER.map(lambda t: t.replace(" ", "+"))), max_size=4),
    text=FILLER,
)
def test_non_secrets_are_unchanged(
    headers_: dict[str, str], body: Any, query: list[tuple[str, str]], text: str
) -> None:
    inbound = server_span(
        **{
            "incident.request.headers": json.dumps(headers_),
            "incident.request.body": json.dumps(body),
            "url.query": "&".join(f"{k}={v}" for k, v in query),
            "incident.response.body": text,
        }
    )
    outbound = client_span(
        {"url.full": "http://api.example/v1/x?" + "&".join(f"{k}={v}" for k, v in query)}
    )
    redactor = Redactor(RedactionRules(), KEY)
    assert redactor.redact([inbound, outbound]) == [inbound, outbound]
    assert redactor.report.total == 0

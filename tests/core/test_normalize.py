"""Body canonicalisation, normalizers, and the body/header parts of `match_on`."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from pytest_incident.core.book import ReplayBook
from pytest_incident.core.matching import LiveRequest, MatchRules, differences, nearest
from pytest_incident.core.normalize import canonical_body
from pytest_incident.model.effects import Outcome
from pytest_incident.model.normalizers import (
    NORMALIZED,
    FieldNormalizer,
    HeaderNormalizer,
    PatternNormalizer,
)
from pytest_incident.model.recorded import OutboundCall

from ..spans import outbound_call

API = "https://api.stripe.com"


def recorded(order: int, body: str, headers: str = "", path: str = "/v1/charges") -> OutboundCall:
    attributes = {
        "http.request.method": "POST",
        "url.full": f"{API}{path}",
        "http.response.status_code": "200",
        "incident.request.body": body,
    }
    if headers:
        attributes["incident.request.headers"] = headers
    return outbound_call(order, attributes, duration_ns=1)


def live(
    body: str, headers: tuple[tuple[str, str], ...] = (), path: str = "/v1/charges"
) -> LiveRequest:
    return LiveRequest("https", "api.stripe.com", 443, "POST", path, headers, body.encode())


def test_json_bodies_compare_regardless_of_key_order_and_spacing() -> None:
    assert canonical_body(b'{"b": 1, "a": [1, 2]}') == canonical_body(b'{"a":[1,2],"b":1}')
    assert canonical_body(b'{"a": 1}') != canonical_body(b'{"a": 2}')


def test_form_bodies_compare_regardless_of_field_order() -> None:
    assert canonical_body(b"amount=900&currency=usd") == canonical_body(b"currency=usd&amount=900")
    assert canonical_body(b"amount=900") != canonical_body(b"amount=2900")


def test_field_normalizer_replaces_json_paths_with_wildcards() -> None:
    body = b'{"metadata": {"request_id": "r1"}, "items": [{"id": "x"}, {"id": "y"}]}'
    text = canonical_body(
        body, [FieldNormalizer("metadata.request_id"), FieldNormalizer("items.*.id")]
    )
    assert '"r1"' not in text and '"x"' not in text and '"y"' not in text
    assert text.count(NORMALIZED) == 3


def test_field_normalizer_replaces_form_fields_by_name() -> None:
    one = canonical_body(
        b"amount=900&metadata[request_id]=r1", [FieldNormalizer("metadata[request_id]")]
    )
    two = canonical_body(
        b"metadata[request_id]=r2&amount=900", [FieldNormalizer("metadata[request_id]")]
    )
    assert one == two


def test_pattern_normalizer_replaces_matches_in_text() -> None:
    rule = PatternNormalizer(re.compile(r"\d{13}"))
    assert canonical_body(b"ts=1715695200000 sent", [rule]) == canonical_body(
        b"ts=1715695299999 sent", [rule]
    )


def test_body_part_uses_the_normalizers() -> None:
    call = recorded(0, '{"amount": 900, "idempotency": "k-1"}')
    request = live('{"idempotency": "k-2", "amount": 900}')
    assert differences(request, call, MatchRules(("method", "path", "body"))) == ["body"]
    rules = MatchRules(("method", "path", "body"), (FieldNormalizer("idempotency"),))
    assert differences(request, call, rules) == []


def test_header_part_compares_the_named_header_only() -> None:
    call = recorded(0, "", headers='{"Idempotency-Key": "k-1", "User-Agent": "old"}')
    same_key = live("", (("idempotency-key", "k-1"), ("user-agent", "new")))
    other_key = live("", (("Idempotency-Key", "k-2"),))
    rules = MatchRules(("method", "path", "header:idempotency-key"))
    assert differences(same_key, call, rules) == []
    assert differences(other_key, call, rules) == ["header:idempotency-key"]


def test_miss_shows_a_body_diff_against_the_nearest_call() -> None:
    calls = [recorded(0, '{"amount": 900, "currency": "usd"}'), recorded(1, "{}", path="/v1/x")]
    request = live('{"amount": 2900, "currency": "usd"}')
    rules = MatchRules(("method", "path", "body"))
    best = nearest(request, calls, set(), rules)[0]
    assert best.call.order == 0 and best.differs == ("body",)
    assert '- "amount": 900,' in best.diff and '+ "amount": 2900,' in best.diff
    assert '    - "amount": 900,' in best.describe()  # indented under the call


def test_book_serves_by_body_and_reports_the_diff_on_a_miss() -> None:
    book = ReplayBook(match_on=MatchRules(("method", "path", "body")))
    book.begin([recorded(0, "amount=900"), recorded(1, "amount=2900")])
    assert book.serve(live("amount=2900")).call.order == 1  # type: ignore[union-attr]
    assert book.serve(live("amount=100")).call is None
    effects = book.end()
    assert [e.outcome for e in effects] == [Outcome.SERVED, Outcome.UNMATCHED]
    assert "-amount=900" in effects[1].detail and "+amount=100" in effects[1].detail


def test_binary_bodies_are_compared_byte_for_byte() -> None:
    assert canonical_body(b"\xff\xfe\x00a") != canonical_body(b"\xfe\xff\x00a")
    assert canonical_body(b"\x1f\x8b\x08\x00abc") == canonical_body(b"\x1f\x8b\x08\x00abc")


def test_forms_with_encoded_spaces_stars_and_trailing_ampersands_are_forms() -> None:
    rule = [FieldNormalizer("q")]
    assert canonical_body(b"name=Ada+Lovelace&q=1&", rule) == canonical_body(
        b"q=2&name=Ada+Lovelace", rule
    )
    assert canonical_body(b"filter=a*b&q=1", rule) == canonical_body(b"q=9&filter=a*b", rule)
    assert canonical_body(b"just some text") == "just some text"


def test_a_late_side_effect_is_shown_on_the_next_item_marked_late() -> None:
    from pytest_incident.model.effects import Effect

    book = ReplayBook()
    book.begin([], label="aaaa1111")
    book.end()
    book.add(Effect(Outcome.EMAIL, "mail from a to b", "subject: hi"))  # after it answered
    book.begin([], label="bbbb2222")
    book.add(Effect(Outcome.EMAIL, "mail from c to d", "subject: own"))
    late, own = book.end()
    assert late.late_after == "aaaa1111" and late.detail == "subject: hi"
    assert late.render().endswith("subject: hi  [late: after request aaaa1111]")
    assert own.late_after is None and own.detail == "subject: own"


def test_a_plugin_normalizer_of_any_class_is_used() -> None:
    """One protocol: a third-party normalizer is applied, not silently ignored."""
    from pytest_incident.core.normalize import canonical_body

    class Amounts:
        def normalize_json(self, value: object) -> object:
            return {**value, "amount": "<n>"} if isinstance(value, dict) else value

        def normalize_form(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
            return pairs

        def normalize_text(self, text: str) -> str:
            return text

    assert canonical_body(b'{"amount": 900}', [Amounts()]) == canonical_body(
        b'{"amount": 100}', [Amounts()]
    )
    assert canonical_body(b'{"amount": 900}') != canonical_body(b'{"amount": 100}')


# --- served by content, not by arrival ---------------------------------------------------------

FAN_OUT = [f'{{"charge": {i}, "amount": {100 * (i + 1)}, "key": "k-{i}"}}' for i in range(5)]


@given(st.permutations(range(5)))
def test_concurrent_calls_to_one_url_are_served_by_content_in_any_arrival_order(
    arrival: list[int],
) -> None:
    """Default match_on (no body part): five calls to the same URL, arriving in any order,
    each get the recorded call with their own body."""
    book = ReplayBook(match_on=MatchRules(("method", "path")))
    book.begin([recorded(i, body) for i, body in enumerate(FAN_OUT)])
    served = [book.serve(live(FAN_OUT[i])).call for i in arrival]
    assert [c.order for c in served if c is not None] == arrival


def test_a_body_nearer_another_call_is_served_by_that_one() -> None:
    """Not only exact bodies: a body that changed a little goes to its nearest recording."""
    book = ReplayBook(match_on=MatchRules(("method", "path")))
    book.begin([recorded(0, FAN_OUT[0]), recorded(1, FAN_OUT[1])])
    changed = FAN_OUT[1].replace('"key": "k-1"', '"key": "k-99"')
    assert book.serve(live(changed)).call.order == 1  # type: ignore[union-attr]


def test_calls_with_the_same_body_are_served_in_recorded_order() -> None:
    """Retries: the same body recorded twice (a 500, then a 200) answers in that order."""
    first, second = recorded(0, FAN_OUT[0]), recorded(1, FAN_OUT[0])
    book = ReplayBook(match_on=MatchRules(("method", "path")))
    book.begin([first, second])
    assert [book.serve(live(FAN_OUT[0])).call for _ in range(2)] == [first, second]


def test_equally_near_different_calls_are_reported_as_ambiguous() -> None:
    book = ReplayBook(match_on=MatchRules(("method", "path")))
    book.begin([recorded(0, "amount=100"), recorded(1, "amount=300")])
    reply = book.serve(live("amount=200"))  # as near one as the other
    assert reply.call is None and "ambiguous" in reply.refusal
    [effect] = book.end()
    assert effect.outcome is Outcome.UNMATCHED
    assert effect.detail.startswith("ambiguous: these recorded calls are equally near")
    assert "#0" in effect.detail and "#1" in effect.detail


def test_a_header_normalizer_makes_random_keys_match() -> None:
    """The README's `header:Idempotency-Key` with random keys: normalized, they agree; the
    twin without the normalizer does not."""
    call = recorded(0, "", headers='{"Idempotency-Key": "4f1c-random"}')
    request = live("", (("Idempotency-Key", "9a2e-other"),))
    parts = ("method", "path", "header:idempotency-key")
    assert differences(request, call, MatchRules(parts)) == ["header:idempotency-key"]
    rules = MatchRules(parts, header_normalizers=(HeaderNormalizer("Idempotency-Key"),))
    assert differences(request, call, rules) == []
    partly = HeaderNormalizer("idempotency-key", re.compile(r"[0-9a-f]{4}-"), "<id>-")
    assert partly.normalize_header("Idempotency-Key", "4f1c-random") == "<id>-random"
    assert partly.normalize_header("Other", "4f1c-random") == "4f1c-random"


def test_the_nearest_candidates_are_ranked_by_similarity() -> None:
    """A body mismatch is diffed against the most similar recorded body, not call #0."""
    calls = [recorded(0, '{"plan": "basic", "seats": 1}'), recorded(1, FAN_OUT[3])]
    request = live(FAN_OUT[3].replace("400", "450"))
    best = nearest(request, calls, set(), MatchRules(("method", "path", "body")))[0]
    assert best.call.order == 1
    assert '- "amount": 400,' in best.diff

"""expect.response: the answer now against production's, for requests that succeeded there."""

from __future__ import annotations

import json

from pytest_incident.core.calibration import RouteNoise, noise_between
from pytest_incident.core.responses import Answer, compare_response
from pytest_incident.model.recorded import RecordedRequest
from pytest_incident.model.spec import ResponseMatch

from ..spans import recorded_request

RECORDED_BODY = {"order_id": "u-1", "total": "17.91", "items": [{"id": "i-1", "sku": "MUG"}]}


def recorded(
    status: int = 201, body: object = RECORDED_BODY, content_type: str = "application/json"
) -> RecordedRequest:
    attrs = {"incident.response.headers": json.dumps({"content-type": content_type})}
    if body is not None:
        attrs["incident.response.body"] = body if isinstance(body, str) else json.dumps(body)
    return recorded_request(status=status, **attrs)


def answer(status: int = 201, body: object = RECORDED_BODY, **headers: str) -> Answer:
    pairs = tuple(headers.items()) or (("Content-Type", "application/json"),)
    raw = body if isinstance(body, bytes) else json.dumps(body, indent=2).encode()
    return Answer(status, pairs, raw)


def test_the_same_answer_in_another_spelling_matches() -> None:
    assert compare_response(recorded(), answer(), ResponseMatch()).problems == ()


def test_a_changed_field_fails_with_its_path_and_both_values() -> None:
    now = answer(body={**RECORDED_BODY, "total": 17.91})
    comparison = compare_response(recorded(), now, ResponseMatch())
    assert len(comparison.problems) == 1
    assert "differs from production's in 1 field(s): total" in comparison.problems[0]
    assert comparison.diff == ('total: "17.91" -> 17.91',)


def test_ignored_fields_and_calibrated_noise_are_left_out() -> None:
    now = answer(body={"order_id": "u-2", "total": "17.91", "items": [{"id": "i-9", "sku": "MUG"}]})
    assert compare_response(recorded(), now, ResponseMatch()).problems != ()
    rule = ResponseMatch(ignore=("body:order_id",))
    assert compare_response(recorded(), now, rule, ("body:items.*.id",)).problems == ()
    # the twin: noise of another field does not hide this one
    assert compare_response(recorded(), now, rule, ("body:items.*.sku",)).problems != ()


def test_status_and_chosen_headers_are_compared() -> None:
    problems = compare_response(recorded(), answer(status=200), ResponseMatch()).problems
    assert problems == ("answered 200, production answered 201 (expect.response)",)
    html = answer(**{"Content-Type": "text/html"})
    problems = compare_response(recorded(), html, ResponseMatch()).problems
    assert problems == (
        "header content-type: 'text/html', production sent 'application/json' (expect.response)",
    )
    only_body = ResponseMatch(parts=("body",))
    assert compare_response(recorded(), html, only_body).problems == ()
    ignored = ResponseMatch(ignore=("header:content-type",))
    assert compare_response(recorded(), html, ignored).problems == ()


def test_requests_that_failed_in_production_are_judged_by_resolved_instead() -> None:
    comparison = compare_response(recorded(status=500), answer(status=201), ResponseMatch())
    assert comparison.problems == ()


def test_a_recording_without_the_body_cannot_pass_a_body_comparison() -> None:
    problems = compare_response(recorded(body=None), answer(), ResponseMatch()).problems
    assert problems and "kept no response body" in problems[0]


def test_text_bodies_are_compared_whole_with_a_line_diff() -> None:
    was = recorded(body="hello\nworld\n", content_type="text/plain")
    text = answer(body=b"hello\nthere\n", **{"Content-Type": "text/plain"})
    comparison = compare_response(was, text, ResponseMatch())
    assert "not JSON: compared whole" in comparison.problems[0]
    assert "-world" in comparison.diff and "+there" in comparison.diff
    same = answer(body=b"hello\nworld\n", **{"Content-Type": "text/plain"})
    assert compare_response(was, same, ResponseMatch()).problems == ()
    whole = ResponseMatch(ignore=("body",))
    assert compare_response(was, text, whole).problems == ()


def test_calibration_names_what_differs_between_two_runs() -> None:
    first = Answer(
        201,
        (("Date", "Mon, 1"), ("X-Request-Id", "a"), ("Content-Type", "application/json")),
        json.dumps({"id": "a", "total": 5, "items": [{"id": 1}, {"id": 2}]}).encode(),
    )
    second = Answer(
        201,
        (("Date", "Mon, 2"), ("X-Request-Id", "b"), ("Content-Type", "application/json")),
        json.dumps({"total": 5, "id": "b", "items": [{"id": 3}, {"id": 4}]}).encode(),
    )
    calibration = noise_between(first, second)
    assert calibration.entries == (
        "body:id",
        "body:items.*.id",
        "header:date",
        "header:x-request-id",
    )
    assert calibration.warnings == ()
    assert noise_between(first, first).entries == ()


def test_calibration_takes_text_bodies_whole() -> None:
    calibration = noise_between(Answer(200, (), b"at 10:00"), Answer(200, (), b"at 10:01"))
    assert calibration.entries == ("body",) and calibration.deterministic


def test_learned_noise_is_added_to_what_a_file_held() -> None:
    learned = RouteNoise()
    learned.add("POST /orders", ["body:id"])
    learned.add("GET /health", [])
    known = {"POST /orders": ("header:date",), "GET /old": ("body",)}
    assert learned.merged(known) == {
        "GET /health": [],
        "GET /old": ["body"],
        "POST /orders": ["body:id", "header:date"],
    }


def test_a_hostile_deeply_nested_body_is_compared_whole_without_exhausting_the_stack() -> None:
    deep = b"[" * 50_000 + b"1" + b"]" * 50_000
    was = recorded(body=deep.decode())
    assert compare_response(was, answer(body=deep), ResponseMatch()).problems == ()
    other = deep.replace(b"1", b"2")
    comparison = compare_response(was, answer(body=other), ResponseMatch())
    assert "not JSON: compared whole" in comparison.problems[0]
    assert noise_between(Answer(200, (), deep), Answer(200, (), other)).entries == ("body",)


def test_compressed_answers_are_compared_as_the_client_reads_them() -> None:
    import gzip

    body = json.dumps(RECORDED_BODY).encode()
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    zipped = answer(body=gzip.compress(body, mtime=1), **headers)
    assert compare_response(recorded(), zipped, ResponseMatch()).problems == ()
    changed = gzip.compress(json.dumps({**RECORDED_BODY, "total": "0.00"}).encode(), mtime=2)
    comparison = compare_response(recorded(), answer(body=changed, **headers), ResponseMatch())
    assert comparison.diff == ('total: "17.91" -> "0.00"',)
    # two runs that differ only in the gzip header's time learn nothing
    first = Answer(201, (("Content-Encoding", "gzip"),), gzip.compress(body, mtime=1))
    second = Answer(201, (("Content-Encoding", "gzip"),), gzip.compress(body, mtime=2))
    assert noise_between(first, second).entries == ()


def test_a_body_that_readers_disagree_on_is_compared_whole() -> None:
    duplicate = b'{"order_id": "u-1", "total": "0.00", "total": "17.91", "items": []}'
    comparison = compare_response(recorded(), answer(body=duplicate), ResponseMatch())
    assert comparison.problems and "JSON any more" in comparison.problems[0]
    huge = b'{"total": ' + b"9" * 5000 + b"}"  # more digits than Python's int() takes
    assert compare_response(recorded(), answer(body=huge), ResponseMatch()).problems


def test_a_corrupt_recorded_answer_is_a_problem_not_a_traceback() -> None:
    broken = recorded_request(status=200, **{"incident.response.headers": "{not json"})
    problems = compare_response(broken, answer(status=200), ResponseMatch()).problems
    assert problems == ("the recorded answer cannot be read: span 00f067aa0ba902b7: "
                        "incident.response.headers is not JSON; allowed: a JSON object "
                        "{name: value or [values]} or a list of [name, value] pairs",)  # fmt: skip


def test_repeated_headers_stay_apart_and_noise_never_hides_a_missing_header() -> None:
    rule = ResponseMatch(parts=("header:set-cookie",), ignore=())
    was = recorded_request(status=200, **{
        "incident.response.headers": json.dumps({"set-cookie": ["a=1", "b=2"]})})  # fmt: skip
    joined = Answer(200, (("Set-Cookie", "a=1, b=2"),), b"")
    assert compare_response(was, joined, rule).problems
    apart = Answer(200, (("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")), b"")
    assert compare_response(was, apart, rule).problems == ()
    noisy = ResponseMatch(parts=("header:set-cookie",), ignore=("header:set-cookie",))
    assert compare_response(was, Answer(200, (("Set-Cookie", "c=3"),), b""), noisy).problems == ()
    missing = compare_response(was, Answer(200, (), b""), noisy).problems
    assert missing == ("header set-cookie: none, production sent 'a=1' + 'b=2' (expect.response)",)


def test_a_recording_without_headers_says_so() -> None:
    bare = recorded_request(status=200, **{"incident.response.body": "{}"})
    problems = compare_response(bare, answer(status=200, body={}), ResponseMatch()).problems
    assert problems == (
        "the recording kept no response headers to compare content-type with; record them, "
        "or leave header:content-type out of expect.response.match",
    )


def test_a_run_without_an_answer_or_another_status_teaches_nothing() -> None:
    ok = Answer(201, (("Content-Type", "application/json"),), b'{"id": 1}')
    for other in (Answer(None, (), b""), Answer(409, (), b'{"error": "duplicate"}')):
        calibration = noise_between(ok, other)
        assert calibration.entries == () and not calibration.deterministic
        assert "not deterministic" in calibration.warnings[0]
    assert "no answer" in noise_between(ok, Answer(None, (), b"")).warnings[0]


def test_what_an_entry_cannot_express_is_reported_not_widened() -> None:
    def learn(a: object, b: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
        found = noise_between(Answer(200, (), json.dumps(a).encode()),
                              Answer(200, (), json.dumps(b).encode()))  # fmt: skip
        return found.entries, found.warnings

    entries, warnings = learn({"items": [1, 2]}, {"items": [1, 2, 3]})
    assert entries == () and "items: an array whose length varies" in warnings[0]
    entries, warnings = learn([1], [1, 2])
    assert entries == () and "(the body): an array whose length varies" in warnings[0]
    entries, warnings = learn({"a.b": 1, "*": 1}, {"a.b": 2, "*": 2})
    assert entries == () and all("cannot be named" in w for w in warnings)
    entries, warnings = learn({"x": None}, {"x": "now"})
    assert entries == () and "was null, then string" in warnings[0]
    assert learn({"x": 1, "y": [{"id": 1}]}, {"x": 2, "y": [{"id": 2}]})[0] == (
        "body:x",
        "body:y.*.id",
    )

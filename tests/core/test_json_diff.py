"""The structural JSON diff: every changed field named by its path, nothing else."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from pytest_incident.core.json_diff import ABSENT, Change, diff_json, generalized

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text("abc.", max_size=3), children, max_size=4)
    ),
    max_leaves=20,
)


@given(JSON)
def test_a_value_does_not_differ_from_itself_or_its_round_trip(value: Any) -> None:
    assert diff_json(value, value) == []
    assert diff_json(value, json.loads(json.dumps(value))) == []


@given(JSON, JSON)
def test_values_differ_exactly_when_they_are_not_equal(a: Any, b: Any) -> None:
    same = json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    assert (diff_json(a, b) == []) is same


def test_each_change_is_named_by_its_path() -> None:
    was = {"id": "a", "items": [{"sku": "MUG", "n": 1}, {"sku": "TEE", "n": 2}], "gone": 1}
    now = {"id": "b", "items": [{"sku": "MUG", "n": 1}, {"sku": "CAP", "n": 2}], "new": True}
    assert diff_json(was, now) == [
        Change(("id",), "a", "b"),
        Change(("items", 1, "sku"), "TEE", "CAP"),
        Change(("gone",), 1, ABSENT),
        Change(("new",), ABSENT, True),
    ]
    assert Change(("items", 1, "sku"), "TEE", "CAP").render() == 'items.1.sku: "TEE" -> "CAP"'
    assert Change(("new",), ABSENT, True).render() == "new: (absent) -> true"


def test_types_matter_even_between_numbers_and_nan_equals_nan() -> None:
    assert diff_json({"total": "17.91"}, {"total": 17.91}) == [Change(("total",), "17.91", 17.91)]
    assert diff_json({"n": 1}, {"n": True}) == [Change(("n",), 1, True)]
    assert diff_json({"n": 1}, {"n": 1.0}) == [Change(("n",), 1, 1.0)]  # strict clients care
    assert diff_json({"n": float("nan")}, {"n": float("nan")}) == []


def test_an_ignored_field_still_has_to_be_there_and_of_the_same_kind() -> None:
    was = {"id": "u-1", "total": "5.00"}
    assert diff_json(was, {"id": "u-2", "total": "5.00"}, ["id"]) == []
    assert diff_json(was, {"total": "5.00"}, ["id"]) == [Change(("id",), "u-1", ABSENT)]
    assert diff_json(was, {"id": None, "total": "5.00"}, ["id"]) == [Change(("id",), "u-1", None)]


def test_ignored_paths_and_everything_below_them_are_left_out() -> None:
    was = {"id": 1, "meta": {"at": 1, "by": "x"}, "items": [{"id": 1, "n": 1}, {"id": 2, "n": 2}]}
    now = {"id": 2, "meta": {"at": 2, "by": "y"}, "items": [{"id": 3, "n": 1}, {"id": 4, "n": 5}]}
    assert diff_json(was, now, ["id", "meta", "items.*.id"]) == [Change(("items", 1, "n"), 2, 5)]
    # a pattern names a field only where it is: `id` does not ignore items.*.id
    assert [c.where for c in diff_json(was, now, ["id", "meta"])] == [
        "items.0.id",
        "items.1.id",
        "items.1.n",
    ]


def test_array_indices_generalize_to_any_element() -> None:
    assert generalized(("items", 3, "id")) == "items.*.id"
    assert generalized(()) == "(the body)"

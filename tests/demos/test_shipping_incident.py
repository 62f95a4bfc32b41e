"""The shipping demo incident end to end: each quote fans out concurrent rate calls to one
URL, each with a random Idempotency-Key. The replay answers every call by its content, in
whatever order the calls arrive, so each parcel gets its own recorded price; the random key
is normalized; `expect.response` checks the prices landed on the right parcels."""

from __future__ import annotations

import sys

import pytest

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux"),
    pytest.mark.usefixtures("demo"),
]

SHIPPING = "incidents/2024-08-shipping.yaml"

# A concurrency bug: prices taken in the order the carrier answered, not in parcel order.
COMPLETION_ORDER = """
from concurrent.futures import ThreadPoolExecutor, as_completed

import examples.shipping.app as shipping


def rates(parcels):
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(shipping.rate, parcel) for parcel in parcels]
        return [future.result() for future in as_completed(futures)]


shipping.rates = rates
app = shipping.app
"""


def edit(demo: pytest.Pytester, old: str, new: str) -> None:
    path = demo.path / SHIPPING
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_concurrent_calls_get_their_own_answers_in_any_arrival_order(
    demo: pytest.Pytester,
) -> None:
    for _ in range(2):  # another arrival order each run
        result = demo.runpytest("--incident=2024-08-shipping")
        result.assert_outcomes(passed=5)
        result.stdout.fnmatch_lines(["2024-08-shipping: 5 replayed, 5 passing (2 resolved)"])


def test_the_code_before_the_fix_still_answers_500_for_overweight_parcels(
    demo: pytest.Pytester,
) -> None:
    edit(demo, "examples.shipping.app:app", "examples.shipping.app_before_fix:app")
    result = demo.runpytest("--incident=2024-08-shipping")
    result.assert_outcomes(passed=3, failed=2)
    result.stdout.fnmatch_lines(["status: 500 -> 500   (was -> now)"])


def test_without_the_header_normalizer_the_random_keys_match_nothing(
    demo: pytest.Pytester,
) -> None:
    edit(demo, "    - {header: Idempotency-Key}\n", "    - {pattern: never-matches-anything}\n")
    result = demo.runpytest("--incident=2024-08-shipping")
    result.assert_outcomes(failed=5)
    result.stdout.fnmatch_lines(
        ["*outbound call not in the recording: POST https://api.carrier.example/v1/rates*"]
    )


def test_prices_paired_by_arrival_order_fail_with_the_fields_that_moved(
    demo: pytest.Pytester,
) -> None:
    demo.makepyfile(shipping_completion_order=COMPLETION_ORDER)
    edit(demo, "examples.shipping.app:app", "shipping_completion_order:app")
    result = demo.runpytest("--incident=2024-08-shipping")
    outcomes = result.parseoutcomes()
    # the recorded latencies make the fourth quote's parcels answer far out of order
    assert outcomes.get("failed", 0) >= 1, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*response body differs from production's in * field(s): prices.*",
            "response body, against production's (production -> now):",
            '  prices.*: "*" -> "*"',
        ]
    )

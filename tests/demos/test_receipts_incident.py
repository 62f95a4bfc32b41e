"""The receipts demo incident end to end: stripe SDK and httpx over HTTPS, a receipt email
over STARTTLS and an RQ job, all inside the sandbox, in both directions."""

from __future__ import annotations

import sys

import pytest

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux"),
    pytest.mark.usefixtures("demo"),
]

RECEIPTS = "incidents/2024-06-receipts.yaml"


def test_fixed_checkout_resolves_the_tax_outage(demo: pytest.Pytester) -> None:
    pytest.importorskip("stripe")
    result = demo.runpytest("--incident=2024-06-receipts")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["2024-06-receipts: 8 replayed, 8 passing (3 resolved)"])


def test_checkout_before_the_fix_fails_on_the_tax_outage(demo: pytest.Pytester) -> None:
    pytest.importorskip("stripe")
    yaml = demo.path / RECEIPTS
    yaml.write_text(
        yaml.read_text().replace(
            "examples.receipts.app:app", "examples.receipts.app_before_fix:app"
        )
    )
    result = demo.runpytest("--incident=2024-06-receipts")
    result.assert_outcomes(passed=5, failed=3)
    result.stdout.fnmatch_lines(
        [
            "status: 500 -> 500   (was -> now)",
            "outbound calls:",
            "  served    POST https://api.stripe.com/v1/payment_intents  -> 200 (recorded #0)",
            "  served    GET https://api.tax.example/v1/rates/FR  -> 503 (recorded #1)",
            "2024-06-receipts: 8 replayed, 5 passing, 3 still failing (0 regressed)",
        ]
    )

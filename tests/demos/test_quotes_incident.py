"""The quotes demo incident end to end: an ASGI app (Starlette) served by uvicorn in the
sandbox, its concurrent httpx calls (asyncio.gather; two to one URL, told apart by body)
answered from the recording over HTTPS, in both directions."""

from __future__ import annotations

import sys

import pytest

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux"),
    pytest.mark.usefixtures("demo"),
]

QUOTES = "incidents/2024-08-quotes.yaml"


def test_fixed_quotes_survive_the_carrier_outage(demo: pytest.Pytester) -> None:
    pytest.importorskip("starlette")
    result = demo.runpytest("--incident=2024-08-quotes")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["2024-08-quotes: 8 replayed, 8 passing (3 resolved)"])


def test_quotes_before_the_fix_fail_on_the_carrier_outage(demo: pytest.Pytester) -> None:
    pytest.importorskip("starlette")
    yaml = demo.path / QUOTES
    yaml.write_text(
        yaml.read_text().replace("examples.quotes.app:app", "examples.quotes.app_before_fix:app")
    )
    result = demo.runpytest("--incident=2024-08-quotes")
    result.assert_outcomes(passed=5, failed=3)
    result.stdout.fnmatch_lines(
        [
            "POST /quotes  request *  recorded 2024-08-20 10:07:31.126 UTC",
            '  request body: {"from": "NL", "to": "BE", "weight_grams": 4200}',
            "status: 500 -> 500   (was -> now)",
            "outbound calls:",
            "response body (now): Internal Server Error",
            "2024-08-quotes: 8 replayed, 5 passing, 3 still failing (0 regressed)",
        ]
    )
    output = result.stdout.str()
    # the three calls of each failed request, made at once, arrive in any order
    assert output.count("GET https://api.shipco.example/api/quote?from=") == 3
    assert output.count("-> 503 (recorded #") == 3
    assert output.count("  served    POST https://api.parcelfast.example/v2/rates  -> 200") == 6
    assert "unmatched" not in output

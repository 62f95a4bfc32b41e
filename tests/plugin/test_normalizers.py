"""Normalizers plugins return through pytest_incident_normalizers."""

from __future__ import annotations

import pytest


def test_a_plugin_normalizer_that_is_not_one_is_an_error_naming_it() -> None:
    from pytest_incident.model.errors import ReplayConfigError
    from pytest_incident.nodes import plugin_normalizers

    with pytest.raises(
        ReplayConfigError, match=r"returned 'metadata.id', which is not a Normalizer"
    ):
        plugin_normalizers([["metadata.id"]])


NOT_A_NORMALIZER_PLUGIN = """
import pytest

@pytest.hookimpl
def pytest_incident_normalizers(spec, config):
    return ["metadata.id"]
"""


def test_a_plugin_normalizer_that_is_not_one_fails_the_items_not_the_run(
    demo: pytest.Pytester,
) -> None:
    """Through the real hook: each item of the incident reports the bad contribution; no
    INTERNALERROR, no silently unnormalized matching."""
    from ..conftest import write_incident

    demo.makeconftest(NOT_A_NORMALIZER_PLUGIN)
    write_incident(
        demo,
        "health",
        'select: {routes: ["GET /health"]}\ntarget: {wsgi: "examples.signup.app:app"}\n',
    )
    result = demo.runpytest("--incident=health")
    assert "INTERNALERROR" not in result.stdout.str()
    result.assert_outcomes(failed=2)  # both GET /health requests
    result.stdout.fnmatch_lines(["*returned 'metadata.id', which is not a Normalizer*"])

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

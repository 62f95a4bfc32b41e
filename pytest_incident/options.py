# The plugin's command-line state, resolved once in pytest_configure and kept in
# config.stash (never in globals).
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_incident.model.spec import is_noise_file

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass
class IncidentState:
    names: tuple[str, ...]
    request_ids: tuple[str, ...]
    speed: float
    dirs: tuple[Path, ...]
    isolation: str = "auto"  # --incident-sandbox: runtime.network.Isolation's value
    selected: frozenset[Path] = frozenset()  # the files --incident named (resolved once)
    calibrate: bool = False  # --incident-calibrate: replay each request twice, learn noise

    def is_incident_path(self, path: Path) -> bool:
        """A YAML file under one of the incident directories (not a calibration file)."""
        return (
            path.suffix in YAML_SUFFIXES
            and not is_noise_file(path)
            and any(d in path.parents for d in self.dirs)
        )


state_key = pytest.StashKey[IncidentState]()


def positive_speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise pytest.UsageError(f"--incident-speed: {text!r} is not a number") from None
    if not value > 0 or math.isnan(value):
        raise pytest.UsageError(
            f"--incident-speed must be > 0 (got {text}); use inf to drop recorded latencies"
        )
    return value

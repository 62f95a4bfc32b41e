# The plugin's command-line state, resolved once in pytest_configure and kept in
# config.stash (never in globals).
from __future__ import annotations

import math
import re
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


MIN_SPEED = 0.01  # --incident-speed: recorded latencies at most 100 times as long
MAX_SPEED = 1000.0  # ... at least a thousandth of them; `inf` drops them
_SPEED_RE = re.compile(r"[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?")
_REQUEST_RE = re.compile(r"[0-9a-f]{4,32}")


def incident_speed(text: str) -> float:
    """--incident-speed: a number from MIN_SPEED to MAX_SPEED (ASCII digits), or inf."""
    allowed = f"allowed: a number from {MIN_SPEED:g} to {MAX_SPEED:g}, or inf (no latency)"
    source = text.strip()
    if source.lower() in ("inf", "infinity"):
        return math.inf
    if not _SPEED_RE.fullmatch(source):
        raise pytest.UsageError(f"--incident-speed {text!r} is not a number; {allowed}")
    value = float(source)
    if not MIN_SPEED <= value <= MAX_SPEED:
        raise pytest.UsageError(f"--incident-speed {text} is out of range; {allowed}")
    return value


def request_prefix(text: str) -> str:
    """--incident-request: 4 to 32 hex digits of a trace id, lower-cased."""
    prefix = text.strip().lower()
    if not _REQUEST_RE.fullmatch(prefix):
        raise pytest.UsageError(
            f"--incident-request {text!r}: allowed: 4 to 32 hex digits (0-9, a-f) of a "
            "request's trace id, as the item names show it"
        )
    return prefix

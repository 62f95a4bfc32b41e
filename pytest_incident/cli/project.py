# The project the command line works in: its pyproject.toml (the nearest one at or above the
# working directory) and the redaction rules its [tool.pytest-incident.redact] table sets.
from __future__ import annotations

from pathlib import Path

from pytest_incident.core.redaction import RedactionRules
from pytest_incident.core.redaction_config import rules_from_pyproject
from pytest_incident.model.errors import ConfigFileError

PYPROJECT = "pyproject.toml"
MAX_PYPROJECT_BYTES = 1 << 20


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above `start`, or None."""
    for folder in (start, *start.parents):
        candidate = folder / PYPROJECT
        if candidate.is_file():
            return candidate
    return None


def redaction_rules(start: Path) -> tuple[RedactionRules, Path | None]:
    """The rules of the project around `start` (the defaults without a pyproject.toml) and
    the file they come from; ConfigFileError for a mistake in it, at its line."""
    path = find_pyproject(start)
    if path is None:
        return RedactionRules(), None
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_PYPROJECT_BYTES + 1)
    except OSError as exc:
        raise ConfigFileError(path, 1, f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > MAX_PYPROJECT_BYTES:
        raise ConfigFileError(path, 1, "the file is larger than 1 MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigFileError(path, 1, f"not UTF-8 text (byte {exc.start})") from None
    return rules_from_pyproject(path, text), path

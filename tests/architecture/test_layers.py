"""The layer contracts of pyproject.toml hold, and they catch an upward import."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def lint(project: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--no-cache"],
        cwd=project,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def copy_project(tmp_path: Path) -> Path:
    shutil.copytree(
        ROOT / "pytest_incident",
        tmp_path / "pytest_incident",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_package_keeps_its_layers(tmp_path: Path) -> None:
    result = lint(copy_project(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("model/spans.py", "from pytest_incident.runtime import replay", "layers"),
        ("core/verdict.py", "from pytest_incident.sandbox import policy", "layers"),
        ("model/effects.py", "import yaml", "model: plain values"),
        ("target/harness.py", "import pytest_incident.model.spans", "target: code inside"),
    ],
)
def test_an_upward_import_breaks_a_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    project = copy_project(tmp_path)
    path = project / "pytest_incident" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    result = lint(project)
    assert result.returncode != 0
    assert f"{contract}" in result.stdout and "BROKEN" in result.stdout

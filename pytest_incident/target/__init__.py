# Code that runs INSIDE the target process, beside the user's application. It imports nothing
# of this package (a check in the test suite enforces it) and is run by path: the harness as
# a script, the hooks through PYTHONPATH. This __init__ only tells the runtime where they are.
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
HARNESS = HERE / "harness.py"  # serves a WSGI app: python HARNESS module:app --port N
HOOKS_DIR = HERE / "hooks"  # holds sitecustomize.py (trust the per-run CA, hold schedulers)

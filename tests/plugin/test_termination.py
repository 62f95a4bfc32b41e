"""A run ended by SIGTERM (a CI job cancelled, a timeout) tears its incidents down as Ctrl-C
does: the target and everything it started are gone, and so is the replay's temp directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ..conftest import write_incident

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

PAUSE = """

import pathlib, time
import pytest

CALLS = []

@pytest.fixture
def pause():
    CALLS.append(1)
    if len(CALLS) == 2:  # the first item has started the target
        pathlib.Path("paused").write_text("")
        time.sleep(120)
"""


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def wait_for(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_sigterm_stops_the_target_and_removes_the_temp_directory(demo: pytest.Pytester) -> None:
    demo.makeconftest((demo.path / "conftest.py").read_text() + PAUSE)
    write_incident(
        demo,
        "pausing",
        """
select: {routes: ["GET /health"]}
target: {wsgi: examples.signup.app:app}
usefixtures: [pause]
""",
    )
    tmp = demo.path / "tmp"
    tmp.mkdir()
    log = demo.path / "run.log"
    with log.open("wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "pytest", "--incident=pausing", "-p", "no:cacheprovider"],
            cwd=demo.path,
            env={**os.environ, "TMPDIR": str(tmp)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        assert wait_for(lambda: (demo.path / "paused").exists() or run.poll() is not None, 120)
        assert run.poll() is None, log.read_text()
        (workdir,) = tmp.glob("incident-pausing-*")
        # the target runs, its status file in there
        assert processes_mentioning(str(workdir)), log.read_text()
        run.send_signal(signal.SIGTERM)
        run.wait(60)
    finally:
        run.kill()
        run.wait()
    output = log.read_text()
    assert run.returncode == 128 + signal.SIGTERM, output
    assert "terminated by SIGTERM; incidents torn down" in output
    assert not workdir.exists()
    assert wait_for(lambda: not processes_mentioning(str(workdir)), 10)

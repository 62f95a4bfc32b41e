"""A run ended by SIGTERM (a CI job cancelled, a timeout) tears its incidents down as Ctrl-C
does: the target and everything it started are gone, and so is the replay's temp directory."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
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


XDIST_ENV = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")

# Each process (each xdist worker) pauses at its second item, its target running, and says so.
PAUSE_EACH = """

import os, pathlib, time
import pytest

CALLS = []

@pytest.fixture
def pause():
    CALLS.append(1)
    if len(CALLS) == 2 and not os.environ.get("NO_PAUSE"):
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        pathlib.Path(f"paused-{worker}").write_text("")
        time.sleep(120)
"""

# Closing the replay takes a while (a stub slow to stop), and says when it begins.
SLOW_CLOSE = """

from pytest_incident.runtime import replay as _replay

_close = _replay.IncidentReplay.close

def slow_close(self):
    pathlib.Path("closing").write_text("")
    time.sleep(3)
    _close(self)

_replay.IncidentReplay.close = slow_close
"""


# pytest with SIGINT ignored, as a non-interactive shell starts a command in the background
# (`pytest -n 2 &` in a CI script): xdist's fallback, a SIGINT to workers that do not come
# down, does nothing then
IGNORING_SIGINT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "os.execv(sys.executable, [sys.executable, '-m', 'pytest', *sys.argv[1:]])"
)


class Run:
    """pytest in a subprocess of its own (a process group of its own), its TMPDIR watched."""

    def __init__(
        self,
        project: pytest.Pytester,
        *args: str,
        env: dict[str, str] | None = None,
        background: bool = False,
    ):
        self.project = project
        # short: the syslog sink's socket goes elsewhere (/tmp) under a TMPDIR too long for
        # a unix socket's path, where its directory left behind would go unseen
        self.tmp = Path(tempfile.mkdtemp(prefix="sigterm-", dir="/tmp"))
        self.left: list[Path] = []  # what the run left in its TMPDIR
        self.log = project.path / "run.log"
        base = {k: v for k, v in os.environ.items() if k not in XDIST_ENV}
        with self.log.open("wb") as out:
            pytest_ = ["-c", IGNORING_SIGINT] if background else ["-m", "pytest"]
            self.proc = subprocess.Popen(
                [sys.executable, *pytest_, "-p", "no:cacheprovider", *args],
                cwd=project.path,
                env={**base, "TMPDIR": str(self.tmp), **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_for(self, *names: str) -> None:
        """Until every file `names` exists in the project (the run still going)."""
        ready = wait_for(
            lambda: (
                all((self.project.path / n).exists() for n in names) or self.proc.poll() is not None
            ),
            120,
        )
        assert ready and self.proc.poll() is None, self.output()

    def workdirs(self) -> list[Path]:
        return sorted(self.tmp.glob("incident-*"))

    def terminate(self, group: bool = False) -> None:
        if group:
            os.killpg(self.proc.pid, signal.SIGTERM)
        else:
            self.proc.send_signal(signal.SIGTERM)

    def end(self) -> int:
        try:
            return self.proc.wait(60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            self.left = self.workdirs()
            shutil.rmtree(self.tmp)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def pausing_incident(demo: pytest.Pytester, *conftest: str) -> None:
    demo.makeconftest("".join([(demo.path / "conftest.py").read_text(), PAUSE_EACH, *conftest]))
    write_incident(
        demo,
        "pausing",
        """
select: {routes: ["POST /signup"]}
target: {wsgi: examples.signup.app:app}
usefixtures: [pause]
""",
    )


def assert_torn_down(run: Run, workdirs: list[Path]) -> None:
    output = run.output()
    assert run.proc.returncode == 128 + signal.SIGTERM, output
    assert "terminated by SIGTERM; incidents torn down" in output
    assert "INTERNALERROR" not in output and "Traceback" not in output, output
    assert run.left == [], output  # the replays' and their syslog sinks' directories
    for workdir in workdirs:
        assert wait_for(lambda w=workdir: not processes_mentioning(str(w)), 10)


@pytest.mark.parametrize(
    ("group", "background"),
    [(False, False), (False, True), (True, True)],
    ids=["controller", "controller-in-background", "process-group"],
)
def test_sigterm_to_an_xdist_run_tears_down_every_workers_incidents(
    demo: pytest.Pytester, group: bool, background: bool
) -> None:
    """Sent to the controller alone (docker stop, a kill of the pid CI knows), the SIGTERM is
    passed on to the workers: xdist would only ask them to stop, SIGINT them 5 s later and
    kill them 5 s after that. Sent to the whole group, each worker gets it (twice, then: the
    second does not cut its teardown short)."""
    pausing_incident(demo)
    run = Run(demo, "--incident=pausing", "-n", "2", background=background)
    try:
        run.wait_for("paused-gw0", "paused-gw1")
        workdirs = [w for w in run.workdirs() if w.name.startswith("incident-pausing-")]
        assert len(workdirs) == 2
        assert all(processes_mentioning(str(w)) for w in workdirs)  # both targets run
        run.terminate(group)
    finally:
        run.end()
    assert_torn_down(run, workdirs)


def test_a_second_sigterm_does_not_cut_the_teardown_short(demo: pytest.Pytester) -> None:
    pausing_incident(demo, SLOW_CLOSE)
    run = Run(demo, "--incident=pausing")
    try:
        run.wait_for("paused-main")
        workdirs = run.workdirs()
        run.terminate()
        run.wait_for("closing")
        run.terminate()
    finally:
        run.end()
    assert_torn_down(run, workdirs)


def test_a_sigterm_during_a_teardown_ends_the_run_after_it(demo: pytest.Pytester) -> None:
    """The run's own teardown (the last item done) is not cut short either."""
    pausing_incident(demo, SLOW_CLOSE)
    run = Run(demo, "--incident=pausing", env={"NO_PAUSE": "1"})
    try:
        run.wait_for("closing")
        workdirs = run.workdirs()
        run.terminate()
    finally:
        run.end()
    assert_torn_down(run, workdirs)


def test_a_sigterm_while_the_target_starts(demo: pytest.Pytester) -> None:
    demo.makepyfile(
        slow_start="import pathlib, time\n"
        "pathlib.Path('starting').write_text('')\n"
        "time.sleep(120)\n"
    )
    write_incident(
        demo,
        "slow",
        """
select: {routes: ["GET /health"]}
target: {command: ["{python}", "slow_start.py", "{port}"], ready_timeout: 120s}
""",
    )
    run = Run(demo, "--incident=slow")
    try:
        run.wait_for("starting")
        workdirs = run.workdirs()
        assert any(processes_mentioning("slow_start.py"))
        run.terminate()
    finally:
        run.end()
    assert_torn_down(run, workdirs)
    assert wait_for(lambda: not processes_mentioning(str(demo.path / "slow_start.py")), 10)


def test_a_sigterm_during_collection(demo: pytest.Pytester) -> None:
    demo.makeconftest(
        (demo.path / "conftest.py").read_text()
        + """

import pathlib, time

def pytest_collection_modifyitems(items):
    pathlib.Path("collecting").write_text("")
    time.sleep(120)
"""
    )
    run = Run(demo, "--incident=2024-05-signup")
    try:
        run.wait_for("collecting")
        run.terminate()
    finally:
        run.end()
    assert_torn_down(run, [])


def test_a_conftest_that_handles_sigterm_keeps_its_handler(demo: pytest.Pytester) -> None:
    """Its handler was there first: ours is not installed over it (and the run ends as that
    handler says: here as Ctrl-C would)."""
    pausing_incident(demo)
    demo.makeconftest(
        (demo.path / "conftest.py").read_text()
        + """

import signal

def _handled(signum, frame):
    pathlib.Path("handled").write_text("")
    raise KeyboardInterrupt

signal.signal(signal.SIGTERM, _handled)
"""
    )
    run = Run(demo, "--incident=pausing")
    try:
        run.wait_for("paused-main")
        run.terminate()
    finally:
        run.end()
    output = run.output()
    assert (demo.path / "handled").exists(), output
    assert run.proc.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "terminated by SIGTERM" not in output

# SIGTERM ends a run the way Ctrl-C does: pytest unwinds, so every incident's teardown stops
# its target (and whatever it started) and removes its temporary directory.
#
# Strategy: the default SIGTERM action kills pytest where it stands, leaving the target's temp
# directory behind (the target itself dies with the tracer, which dies with its parent). While
# a session runs, a handler raises pytest's Exit instead; pytest reports it, tears down, and
# exits with 128 + SIGTERM, the status a killed process has. The handler is installed only in
# the main thread and only over the default action, and the previous one is put back at the
# end: a program that handles SIGTERM itself (a runner embedding pytest) keeps its own.
from __future__ import annotations

import signal
import threading
from types import FrameType

import pytest

TERMINATED = 128 + signal.SIGTERM  # the exit status of a run ended by SIGTERM


class Termination:
    """Turns SIGTERM into a clean end of the session (see above)."""

    def __init__(self) -> None:
        self.installed = False

    def _terminate(self, signum: int, frame: FrameType | None) -> None:
        pytest.exit("terminated by SIGTERM; incidents torn down", returncode=TERMINATED)

    def pytest_sessionstart(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, self._terminate)
            self.installed = True

    def pytest_unconfigure(self) -> None:
        if self.installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            self.installed = False

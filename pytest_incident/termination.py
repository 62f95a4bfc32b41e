# SIGTERM ends a run the way Ctrl-C does: pytest unwinds, so every incident's teardown stops
# its target (and whatever it started) and removes its temporary directory.
#
# Strategy: the default SIGTERM action kills pytest where it stands, leaving the target's temp
# directory behind (the target itself dies with the tracer, which dies with its parent). While
# a session runs, a handler raises pytest's Exit instead; pytest reports it, tears down, and
# exits with 128 + SIGTERM, the status a killed process has. The handler is installed only in
# the main thread and only over the default action, and the previous one is put back at the
# end: a program that handles SIGTERM itself (a runner embedding pytest) keeps its own.
#
# Invariants: only the first SIGTERM ends the session; later ones (a second `kill`, the same
# signal sent to the process group and forwarded) leave its teardown alone. A SIGTERM that
# comes while an incident is torn down (`shielded`) ends the session after that teardown, not
# inside it. An xdist controller forwards the SIGTERM to its local workers, which tear their
# own incidents down (xdist would kill them after a timeout, their directories left behind).
from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

TERMINATED = 128 + signal.SIGTERM  # the exit status of a run ended by SIGTERM
WORKER_PID_TIMEOUT_S = 30.0  # for a new xdist worker to say its process id
PLUGIN = "incident-termination"  # its name in pytest's plugin manager


class Termination:
    """Turns SIGTERM into a clean end of the session (see above)."""

    def __init__(self) -> None:
        self.installed = False
        self.received = False  # a SIGTERM came: the session is ending
        self._shields = 0  # teardowns under way that a SIGTERM must not cut short
        self._deferred = False  # a SIGTERM came during one of them
        self.workers: dict[str, int] = {}  # xdist gateway id -> its local worker's pid

    def _terminate(self, signum: int, frame: FrameType | None) -> None:
        if self.received:
            return  # the first one's teardown goes on
        self.received = True
        self._forward()
        if self._shields:
            self._deferred = True
            return
        self._exit()

    def _exit(self) -> None:
        pytest.exit("terminated by SIGTERM; incidents torn down", returncode=TERMINATED)

    @contextlib.contextmanager
    def shield(self) -> Iterator[None]:
        """A teardown a SIGTERM must not interrupt: the session ends after it."""
        self._shields += 1
        try:
            yield
        finally:
            self._shields -= 1
            if self._deferred and not self._shields:
                self._deferred = False
                self._exit()

    def _forward(self) -> None:
        """SIGTERM to the xdist workers still running as this process's children."""
        for pid in self.workers.values():
            if is_child(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

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

    @pytest.hookimpl(optionalhook=True)  # pytest-xdist's, on its controller
    def pytest_xdist_newgateway(self, gateway: Any) -> None:
        spec = gateway.spec
        if not spec.popen or spec.via:  # a worker on another machine: no pid of ours
            return
        with contextlib.suppress(Exception):  # no pid, no forwarding: xdist goes on
            channel = gateway.remote_exec("import os; channel.send(os.getpid())")
            self.workers[str(gateway.id)] = int(channel.receive(WORKER_PID_TIMEOUT_S))

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        self.workers.pop(str(node.gateway.id), None)  # its pid may be reused


def is_child(pid: int) -> bool:
    """`pid` is a live (not yet reaped) child of this process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat[stat.rfind(")") + 2 :].split()
    return len(fields) > 1 and fields[0] != "Z" and int(fields[1]) == os.getpid()


@contextlib.contextmanager
def shielded(config: pytest.Config) -> Iterator[None]:
    """Tear down under the session's Termination shield (see Termination.shield)."""
    termination = config.pluginmanager.get_plugin(PLUGIN)
    if isinstance(termination, Termination):
        with termination.shield():
            yield
    else:
        yield

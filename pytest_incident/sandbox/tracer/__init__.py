# The tracer: runs one target program under ptrace + seccomp and applies a SandboxPolicy at
# every trapped call. Run as its own process: `python -m pytest_incident.sandbox.tracer`
# (__main__.py). loop.py waits on the tracees and dispatches each seccomp stop to the
# handler registered for its syscall (handlers.py); tracee.py reads and writes the tracees.
#
# Nothing outside the sandbox imports this package: the runtime starts the CLI as a
# subprocess and reads its events through pytest_incident.sandbox.events.
from __future__ import annotations

from pytest_incident.sandbox.tracer.handlers import HANDLERS, Context, Handler, register
from pytest_incident.sandbox.tracer.loop import EventLog, Tracer

__all__ = ["HANDLERS", "Context", "EventLog", "Handler", "Tracer", "register"]

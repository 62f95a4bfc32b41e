# The tracer's wait loop: runs one target program under ptrace with the seccomp filter and
# hands every trapped call to the handler registered for it (handlers.py), applying a
# SandboxPolicy at each.
#
# Strategy: fork; the child joins the target's network namespace (when given one), closes
# every inherited descriptor but stdio, asks to be traced, stops itself so options are set
# before it runs anything, sets no_new_privs, installs the filter and execs. The tracer then
# waits on every tracee with one `waitpid(-1, __WALL)` loop and only ever sees seccomp stops for the
# calls the filter traps (plus clone/exec events and signals): everything else runs
# natively, and a tracee is resumed with PTRACE_CONT unless a handler asked to see the
# call's exit (PTRACE_SYSCALL), whose stop goes to the pending continuation.
#
# Invariants: PTRACE_O_EXITKILL ties the target's life to the tracer's (and
# PR_SET_PDEATHSIG, set in __main__, the tracer's to its parent); when the main target
# process exits, or the tracer is told to stop, every remaining tracee is killed and reaped
# before the tracer exits. Events are appended to the events file before the tracee is
# resumed, so a reader that saw the target's answer also sees the events that led to it.
from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import struct
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ptrace.binding import func as pt
from ptrace.error import PtraceError

from pytest_incident.sandbox import netns, seccomp
from pytest_incident.sandbox.events import ExitEvent, SandboxEvent, to_json
from pytest_incident.sandbox.policy import SandboxPolicy
from pytest_incident.sandbox.tracer.handlers import HANDLERS, Context, Handler
from pytest_incident.sandbox.tracer.tracee import (
    ScratchFull,
    Tracees,
    getregs,
    refuse,
    resume,
)
from pytest_incident.sandbox.tracer.unixpeers import UnixPeers

WALL = 0x40000000
PTRACE_EVENT_FORK, PTRACE_EVENT_VFORK, PTRACE_EVENT_CLONE, PTRACE_EVENT_EXEC = 1, 2, 3, 4
PTRACE_EVENT_SECCOMP = 7
OPTIONS = (
    0x01  # TRACESYSGOOD
    | 0x02  # TRACEFORK
    | 0x04  # TRACEVFORK
    | 0x08  # TRACECLONE
    | 0x10  # TRACEEXEC
    | 0x80  # TRACESECCOMP
    | 0x100000  # EXITKILL
)


def _init(argv: Sequence[str], env: dict[str, str]) -> None:
    """PID 1 of the target's PID namespace (traced and confined like the target): start the
    target, reap every orphan, and leave with the target's status, which ends the namespace
    (the kernel kills whatever is left). Never returns."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)  # not the tracer's handlers
    target = os.fork()
    if target == 0:
        try:
            os.execvpe(argv[0], list(argv), env)
        except BaseException as exc:
            os.write(2, f"pytest-incident sandbox: cannot start {argv[0]!r}: {exc}\n".encode())
        finally:
            os._exit(127)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            os._exit(1)
        if pid == target:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


class EventLog:
    """The events file, appended one JSON line per event (one write each)."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, event: SandboxEvent) -> None:
        os.write(self._fd, (to_json(event) + "\n").encode())

    def close(self) -> None:
        os.close(self._fd)


class Tracer:
    def __init__(
        self,
        policy: SandboxPolicy,
        events: EventLog,
        handlers: Mapping[str, Handler] = HANDLERS,
        outside_diag: socket.socket | None = None,
    ) -> None:
        """`outside_diag`: a sock_diag socket of the host's network namespace, when the
        tracer has joined the target's (tracer/unixpeers.py)."""
        self.policy = policy
        self.events = events
        self.memory = Tracees()
        self.ctx = Context(
            policy,
            self.memory,
            events.write,
            unix=UnixPeers(policy.unix_allow, policy.unix_sink, lambda: self.tracees, outside_diag),
        )
        # by syscall number, as seccomp stops report it
        self.handlers: dict[int, Handler] = {seccomp.NR[n]: h for n, h in handlers.items()}
        self.tracees: set[int] = set()
        self.seen_stop: set[int] = set()  # pids whose initial SIGSTOP was swallowed
        self.main_pid = 0
        self.main_status: int | None = None
        self.stopping = False

    # -- start -------------------------------------------------------------------------

    def spawn(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        cwd: str | None,
        netns_fd: int | None = None,
    ) -> int:
        """Start the target; with `netns_fd`, isolated: in that network namespace, under an
        init of its own PID namespace (which the tracer made), with a /proc of its own."""
        program = seccomp.build_program()
        open_max = max(os.sysconf("SC_OPEN_MAX"), 1024)
        pid = os.fork()
        if pid == 0:  # the future target (or, isolated, its init)
            try:
                if netns_fd is not None:
                    netns.enter(netns_fd)
                    for problem in netns.private_proc():
                        os.write(2, f"pytest-incident sandbox: {problem}\n".encode())
                # the target inherits stdio only: not the events log, not a namespace
                os.closerange(3, open_max)
                if cwd:
                    os.chdir(cwd)
                pt.ptrace_traceme()
                os.kill(os.getpid(), signal.SIGSTOP)
                seccomp.confine(program)
                if netns_fd is not None:
                    _init(argv, env)
                os.execvpe(argv[0], list(argv), env)
            except BaseException as exc:
                os.write(2, f"pytest-incident sandbox: cannot start {argv[0]!r}: {exc}\n".encode())
            finally:
                os._exit(127)
        _, status = os.waitpid(pid, WALL)
        if not os.WIFSTOPPED(status):
            raise RuntimeError(f"target did not stop after fork (status {status:#x})")
        pt.ptrace_setoptions(pid, OPTIONS)
        self.main_pid = pid
        self.tracees.add(pid)
        self.seen_stop.add(pid)
        pt.ptrace_cont(pid, 0)
        return pid

    # -- main loop ---------------------------------------------------------------------

    def run(self) -> int:
        while self.tracees:
            try:
                pid, status = os.waitpid(-1, WALL)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            try:
                self._on_status(pid, status)
            except PtraceError as exc:
                if exc.errno != errno.ESRCH:  # ESRCH: the tracee died meanwhile
                    raise
        return self._exit_code()

    def _on_status(self, pid: int, status: int) -> None:
        if os.WIFEXITED(status) or os.WIFSIGNALED(status):
            self._forget(pid)
            if pid == self.main_pid:
                self.main_status = status
                self.kill_all()
            return
        if not os.WIFSTOPPED(status):
            return
        self.tracees.add(pid)
        if self.stopping:  # e.g. a child forked while everything was being killed
            self._kill(pid)
            return
        sig = os.WSTOPSIG(status)
        event = status >> 16
        if sig == signal.SIGTRAP and event == PTRACE_EVENT_SECCOMP:
            self._on_seccomp(pid)
        elif sig == signal.SIGTRAP | 0x80:
            self._on_syscall_exit(pid)
        elif sig == signal.SIGTRAP and event in (
            PTRACE_EVENT_FORK,
            PTRACE_EVENT_VFORK,
            PTRACE_EVENT_CLONE,
        ):
            self.tracees.add(pt.ptrace_geteventmsg(pid))
            pt.ptrace_cont(pid, 0)
        elif sig == signal.SIGTRAP and event == PTRACE_EVENT_EXEC:
            self.memory.close_mem(pid)  # a new address space
            former = pt.ptrace_geteventmsg(pid)  # a non-leader thread took over the pid
            if former != pid:
                self._forget(former)
            pt.ptrace_cont(pid, 0)
        elif sig == signal.SIGSTOP and pid not in self.seen_stop:
            self.seen_stop.add(pid)  # a new tracee's first stop; may precede the clone event
            pt.ptrace_cont(pid, 0)
        else:
            pt.ptrace_cont(pid, sig)  # an ordinary signal: deliver it

    def _forget(self, pid: int) -> None:
        self.tracees.discard(pid)
        self.seen_stop.discard(pid)
        self.ctx.pending.pop(pid, None)
        if self.memory.forget(pid):  # a thread group leader: its descriptors go too
            dgram = self.ctx.redirected_dgram
            for key in [k for k in dgram if k[0] == pid]:
                del dgram[key]

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

    def close(self) -> None:
        """Let go of what the handlers hold (the sock_diag socket)."""
        if self.ctx.unix is not None:
            self.ctx.unix.close()

    def kill_all(self) -> None:
        self.stopping = True
        for pid in list(self.tracees):
            self._kill(pid)

    def _exit_code(self) -> int:
        status = self.main_status
        if status is None:
            code, sig = None, None
        elif os.WIFSIGNALED(status):
            code, sig = None, os.WTERMSIG(status)
        else:
            code, sig = os.WEXITSTATUS(status), None
        self.events.write(ExitEvent(self.main_pid, code, sig, time.monotonic_ns()))
        if sig is not None:
            return 128 + sig
        return code if code is not None else 1

    # -- trapped calls -----------------------------------------------------------------

    def _on_seccomp(self, pid: int) -> None:
        regs = getregs(pid)
        handler = self.handlers.get(regs.orig_rax)
        if handler is None:  # trapped, but nobody asked to see it: run it unchanged
            resume(pid)
            return
        try:
            handler(self.ctx, pid, regs)
        except ScratchFull:
            refuse(pid, regs, errno.ENOBUFS)
        except (OSError, struct.error, ValueError):
            # An unreadable pointer or a malformed structure: the kernel would say EFAULT
            # (or EINVAL); say it without running the call.
            refuse(pid, regs, errno.EFAULT)

    def _on_syscall_exit(self, pid: int) -> None:
        pending = self.ctx.pending.pop(pid, None)
        try:
            if pending is not None:
                pending.on_exit(self.ctx, pid)
        except (OSError, struct.error):
            pass  # the caller's memory went away; nothing to fix up
        pt.ptrace_cont(pid, 0)

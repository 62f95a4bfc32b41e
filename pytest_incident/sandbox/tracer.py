# The tracer: runs one target program under ptrace with the seccomp filter, applying a
# SandboxPolicy at every trapped call. Run as its own process:
#
#     python -m pytest_incident.sandbox.tracer --policy P.json --events E.jsonl -- argv...
#
# Strategy: fork; the child asks to be traced, stops itself so options are set before it
# runs anything, sets no_new_privs, installs the filter and execs. The tracer then waits on
# every tracee with one `waitpid(-1, __WALL)` loop and only ever sees seccomp stops for the
# calls the filter traps (plus clone/exec events and signals). A decision is applied by
# rewriting the address in a scratch area below the red zone (redirect) or by skipping the
# call with orig_rax = -1 and rax = -errno (refuse); refused calls never reach the kernel.
# Datagram sockets redirected to a stub get the original peer written back into recvfrom's
# source address, so resolvers that check who answered accept the stub's reply.
#
# Invariants: PTRACE_O_EXITKILL and PR_SET_PDEATHSIG tie the target's life to the tracer's
# and the tracer's to its parent; when the main target process exits, or the tracer is told
# to stop, every remaining tracee is killed and reaped before the tracer exits. Events are
# appended to the events file before the tracee is resumed, so a reader that saw the
# target's answer also sees the events that led to it.
from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ptrace.binding import func as pt
from ptrace.error import PtraceError

from . import seccomp
from .msghdr import MMSGHDR_SIZE, MSG_LEN_OFFSET, MSGHDR, MsgHdr, refused_control
from .policy import SOCK_DGRAM, Action, Decision, SandboxPolicy, Socket
from .sockaddr import AF_INET, AF_UNSPEC, SockAddr, pack_inet, parse_sockaddr

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
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36
SYS_PIDFD_GETFD = 438
PIDFD_THREAD = os.O_EXCL
RED_ZONE = 128
MAX_SOCKADDR = 128
MAX_CONTROL = 4096
MAX_MMSG = 64  # messages one sendmmsg may send: what the tracer checks (and copies)
SO_DOMAIN = 39
U64 = (1 << 64) - 1


@dataclass
class PendingRecv:
    """A recvfrom on a redirected datagram socket, waiting for its syscall-exit stop."""

    addr_ptr: int
    len_ptr: int
    stub: tuple[str, int]
    original: SockAddr


@dataclass
class PendingRestore:
    """A call whose argument registers now point at private copies: at its exit, put the
    caller's registers back (code may assume the kernel left them alone, and a call that a
    signal restarts must read the caller's buffers again, not a copy the signal frame may
    have overwritten); for sendmmsg, copy msg_len back too."""

    registers: dict[str, int]
    msg_lens: tuple[int, int, int] | None = None  # (copy, original, count)


def _aligned(size: int) -> int:
    return (size + 15) & ~15


class ScratchFull(Exception):
    """More data than the scratch area below a thread's stack pointer may hold."""


class Scratch:
    """Places data below a thread's red zone, top down, 16-byte aligned, at most LIMIT: no
    deeper than a signal frame would reach, so small stacks (coroutines, green threads) are
    not written past their end."""

    LIMIT = 1024

    def __init__(self, rsp: int) -> None:
        self.start = self.top = rsp - RED_ZONE
        self.parts: list[tuple[int, bytes]] = []

    def put(self, data: bytes) -> int:
        self.top = (self.top - len(data)) & ~0xF
        if self.start - self.top > self.LIMIT:
            raise ScratchFull
        self.parts.append((self.top, data))
        return self.top


class EventLog:
    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, event: dict[str, Any]) -> None:
        os.write(self._fd, (json.dumps(event) + "\n").encode())

    def close(self) -> None:
        os.close(self._fd)


class Tracer:
    def __init__(self, policy: SandboxPolicy, events: EventLog) -> None:
        self.policy = policy
        self.events = events
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.tracees: set[int] = set()
        self.seen_stop: set[int] = set()  # pids whose initial SIGSTOP was swallowed
        self.tgid: dict[int, int] = {}
        self.pidfds: dict[int, int] = {}
        self.mem: dict[int, int] = {}  # pid -> open /proc/PID/mem (reopened after exec)
        self.redirected_dgram: dict[tuple[int, int], tuple[SockAddr, tuple[str, int]]] = {}
        self.pending: dict[int, PendingRecv | PendingRestore] = {}
        self.main_pid = 0
        self.main_status: int | None = None
        self.stopping = False

    # -- start -------------------------------------------------------------------------

    def spawn(self, argv: Sequence[str], env: dict[str, str], cwd: str | None) -> int:
        program = seccomp.build_program()
        pid = os.fork()
        if pid == 0:  # the future target
            try:
                if cwd:
                    os.chdir(cwd)
                pt.ptrace_traceme()
                os.kill(os.getpid(), signal.SIGSTOP)
                seccomp.confine(program)
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
            self._close_mem(pid)  # a new address space
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
        self._close_mem(pid)
        self.tracees.discard(pid)
        self.seen_stop.discard(pid)
        self.pending.pop(pid, None)
        if self.tgid.pop(pid, None) == pid:
            fd = self.pidfds.pop(pid, None)
            if fd is not None:
                os.close(fd)
            for key in [k for k in self.redirected_dgram if k[0] == pid]:
                del self.redirected_dgram[key]

    def _kill(self, pid: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)

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
        self.events.write({"event": "exit", "pid": self.main_pid, "code": code, "signal": sig})
        if sig is not None:
            return 128 + sig
        return code if code is not None else 1

    # -- trapped calls -----------------------------------------------------------------

    def _on_seccomp(self, pid: int) -> None:
        regs = pt.ptrace_getregs(pid)
        nr = regs.orig_rax
        try:
            if nr == seccomp.NR["connect"]:
                self._on_address(pid, regs, "connect", regs.rdi, regs.rsi, regs.rdx, "rsi", "rdx")
            elif nr == seccomp.NR["sendto"]:
                self._on_address(pid, regs, "sendto", regs.rdi, regs.r8, regs.r9, "r8", "r9")
            elif nr == seccomp.NR["sendmsg"]:
                self._on_sendmsg(pid, regs)
            elif nr == seccomp.NR["sendmmsg"]:
                self._on_sendmmsg(pid, regs)
            elif nr == seccomp.NR["recvfrom"]:
                self._on_recvfrom(pid, regs)
            else:
                pt.ptrace_cont(pid, 0)
        except ScratchFull:
            self._refuse(pid, regs, errno.ENOBUFS)
        except (OSError, struct.error, ValueError):
            # An unreadable pointer or a malformed structure: the kernel would say EFAULT
            # (or EINVAL); say it without running the call.
            self._refuse(pid, regs, errno.EFAULT)

    def _socket(self, pid: int, fd: int, addr: SockAddr) -> Socket | None:
        """The descriptor's domain and type; None when it is not an open descriptor."""
        info = self._sock_info(pid, fd)
        if info is None:
            return None
        if info == (0, 0):  # pidfd_getfd unavailable: assume the address family, stream
            return Socket(addr.family if addr.is_inet else AF_INET, socket.SOCK_STREAM)
        return Socket(*info)

    def _on_address(
        self,
        pid: int,
        regs: Any,
        call: str,
        fd: int,
        ptr: int,
        length: int,
        ptr_reg: str,
        len_reg: str,
    ) -> None:
        if ptr == 0:
            pt.ptrace_cont(pid, 0)
            return
        raw = self._read(pid, ptr, min(length, MAX_SOCKADDR))
        addr = parse_sockaddr(raw)
        sock = self._socket(pid, fd, addr)
        if sock is None:
            self._refuse(pid, regs, errno.EBADF)
            return
        decision = self.policy.decide(sock, addr, send=call != "connect")
        self._log(pid, call, addr, decision)
        if decision.action is Action.REFUSE:
            self._refuse(pid, regs, decision.errno)
            return
        if sock.is_inet:
            # The kernel reads the address again after we resume; pass it a private copy of
            # what was decided (below the red zone), so a buffer another thread reuses
            # cannot change it between the check and the call.
            new = pack_inet(addr.family, *decision.to) if decision.to else raw
            scratch = Scratch(regs.rsp)
            restore = {ptr_reg: getattr(regs, ptr_reg), len_reg: getattr(regs, len_reg)}
            setattr(regs, ptr_reg, scratch.put(new))
            setattr(regs, len_reg, len(new))
            try:
                self._write_scratch(pid, scratch)
                pt.ptrace_setregs(pid, regs)
            except OSError:
                # No page below the red zone: /proc/PID/mem does not grow a stack, and this
                # call sits at the bottom of one. Rare; fail safe rather than copy.
                if decision.action is Action.DISCARD:
                    self._refuse(pid, regs, errno.ENETUNREACH)  # resolvers tolerate it
                    return
                if decision.action is Action.REDIRECT:
                    self._write(pid, ptr, new[: len(raw)])  # a stream connect's own buffer
            else:
                if decision.action is Action.REDIRECT and decision.to and sock.type == SOCK_DGRAM:
                    self.redirected_dgram[(self._tgid(pid), fd)] = (addr, decision.to)
                self.pending[pid] = PendingRestore(restore)
                pt.ptrace_syscall(pid, 0)
                return
        pt.ptrace_cont(pid, 0)

    def _check_message(
        self, pid: int, sock: Socket, header: MsgHdr
    ) -> tuple[Decision | None, bytes, bytes]:
        """Decide one message of an internet socket: (refusal or None, name, control)."""
        name = b""
        if header.name:
            raw = self._read(pid, header.name, min(header.namelen, MAX_SOCKADDR))
            addr = parse_sockaddr(raw)
            decision = self.policy.decide(sock, addr, send=True)
            self._log(pid, "sendmsg", addr, decision)
            if decision.action is Action.REFUSE:
                return decision, b"", b""
            name = pack_inet(addr.family, *decision.to) if decision.to else raw
        control = b""
        if header.controllen:
            if header.controllen > MAX_CONTROL:
                return Decision(Action.REFUSE, "control data too large", errno=errno.ENOBUFS), \
                    b"", b""  # fmt: skip
            control = self._read(pid, header.control, header.controllen)
            why = refused_control(control)
            if why:
                refusal = Decision(Action.REFUSE, why, errno=errno.EPERM)
                self._log(pid, "sendmsg", SockAddr(sock.domain), refusal, "(control message)")
                return refusal, b"", b""
        return None, name, control

    def _private(self, scratch: Scratch, header: MsgHdr, name: bytes, control: bytes) -> bytes:
        """A copy of `header` pointing at private copies of its name and control data."""
        return header.pointing_at(
            scratch.put(name) if name else 0,
            len(name),
            scratch.put(control) if control else 0,
            len(control),
        ).pack()

    def _inet_sender(self, pid: int, regs: Any) -> Socket | None:
        """The internet socket a sendmsg/sendmmsg writes to; None when the call has been
        settled here (a local socket passes, a closed descriptor fails)."""
        sock = self._socket(pid, regs.rdi, SockAddr(AF_UNSPEC))
        if sock is None:
            self._refuse(pid, regs, errno.EBADF)
            return None
        if not sock.is_inet:
            decision = self.policy.decide(sock, SockAddr(sock.domain), send=True)
            if decision.action is Action.REFUSE:
                self._refuse(pid, regs, decision.errno)
            else:
                pt.ptrace_cont(pid, 0)
            return None
        return sock

    def _on_sendmsg(self, pid: int, regs: Any) -> None:
        header = MsgHdr.unpack(self._read(pid, regs.rsi, MSGHDR.size))
        if header.plain:
            pt.ptrace_cont(pid, 0)
            return
        sock = self._inet_sender(pid, regs)
        if sock is None:
            return
        refusal, name, control = self._check_message(pid, sock, header)
        if refusal is not None:
            self._refuse(pid, regs, refusal.errno)
            return
        scratch = Scratch(regs.rsp)
        restore = {"rsi": regs.rsi}
        regs.rsi = scratch.put(self._private(scratch, header, name, control))
        self._write_scratch(pid, scratch)
        pt.ptrace_setregs(pid, regs)
        self.pending[pid] = PendingRestore(restore)
        pt.ptrace_syscall(pid, 0)

    def _on_sendmmsg(self, pid: int, regs: Any) -> None:
        count = min(regs.rdx, MAX_MMSG)
        raw = self._read(pid, regs.rsi, count * MMSGHDR_SIZE)
        headers = [MsgHdr.unpack(raw[i * MMSGHDR_SIZE :]) for i in range(count)]
        restore = {"rsi": regs.rsi, "rdx": regs.rdx}
        if all(h.plain for h in headers):
            if regs.rdx == count:
                pt.ptrace_cont(pid, 0)
                return
            regs.rdx = count  # only what was checked may be sent
            pt.ptrace_setregs(pid, regs)
            self.pending[pid] = PendingRestore(restore)
            pt.ptrace_syscall(pid, 0)
            return
        sock = self._inet_sender(pid, regs)
        if sock is None:
            return
        checked: list[tuple[MsgHdr, bytes, bytes]] = []
        room = Scratch.LIMIT - 16
        for header in headers:
            refusal, name, control = self._check_message(pid, sock, header)
            if refusal is not None:
                self._refuse(pid, regs, refusal.errno)
                return
            room -= MMSGHDR_SIZE + _aligned(len(name)) + _aligned(len(control))
            if room < 0:
                break  # send fewer: sendmmsg reports how many went
            checked.append((header, name, control))
        if not checked:
            self._refuse(pid, regs, errno.ENOBUFS)
            return
        scratch = Scratch(regs.rsp)
        copies = b"".join(
            self._private(scratch, header, name, control).ljust(MMSGHDR_SIZE, b"\0")
            for header, name, control in checked
        )
        regs.rsi = scratch.put(copies)
        regs.rdx = len(checked)
        self._write_scratch(pid, scratch)
        pt.ptrace_setregs(pid, regs)
        self.pending[pid] = PendingRestore(restore, (regs.rsi, restore["rsi"], len(checked)))
        pt.ptrace_syscall(pid, 0)  # stop at the exit to copy msg_len back

    def _on_recvfrom(self, pid: int, regs: Any) -> None:
        entry = self.redirected_dgram.get((self._tgid(pid), regs.rdi))
        if entry is None or regs.r8 == 0 or regs.r9 == 0:
            pt.ptrace_cont(pid, 0)
            return
        original, stub = entry
        self.pending[pid] = PendingRecv(regs.r8, regs.r9, stub, original)
        pt.ptrace_syscall(pid, 0)  # stop again at the exit to fix the source address

    def _on_syscall_exit(self, pid: int) -> None:
        pending = self.pending.pop(pid, None)
        try:
            if isinstance(pending, PendingRecv):
                self._fix_source(pid, pending)
            elif isinstance(pending, PendingRestore):
                self._restore(pid, pending)
        except (OSError, struct.error):
            pass  # the caller's memory went away; nothing to fix up
        pt.ptrace_cont(pid, 0)

    def _fix_source(self, pid: int, pending: PendingRecv) -> None:
        regs = pt.ptrace_getregs(pid)
        if regs.rax >= 1 << 63:  # failed: -errno
            return
        (length,) = struct.unpack("=I", self._read(pid, pending.len_ptr, 4))
        source = parse_sockaddr(self._read(pid, pending.addr_ptr, min(length, 28)))
        if source.is_inet and (source.ip, source.port) == pending.stub:
            original = pack_inet(source.family, pending.original.ip, pending.original.port)
            self._write(pid, pending.addr_ptr, original[:length])

    def _restore(self, pid: int, pending: PendingRestore) -> None:
        regs = pt.ptrace_getregs(pid)
        if pending.msg_lens is not None and regs.rax < 1 << 63:
            copy, original, count = pending.msg_lens
            for i in range(min(regs.rax, count)):
                offset = i * MMSGHDR_SIZE + MSG_LEN_OFFSET
                self._write(pid, original + offset, self._read(pid, copy + offset, 4))
        for name, value in pending.registers.items():
            setattr(regs, name, value)
        pt.ptrace_setregs(pid, regs)

    def _refuse(self, pid: int, regs: Any, err: int) -> None:
        regs.orig_rax = U64  # -1: skip the call
        regs.rax = (-err) & U64
        pt.ptrace_setregs(pid, regs)
        pt.ptrace_cont(pid, 0)

    def _log(self, pid: int, call: str, addr: SockAddr, decision: Decision, dest: str = "") -> None:
        if not decision.report:
            return
        event: dict[str, Any] = {
            "event": "net",
            "pid": pid,
            "call": call,
            "dest": dest or (addr.endpoint() if addr.host else f"(address family {addr.family})"),
            "action": decision.action.value,
            "reason": decision.reason,
            "t": time.monotonic_ns(),
        }
        if decision.host:
            event["host"] = decision.host
        if decision.to:
            event["to"] = f"{decision.to[0]}:{decision.to[1]}"
        self.events.write(event)

    # -- tracee memory and descriptors -------------------------------------------------

    def _mem(self, pid: int) -> int:
        fd = self.mem.get(pid)
        if fd is None:
            fd = self.mem[pid] = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        return fd

    def _close_mem(self, pid: int) -> None:
        fd = self.mem.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def _read(self, pid: int, address: int, size: int) -> bytes:
        return os.pread(self._mem(pid), size, address)

    def _write(self, pid: int, address: int, data: bytes) -> None:
        os.pwrite(self._mem(pid), data, address)

    def _write_scratch(self, pid: int, scratch: Scratch) -> None:
        for address, data in scratch.parts:
            self._write(pid, address, data)

    def _tgid(self, pid: int) -> int:
        """The thread group of a tracee, read once from /proc (a clone may or may not have
        made a thread, and an exec may have moved it)."""
        tgid = self.tgid.get(pid)
        if tgid is None:
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("Tgid:"):
                        tgid = int(line.split()[1])
                        break
            self.tgid[pid] = tgid = tgid or pid
        return tgid

    def _sock_info(self, pid: int, fd: int) -> tuple[int, int] | None:
        """(SO_DOMAIN, SO_TYPE) of the tracee's descriptor through pidfd_getfd; None when fd
        is not open in the tracee; (0, 0) when descriptors cannot be inspected here."""
        tgid = self._tgid(pid)
        try:
            pidfd = self.pidfds.get(tgid)
            if pidfd is None:
                pidfd = self.pidfds[tgid] = os.pidfd_open(tgid)
        except OSError:
            return (0, 0)
        copy = self.libc.syscall(SYS_PIDFD_GETFD, pidfd, int(fd), 0)
        if copy < 0:
            return None if ctypes.get_errno() == errno.EBADF else (0, 0)
        try:
            return (self._sockopt(copy, SO_DOMAIN), self._sockopt(copy, socket.SO_TYPE))
        finally:
            os.close(copy)

    def _sockopt(self, fd: int, option: int) -> int:
        value = ctypes.c_int(0)
        size = ctypes.c_uint32(ctypes.sizeof(value))
        if self.libc.getsockopt(fd, socket.SOL_SOCKET, option, ctypes.byref(value),
                                ctypes.byref(size)) != 0:  # fmt: skip
            return -1  # not a socket: the kernel will say ENOTSOCK
        return value.value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_incident.sandbox.tracer")
    parser.add_argument("--policy", required=True, type=Path, help="SandboxPolicy JSON file")
    parser.add_argument("--events", required=True, type=Path, help="events file (appended)")
    parser.add_argument("--cwd", default=None)
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    reason = seccomp.supported()
    if reason:
        print(f"pytest-incident sandbox: {reason}", file=sys.stderr)
        return 125
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no same-user access to this process's memory
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if os.getppid() == 1:  # the parent is already gone
        return 125
    policy = SandboxPolicy.from_json(args.policy.read_text())
    events = EventLog(args.events)
    tracer = Tracer(policy, events)

    def stop(signum: int, _frame: object) -> None:
        tracer.kill_all()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        tracer.spawn(args.command, dict(os.environ), args.cwd)
        return tracer.run()
    finally:
        tracer.kill_all()
        events.close()


if __name__ == "__main__":
    sys.exit(main())

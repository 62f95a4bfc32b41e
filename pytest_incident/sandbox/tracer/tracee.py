# Access to the traced processes: their memory through /proc/PID/mem, their registers, the
# scratch area where private copies of checked arguments are placed, the thread group a
# thread belongs to, and what kind of socket a descriptor of theirs is.
#
# Strategy: memory is read and written with pread/pwrite on /proc/PID/mem, opened once per
# tracee and reopened after an exec (a new address space). Private copies go below the red
# zone of the stopped thread, top down, 16-byte aligned and at most Scratch.LIMIT deep: no
# deeper than a signal frame would reach. A descriptor is inspected by copying it into the
# tracer with pidfd_getfd and asking getsockopt for its domain and type; the copy is closed
# at once.
#
# Invariants: only a stopped tracee is read or written; a refused call is skipped
# (orig_rax = -1, rax = -errno) so it never reaches the kernel.
from __future__ import annotations

import ctypes
import errno
import os
import socket
from typing import Any

from ptrace.binding import func as pt

SYS_PIDFD_GETFD = 438
PIDFD_THREAD = os.O_EXCL
RED_ZONE = 128
SO_DOMAIN = 39
U64 = (1 << 64) - 1

# ptrace.binding's `user_regs_struct` (a ctypes structure, untyped): rax, orig_rax, rdi,
# rsi, rdx, r10, r8, r9, rsp... as attributes.
Registers = Any


def aligned(size: int) -> int:
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


def getregs(pid: int) -> Registers:
    return pt.ptrace_getregs(pid)


def setregs(pid: int, regs: Registers) -> None:
    pt.ptrace_setregs(pid, regs)


def resume(pid: int) -> None:
    """Let the call run natively; no stop at its exit."""
    pt.ptrace_cont(pid, 0)


def resume_to_exit(pid: int) -> None:
    """Let the call run and stop again at its exit (for a pending continuation)."""
    pt.ptrace_syscall(pid, 0)


def refuse(pid: int, regs: Registers, err: int) -> None:
    """Skip the call: it returns -err without reaching the kernel."""
    complete(pid, regs, -err)


def complete(pid: int, regs: Registers, result: int) -> None:
    """Skip the call: it returns `result` (-errno on failure), which the tracer made."""
    regs.orig_rax = U64  # -1: skip the call
    regs.rax = result & U64
    pt.ptrace_setregs(pid, regs)
    pt.ptrace_cont(pid, 0)


class Tracees:
    """Memory, thread groups and descriptors of the traced processes, by pid."""

    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.tgids: dict[int, int] = {}
        self.pidfds: dict[int, int] = {}
        self.mem: dict[int, int] = {}  # pid -> open /proc/PID/mem (reopened after exec)

    # -- memory ------------------------------------------------------------------------

    def _mem(self, pid: int) -> int:
        fd = self.mem.get(pid)
        if fd is None:
            fd = self.mem[pid] = os.open(f"/proc/{pid}/mem", os.O_RDWR | os.O_CLOEXEC)
        return fd

    def close_mem(self, pid: int) -> None:
        fd = self.mem.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def read(self, pid: int, address: int, size: int) -> bytes:
        return os.pread(self._mem(pid), size, address)

    def write(self, pid: int, address: int, data: bytes) -> None:
        os.pwrite(self._mem(pid), data, address)

    def write_scratch(self, pid: int, scratch: Scratch) -> None:
        for address, data in scratch.parts:
            self.write(pid, address, data)

    # -- processes and descriptors -----------------------------------------------------

    def forget(self, pid: int) -> bool:
        """Drop what is held for a tracee that is gone; True when it led its thread group
        (whose pidfd is then closed)."""
        self.close_mem(pid)
        fd = self.pidfds.pop(pid, None)
        if fd is not None:
            os.close(fd)
        return self.tgids.pop(pid, None) == pid

    def tgid(self, pid: int) -> int:
        """The thread group of a tracee, read once from /proc (a clone may or may not have
        made a thread, and an exec may have moved it)."""
        tgid = self.tgids.get(pid)
        if tgid is None:
            with open(f"/proc/{pid}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("Tgid:"):
                        tgid = int(line.split()[1])
                        break
            self.tgids[pid] = tgid = tgid or pid
        return tgid

    def _pidfd(self, pid: int) -> int:
        """A pidfd for the thread itself (PIDFD_THREAD), so that its descriptors are looked
        up in its own table: a thread that unshared CLONE_FILES has one apart from its
        leader's. Kernels before 6.9 know only the thread group's: its leader's table."""
        pidfd = self.pidfds.get(pid)
        if pidfd is None:
            try:
                pidfd = os.pidfd_open(pid, PIDFD_THREAD)
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                pidfd = os.pidfd_open(self.tgid(pid))
            self.pidfds[pid] = pidfd
        return pidfd

    def getfd(self, pid: int, fd: int) -> int | None:
        """A copy of the calling thread's descriptor `fd` (pidfd_getfd: the same open file,
        the tracer's to close); None when fd is not open there. OSError when descriptors
        cannot be copied here."""
        copy = self.libc.syscall(SYS_PIDFD_GETFD, self._pidfd(pid), int(fd), 0)
        if copy < 0:
            err = ctypes.get_errno()
            if err == errno.EBADF:
                return None
            raise OSError(err, "pidfd_getfd")
        return int(copy)

    def sock_info(self, pid: int, fd: int) -> tuple[int, int] | None:
        """(SO_DOMAIN, SO_TYPE) of the calling thread's descriptor through pidfd_getfd;
        None when fd is not open there; (0, 0) when descriptors cannot be inspected here."""
        try:
            copy = self.getfd(pid, fd)
        except OSError:
            return (0, 0)
        if copy is None:
            return None
        try:
            return (self._sockopt(copy, SO_DOMAIN), self._sockopt(copy, socket.SO_TYPE))
        finally:
            os.close(copy)

    def domain_of(self, fd: int) -> int:
        """SO_DOMAIN of one of the tracer's own descriptors (-1: not a socket)."""
        return self._sockopt(fd, SO_DOMAIN)

    def _sockopt(self, fd: int, option: int) -> int:
        value = ctypes.c_int(0)
        size = ctypes.c_uint32(ctypes.sizeof(value))
        if self.libc.getsockopt(fd, socket.SOL_SOCKET, option, ctypes.byref(value),
                                ctypes.byref(size)) != 0:  # fmt: skip
            return -1  # not a socket: the kernel will say ENOTSOCK
        return value.value

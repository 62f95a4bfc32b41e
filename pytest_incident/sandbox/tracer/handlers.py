# One handler per trapped syscall, registered by name, and the continuations that finish a
# call at its syscall-exit stop. The loop (loop.py) calls the handler registered for the
# call of each seccomp stop; nothing here waits on a process.
#
# Strategy: a decision is applied by rewriting the address in a scratch area below the red
# zone (redirect) or by skipping the call with orig_rax = -1 and rax = -errno (refuse);
# refused calls never reach the kernel. Whatever the kernel reads after the tracee resumes
# (an address, every msghdr of an internet socket, control data) is a private copy of what
# was checked, so a buffer another thread reuses cannot change it between the check and the
# call, and a call for which no copy can be made is refused, never passed through; the caller's
# registers are put back at the call's exit (PendingRestore). Datagram sockets redirected
# to a stub get the original peer written back into recvfrom's source address
# (PendingRecv), so resolvers that check who answered accept the stub's reply. sendmmsg
# sends at most MAX_MMSG messages, and fewer when their copies do not fit the scratch area:
# only what was checked may be sent.
#
# A local socket's (unix, netlink) connect or send that names an address is made by the
# tracer itself, on its own copy of the descriptor (pidfd_getfd, checked to still be the
# family that was decided on) and, for a unix name, to the socket the name was found to
# reach (unixpeers.py); the target's call is skipped with the result. A filesystem name, an
# address in memory and the descriptor behind a number (another thread can dup2 a unix
# socket over a netlink one) can all change after a check. A local sendmsg/sendmmsg without
# a name gets a private header copy with none, so a sibling thread cannot add one.
#
# Invariants: a handler resumes the tracee exactly once: `resume` (run natively),
# `resume_to_exit` after setting ctx.pending[pid] (stop again at the exit), or `refuse`.
# Events are emitted before the tracee is resumed, so a reader that saw the target's answer
# also sees the events that led to it. A handler that raises ScratchFull, OSError,
# struct.error or ValueError before resuming gets the call refused by the loop (ENOBUFS,
# EFAULT).
#
# Adding a handler: decorate `def handler(ctx: Context, pid: int, regs: Registers) -> None`
# with `@register("name")`; the seccomp filter must also trap that call (RET_TRACE), or the
# handler is never reached. A trapped call with no handler is resumed unchanged.
from __future__ import annotations

import errno
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from pytest_incident.sandbox.events import NetEvent, SandboxEvent
from pytest_incident.sandbox.msghdr import (
    MMSGHDR_SIZE,
    MSG_LEN_OFFSET,
    MSGHDR,
    MsgHdr,
    refused_control,
)
from pytest_incident.sandbox.policy import SOCK_DGRAM, Action, Decision, SandboxPolicy, Socket
from pytest_incident.sandbox.sockaddr import (
    AF_INET,
    AF_NETLINK,
    AF_UNIX,
    AF_UNSPEC,
    SockAddr,
    pack_inet,
    parse_sockaddr,
)
from pytest_incident.sandbox.tracer.tracee import (
    Registers,
    Scratch,
    Tracees,
    aligned,
    complete,
    getregs,
    refuse,
    resume,
    resume_to_exit,
    setregs,
)
from pytest_incident.sandbox.tracer.unixpeers import SOCKADDR_UN_MAX, UnixPeers

MAX_SOCKADDR = 128
MAX_CONTROL = 4096
MAX_MMSG = 64  # messages one sendmmsg may send: what the tracer checks (and copies)
MAX_UNIX_SEND = 1 << 18  # bytes of a named unix send the tracer makes itself
UIO_MAXIOV = 1024
IOVEC = struct.Struct("=QQ")  # base, len


class Pending(Protocol):
    """What to do at a call's syscall-exit stop; the loop resumes the tracee afterwards."""

    def on_exit(self, ctx: Context, pid: int) -> None: ...


@dataclass
class Context:
    """What handlers decide with and act on; owned by the loop, which forgets a tracee's
    entries when it is gone."""

    policy: SandboxPolicy
    tracees: Tracees
    emit: Callable[[SandboxEvent], None]
    pending: dict[int, Pending] = field(default_factory=dict)
    # (tgid, fd) of a datagram socket redirected to a stub -> (original peer, stub)
    redirected_dgram: dict[tuple[int, int], tuple[SockAddr, tuple[str, int]]] = field(
        default_factory=dict
    )
    unix: UnixPeers | None = None  # without it, named unix addresses are refused


class Handler(Protocol):
    """Handles one seccomp stop of its call: `regs` are the stopped thread's registers."""

    def __call__(self, ctx: Context, pid: int, regs: Registers) -> None: ...


HANDLERS: dict[str, Handler] = {}
H = TypeVar("H", bound=Handler)


def register(call: str, registry: dict[str, Handler] = HANDLERS) -> Callable[[H], H]:
    """Decorator: make `handler` the one for syscall `call` (a name in seccomp.NR)."""

    def add(handler: H) -> H:
        if call in registry:
            raise ValueError(f"a handler for {call} is already registered")
        registry[call] = handler
        return handler

    return add


# -- continuations at the syscall exit -------------------------------------------------


@dataclass
class PendingRecv:
    """A recvfrom on a redirected datagram socket, waiting for its syscall-exit stop."""

    addr_ptr: int
    len_ptr: int
    stub: tuple[str, int]
    original: SockAddr

    def on_exit(self, ctx: Context, pid: int) -> None:
        """Write the original peer over the stub's address in recvfrom's source address."""
        regs = getregs(pid)
        if regs.rax >= 1 << 63:  # failed: -errno
            return
        (length,) = struct.unpack("=I", ctx.tracees.read(pid, self.len_ptr, 4))
        source = parse_sockaddr(ctx.tracees.read(pid, self.addr_ptr, min(length, 28)))
        if source.is_inet and (source.ip, source.port) == self.stub:
            original = pack_inet(source.family, self.original.ip, self.original.port)
            ctx.tracees.write(pid, self.addr_ptr, original[:length])


@dataclass
class PendingRestore:
    """A call whose argument registers now point at private copies: at its exit, put the
    caller's registers back (code may assume the kernel left them alone, and a call that a
    signal restarts must read the caller's buffers again, not a copy the signal frame may
    have overwritten); for sendmmsg, copy msg_len back too."""

    registers: dict[str, int]
    msg_lens: tuple[int, int, int] | None = None  # (copy, original, count)

    def on_exit(self, ctx: Context, pid: int) -> None:
        regs = getregs(pid)
        if self.msg_lens is not None and regs.rax < 1 << 63:
            copy, original, count = self.msg_lens
            for i in range(min(regs.rax, count)):
                offset = i * MMSGHDR_SIZE + MSG_LEN_OFFSET
                ctx.tracees.write(pid, original + offset, ctx.tracees.read(pid, copy + offset, 4))
        for name, value in self.registers.items():
            setattr(regs, name, value)
        setregs(pid, regs)


# -- shared by the handlers ------------------------------------------------------------


def _log(
    ctx: Context, pid: int, call: str, addr: SockAddr, decision: Decision, dest: str = ""
) -> None:
    if not decision.report:
        return
    ctx.emit(
        NetEvent(
            pid=pid,
            call=call,
            dest=dest or (addr.endpoint() if addr.host else f"(address family {addr.family})"),
            action=decision.action.value,
            reason=decision.reason,
            t=time.monotonic_ns(),
            host=decision.host,
            to=f"{decision.to[0]}:{decision.to[1]}" if decision.to else "",
        )
    )


def _socket(ctx: Context, pid: int, fd: int, addr: SockAddr) -> Socket | None:
    """The descriptor's domain and type; None when it is not an open descriptor."""
    info = ctx.tracees.sock_info(pid, fd)
    if info is None:
        return None
    if info == (0, 0):  # pidfd_getfd unavailable: assume the address family, stream
        return Socket(addr.family if addr.is_inet else AF_INET, socket.SOCK_STREAM)
    return Socket(*info)


def _on_address(
    ctx: Context,
    pid: int,
    regs: Registers,
    call: str,
    fd: int,
    ptr: int,
    length: int,
    ptr_reg: str,
    len_reg: str,
) -> None:
    if ptr == 0:
        resume(pid)
        return
    raw = ctx.tracees.read(pid, ptr, min(length, MAX_SOCKADDR))
    addr = parse_sockaddr(raw)
    sock = _socket(ctx, pid, fd, addr)
    if sock is None:
        refuse(pid, regs, errno.EBADF)
        return
    if sock.domain in (AF_UNIX, AF_NETLINK):
        data = b""
        if call == "sendto":
            if regs.rdx > MAX_UNIX_SEND:
                refuse(pid, regs, errno.EMSGSIZE)
                return
            data = ctx.tracees.read(pid, regs.rsi, regs.rdx) if regs.rdx else b""
        fits = length <= (SOCKADDR_UN_MAX if sock.domain == AF_UNIX else MAX_SOCKADDR)
        _local_call(ctx, pid, regs, sock, call, fd, raw if fits else None, data, regs.r10)
        return
    decision = ctx.policy.decide(sock, addr, send=call != "connect")
    _log(ctx, pid, call, addr, decision)
    if decision.action is Action.REFUSE:
        refuse(pid, regs, decision.errno)
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
            ctx.tracees.write_scratch(pid, scratch)
            setregs(pid, regs)
        except OSError:
            # No page below the red zone: /proc/PID/mem does not grow a stack, and this
            # call sits at the bottom of one. Rare; without a private copy the kernel would
            # read a buffer another thread can still change, so the call is refused.
            for reg, value in restore.items():
                setattr(regs, reg, value)
            discard = decision.action is Action.DISCARD
            refuse(pid, regs, errno.ENETUNREACH if discard else errno.ENOBUFS)
            return
        else:
            if decision.action is Action.REDIRECT and decision.to and sock.type == SOCK_DGRAM:
                ctx.redirected_dgram[(ctx.tracees.tgid(pid), fd)] = (addr, decision.to)
            ctx.pending[pid] = PendingRestore(restore)
            resume_to_exit(pid)
            return
    resume(pid)


def _check_message(
    ctx: Context, pid: int, sock: Socket, header: MsgHdr
) -> tuple[Decision | None, bytes, bytes]:
    """Decide one message of an internet socket: (refusal or None, name, control)."""
    name = b""
    if header.name:
        raw = ctx.tracees.read(pid, header.name, min(header.namelen, MAX_SOCKADDR))
        addr = parse_sockaddr(raw)
        decision = ctx.policy.decide(sock, addr, send=True)
        _log(ctx, pid, "sendmsg", addr, decision)
        if decision.action is Action.REFUSE:
            return decision, b"", b""
        name = pack_inet(addr.family, *decision.to) if decision.to else raw
    control = b""
    if header.controllen:
        if header.controllen > MAX_CONTROL:
            return Decision(Action.REFUSE, "control data too large", errno=errno.ENOBUFS), \
                b"", b""  # fmt: skip
        control = ctx.tracees.read(pid, header.control, header.controllen)
        why = refused_control(control)
        if why:
            refusal = Decision(Action.REFUSE, why, errno=errno.EPERM)
            _log(ctx, pid, "sendmsg", SockAddr(sock.domain), refusal, "(control message)")
            return refusal, b"", b""
    return None, name, control


def _private(scratch: Scratch, header: MsgHdr, name: bytes, control: bytes) -> bytes:
    """A copy of `header` pointing at private copies of its name and control data."""
    return header.pointing_at(
        scratch.put(name) if name else 0,
        len(name),
        scratch.put(control) if control else 0,
        len(control),
    ).pack()


def _sender(ctx: Context, pid: int, regs: Registers) -> Socket | None:
    """The socket a sendmsg/sendmmsg writes to (internet, unix or netlink); None when the
    call has been settled here (a closed descriptor or another family fails)."""
    sock = _socket(ctx, pid, regs.rdi, SockAddr(AF_UNSPEC))
    if sock is None:
        refuse(pid, regs, errno.EBADF)
        return None
    if not sock.is_inet and sock.domain not in (AF_UNIX, AF_NETLINK):
        decision = ctx.policy.decide(sock, SockAddr(sock.domain), send=True)
        if decision.action is Action.REFUSE:
            refuse(pid, regs, decision.errno)
        else:
            resume(pid)
        return None
    return sock


def _local_call(
    ctx: Context,
    pid: int,
    regs: Registers,
    sock: Socket,
    call: str,
    fd: int,
    raw: bytes | None,
    data: bytes = b"",
    flags: int = 0,
) -> None:
    """A unix or netlink socket's connect (or send of `data`) to the address `raw`, made
    here on the descriptor's own socket (for a unix name: to the socket it reaches, decided
    on), and the target's call skipped with its result. `raw` None: an address longer than
    the family's (the kernel says EINVAL)."""
    if raw is None:
        refuse(pid, regs, errno.EINVAL)
        return
    addr = parse_sockaddr(raw)
    named = sock.domain == AF_UNIX and addr.family == AF_UNIX and len(raw) > 2
    resolved = None
    try:
        address = raw  # nothing named: it dissolves an association or fails, on this copy
        if named:
            if ctx.unix is None:
                refuse(pid, regs, errno.EACCES)
                return
            resolved = ctx.unix.resolve(pid, raw)
            decision = ctx.policy.decide_unix(addr.host, resolved.peer, resolved.error)
            _log(ctx, pid, call, addr, decision)
            if decision.action is Action.REFUSE:
                refuse(pid, regs, decision.errno)
                return
            address = resolved.address(raw)
        copy = ctx.tracees.getfd(pid, fd)
        if copy is not None and ctx.tracees.domain_of(copy) != sock.domain:
            os.close(copy)  # another socket since the look: the call is not made
            refuse(pid, regs, errno.EAGAIN)
            return
        if copy is None or ctx.unix is None:
            refuse(pid, regs, errno.EBADF if copy is None else errno.EACCES)
            return
        try:
            if call == "connect":
                result = ctx.unix.connect(copy, address)
            else:
                result = ctx.unix.sendto(copy, data, flags, address)
        finally:
            os.close(copy)
    finally:
        if resolved is not None:
            resolved.close()
    complete(pid, regs, result)


def _gather(ctx: Context, pid: int, header: MsgHdr) -> bytes | None:
    """The bytes a sendmsg would send (its iovecs, read now); None past MAX_UNIX_SEND."""
    if header.iovlen > UIO_MAXIOV:
        return None
    vectors = ctx.tracees.read(pid, header.iov, header.iovlen * IOVEC.size)
    parts: list[bytes] = []
    total = 0
    for i in range(header.iovlen):
        base, size = IOVEC.unpack_from(vectors, i * IOVEC.size)
        total += size
        if total > MAX_UNIX_SEND:
            return None
        if size:
            parts.append(ctx.tracees.read(pid, base, size))
    return b"".join(parts)


def _local_sendmsg(ctx: Context, pid: int, regs: Registers, sock: Socket, header: MsgHdr) -> None:
    if header.name and header.namelen:
        if header.controllen:  # the tracer sends without the target's descriptors
            refusal = Decision(
                Action.REFUSE, "control data on a unix send that names an address",
                errno=errno.EPERM,
            )  # fmt: skip
            _log(ctx, pid, "sendmsg", SockAddr(sock.domain), refusal, "(control message)")
            refuse(pid, regs, errno.EPERM)
            return
        data = _gather(ctx, pid, header)
        if data is None:
            refuse(pid, regs, errno.EMSGSIZE)
            return
        raw = ctx.tracees.read(pid, header.name, min(header.namelen, MAX_SOCKADDR))
        fits = header.namelen <= (SOCKADDR_UN_MAX if sock.domain == AF_UNIX else MAX_SOCKADDR)
        named = raw if fits else None
        _local_call(ctx, pid, regs, sock, "sendmsg", regs.rdi, named, data, regs.rdx)
        return
    scratch = Scratch(regs.rsp)
    restore = {"rsi": regs.rsi}
    regs.rsi = scratch.put(_nameless(header).pack())
    ctx.tracees.write_scratch(pid, scratch)
    setregs(pid, regs)
    ctx.pending[pid] = PendingRestore(restore)
    resume_to_exit(pid)


def _nameless(header: MsgHdr) -> MsgHdr:
    """A unix message's header with no address (its control data stays the caller's:
    descriptors and credentials passed between the target's own processes)."""
    return header.pointing_at(0, 0, header.control, header.controllen)


# -- the handlers ----------------------------------------------------------------------


@register("connect")
def on_connect(ctx: Context, pid: int, regs: Registers) -> None:
    _on_address(ctx, pid, regs, "connect", regs.rdi, regs.rsi, regs.rdx, "rsi", "rdx")


@register("sendto")
def on_sendto(ctx: Context, pid: int, regs: Registers) -> None:
    _on_address(ctx, pid, regs, "sendto", regs.rdi, regs.r8, regs.r9, "r8", "r9")


@register("sendmsg")
def on_sendmsg(ctx: Context, pid: int, regs: Registers) -> None:
    header = MsgHdr.unpack(ctx.tracees.read(pid, regs.rsi, MSGHDR.size))
    # even a header with no address: the kernel must read the copy that was checked, not
    # the caller's, which another thread could give an address after the check
    sock = _sender(ctx, pid, regs)
    if sock is None:
        return
    if sock.domain in (AF_UNIX, AF_NETLINK):
        _local_sendmsg(ctx, pid, regs, sock, header)
        return
    refusal, name, control = _check_message(ctx, pid, sock, header)
    if refusal is not None:
        refuse(pid, regs, refusal.errno)
        return
    scratch = Scratch(regs.rsp)
    restore = {"rsi": regs.rsi}
    regs.rsi = scratch.put(_private(scratch, header, name, control))
    ctx.tracees.write_scratch(pid, scratch)
    setregs(pid, regs)
    ctx.pending[pid] = PendingRestore(restore)
    resume_to_exit(pid)


@register("sendmmsg")
def on_sendmmsg(ctx: Context, pid: int, regs: Registers) -> None:
    count = min(regs.rdx, MAX_MMSG)
    raw = ctx.tracees.read(pid, regs.rsi, count * MMSGHDR_SIZE)
    headers = [MsgHdr.unpack(raw[i * MMSGHDR_SIZE :]) for i in range(count)]
    restore = {"rsi": regs.rsi, "rdx": regs.rdx}
    sock = _sender(ctx, pid, regs)
    if sock is None:
        return
    if sock.domain in (AF_UNIX, AF_NETLINK):
        _local_sendmmsg(ctx, pid, regs, sock, headers, restore)
        return
    checked: list[tuple[MsgHdr, bytes, bytes]] = []
    room = Scratch.LIMIT - 16
    for header in headers:
        refusal, name, control = _check_message(ctx, pid, sock, header)
        if refusal is not None:
            refuse(pid, regs, refusal.errno)
            return
        room -= MMSGHDR_SIZE + aligned(len(name)) + aligned(len(control))
        if room < 0:
            break  # send fewer: sendmmsg reports how many went
        checked.append((header, name, control))
    if not checked:
        refuse(pid, regs, errno.ENOBUFS)
        return
    scratch = Scratch(regs.rsp)
    copies = b"".join(
        _private(scratch, header, name, control).ljust(MMSGHDR_SIZE, b"\0")
        for header, name, control in checked
    )
    regs.rsi = scratch.put(copies)
    regs.rdx = len(checked)
    ctx.tracees.write_scratch(pid, scratch)
    setregs(pid, regs)
    ctx.pending[pid] = PendingRestore(restore, (regs.rsi, restore["rsi"], len(checked)))
    resume_to_exit(pid)  # stop at the exit to copy msg_len back


def _local_sendmmsg(
    ctx: Context,
    pid: int,
    regs: Registers,
    sock: Socket,
    headers: list[MsgHdr],
    restore: dict[str, int],
) -> None:
    """Unix messages go as private nameless copies; one that names an address is refused
    (connect the socket first, or send them one at a time)."""
    if not headers:
        resume(pid)  # sends nothing
        return
    if any(header.name and header.namelen for header in headers):
        refusal = Decision(Action.REFUSE, "sendmmsg naming local addresses", errno=errno.EPERM)
        _log(ctx, pid, "sendmmsg", SockAddr(sock.domain), refusal, "(local addresses)")
        refuse(pid, regs, errno.EPERM)
        return
    fit = min(len(headers), (Scratch.LIMIT - 16) // MMSGHDR_SIZE)
    if fit == 0:
        refuse(pid, regs, errno.ENOBUFS)
        return
    scratch = Scratch(regs.rsp)
    copies = b"".join(_nameless(h).pack().ljust(MMSGHDR_SIZE, b"\0") for h in headers[:fit])
    regs.rsi = scratch.put(copies)
    regs.rdx = fit
    ctx.tracees.write_scratch(pid, scratch)
    setregs(pid, regs)
    ctx.pending[pid] = PendingRestore(restore, (regs.rsi, restore["rsi"], fit))
    resume_to_exit(pid)


@register("recvfrom")
def on_recvfrom(ctx: Context, pid: int, regs: Registers) -> None:
    entry = ctx.redirected_dgram.get((ctx.tracees.tgid(pid), regs.rdi))
    if entry is None or regs.r8 == 0 or regs.r9 == 0:
        resume(pid)
        return
    original, stub = entry
    ctx.pending[pid] = PendingRecv(regs.r8, regs.r9, stub, original)
    resume_to_exit(pid)  # stop again at the exit to fix the source address

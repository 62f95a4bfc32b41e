# The seccomp-bpf filter that decides which syscalls stop the target for the tracer.
#
# Strategy: everything runs natively except the calls that can name a network destination
# (connect; sendto/sendmsg/sendmmsg with an address; recvfrom that asks for the sender), which
# return SECCOMP_RET_TRACE. Calls that could bypass the tracer are denied outright in BPF:
# non-x86_64 ABIs (int 0x80, x32); sockets other than unix, inet, inet6 and netlink, and raw,
# packet or SCTP ones; IP source routing (IP_OPTIONS, IPv6 routing headers), which sends to a hop
# the policy never saw; io_uring; clone(CLONE_UNTRACED); a seccomp filter with a user-space
# listener (it would outrank the tracer); ptrace, process_vm_writev, pidfd_getfd and bpf.
# clone3 answers ENOSYS (its flags sit behind a pointer BPF cannot read) and glibc falls
# back to clone. Before exec the child also drops the capabilities that could reconfigure
# the network or reach other processes, and enters a Landlock domain, which keeps it from
# ptracing, writing the memory of, or signalling any process outside the sandbox (the
# tracer and pytest included) even as the same user. With no tracer attached a RET_TRACE
# call fails with ENOSYS, so the sandbox fails closed. `build_program` is pure (it returns
# the filter bytes); `confine` and the functions it calls are the only ones that touch the
# process.
from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from collections.abc import Sequence
from dataclasses import dataclass

AUDIT_ARCH_X86_64 = 0xC000003E
X32_SYSCALL_BIT = 0x40000000
CLONE_UNTRACED = 0x00800000
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_NEW_LISTENER = 8
IPPROTO_IP, IP_OPTIONS = 0, 4
IPPROTO_SCTP = 132
IPPROTO_IPV6, IPV6_2292RTHDR, IPV6_2292PKTOPTIONS, IPV6_RTHDR = 41, 5, 6, 57

# x86_64 syscall numbers
NR = {
    "socket": 41,
    "setsockopt": 54,
    "clone": 56,
    "ptrace": 101,
    "process_vm_writev": 311,
    "seccomp": 317,
    "bpf": 321,
    "pidfd_getfd": 438,
    "clone3": 435,
    "connect": 42,
    "sendto": 44,
    "recvfrom": 45,
    "sendmsg": 46,
    "sendmmsg": 307,
    "io_uring_setup": 425,
    "io_uring_enter": 426,
    "io_uring_register": 427,
}
SYSCALL_NAMES = {number: name for name, number in NR.items()}

RET_KILL_PROCESS = 0x80000000
RET_TRAP_TRACE = 0x7FF00000
RET_ALLOW = 0x7FFF0000
RET_ERRNO = 0x00050000

# classic BPF opcodes
LD_W_ABS = 0x20
JEQ_K = 0x15
JGE_K = 0x35
JSET_K = 0x45
AND_K = 0x54
RET_K = 0x06

OFF_NR = 0
OFF_ARCH = 4


def _arg_low(index: int) -> int:
    return 16 + 8 * index


def _arg_high(index: int) -> int:
    return 16 + 8 * index + 4


@dataclass(frozen=True)
class Insn:
    code: int
    k: int = 0
    jt: str | int = 0  # label or relative offset
    jf: str | int = 0
    label: str = ""


def _label(name: str, insn: Insn) -> Insn:
    return Insn(insn.code, insn.k, insn.jt, insn.jf, name)


def assemble(program: Sequence[Insn]) -> bytes:
    """Resolve labels to relative jumps and pack `struct sock_filter` entries."""
    where = {insn.label: i for i, insn in enumerate(program) if insn.label}
    out = bytearray()
    for i, insn in enumerate(program):
        offsets = []
        for target in (insn.jt, insn.jf):
            offset = where[target] - i - 1 if isinstance(target, str) else target
            if not 0 <= offset <= 255:
                raise ValueError(f"jump at {i} must be forward and within 255")
            offsets.append(offset)
        out += struct.pack("=HBBI", insn.code, offsets[0], offsets[1], insn.k & 0xFFFFFFFF)
    return bytes(out)


def build_program() -> bytes:
    AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
    SOCK_RAW, SOCK_PACKET = 3, 10
    denied = ("ptrace", "process_vm_writev", "bpf", "pidfd_getfd")
    program = [
        Insn(LD_W_ABS, OFF_ARCH),
        Insn(JEQ_K, AUDIT_ARCH_X86_64, 0, "kill"),
        Insn(LD_W_ABS, OFF_NR),
        Insn(JGE_K, X32_SYSCALL_BIT, "enosys", 0),
        Insn(JEQ_K, NR["connect"], "trace", 0),
        Insn(JEQ_K, NR["sendmsg"], "trace", 0),
        Insn(JEQ_K, NR["sendmmsg"], "trace", 0),
        Insn(JEQ_K, NR["sendto"], "addr_arg4", 0),
        Insn(JEQ_K, NR["recvfrom"], "addr_arg4", 0),
        Insn(JEQ_K, NR["socket"], "socket", 0),
        Insn(JEQ_K, NR["setsockopt"], "setsockopt", 0),
        Insn(JEQ_K, NR["clone"], "clone", 0),
        Insn(JEQ_K, NR["clone3"], "enosys", 0),  # flags unreadable in BPF; glibc falls back
        Insn(JEQ_K, NR["seccomp"], "seccomp", 0),
        *(Insn(JEQ_K, NR[name], "eperm", 0) for name in denied),
        Insn(JEQ_K, NR["io_uring_setup"], "enosys", 0),
        Insn(JEQ_K, NR["io_uring_enter"], "enosys", 0),
        Insn(JEQ_K, NR["io_uring_register"], "enosys", 0),
        _label("allow", Insn(RET_K, RET_ALLOW)),
        # sendto/recvfrom stop only when they carry an address pointer (argument 4)
        _label("addr_arg4", Insn(LD_W_ABS, _arg_low(4))),
        Insn(JEQ_K, 0, 0, "trace"),
        Insn(LD_W_ABS, _arg_high(4)),
        Insn(JEQ_K, 0, "allow_end", "trace"),
        # socket(): unix, netlink, and non-raw internet sockets only
        _label("socket", Insn(LD_W_ABS, _arg_low(0))),
        Insn(JEQ_K, AF_UNIX, "allow_end", 0),
        Insn(JEQ_K, AF_NETLINK, "allow_end", 0),
        Insn(JEQ_K, AF_INET, "socket_type", 0),
        Insn(JEQ_K, AF_INET6, "socket_type", "eperm"),
        _label("socket_type", Insn(LD_W_ABS, _arg_low(1))),
        Insn(AND_K, 0xF),
        Insn(JEQ_K, SOCK_RAW, "eperm", 0),
        Insn(JEQ_K, SOCK_PACKET, "eperm", 0),
        Insn(LD_W_ABS, _arg_low(2)),  # SCTP can associate through setsockopt, not connect
        Insn(JEQ_K, IPPROTO_SCTP, "eperm", "allow_end"),
        # setsockopt(): no IP source routing
        _label("setsockopt", Insn(LD_W_ABS, _arg_low(1))),
        Insn(JEQ_K, IPPROTO_IP, "ip_option", 0),
        Insn(JEQ_K, IPPROTO_IPV6, "ipv6_option", "allow_end"),
        _label("ip_option", Insn(LD_W_ABS, _arg_low(2))),
        Insn(JEQ_K, IP_OPTIONS, "eperm", "allow_end"),
        _label("ipv6_option", Insn(LD_W_ABS, _arg_low(2))),
        Insn(JEQ_K, IPV6_RTHDR, "eperm", 0),
        Insn(JEQ_K, IPV6_2292RTHDR, "eperm", 0),
        Insn(JEQ_K, IPV6_2292PKTOPTIONS, "eperm", "allow_end"),
        # clone(): CLONE_UNTRACED would start a process the tracer never sees
        _label("clone", Insn(LD_W_ABS, _arg_low(0))),
        Insn(JSET_K, CLONE_UNTRACED, "eperm", "allow_end"),
        # seccomp(): a filter with a listener answers before the tracer does
        _label("seccomp", Insn(LD_W_ABS, _arg_low(0))),
        Insn(JEQ_K, SECCOMP_SET_MODE_FILTER, 0, "allow_end"),
        Insn(LD_W_ABS, _arg_low(1)),
        Insn(JSET_K, SECCOMP_FILTER_FLAG_NEW_LISTENER, "eperm", "allow_end"),
        _label("trace", Insn(RET_K, RET_TRAP_TRACE)),
        _label("allow_end", Insn(RET_K, RET_ALLOW)),  # BPF jumps only forward
        _label("eperm", Insn(RET_K, RET_ERRNO | errno.EPERM)),
        _label("enosys", Insn(RET_K, RET_ERRNO | errno.ENOSYS)),
        _label("kill", Insn(RET_K, RET_KILL_PROCESS)),
    ]
    return assemble(program)


class SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2


def supported() -> str | None:
    """None when the sandbox can run here, else the reason it cannot."""
    if platform.system() != "Linux":
        return "the sandbox needs Linux (ptrace and seccomp-bpf)"
    if platform.machine() != "x86_64":
        return f"the sandbox supports x86_64 only, not {platform.machine()}"
    return None


PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
# CAP_NET_ADMIN, CAP_NET_RAW, CAP_SYS_MODULE, CAP_SYS_PTRACE, CAP_SYS_ADMIN, CAP_BPF
DROPPED_CAPABILITIES = (12, 13, 16, 19, 21, 39)


def drop_capabilities() -> None:
    """Remove what could reconfigure the network or reach other processes from everything
    exec'd from here on (a root target regains only its bounding set at exec)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    for capability in DROPPED_CAPABILITIES:
        libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)  # EPERM/EINVAL: nothing to drop


SYS_LANDLOCK_CREATE_RULESET, SYS_LANDLOCK_RESTRICT_SELF = 444, 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_ACCESS_FS_MAKE_BLOCK = 1 << 11
LANDLOCK_SCOPE_SIGNAL = 1 << 1


def enter_landlock_domain() -> int:
    """Put this process (and what it execs) in a Landlock domain of its own; returns the
    Landlock ABI used, 0 when the kernel has none. Any domain confines ptrace and
    /proc/PID/mem to processes inside it; from ABI 6 signals are confined too. The only file
    access it handles is creating block devices. Needs no_new_privs."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, 0, LANDLOCK_CREATE_RULESET_VERSION)
    if abi < 1:
        return 0
    fields = [LANDLOCK_ACCESS_FS_MAKE_BLOCK]  # handled_access_fs
    if abi >= 4:
        fields.append(0)  # handled_access_net
    if abi >= 6:
        fields.append(LANDLOCK_SCOPE_SIGNAL)  # scoped
    attr = ctypes.create_string_buffer(struct.pack(f"={len(fields)}Q", *fields))
    ruleset = libc.syscall(SYS_LANDLOCK_CREATE_RULESET, attr, len(fields) * 8, 0)
    if ruleset < 0:
        return 0
    try:
        if libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            return 0
    finally:
        os.close(ruleset)
    return int(abi)


def confine(program: bytes) -> None:
    """Everything the child does between its SIGSTOP and exec: drop capabilities, set
    no_new_privs, enter a Landlock domain, load `program`."""
    drop_capabilities()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    enter_landlock_domain()
    install(program)


def install(program: bytes) -> None:
    """Set no_new_privs and load `program` for this process and everything it starts."""
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_SECCOMP): {os.strerror(err)}")

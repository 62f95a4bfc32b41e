"""The seccomp-bpf program, run by a tiny classic-BPF interpreter (nothing is installed)."""

from __future__ import annotations

import errno
import struct

import pytest

from pytest_incident.sandbox.seccomp import (
    AND_K,
    AUDIT_ARCH_X86_64,
    JEQ_K,
    JGE_K,
    JSET_K,
    LD_W_ABS,
    NR,
    RET_K,
    Insn,
    assemble,
    build_program,
)

TRACE = 0x7FF00000
ALLOW = 0x7FFF0000
KILL_PROCESS = 0x80000000
EPERM = 0x00050000 | errno.EPERM
ENOSYS = 0x00050000 | errno.ENOSYS
AUDIT_ARCH_I386 = 0x40000003

AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 1, 2, 10, 16, 17
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_PACKET = 1, 2, 3, 10
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000

BPF_JMP_CLASS = 0x05
BPF_MAXINSNS = 4096


def decode(program: bytes) -> list[tuple[int, int, int, int]]:
    assert len(program) % 8 == 0
    return [struct.unpack_from("=HBBI", program, i) for i in range(0, len(program), 8)]


def seccomp_data(nr: int, *args: int, arch: int = AUDIT_ARCH_X86_64) -> bytes:
    full = [*args, *[0] * (6 - len(args))]
    return struct.pack("=iIQ6Q", nr, arch, 0x401000, *full)


def run(program: bytes, data: bytes) -> int:
    """Classic BPF, only the opcodes the filter uses; fails on anything else."""
    insns = decode(program)
    a = 0
    pc = 0
    steps = 0
    while True:
        assert 0 <= pc < len(insns), "fell off the program"
        steps += 1
        assert steps <= len(insns), "a forward-only program cannot take more steps"
        code, jt, jf, k = insns[pc]
        if code == LD_W_ABS:
            assert k % 4 == 0 and k + 4 <= len(data)
            (a,) = struct.unpack_from("=I", data, k)
            pc += 1
        elif code == JEQ_K:
            pc += 1 + (jt if a == k else jf)
        elif code == JGE_K:
            pc += 1 + (jt if a >= k else jf)
        elif code == JSET_K:
            pc += 1 + (jt if a & k else jf)
        elif code == AND_K:
            a &= k
            pc += 1
        elif code == RET_K:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x} at {pc}")


@pytest.fixture(scope="module")
def program() -> bytes:
    return build_program()


def test_program_shape(program: bytes) -> None:
    assert len(program) % 8 == 0
    insns = decode(program)
    assert 0 < len(insns) <= BPF_MAXINSNS
    assert insns[-1][0] == RET_K
    for pc, (code, jt, jf, _k) in enumerate(insns):
        assert code in (LD_W_ABS, JEQ_K, JGE_K, JSET_K, AND_K, RET_K)
        if code & 0x07 == BPF_JMP_CLASS:
            assert pc + 1 + jt < len(insns), f"jt out of range at {pc}"
            assert pc + 1 + jf < len(insns), f"jf out of range at {pc}"
        else:
            assert jt == jf == 0


def test_program_checks_arch_first(program: bytes) -> None:
    insns = decode(program)
    assert insns[0] == (LD_W_ABS, 0, 0, 4)  # seccomp_data.arch
    assert insns[1][0] == JEQ_K and insns[1][3] == AUDIT_ARCH_X86_64


def test_connect_is_traced(program: bytes) -> None:
    assert run(program, seccomp_data(NR["connect"], 3, 0x7FFE0000, 16)) == TRACE


@pytest.mark.parametrize("name", ["sendto", "recvfrom"])
def test_address_calls_run_natively_without_an_address(program: bytes, name: str) -> None:
    assert run(program, seccomp_data(NR[name], 3, 0x7000, 10, 0, 0, 0)) == ALLOW


@pytest.mark.parametrize("name", ["sendto", "recvfrom"])
@pytest.mark.parametrize("pointer", [0x7FFE1234, 0x7FFF_0000_0000, 0x1, 0xFFFF_FFFF_FFFF_FFFF])
def test_address_calls_with_an_address_are_traced(program: bytes, name: str, pointer: int) -> None:
    # 0x7FFF_0000_0000 has only the high 32 bits set: the low word alone would say "null".
    assert run(program, seccomp_data(NR[name], 3, 0x7000, 10, 0, pointer, 16)) == TRACE


@pytest.mark.parametrize("name", ["sendmsg", "sendmmsg"])
def test_message_sends_are_always_traced(program: bytes, name: str) -> None:
    assert run(program, seccomp_data(NR[name], 3, 0x7000, 1)) == TRACE


@pytest.mark.parametrize(
    "domain, sock_type",
    [
        (AF_INET, SOCK_RAW),
        (AF_INET6, SOCK_RAW | SOCK_NONBLOCK),
        (AF_INET, SOCK_RAW | SOCK_CLOEXEC),
        (AF_INET, SOCK_PACKET),
        (AF_PACKET, SOCK_RAW),
        (AF_PACKET, SOCK_DGRAM),
    ],
)
def test_raw_and_packet_sockets_are_denied(program: bytes, domain: int, sock_type: int) -> None:
    assert run(program, seccomp_data(NR["socket"], domain, sock_type, 0)) == EPERM


@pytest.mark.parametrize(
    "domain, sock_type",
    [
        (AF_INET, SOCK_STREAM),
        (AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC),
        (AF_INET6, SOCK_DGRAM),
        (AF_UNIX, SOCK_STREAM),
        (AF_NETLINK, SOCK_RAW),
    ],
)
def test_ordinary_sockets_are_allowed(program: bytes, domain: int, sock_type: int) -> None:
    assert run(program, seccomp_data(NR["socket"], domain, sock_type, 0)) == ALLOW


@pytest.mark.parametrize("name", ["io_uring_setup", "io_uring_enter", "io_uring_register"])
def test_io_uring_is_unavailable(program: bytes, name: str) -> None:
    assert run(program, seccomp_data(NR[name], 8, 0)) == ENOSYS


@pytest.mark.parametrize("name", ["connect", "read", "socket"])
def test_x32_abi_is_unavailable(program: bytes, name: str) -> None:
    nr = NR.get(name, 0) | 0x40000000
    assert run(program, seccomp_data(nr, 3, 0x7000, 16)) == ENOSYS


@pytest.mark.parametrize("arch", [AUDIT_ARCH_I386, 0, 0xC00000B7])
def test_foreign_arch_kills(program: bytes, arch: int) -> None:
    # int 0x80 from a 64-bit process reports AUDIT_ARCH_I386 with i386 numbers (102 =
    # socketcall), which the x86_64 checks would otherwise misread.
    assert run(program, seccomp_data(102, 3, arch=arch)) == KILL_PROCESS
    assert run(program, seccomp_data(NR["connect"], arch=arch)) == KILL_PROCESS


@pytest.mark.parametrize("nr", [0, 1, 2, 39, 231])  # read, write, open, getpid, exit_group
def test_everything_else_runs_natively(program: bytes, nr: int) -> None:
    assert run(program, seccomp_data(nr, 0, 0x7000, 10)) == ALLOW


def test_assemble_resolves_labels_to_relative_offsets() -> None:
    raw = assemble(
        [
            Insn(LD_W_ABS, 0),
            Insn(JEQ_K, 7, "yes", "no"),
            Insn(RET_K, 1),
            Insn(RET_K, 2, label="yes"),
            Insn(RET_K, 3, label="no"),
        ]
    )
    assert decode(raw)[1] == (JEQ_K, 1, 2, 7)
    assert run(raw, struct.pack("=I", 7)) == 2
    assert run(raw, struct.pack("=I", 8)) == 3


def test_assemble_rejects_a_backward_jump() -> None:
    with pytest.raises(ValueError, match="forward"):
        assemble([Insn(RET_K, 0, label="top"), Insn(JEQ_K, 0, "top", 0)])


def test_assemble_rejects_a_jump_to_itself() -> None:
    with pytest.raises(ValueError, match="forward"):
        assemble([Insn(JEQ_K, 0, 0, "self", label="self"), Insn(RET_K, 0)])


def test_assemble_rejects_a_jump_beyond_255() -> None:
    program = [Insn(JEQ_K, 0, "far", 0), *[Insn(RET_K, 0)] * 256, Insn(RET_K, 1, label="far")]
    with pytest.raises(ValueError, match="within 255"):
        assemble(program)


CLONE_UNTRACED = 0x00800000
CLONE_THREAD_FLAGS = 0x003D0F00  # what glibc passes for pthread_create
SIGCHLD = 17


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (SIGCHLD, ALLOW),  # fork()
        (CLONE_THREAD_FLAGS, ALLOW),
        (CLONE_UNTRACED | SIGCHLD, EPERM),
        (CLONE_UNTRACED | CLONE_THREAD_FLAGS, EPERM),
    ],
)
def test_clone_is_allowed_unless_untraced(program: bytes, flags: int, expected: int) -> None:
    assert run(program, seccomp_data(NR["clone"], flags, 0, 0)) == expected


def test_clone3_answers_enosys_so_glibc_falls_back_to_clone(program: bytes) -> None:
    assert run(program, seccomp_data(NR["clone3"], 0x7FFE0000, 88)) == ENOSYS

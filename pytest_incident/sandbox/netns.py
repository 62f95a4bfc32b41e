# The target's own network namespace: the kernel boundary of the sandbox.
#
# Strategy: a small keeper process (this file, run by path with the standard library only)
# unshares a network namespace -- inside a user namespace of its own when it is not root --
# brings its loopback up, and then makes sockets in it on request: the replay asks over a
# SOCK_SEQPACKET control socket for (family, type), gets back a descriptor by SCM_RIGHTS. A
# socket stays in the namespace it was made in, whoever holds it, so the replay's stubs
# listen *inside* from pytest's own threads, a database tap accepts inside and connects
# outside, and pytest reaches the target inside. The target joins the namespace before it
# execs (`enter`, in the tracer's child). Its only link is `lo`: whatever the tracer fails to
# redirect (a lost race, a descriptor it never saw) can at worst reach another stub, never a
# host outside.
#
# Invariants: the keeper dies with its parent (PR_SET_PDEATHSIG) and when the control socket
# closes; it holds nothing but the namespace. Protocol: the keeper first sends b"ready" or
# b"error <text>"; then, per request b"<family> <type>", one reply b"ok" with the descriptor,
# or b"error <text>".
from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x1, 0x2, 0x4, 0x8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 0x20, 0x1000, 0x4000, 0x40000
READ_ONLY_IN_PROC = ("/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus")
PR_SET_PDEATHSIG = 1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def unshare_network() -> bool:
    """Move this (single-threaded) process into a new network namespace, inside a new user
    namespace when it lacks the privilege for a network namespace alone. True when a user
    namespace was made."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNET) == 0:
        return False
    uid, gid = os.geteuid(), os.getegid()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWNET), "unshare(CLONE_NEWUSER|CLONE_NEWNET)")
    with open("/proc/self/setgroups", "w") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w") as handle:
        handle.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as handle:
        handle.write(f"0 {gid} 1")
    return True


def loopback_up() -> None:
    """Bring `lo` up: 127.0.0.0/8 and ::1 then route to this namespace's loopback only."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sh22x", b"lo", 0)
        flags = struct.unpack("16sh22x", fcntl.ioctl(sock, SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sh22x", b"lo", flags | IFF_UP))


def enter(netns_fd: int) -> None:
    """Join the keeper's network namespace (its user namespace, if any, joined first by
    `enter_user`): the tracer's child, before it starts the target."""
    _check(_libc().setns(netns_fd, CLONE_NEWNET), "setns(network namespace)")


def enter_user(userns_fd: int) -> None:
    """Join the keeper's user namespace (a single-threaded process: the tracer, at start,
    so that it may make the target's PID namespace there)."""
    _check(_libc().setns(userns_fd, CLONE_NEWUSER), "setns(user namespace)")


def unshare_pid() -> None:
    """This process's next child is PID 1 of a new PID namespace: it and everything it
    starts see no other process, and all of them die with it."""
    _check(_libc().unshare(CLONE_NEWPID), "unshare(CLONE_NEWPID)")


def private_proc() -> list[str]:
    """In a mount namespace of this process's own: a /proc of its PID namespace (no other
    process's entries, so not pytest's environment either) whose kernel tunables are
    read-only. What could not be done, as messages (the target still runs)."""
    libc = _libc()
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(b"none", b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    problems: list[str] = []
    locked = MS_NOSUID | MS_NODEV | MS_NOEXEC
    if libc.mount(b"proc", b"/proc", b"proc", locked, None) != 0:
        errno = ctypes.get_errno()
        problems.append(f"/proc not remounted ({os.strerror(errno)}): other processes show")
    for path in READ_ONLY_IN_PROC:
        if not os.path.exists(path):
            continue
        target = path.encode()
        if (
            libc.mount(target, target, None, MS_BIND | MS_REC, None) != 0
            or libc.mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | locked, None) != 0
        ):
            errno = ctypes.get_errno()
            problems.append(f"{path} not made read-only ({os.strerror(errno)})")
    return problems


def keep(control: socket.socket) -> int:
    """The keeper's life: make the namespace, then sockets in it until the control closes."""
    try:
        unshare_network()
        loopback_up()
    except OSError as exc:
        control.send(f"error {exc}".encode())
        return 1
    control.send(b"ready")
    while True:
        try:
            request = control.recv(64)
        except OSError:
            return 0
        if not request:
            return 0
        try:
            family, kind = (int(part) for part in request.split())
            made = socket.socket(family, kind)
        except (OSError, ValueError) as exc:
            control.send(f"error {exc}".encode())
            continue
        try:
            socket.send_fds(control, [b"ok"], [made.fileno()])
        except OSError:
            return 0
        finally:
            made.close()


def main(argv: list[str]) -> int:
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:
        return 1
    control = socket.socket(fileno=int(argv[1]))
    return keep(control)


if __name__ == "__main__":
    sys.exit(main(sys.argv))

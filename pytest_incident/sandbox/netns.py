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


def enter(netns_fd: int, userns_fd: int | None = None) -> None:
    """Join the keeper's namespaces (user first, when it has one). In a single-threaded
    process: the tracer's child, before it execs the target."""
    libc = _libc()
    if userns_fd is not None:
        _check(libc.setns(userns_fd, CLONE_NEWUSER), "setns(user namespace)")
    _check(libc.setns(netns_fd, CLONE_NEWNET), "setns(network namespace)")


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

# sock_diag for unix sockets (NETLINK_SOCK_DIAG, linux/unix_diag.h): the request that dumps
# every unix socket of a network namespace with its bound name and the inode of its socket
# file, and the parser of the answer. Pure codec, no I/O; the tracer sends and reads.
#
# Why: a socket file names an inode on disk, and the bound socket behind it is known only to
# the kernel. The dump maps a socket file's (device, inode) or an abstract name to the bound
# socket's own inode number, the one `/proc/PID/fd` shows as `socket:[N]`, so the tracer can
# tell whether a socket a target connects to is one of its own processes' sockets.
from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
UDIAG_SHOW_NAME, UDIAG_SHOW_VFS = 0x1, 0x2
UNIX_DIAG_NAME, UNIX_DIAG_VFS_ATTR = 0, 1
ALL_STATES = 0xFFFFFFFF

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
UNIX_DIAG_REQ = struct.Struct("=BBHIII8x")  # family, protocol, pad, states, ino, show, cookie
UNIX_DIAG_MSG = struct.Struct("=BBBxI8x")  # family, type, state, ino, cookie
RTATTR = struct.Struct("=HH")  # len, type
VFS = struct.Struct("=II")  # inode, device (the kernel's dev_t)


@dataclass(frozen=True)
class BoundSocket:
    """One unix socket that has a name: its own inode (`socket:[inode]` in /proc/PID/fd) and
    either the socket file's (device, inode) or an abstract name (leading NUL kept)."""

    inode: int
    name: bytes = b""
    file: tuple[int, int] | None = None  # (st_dev as stat reports it, st_ino)


def dump_request(seq: int = 1) -> bytes:
    """A request for every unix socket with its name and socket file."""
    body = UNIX_DIAG_REQ.pack(1, 0, 0, ALL_STATES, 0, UDIAG_SHOW_NAME | UDIAG_SHOW_VFS)  # AF_UNIX
    header = NLMSGHDR.pack(
        NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, seq, 0
    )
    return header + body


def stat_device(kernel_dev: int) -> int:
    """The kernel's internal dev_t (major << 20 | minor), as stat's st_dev encodes it."""
    return os.makedev(kernel_dev >> 20, kernel_dev & 0xFFFFF)


class DumpError(Exception):
    """The kernel answered the dump with an error (its errno), or the answer is malformed."""


def _attributes(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + RTATTR.size <= len(data):
        length, kind = RTATTR.unpack_from(data, offset)
        if length < RTATTR.size or offset + length > len(data):
            raise DumpError("malformed attribute")
        yield kind, data[offset + RTATTR.size : offset + length]
        offset += (length + 3) & ~3


def parse_dump(data: bytes) -> tuple[list[BoundSocket], bool]:
    """The named sockets in one read of the answer, and whether the dump is complete."""
    found: list[BoundSocket] = []
    offset = 0
    while offset + NLMSGHDR.size <= len(data):
        length, kind, _flags, _seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > len(data):
            raise DumpError("malformed netlink message")
        body = data[offset + NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3
        if kind == NLMSG_DONE:
            return found, True
        if kind == NLMSG_ERROR:
            (code,) = struct.unpack_from("=i", body) if len(body) >= 4 else (-1,)
            raise DumpError(f"sock_diag answered errno {-code}")
        if kind != SOCK_DIAG_BY_FAMILY or len(body) < UNIX_DIAG_MSG.size:
            continue
        _family, _type, _state, inode = UNIX_DIAG_MSG.unpack_from(body)
        name, file = b"", None
        for attr, value in _attributes(body[UNIX_DIAG_MSG.size :]):
            if attr == UNIX_DIAG_NAME:
                name = value
            elif attr == UNIX_DIAG_VFS_ATTR and len(value) >= VFS.size:
                vfs_inode, vfs_dev = VFS.unpack_from(value)
                file = (stat_device(vfs_dev), vfs_inode)
        if name or file:
            found.append(BoundSocket(inode, name, file))
    return found, False

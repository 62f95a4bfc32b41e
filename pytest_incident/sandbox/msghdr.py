# `struct msghdr`, `struct mmsghdr` and control messages (x86_64 layout), as the tracer reads
# them from a sendmsg()/sendmmsg() call. Pure codec plus one rule: which control messages
# may ride on an internet socket's send. Anything that can change where a datagram goes
# (IP_RETOPTS source routes, IPv6 routing headers, raw IPV6_2292PKTOPTIONS) is not on the
# list; neither is anything unknown.
from __future__ import annotations

import struct
from dataclasses import dataclass, replace

MSGHDR = struct.Struct("=QI4xQQQQi4x")  # name, namelen, iov, iovlen, control, controllen, flags
MMSGHDR_SIZE = 64  # a msghdr and `unsigned int msg_len`, padded
MSG_LEN_OFFSET = 56
CMSGHDR = struct.Struct("=Qii")  # cmsg_len, cmsg_level, cmsg_type

SOL_SOCKET, IPPROTO_IP, IPPROTO_IPV6, SOL_UDP = 1, 0, 41, 17
ALLOWED_CONTROL = frozenset(
    {
        (IPPROTO_IP, 1),  # IP_TOS
        (IPPROTO_IP, 2),  # IP_TTL
        (IPPROTO_IP, 8),  # IP_PKTINFO: source address and interface, not the destination
        (IPPROTO_IPV6, 50),  # IPV6_PKTINFO
        (IPPROTO_IPV6, 52),  # IPV6_HOPLIMIT
        (IPPROTO_IPV6, 67),  # IPV6_TCLASS
        (SOL_UDP, 103),  # UDP_SEGMENT (GSO)
    }
)


@dataclass(frozen=True)
class MsgHdr:
    name: int
    namelen: int
    iov: int
    iovlen: int
    control: int
    controllen: int
    flags: int

    @classmethod
    def unpack(cls, data: bytes) -> MsgHdr:
        return cls(*MSGHDR.unpack_from(data))

    def pack(self) -> bytes:
        return MSGHDR.pack(
            self.name, self.namelen, self.iov, self.iovlen, self.control, self.controllen,
            self.flags,
        )  # fmt: skip

    @property
    def plain(self) -> bool:
        """Neither an address nor control messages: nothing to decide."""
        return self.name == 0 and self.controllen == 0

    def pointing_at(self, name: int, namelen: int, control: int, controllen: int) -> MsgHdr:
        return replace(self, name=name, namelen=namelen, control=control, controllen=controllen)


def control_messages(data: bytes) -> list[tuple[int, int]]:
    """(level, type) of each control message; ValueError when the buffer is malformed."""
    found = []
    offset = 0
    while offset + CMSGHDR.size <= len(data):
        length, level, kind = CMSGHDR.unpack_from(data, offset)
        if length < CMSGHDR.size or offset + length > len(data):
            raise ValueError("malformed control message")
        found.append((level, kind))
        offset += (length + 7) & ~7
    return found


def refused_control(data: bytes) -> str:
    """Why these control messages may not ride on an internet socket's send ('' if fine)."""
    try:
        messages = control_messages(data)
    except ValueError as exc:
        return str(exc)
    for level, kind in messages:
        if level != SOL_SOCKET and (level, kind) not in ALLOWED_CONTROL:
            return f"control message level {level} type {kind} could change the destination"
    return ""

# Socket addresses as the kernel sees them: parse and pack `struct sockaddr_*` bytes.
#
# Pure codec, no I/O. IPv4-mapped IPv6 addresses are reported as their IPv4 form by
# `SockAddr.ip` so that policy decisions see one spelling of each destination; packing keeps
# the family of the socket the address is written for.
from __future__ import annotations

import ipaddress
import socket
import struct
from dataclasses import dataclass

AF_UNSPEC = socket.AF_UNSPEC
AF_UNIX = socket.AF_UNIX
AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6
AF_NETLINK = 16


@dataclass(frozen=True)
class SockAddr:
    family: int
    host: str = ""  # numeric IP, or the path for AF_UNIX
    port: int = 0

    @property
    def is_inet(self) -> bool:
        return self.family in (AF_INET, AF_INET6)

    @property
    def ip(self) -> str:
        """The numeric address, IPv4-mapped IPv6 folded to IPv4."""
        if self.family == AF_INET6 and self.host:  # host is "" for a truncated sockaddr
            addr = ipaddress.IPv6Address(self.host)
            if addr.ipv4_mapped is not None:
                return str(addr.ipv4_mapped)
        return self.host

    @property
    def is_loopback(self) -> bool:
        return self.is_inet and bool(self.host) and ipaddress.ip_address(self.ip).is_loopback

    def endpoint(self) -> str:
        if self.family == AF_UNIX:
            if self.host.startswith("\0"):  # abstract: shown as ss and lsof show it
                return "@" + self.host[1:]
            return self.host or "(unnamed unix socket)"
        ip = self.ip
        return f"[{ip}]:{self.port}" if ":" in ip else f"{ip}:{self.port}"


def parse_sockaddr(data: bytes) -> SockAddr:
    if len(data) < 2:
        return SockAddr(AF_UNSPEC)
    (family,) = struct.unpack_from("=H", data)
    if family == AF_INET and len(data) >= 8:
        port, packed = struct.unpack_from("!H4s", data, 2)
        return SockAddr(AF_INET, socket.inet_ntop(AF_INET, packed), port)
    if family == AF_INET6 and len(data) >= 24:
        port, _flow, packed = struct.unpack_from("!HI16s", data, 2)
        return SockAddr(AF_INET6, socket.inet_ntop(AF_INET6, packed), port)
    if family == AF_UNIX:
        path = data[2:].split(b"\0", 1)[0] if data[2:3] != b"\0" else data[2:]
        return SockAddr(AF_UNIX, path.decode("utf-8", "replace"))
    return SockAddr(family)


def pack_inet(family: int, ip: str, port: int) -> bytes:
    """A sockaddr of `family` for `ip`; an IPv4 `ip` on an AF_INET6 socket becomes v4-mapped."""
    if family == AF_INET:
        return struct.pack("=H", AF_INET) + struct.pack("!H4s8x", port, socket.inet_aton(ip))
    if family == AF_INET6:
        addr = ipaddress.ip_address(ip)
        if addr.version == 4:
            addr = ipaddress.IPv6Address(f"::ffff:{ip}")
        return struct.pack("=H", AF_INET6) + struct.pack("!HI16sI", port, 0, addr.packed, 0)
    raise ValueError(f"not an internet address family: {family}")

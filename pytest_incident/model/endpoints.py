# Loopback endpoints named in an incident file (`sandbox.allow`, `sandbox.queues`): the text
# as written and the (ip, port) pairs it stands for, resolved once without DNS. Pure.
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Address = tuple[str, int]  # (ip, port)


@dataclass(frozen=True)
class LoopbackEndpoint:
    text: str  # "localhost:5432", as the file wrote it
    addresses: frozenset[Address]  # localhost: both 127.0.0.1 and ::1

    @classmethod
    def parse(cls, text: str) -> LoopbackEndpoint:
        return cls(text, loopback_endpoints(text))


def addresses_of(endpoints: Iterable[LoopbackEndpoint]) -> frozenset[Address]:
    return frozenset(pair for endpoint in endpoints for pair in endpoint.addresses)


def split_endpoint(text: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not (port.isascii() and port.isdigit()):  # not `५४३२` nor `²`
        raise ValueError(f"{text!r} is not host:port")
    return host.strip("[]"), int(port)


def loopback_endpoints(entry: str) -> frozenset[Address]:
    """The (ip, port) pairs a `host:port` entry stands for: `localhost` is 127.0.0.1 and ::1;
    a numeric address must be loopback (v4-mapped ones folded to IPv4). ValueError with what
    is wrong otherwise; a name would need a DNS lookup outside the machine."""
    host, port = split_endpoint(entry)
    if not 0 < port < 65536:
        raise ValueError(f"{entry!r}: port {port} is out of range 1-65535")
    if host.lower() == "localhost":
        return frozenset({("127.0.0.1", port), ("::1", port)})
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"{entry!r}: only localhost or a numeric loopback address (a name would need a "
            "DNS lookup outside the machine)"
        ) from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_loopback:
        raise ValueError(f"{entry!r} is not a loopback address; nothing leaves the machine")
    return frozenset({(str(ip), port)})

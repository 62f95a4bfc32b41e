# Connection policy: what the sandbox does with each outbound address a target uses.
#
# Pure decision logic (h11-style): the tracer hands in (syscall, socket type, address) and
# gets a Decision back; no ptrace, no sockets. Invariants: a Decision never lets an internet
# connection reach a non-loopback address (redirect targets and allowed endpoints are checked
# to be loopback when the policy is built, and again here); local families (unix, netlink)
# pass; everything not explicitly served or allowed is refused and reported.
from __future__ import annotations

import enum
import errno
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .sockaddr import AF_INET, AF_INET6, AF_NETLINK, AF_UNIX, AF_UNSPEC, SockAddr

SOCK_STREAM = socket.SOCK_STREAM
SOCK_DGRAM = socket.SOCK_DGRAM
DNS_PORT = 53


class Action(enum.Enum):
    ALLOW = "allow"
    REDIRECT = "redirect"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    to: tuple[str, int] | None = None  # loopback endpoint for REDIRECT
    errno: int = 0  # for REFUSE
    host: str = ""  # the recorded hostname behind a mapped address, when known
    report: bool = True  # whether the tracer should log this decision as an event


def _loopback(ip: str) -> bool:
    return SockAddr(AF_INET6 if ":" in ip else AF_INET, ip).is_loopback


@dataclass(frozen=True)
class SandboxPolicy:
    """Where recorded hosts go, what passes live, and where DNS is answered."""

    redirects: Mapping[tuple[str, int], tuple[str, int]] = field(default_factory=dict)
    allow: frozenset[tuple[str, int]] = frozenset()
    dns: tuple[str, int] | None = None
    hostnames: Mapping[str, str] = field(default_factory=dict)  # mapped ip -> hostname

    def __post_init__(self) -> None:
        endpoints = [*self.redirects.values(), *self.allow]
        if self.dns:
            endpoints.append(self.dns)
        for ip, port in endpoints:
            if not _loopback(ip):
                raise ValueError(
                    f"{ip}:{port} is not a loopback address; the sandbox only "
                    "serves or passes loopback endpoints"
                )

    def decide(self, sock_type: int, addr: SockAddr, *, datagram_send: bool = False) -> Decision:
        """Decide a connect(), or a sendto()/sendmsg() that names an address."""
        if addr.family in (AF_UNIX, AF_UNSPEC, AF_NETLINK):
            return Decision(Action.ALLOW, "local socket family", report=False)
        if not addr.is_inet:
            return Decision(
                Action.REFUSE,
                f"address family {addr.family} is not allowed",
                errno=errno.EAFNOSUPPORT,
            )
        ip, port = addr.ip, addr.port
        host = self.hostnames.get(ip, "")
        dgram = sock_type == SOCK_DGRAM
        if dgram and port == DNS_PORT and (ip, port) not in self.allow:
            if self.dns is None:
                return Decision(Action.REFUSE, "DNS is not served", errno=errno.ECONNREFUSED)
            return Decision(Action.REDIRECT, "DNS query to the DNS stub", to=self.dns, report=False)
        if (ip, port) in self.redirects:
            return Decision(
                Action.REDIRECT,
                "recorded host served by its stub",
                to=self.redirects[(ip, port)],
                host=host,
            )
        if (ip, port) in self.allow and addr.is_loopback:
            return Decision(Action.ALLOW, "in sandbox.allow")
        if dgram and addr.is_loopback:
            # A loopback datagram socket cannot reach the outside; getaddrinfo's address
            # sorting connects one to every candidate (mapped hosts included).
            return Decision(Action.ALLOW, "loopback datagram", report=False)
        refused = errno.ENETUNREACH if (dgram or datagram_send) else errno.ECONNREFUSED
        if host:
            return Decision(
                Action.REFUSE,
                f"recorded host {host} has no stub for port {port} (HTTP stubs only so far)",
                errno=refused,
                host=host,
            )
        where = (
            "not in sandbox.allow"
            if addr.is_loopback
            else "not a loopback address; nothing leaves the machine"
        )
        return Decision(Action.REFUSE, where, errno=refused)

    def to_json(self) -> str:
        return json.dumps(
            {
                "redirects": [
                    [ip, port, to[0], to[1]] for (ip, port), to in self.redirects.items()
                ],
                "allow": sorted([ip, port] for ip, port in self.allow),
                "dns": list(self.dns) if self.dns else None,
                "hostnames": dict(self.hostnames),
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SandboxPolicy:
        data: dict[str, Any] = json.loads(text)
        return cls(
            redirects={(r[0], int(r[1])): (r[2], int(r[3])) for r in data["redirects"]},
            allow=frozenset((a[0], int(a[1])) for a in data["allow"]),
            dns=(data["dns"][0], int(data["dns"][1])) if data["dns"] else None,
            hostnames=data["hostnames"],
        )

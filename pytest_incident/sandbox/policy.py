# Connection policy: what the sandbox does with each outbound address a target uses.
#
# Pure decision logic (h11-style): the tracer hands in (the socket's domain and type, the
# address, connect or send) and gets a Decision back; no ptrace, no sockets. Invariants: a
# Decision never lets an internet socket reach a non-loopback address (redirect targets and
# allowed endpoints are checked to be loopback when the policy is built, and again here);
# the kernel reads an AF_UNSPEC address on an internet socket's send as IPv4, so such sends
# are refused; netlink and unnamed unix sockets pass; datagrams to loopback ports not
# allowed go to a sink that drops them (local agents such as statsd forward off the machine);
# everything else not served or allowed is refused; all of it is reported. The unspecified
# addresses 0.0.0.0 and :: are decided as the local host they stand for. A named unix
# address is decided by what its socket is (`decide_unix`, told by the tracer, which
# resolves the name): the target's own and those `allow`ed as `unix:/path` pass, syslog goes
# to a sink, a host daemon's (docker.sock, a forwarding proxy) is refused.
from __future__ import annotations

import enum
import errno
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pytest_incident.sandbox.sockaddr import (
    AF_INET,
    AF_INET6,
    AF_NETLINK,
    AF_UNIX,
    AF_UNSPEC,
    SockAddr,
)

SOCK_DGRAM = socket.SOCK_DGRAM
DNS_PORT = 53
UNSPECIFIED_IS_LOCAL = {"0.0.0.0": "127.0.0.1", "::": "::1"}
# Daemons that answer name lookups for glibc's NSS modules (resolve, nscd, mdns) and would
# query real DNS: refused, so lookups fall through to `dns`, which the DNS stub answers.
RESOLVER_SOCKETS = frozenset(
    {
        "/run/systemd/resolve/io.systemd.Resolve",
        "/run/nscd/socket",
        "/var/run/nscd/socket",
        "/run/avahi-daemon/socket",
        "/var/run/avahi-daemon/socket",
    }
)


# Where syslog(3), Python's SysLogHandler and journald clients send log lines: to the sink.
SYSLOG_SOCKETS = frozenset(
    {"/dev/log", "/run/systemd/journal/dev-log", "/run/systemd/journal/socket", "/var/run/syslog"}
)


class UnixPeer(enum.Enum):
    """What the socket behind a named unix address is, as the tracer found it."""

    OWN = "own"  # bound by a process of the target
    ALLOWED = "allowed"  # the socket file named in sandbox.allow (unix:/path)
    SYSLOG = "syslog"  # a syslog socket: the sink stands in for it
    OTHER = "other"  # another program's: a host daemon
    MISSING = "missing"  # no such file, not a socket, or nothing bound to it


class Action(enum.Enum):
    ALLOW = "allow"
    REDIRECT = "redirect"  # to a stub that answers from the recording
    DISCARD = "discard"  # redirected to a sink that drops what it is sent
    REFUSE = "refuse"


@dataclass(frozen=True)
class Socket:
    """What the tracer learnt about the descriptor (SO_DOMAIN, SO_TYPE)."""

    domain: int
    type: int

    @property
    def is_inet(self) -> bool:
        return self.domain in (AF_INET, AF_INET6)


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str = ""
    to: tuple[str, int] | None = None  # loopback endpoint for REDIRECT and DISCARD
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
    sink: tuple[str, int] | None = None  # where datagrams that may not go anywhere are dropped
    # stream connects to these ports, at any address, go to a stub (SMTP: email is accepted
    # and recorded, never delivered); after redirects and allow, before refusal
    port_redirects: Mapping[int, tuple[str, int]] = field(default_factory=dict)
    hostnames: Mapping[str, str] = field(default_factory=dict)  # mapped ip -> hostname
    unix_allow: frozenset[str] = frozenset()  # socket files that pass live (unix:/path)
    unix_sink: str | None = None  # a datagram socket file that drops what syslog sends

    def __post_init__(self) -> None:
        endpoints = [*self.redirects.values(), *self.allow, *self.port_redirects.values()]
        endpoints.extend(e for e in (self.dns, self.sink) if e)
        for ip, port in endpoints:
            if not _loopback(ip):
                raise ValueError(
                    f"{ip}:{port} is not a loopback address; the sandbox only "
                    "serves or passes loopback endpoints"
                )

    def decide(self, sock: Socket, addr: SockAddr, *, send: bool = False) -> Decision:
        """Decide a connect() (send=False), or a sendto()/sendmsg() that names an address."""
        if sock.domain == AF_UNIX and addr.family == AF_UNIX and addr.host in RESOLVER_SOCKETS:
            return Decision(
                Action.REFUSE,
                "a name-service daemon (it would resolve around the DNS stub)",
                errno=errno.ECONNREFUSED,
                report=False,  # glibc asks nscd before every lookup; it falls back to DNS
            )
        if sock.domain == AF_UNIX and addr.family == AF_UNIX and addr.host:
            # it can reach a host daemon: only decide_unix, told what the socket is, decides
            return Decision(
                Action.REFUSE, "a unix socket that was not identified", errno=errno.EACCES
            )
        if sock.domain in (AF_UNIX, AF_NETLINK):
            return Decision(Action.ALLOW, "local socket", report=False)
        if not sock.is_inet:
            return Decision(
                Action.REFUSE,
                f"socket family {sock.domain} is not allowed",
                errno=errno.EAFNOSUPPORT,
            )
        if addr.family == AF_UNSPEC and not send:
            return Decision(Action.ALLOW, "dissolves the association", report=False)
        if not addr.is_inet or not addr.host:
            return Decision(
                Action.REFUSE,
                f"address family {addr.family} on an internet socket",
                errno=errno.EAFNOSUPPORT,
            )
        return self._decide_inet(sock, addr, send)

    def decide_unix(self, path: str, peer: UnixPeer, missing: int = errno.ENOENT) -> Decision:
        """Decide a connect or send to the named unix address `path`, whose socket the
        tracer found to be `peer` (`missing`: the errno the kernel would give)."""
        if path in RESOLVER_SOCKETS:
            return Decision(
                Action.REFUSE,
                "a name-service daemon (it would resolve around the DNS stub)",
                errno=errno.ECONNREFUSED,
                report=False,
            )
        if peer is UnixPeer.OWN:
            return Decision(Action.ALLOW, "the target's own socket", report=False)
        if peer is UnixPeer.ALLOWED:
            return Decision(Action.ALLOW, "in sandbox.allow (live)")
        if peer is UnixPeer.SYSLOG and self.unix_sink is not None:
            return Decision(Action.DISCARD, "syslog: to a sink that drops it")
        if peer is UnixPeer.MISSING:
            return Decision(Action.REFUSE, "no socket there", errno=missing, report=False)
        hint = f"unix:{path}" if path.startswith("/") else "unix: and its absolute path"
        if path.startswith("\0"):  # an abstract name: no file to allow
            return Decision(
                Action.REFUSE, "another program's abstract socket", errno=errno.ECONNREFUSED
            )
        return Decision(
            Action.REFUSE,
            f"another program's socket, not in sandbox.allow ({hint} would let it through)",
            errno=errno.ECONNREFUSED,
        )

    @cached_property
    def own_endpoints(self) -> frozenset[tuple[str, int]]:
        """The sandbox's stubs and sink: reachable directly too (a caller's buffer that was
        rewritten in place, such as a resolver's nameserver address, keeps working)."""
        own = set(self.redirects.values()) | set(self.port_redirects.values())
        own.update(e for e in (self.dns, self.sink) if e)
        return frozenset(own)

    def _decide_inet(self, sock: Socket, addr: SockAddr, send: bool) -> Decision:
        port = addr.port
        # 0.0.0.0 and :: as a destination are the local host (Linux connects them to
        # loopback): decided as 127.0.0.1 and ::1, so an allowed or served port is reached
        ip = UNSPECIFIED_IS_LOCAL.get(addr.ip, addr.ip)
        loopback = addr.is_loopback or ip != addr.ip
        host = self.hostnames.get(ip, "")
        dgram = sock.type == SOCK_DGRAM
        if (ip, port) in self.own_endpoints:
            return Decision(Action.ALLOW, "a sandbox stub", report=False)
        if dgram and port == DNS_PORT and (ip, port) not in self.allow:
            if self.dns is None:
                return Decision(Action.REFUSE, "DNS is not served", errno=errno.ECONNREFUSED)
            return Decision(Action.REDIRECT, "DNS query to the DNS stub", to=self.dns, report=False)
        if not dgram and (ip, port) in self.redirects:  # the stubs speak TCP
            return Decision(
                Action.REDIRECT,
                "recorded host served by its stub",
                to=self.redirects[(ip, port)],
                host=host,
            )
        if (ip, port) in self.allow and loopback:
            return Decision(Action.ALLOW, "in sandbox.allow")
        if not dgram and port in self.port_redirects:
            return Decision(
                Action.REDIRECT,
                "served by the stub for this port",
                to=self.port_redirects[port],
                host=host,
            )
        if dgram and loopback and self.sink is not None:
            # Connecting a datagram socket sends nothing (getaddrinfo's address sorting does
            # it for every candidate: those are not reported); what is sent goes to the sink.
            return Decision(
                Action.DISCARD,
                "not in sandbox.allow: datagrams go to a sink",
                to=self.sink,
                host=host,
                report=not host or send,
            )
        refused = errno.ENETUNREACH if (dgram or send) else errno.ECONNREFUSED
        if host:
            return Decision(
                Action.REFUSE,
                f"recorded host {host} has no recording for port {port}",
                errno=refused,
                host=host,
            )
        where = (
            "not in sandbox.allow"
            if loopback
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
                "sink": list(self.sink) if self.sink else None,
                "port_redirects": [
                    [port, to[0], to[1]] for port, to in self.port_redirects.items()
                ],
                "hostnames": dict(self.hostnames),
                "unix_allow": sorted(self.unix_allow),
                "unix_sink": self.unix_sink,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> SandboxPolicy:
        data: dict[str, Any] = json.loads(text)
        return cls(
            redirects={(r[0], int(r[1])): (r[2], int(r[3])) for r in data["redirects"]},
            allow=frozenset((a[0], int(a[1])) for a in data["allow"]),
            dns=(data["dns"][0], int(data["dns"][1])) if data["dns"] else None,
            sink=(data["sink"][0], int(data["sink"][1])) if data.get("sink") else None,
            port_redirects={
                int(p): (ip, int(port)) for p, ip, port in data.get("port_redirects", [])
            },
            hostnames=data["hostnames"],
            unix_allow=frozenset(data.get("unix_allow", [])),
            unix_sink=data.get("unix_sink"),
        )

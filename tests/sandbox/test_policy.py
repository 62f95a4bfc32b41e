"""SandboxPolicy.decide: what the tracer does with every address a target names.

Addresses outside 127.0.0.0/8 appear here only as values; nothing is contacted.
"""

from __future__ import annotations

import errno
import json
import socket
from dataclasses import replace

import pytest

from pytest_incident.sandbox.policy import Action, Decision, SandboxPolicy, Socket, UnixPeer
from pytest_incident.sandbox.sockaddr import (
    AF_INET,
    AF_INET6,
    AF_NETLINK,
    AF_UNIX,
    AF_UNSPEC,
    SockAddr,
)

STREAM = socket.SOCK_STREAM
DGRAM = socket.SOCK_DGRAM

MAPPED = "127.0.10.1"  # where the DNS stub resolves api.payments.example
STUB = ("127.0.0.1", 40001)
DNS_STUB = ("127.0.0.1", 40053)
DB = ("127.0.0.1", 5432)
SINK = ("127.0.0.1", 40999)
FAR_NAMESERVER = "198.51.100.53"  # documentation range; never contacted: a value only


def policy(
    *, dns: tuple[str, int] | None = DNS_STUB, sink: tuple[str, int] | None = SINK
) -> SandboxPolicy:
    return SandboxPolicy(
        redirects={(MAPPED, 443): STUB},
        allow=frozenset({DB, ("::1", 6379)}),
        dns=dns,
        sink=sink,
        hostnames={MAPPED: "api.payments.example"},
    )


def decide(p: SandboxPolicy, sock_type: int, addr: SockAddr, *, send: bool = False) -> Decision:
    """Decide for an internet socket of the address's own family."""
    domain = AF_INET6 if addr.family == AF_INET6 else AF_INET
    return p.decide(Socket(domain, sock_type), addr, send=send)


def v4(ip: str, port: int) -> SockAddr:
    return SockAddr(AF_INET, ip, port)


def v6(ip: str, port: int) -> SockAddr:
    return SockAddr(AF_INET6, ip, port)


@pytest.mark.parametrize("send", [False, True])
def test_a_named_unix_address_is_never_passed_unidentified(send: bool) -> None:
    addr = SockAddr(AF_UNIX, "/run/redis/redis.sock")
    decision = policy().decide(Socket(AF_UNIX, STREAM), addr, send=send)
    assert decision.action is Action.REFUSE  # only decide_unix, told what it is, lets it by


def test_unix_sockets_by_what_they_are() -> None:
    p = replace(policy(), unix_allow=frozenset({"/run/pg.sock"}), unix_sink="/tmp/sink")
    own = p.decide_unix("/tmp/app.sock", UnixPeer.OWN)
    assert (own.action, own.report) == (Action.ALLOW, False)
    allowed = p.decide_unix("/run/pg.sock", UnixPeer.ALLOWED)
    assert (allowed.action, allowed.report) == (Action.ALLOW, True)  # listed on the item
    assert p.decide_unix("/dev/log", UnixPeer.SYSLOG).action is Action.DISCARD
    daemon = p.decide_unix("/var/run/docker.sock", UnixPeer.OTHER)
    assert (daemon.action, daemon.errno, daemon.report) == (Action.REFUSE, errno.ECONNREFUSED, True)
    assert "unix:/var/run/docker.sock" in daemon.reason  # how to let it through
    missing = p.decide_unix("/nope", UnixPeer.MISSING, errno.ENOTDIR)
    assert (missing.action, missing.errno) == (Action.REFUSE, errno.ENOTDIR)


def test_syslog_without_a_sink_is_refused() -> None:
    assert policy().decide_unix("/dev/log", UnixPeer.SYSLOG).action is Action.REFUSE


def test_resolver_daemons_are_refused_even_when_they_look_allowed() -> None:
    p = replace(policy(), unix_allow=frozenset({"/run/nscd/socket"}))
    assert p.decide_unix("/run/nscd/socket", UnixPeer.ALLOWED).action is Action.REFUSE


def test_unix_settings_survive_json() -> None:
    p = replace(policy(), unix_allow=frozenset({"/run/pg.sock"}), unix_sink="/tmp/s")
    again = SandboxPolicy.from_json(p.to_json())
    assert (again.unix_allow, again.unix_sink) == (p.unix_allow, p.unix_sink)


@pytest.mark.parametrize("send", [False, True])
def test_netlink_and_unnamed_unix_sockets_pass_silently(send: bool) -> None:
    for domain, addr in [(AF_NETLINK, SockAddr(AF_NETLINK)), (AF_UNIX, SockAddr(AF_UNIX, ""))]:
        decision = policy().decide(Socket(domain, DGRAM), addr, send=send)
        assert decision.action is Action.ALLOW
        assert decision.report is False


@pytest.mark.parametrize("domain", [AF_INET, AF_INET6])
def test_unspecified_address_may_dissolve_a_connect(domain: int) -> None:
    decision = policy().decide(Socket(domain, DGRAM), SockAddr(AF_UNSPEC), send=False)
    assert decision.action is Action.ALLOW
    assert decision.report is False


@pytest.mark.parametrize("domain", [AF_INET, AF_INET6])
def test_unspecified_address_on_an_internet_send_is_refused(domain: int) -> None:
    # udp_sendmsg reads an AF_UNSPEC address as IPv4: it must not pass unchecked
    decision = policy().decide(Socket(domain, DGRAM), SockAddr(AF_UNSPEC), send=True)
    assert decision.action is Action.REFUSE
    assert decision.errno == errno.EAFNOSUPPORT


def test_other_address_families_on_internet_sockets_are_refused() -> None:
    decision = policy().decide(Socket(AF_INET, STREAM), SockAddr(17))  # AF_PACKET
    assert decision.action is Action.REFUSE
    assert decision.errno == errno.EAFNOSUPPORT


@pytest.mark.parametrize("domain", [17, 40, 44])  # AF_PACKET, AF_VSOCK, AF_XDP
def test_other_socket_families_are_refused(domain: int) -> None:
    decision = policy().decide(Socket(domain, DGRAM), v4("127.0.0.1", 9))
    assert decision.action is Action.REFUSE
    assert decision.errno == errno.EAFNOSUPPORT


@pytest.mark.parametrize("send", [False, True])
def test_dns_datagram_to_a_far_nameserver_goes_to_the_stub(send: bool) -> None:
    decision = decide(policy(), DGRAM, v4(FAR_NAMESERVER, 53), send=send)
    assert decision.action is Action.REDIRECT
    assert decision.to == DNS_STUB
    assert decision.report is False


def test_dns_datagram_to_a_v6_nameserver_goes_to_the_stub() -> None:
    decision = decide(policy(), DGRAM, v6("2001:db8::53", 53))
    assert decision.action is Action.REDIRECT
    assert decision.to == DNS_STUB


def test_dns_without_a_stub_is_refused() -> None:
    decision = decide(policy(dns=None), DGRAM, v4(FAR_NAMESERVER, 53), send=True)
    assert decision.action is Action.REFUSE
    assert decision.errno == errno.ECONNREFUSED
    assert "DNS" in decision.reason
    assert decision.to is None


def test_dns_over_tcp_to_a_far_nameserver_is_refused() -> None:
    decision = decide(policy(), STREAM, v4(FAR_NAMESERVER, 53))
    assert decision.action is Action.REFUSE
    assert decision.to is None


def test_mapped_recorded_host_is_redirected_to_its_stub() -> None:
    decision = decide(policy(), STREAM, v4(MAPPED, 443))
    assert decision.action is Action.REDIRECT
    assert decision.to == STUB
    assert decision.host == "api.payments.example"
    assert decision.report is True


def test_v4_mapped_v6_spelling_of_a_mapped_host_is_redirected() -> None:
    decision = decide(policy(), STREAM, v6(f"::ffff:{MAPPED}", 443))
    assert decision.action is Action.REDIRECT
    assert decision.to == STUB


@pytest.mark.parametrize(
    "sock_type, send, expected_errno",
    [
        (STREAM, False, errno.ECONNREFUSED),
        (STREAM, True, errno.ENETUNREACH),  # sendto(MSG_FASTOPEN)
    ],
)
def test_mapped_host_on_an_unrecorded_port_is_refused_naming_the_host(
    sock_type: int, send: bool, expected_errno: int
) -> None:
    decision = decide(policy(), sock_type, v4(MAPPED, 8080), send=send)
    assert decision.action is Action.REFUSE
    assert decision.errno == expected_errno
    assert decision.host == "api.payments.example"
    assert "api.payments.example" in decision.reason
    assert "8080" in decision.reason


def test_allowed_loopback_endpoint_passes() -> None:
    decision = decide(policy(), STREAM, v4(*DB))
    assert decision == Decision(Action.ALLOW, "in sandbox.allow")


def test_allowed_v6_loopback_endpoint_passes() -> None:
    assert decide(policy(), STREAM, v6("::1", 6379)).action is Action.ALLOW


def test_v4_mapped_loopback_counts_as_the_v4_allow_entry() -> None:
    decision = decide(policy(), STREAM, v6("::ffff:127.0.0.1", 5432))
    assert decision.action is Action.ALLOW


def test_allow_entry_matches_port_exactly() -> None:
    decision = decide(policy(), STREAM, v4("127.0.0.1", 5433))
    assert decision.action is Action.REFUSE
    assert decision.errno == errno.ECONNREFUSED
    assert decision.reason == "not in sandbox.allow"


@pytest.mark.parametrize(
    "addr", [v4("127.0.0.1", 6000), v4("127.9.9.9", 80), v6("::1", 80), v6("::ffff:127.0.0.1", 1)]
)
def test_loopback_stream_not_allowed_is_refused(addr: SockAddr) -> None:
    decision = decide(policy(), STREAM, addr)
    assert decision.action is Action.REFUSE
    assert decision.errno == errno.ECONNREFUSED
    assert "not in sandbox.allow" in decision.reason
    assert decision.report is True


@pytest.mark.parametrize(
    "addr",
    [
        v4("203.0.113.10", 443),
        v4("198.51.100.5", 5432),
        v6("2001:db8::1", 443),
        v6("::ffff:203.0.113.10", 443),
    ],
)
def test_non_loopback_stream_is_refused(addr: SockAddr) -> None:
    decision = decide(policy(), STREAM, addr)
    assert decision.action is Action.REFUSE
    assert decision.errno == errno.ECONNREFUSED
    assert "nothing leaves the machine" in decision.reason
    assert decision.to is None


def test_non_loopback_tcp_fast_open_send_is_refused() -> None:
    decision = decide(policy(), STREAM, v4("203.0.113.10", 443), send=True)
    assert decision.action is Action.REFUSE


@pytest.mark.parametrize("send", [False, True])
@pytest.mark.parametrize("addr", [v4("127.0.0.1", 8125), v6("::1", 6831)])
def test_loopback_datagram_not_allowed_goes_to_the_sink(addr: SockAddr, send: bool) -> None:
    # a local agent (statsd, a tracing agent) would forward it off the machine
    decision = decide(policy(), DGRAM, addr, send=send)
    assert decision.action is Action.DISCARD
    assert decision.to == SINK
    assert decision.report is True


def test_address_sorting_probe_of_a_mapped_host_is_not_reported() -> None:
    decision = decide(policy(), DGRAM, v4(MAPPED, 80))
    assert decision.action is Action.DISCARD
    assert decision.report is False
    assert decision_when_sent(v4(MAPPED, 80)).report is True


def decision_when_sent(addr: SockAddr) -> Decision:
    return decide(policy(), DGRAM, addr, send=True)


def test_loopback_datagram_without_a_sink_is_refused() -> None:
    decision = decide(policy(sink=None), DGRAM, v4("127.0.0.1", 8125), send=True)
    assert decision.action is Action.REFUSE
    assert decision.errno == errno.ENETUNREACH


@pytest.mark.parametrize("send", [False, True])
@pytest.mark.parametrize("addr", [v4("203.0.113.10", 9999), v6("2001:db8::1", 123)])
def test_non_loopback_datagram_is_refused_unreachable(addr: SockAddr, send: bool) -> None:
    decision = decide(policy(), DGRAM, addr, send=send)
    assert decision.action is Action.REFUSE
    assert decision.errno == errno.ENETUNREACH
    assert "nothing leaves the machine" in decision.reason


@pytest.mark.parametrize("family", [AF_INET, AF_INET6])
@pytest.mark.parametrize("sock_type", [STREAM, DGRAM])
def test_truncated_inet_address_is_refused_not_crashing(family: int, sock_type: int) -> None:
    decision = decide(policy(), sock_type, SockAddr(family), send=True)
    assert decision.action is Action.REFUSE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"redirects": {(MAPPED, 443): ("203.0.113.1", 443)}},
        {"redirects": {(MAPPED, 443): ("::ffff:203.0.113.1", 443)}},
        {"allow": frozenset({("198.51.100.5", 5432)})},
        {"allow": frozenset({("2001:db8::1", 5432)})},
        {"dns": (FAR_NAMESERVER, 53)},
        {"sink": (FAR_NAMESERVER, 9)},
    ],
)
def test_non_loopback_endpoints_are_rejected_at_construction(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="not a loopback address"):
        SandboxPolicy(**kwargs)  # type: ignore[arg-type]


def test_loopback_endpoints_are_accepted_at_construction() -> None:
    SandboxPolicy(
        redirects={(MAPPED, 25): ("127.0.0.1", 2525)},
        allow=frozenset({("::1", 1), ("::ffff:127.0.0.1", 2)}),
        dns=("127.0.0.53", 53),
    )


def test_json_round_trip() -> None:
    original = policy()
    text = original.to_json()
    json.loads(text)  # plain JSON for the tracer process
    restored = SandboxPolicy.from_json(text)
    assert restored == original
    assert restored.redirects == {(MAPPED, 443): STUB}
    assert restored.allow == frozenset({DB, ("::1", 6379)})
    assert restored.dns == DNS_STUB
    assert restored.sink == SINK
    assert restored.hostnames == {MAPPED: "api.payments.example"}
    # and it still decides the same way
    assert decide(restored, STREAM, v4(MAPPED, 443)) == decide(original, STREAM, v4(MAPPED, 443))


def test_json_round_trip_without_dns() -> None:
    restored = SandboxPolicy.from_json(SandboxPolicy().to_json())
    assert restored == SandboxPolicy()
    assert restored.dns is None


@pytest.mark.parametrize("sock_type", [STREAM, DGRAM])
@pytest.mark.parametrize("endpoint", [STUB, DNS_STUB, SINK])
def test_the_sandbox_own_endpoints_are_reachable_directly(
    sock_type: int, endpoint: tuple[str, int]
) -> None:
    decision = decide(policy(), sock_type, v4(*endpoint), send=sock_type == DGRAM)
    assert decision.action is Action.ALLOW
    assert decision.report is False


@pytest.mark.parametrize("path", ["/run/nscd/socket", "/run/systemd/resolve/io.systemd.Resolve"])
def test_name_service_daemons_are_refused_so_lookups_use_the_dns_stub(path: str) -> None:
    decision = policy().decide(Socket(AF_UNIX, STREAM), SockAddr(AF_UNIX, path))
    assert decision.action is Action.REFUSE
    assert decision.errno == errno.ECONNREFUSED


def test_unix_address_on_an_internet_socket_is_refused() -> None:
    # what a thread flipping sa_family after the check would otherwise slip through
    decision = policy().decide(Socket(AF_INET, STREAM), SockAddr(AF_UNIX, "/tmp/x"))
    assert decision.action is Action.REFUSE
    assert decision.errno == errno.EAFNOSUPPORT


SMTP_STUB = ("127.0.0.1", 40025)


@pytest.mark.parametrize("addr", [v4("127.0.0.1", 587), v4("203.0.113.25", 25), v6("::1", 465)])
def test_smtp_ports_go_to_the_smtp_stub_from_any_address(addr: SockAddr) -> None:
    p = SandboxPolicy(port_redirects={587: SMTP_STUB, 25: SMTP_STUB, 465: SMTP_STUB})
    decision = decide(p, STREAM, addr)
    assert decision.action is Action.REDIRECT
    assert decision.to == SMTP_STUB


def test_allow_wins_over_a_port_redirect() -> None:
    p = SandboxPolicy(allow=frozenset({("127.0.0.1", 25)}), port_redirects={25: SMTP_STUB})
    assert decide(p, STREAM, v4("127.0.0.1", 25)).action is Action.ALLOW


def test_port_redirects_round_trip_and_must_be_loopback() -> None:
    p = SandboxPolicy(port_redirects={587: SMTP_STUB})
    assert SandboxPolicy.from_json(p.to_json()) == p
    with pytest.raises(ValueError, match="not a loopback address"):
        SandboxPolicy(port_redirects={587: (FAR_NAMESERVER, 25)})


@pytest.mark.parametrize(
    ("family", "unspecified"),
    [(AF_INET, "0.0.0.0"), (AF_INET6, "::"), (AF_INET6, "::ffff:0.0.0.0")],
)
def test_the_unspecified_address_is_the_local_host(family: int, unspecified: str) -> None:
    """Linux connects 0.0.0.0 and :: to loopback: an allowed port there is allowed, a port
    served by a stub is served, and anything else is refused as on 127.0.0.1."""
    p = SandboxPolicy(
        redirects={("127.0.0.1", 6000): STUB, ("::1", 6000): STUB},
        allow=frozenset({DB, ("::1", 5432)}),
    )
    allowed = decide(p, STREAM, SockAddr(family, unspecified, 5432))
    assert allowed.action is Action.ALLOW
    assert allowed.reason == "in sandbox.allow"
    served = decide(p, STREAM, SockAddr(family, unspecified, 6000))
    assert (served.action, served.to) == (Action.REDIRECT, STUB)
    other = decide(p, STREAM, SockAddr(family, unspecified, 5433))
    assert (other.action, other.reason) == (Action.REFUSE, "not in sandbox.allow")

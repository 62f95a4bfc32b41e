"""Socket address codec: kernel `struct sockaddr_*` bytes in and out, no sockets opened."""

from __future__ import annotations

import socket
import struct

import pytest

from pytest_incident.model.endpoints import split_endpoint
from pytest_incident.sandbox.sockaddr import (
    AF_INET,
    AF_INET6,
    AF_NETLINK,
    AF_UNIX,
    AF_UNSPEC,
    SockAddr,
    pack_inet,
    parse_sockaddr,
)


def test_af_inet_round_trip() -> None:
    raw = pack_inet(AF_INET, "192.0.2.7", 8443)
    assert len(raw) == 16  # sizeof(struct sockaddr_in)
    assert struct.unpack_from("=H", raw)[0] == AF_INET
    assert raw[2:4] == (8443).to_bytes(2, "big")  # port in network order
    assert raw[4:8] == bytes([192, 0, 2, 7])
    addr = parse_sockaddr(raw)
    assert addr == SockAddr(AF_INET, "192.0.2.7", 8443)
    assert addr.is_inet
    assert not addr.is_loopback
    assert addr.endpoint() == "192.0.2.7:8443"


def test_af_inet_loopback_anywhere_in_127_slash_8() -> None:
    assert parse_sockaddr(pack_inet(AF_INET, "127.0.0.1", 80)).is_loopback
    assert parse_sockaddr(pack_inet(AF_INET, "127.45.3.9", 80)).is_loopback
    assert not parse_sockaddr(pack_inet(AF_INET, "192.0.2.1", 80)).is_loopback


def test_af_inet6_round_trip() -> None:
    raw = pack_inet(AF_INET6, "2001:db8::15", 5432)
    assert len(raw) == 28  # sizeof(struct sockaddr_in6)
    addr = parse_sockaddr(raw)
    assert addr == SockAddr(AF_INET6, "2001:db8::15", 5432)
    assert addr.ip == "2001:db8::15"
    assert not addr.is_loopback
    assert addr.endpoint() == "[2001:db8::15]:5432"


def test_af_inet6_loopback() -> None:
    addr = parse_sockaddr(pack_inet(AF_INET6, "::1", 53))
    assert addr.is_loopback
    assert addr.endpoint() == "[::1]:53"


def test_ipv4_on_an_inet6_socket_is_packed_v4_mapped() -> None:
    raw = pack_inet(AF_INET6, "127.0.0.1", 9000)
    assert struct.unpack_from("=H", raw)[0] == AF_INET6  # keeps the socket's family
    assert raw[8:24] == socket.inet_pton(AF_INET6, "::ffff:127.0.0.1")
    addr = parse_sockaddr(raw)
    assert addr.family == AF_INET6
    assert addr.ip == "127.0.0.1"  # folded to one spelling
    assert addr.is_loopback
    assert addr.endpoint() == "127.0.0.1:9000"


def test_v4_mapped_non_loopback_folds_and_is_not_loopback() -> None:
    addr = SockAddr(AF_INET6, "::ffff:203.0.113.9", 443)
    assert addr.ip == "203.0.113.9"
    assert not addr.is_loopback
    assert addr.endpoint() == "203.0.113.9:443"


def test_af_unix_path() -> None:
    raw = struct.pack("=H", AF_UNIX) + b"/run/postgresql/.s.PGSQL.5432\0garbage"
    addr = parse_sockaddr(raw)
    assert addr.family == AF_UNIX
    assert addr.host == "/run/postgresql/.s.PGSQL.5432"
    assert not addr.is_inet
    assert not addr.is_loopback


def test_af_unix_abstract_keeps_leading_nul() -> None:
    addr = parse_sockaddr(struct.pack("=H", AF_UNIX) + b"\0abstract")
    assert addr.family == AF_UNIX
    assert addr.host == "\0abstract"


@pytest.mark.parametrize("raw", [b"", b"\x02"])
def test_shorter_than_a_family_is_unspec(raw: bytes) -> None:
    assert parse_sockaddr(raw) == SockAddr(AF_UNSPEC)


@pytest.mark.parametrize(
    "raw, family",
    [
        (struct.pack("=H", AF_INET) + b"\x00\x50", AF_INET),  # no room for the address
        (struct.pack("=H", AF_INET6) + bytes(10), AF_INET6),  # < 24 bytes
    ],
)
def test_truncated_inet_address_has_no_host_and_does_not_raise(raw: bytes, family: int) -> None:
    addr = parse_sockaddr(raw)
    assert addr == SockAddr(family)
    assert addr.is_inet
    # The tracer asks these of every address it sees; they must not blow up.
    assert addr.ip == ""
    assert not addr.is_loopback
    assert addr.endpoint() == ":0"


def test_unknown_family_is_kept_without_address() -> None:
    addr = parse_sockaddr(struct.pack("=H", AF_NETLINK) + bytes(10))
    assert addr == SockAddr(AF_NETLINK)
    assert not addr.is_inet
    assert not addr.is_loopback


def test_garbage_family() -> None:
    addr = parse_sockaddr(b"\xff\xff" + b"\x01" * 30)
    assert addr.family == 0xFFFF
    assert addr.host == ""
    assert not addr.is_inet


def test_pack_rejects_non_inet_family() -> None:
    with pytest.raises(ValueError, match="not an internet address family"):
        pack_inet(AF_UNIX, "127.0.0.1", 1)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("127.0.0.1:5432", ("127.0.0.1", 5432)),
        ("localhost:6379", ("localhost", 6379)),
        ("[::1]:5432", ("::1", 5432)),
        ("[2001:db8::1]:80", ("2001:db8::1", 80)),
    ],
)
def test_split_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert split_endpoint(text) == expected


@pytest.mark.parametrize("text", ["localhost", "127.0.0.1:", "host:http", "[::1]:-1", ""])
def test_split_endpoint_errors(text: str) -> None:
    with pytest.raises(ValueError, match="is not host:port"):
        split_endpoint(text)

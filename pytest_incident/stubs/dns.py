# DNS stub: recorded hostnames resolve to their loopback addresses; other names resolve to
# addresses of their own in 127.78.0.0/16, which the sandbox serves only on stub ports
# (SMTP) and otherwise refuses, so a new host shows up by name as a blocked connect.
#
# `answer` is pure (query bytes + a lookup function -> reply bytes + what was asked) and uses
# dnslib for the wire format; `DnsStub` is a thin UDP adapter on 127.0.0.1 with one thread.
# A queries get the address; AAAA and other types get an empty NOERROR (clients fall back to
# IPv4); a name the lookup refuses gets NXDOMAIN.
from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

TTL = 5
UNRECORDED_NET = ipaddress.IPv4Address("127.78.0.0")


@dataclass(frozen=True)
class DnsLookup:
    name: str
    qtype: str
    known: bool


def answer(
    query: bytes, lookup: Callable[[str], tuple[str, bool] | None]
) -> tuple[bytes, DnsLookup | None]:
    """The reply to one DNS query, and what it asked for (None if unparseable). `lookup`
    maps a name to (address, recorded?) or None for NXDOMAIN."""
    try:
        request = DNSRecord.parse(query)
    except Exception:
        return b"", None
    reply = request.reply()
    if not request.questions:
        reply.header.rcode = RCODE.FORMERR
        return reply.pack(), None
    question = request.q
    name = str(question.qname).rstrip(".").lower()
    qtype = QTYPE.get(question.qtype, str(question.qtype))
    found = lookup(name)
    if found is None:
        reply.header.rcode = RCODE.NXDOMAIN
    elif qtype in ("A", "ANY"):
        reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(found[0]), ttl=TTL))
    return reply.pack(), DnsLookup(name, str(qtype), found is not None and found[1])


class DnsStub:
    """Serves `table` (hostname -> IPv4) over UDP on 127.0.0.1 until closed; other names get
    addresses of their own from 127.78.0.0/16 (`unrecorded`), or NXDOMAIN when
    `resolve_unrecorded` is off."""

    def __init__(self, table: Mapping[str, str], resolve_unrecorded: bool = True) -> None:
        self.table = {name.lower(): ip for name, ip in table.items()}
        self.resolve_unrecorded = resolve_unrecorded
        self.unrecorded: dict[str, str] = {}
        self.lookups: list[DnsLookup] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self.address: tuple[str, int] = self._sock.getsockname()
        self._thread = threading.Thread(target=self._serve, name="incident-dns", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                query, peer = self._sock.recvfrom(4096)
            except OSError:
                return
            reply, lookup = answer(query, self._lookup)
            if lookup is not None:
                with self._lock:
                    self.lookups.append(lookup)
            if reply:
                try:
                    self._sock.sendto(reply, peer)
                except OSError:
                    return

    def _lookup(self, name: str) -> tuple[str, bool] | None:
        if name in self.table:
            return self.table[name], True
        if not self.resolve_unrecorded or "." not in name:
            return None
        with self._lock:
            ip = self.unrecorded.get(name)
            if ip is None:
                ip = self.unrecorded[name] = str(UNRECORDED_NET + 1 + len(self.unrecorded))
        return ip, False

    def name_of(self, ip: str) -> str:
        """The unrecorded name an address was handed out for ('' if none)."""
        with self._lock:
            return next((n for n, a in self.unrecorded.items() if a == ip), "")

    def take_lookups(self) -> list[DnsLookup]:
        with self._lock:
            taken, self.lookups = self.lookups, []
        return taken

    def close(self) -> None:
        # shutdown() wakes the thread blocked in recvfrom; close() alone may not.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._thread.join(timeout=2)

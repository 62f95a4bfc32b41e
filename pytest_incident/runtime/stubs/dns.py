# DNS stub: recorded hostnames resolve to their loopback addresses; other names resolve to
# addresses of their own in 127.78.0.0/16, which the sandbox serves only on stub ports
# (SMTP) and otherwise refuses, so a new host shows up by name as a blocked connect.
#
# `answer` (pytest_incident.protocols.dns, re-exported here) is pure (query bytes + a lookup
# function -> reply bytes + what was asked) and uses dnslib for the wire format; `DnsStub` is
# a thin UDP adapter on 127.0.0.1 with one thread (runtime.servers.DatagramServer). A queries
# get the address; AAAA and other types get an empty NOERROR (clients fall back to IPv4); a
# name the lookup refuses gets NXDOMAIN.
from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Mapping

from pytest_incident.protocols.dns import TTL, DnsLookup, answer
from pytest_incident.runtime.servers import DatagramServer, SocketMaker

__all__ = ["TTL", "UNRECORDED_NET", "DnsLookup", "DnsStub", "answer"]

UNRECORDED_NET = ipaddress.IPv4Address("127.78.0.0")


class DnsStub(DatagramServer):
    """Serves `table` (hostname -> IPv4) over UDP on 127.0.0.1 until closed; other names get
    addresses of their own from 127.78.0.0/16 (`unrecorded`), or NXDOMAIN when
    `resolve_unrecorded` is off."""

    max_datagram = 4096

    def __init__(
        self,
        table: Mapping[str, str],
        resolve_unrecorded: bool = True,
        *,
        sockets: SocketMaker = socket.socket,
    ) -> None:
        self.table = {name.lower(): ip for name, ip in table.items()}
        self.resolve_unrecorded = resolve_unrecorded
        self.unrecorded: dict[str, str] = {}
        self.lookups: list[DnsLookup] = []
        self._lock = threading.Lock()
        super().__init__("incident-dns", sockets=sockets)

    def handle(self, data: bytes, peer: tuple[str, int]) -> bytes | None:
        reply, lookup = answer(data, self._lookup)
        if lookup is not None:
            with self._lock:
                self.lookups.append(lookup)
        return reply

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

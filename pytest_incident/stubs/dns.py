# DNS stub: recorded hostnames resolve to their loopback addresses, nothing else resolves.
#
# `answer` is pure (query bytes -> reply bytes + what was asked) and uses dnslib for the wire
# format; `DnsStub` is a thin UDP adapter on 127.0.0.1 with one thread. A names are answered
# from the table; AAAA and other types get an empty NOERROR for known names (so clients fall
# back to IPv4) and NXDOMAIN for unknown ones, which are remembered as lookups of hosts the
# recording does not know.
from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

TTL = 5


@dataclass(frozen=True)
class DnsLookup:
    name: str
    qtype: str
    known: bool


def answer(query: bytes, table: Mapping[str, str]) -> tuple[bytes, DnsLookup | None]:
    """The reply to one DNS query, and what it asked for (None if unparseable)."""
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
    ip = table.get(name)
    if ip is None:
        reply.header.rcode = RCODE.NXDOMAIN
    elif qtype in ("A", "ANY"):
        reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(ip), ttl=TTL))
    return reply.pack(), DnsLookup(name, str(qtype), ip is not None)


class DnsStub:
    """Serves `table` (hostname -> IPv4) over UDP on 127.0.0.1 until closed."""

    def __init__(self, table: Mapping[str, str]) -> None:
        self.table = {name.lower(): ip for name, ip in table.items()}
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
            reply, lookup = answer(query, self.table)
            if lookup is not None:
                with self._lock:
                    self.lookups.append(lookup)
            if reply:
                try:
                    self._sock.sendto(reply, peer)
                except OSError:
                    return

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

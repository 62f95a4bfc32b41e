# DNS, sans-I/O: one query's bytes in, the reply's bytes and what was asked out; dnslib does
# the wire format. The stub (runtime/stubs/dns.py) owns the socket and the table.
#
# `answer` is pure (query bytes + a lookup function -> reply bytes + what was asked). A
# queries get the address; AAAA and other types get an empty NOERROR (clients fall back to
# IPv4); a name the lookup refuses gets NXDOMAIN; a query without a question gets FORMERR;
# bytes that are not a DNS message get no reply at all.
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from dnslib import QTYPE, RCODE, RR, A, DNSRecord

TTL = 5


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

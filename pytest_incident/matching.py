# Matching a live outbound HTTP request to the recorded calls of the same production request.
#
# Tiny pure matchers (vcrpy-style), each comparing one part. A request is served by the FIRST
# recorded call, in recorded order, that is not used yet and agrees on every part in
# `match_on`; repeated identical calls are therefore consumed in order. A miss ranks all
# recorded calls by how many parts differ and names the nearest ones with what differed.
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from .spans import OutboundCall

DEFAULT_MATCH_ON = ("method", "scheme", "host", "port", "path", "query")


@dataclass(frozen=True)
class LiveRequest:
    """An outbound request the target made during replay, as the stub received it."""

    scheme: str
    host: str
    port: int
    method: str
    target: str  # path and query as sent
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path or "/"

    @property
    def query(self) -> str:
        return urlsplit(self.target).query

    @property
    def url(self) -> str:
        default = 443 if self.scheme == "https" else 80
        netloc = self.host if self.port == default else f"{self.host}:{self.port}"
        return f"{self.scheme}://{netloc}{self.target}"


def _method(live: LiveRequest, call: OutboundCall) -> bool:
    return live.method.upper() == call.method


def _scheme(live: LiveRequest, call: OutboundCall) -> bool:
    return live.scheme == call.scheme


def _host(live: LiveRequest, call: OutboundCall) -> bool:
    return live.host.lower() == call.host.lower()


def _port(live: LiveRequest, call: OutboundCall) -> bool:
    return live.port == call.port


def _path(live: LiveRequest, call: OutboundCall) -> bool:
    return live.path == (urlsplit(call.url).path or "/")


def _query(live: LiveRequest, call: OutboundCall) -> bool:
    return sorted(parse_qsl(live.query, keep_blank_values=True)) == sorted(
        parse_qsl(urlsplit(call.url).query, keep_blank_values=True)
    )


MATCHERS: dict[str, Callable[[LiveRequest, OutboundCall], bool]] = {
    "method": _method,
    "scheme": _scheme,
    "host": _host,
    "port": _port,
    "path": _path,
    "query": _query,
}


def differences(live: LiveRequest, call: OutboundCall, match_on: Sequence[str]) -> list[str]:
    return [part for part in match_on if not MATCHERS[part](live, call)]


def find_match(
    live: LiveRequest,
    calls: Sequence[OutboundCall],
    used: Collection[int],
    match_on: Sequence[str] = DEFAULT_MATCH_ON,
) -> OutboundCall | None:
    for call in calls:
        if call.order not in used and not differences(live, call, match_on):
            return call
    return None


@dataclass(frozen=True)
class Candidate:
    call: OutboundCall
    differs: tuple[str, ...]  # parts that differ; empty = identical but already used
    used: bool

    def describe(self) -> str:
        if not self.differs:
            why = "already served earlier in this request" if self.used else "identical"
        else:
            why = "differs in " + ", ".join(self.differs)
        return f"{self.call.describe()}  ({why})"


def nearest(
    live: LiveRequest,
    calls: Sequence[OutboundCall],
    used: Collection[int],
    match_on: Sequence[str] = DEFAULT_MATCH_ON,
    limit: int = 3,
) -> list[Candidate]:
    ranked = sorted(
        (Candidate(c, tuple(differences(live, c, match_on)), c.order in used) for c in calls),
        key=lambda cand: (len(cand.differs), cand.used, cand.call.order),
    )
    return ranked[:limit]

# Matching a live outbound HTTP request to the recorded calls of the same production request.
#
# Tiny pure matchers (vcrpy-style), each comparing one part. Parts: method, scheme, host,
# port, path, query, body (canonical, after normalizers) and `header:<name>` (after header
# normalizers). Among the unused recorded calls that agree on every part in `match_on`, the
# one whose body is nearest the live body serves it: concurrent calls to one URL are told
# apart by content, not by the order they arrive in. Calls with the same body are consumed
# in recorded order (retries: the first attempt's answer first). When recorded calls with
# different bodies are equally near, the choice is ambiguous and reported, never guessed.
# A miss ranks all recorded calls by how many parts differ, then by body similarity, and
# names the nearest ones with what differed, and a diff of the bodies when they differ.
from __future__ import annotations

import difflib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from pytest_incident.core.normalize import canonical_body
from pytest_incident.model.normalizers import HeaderNormalizer, Normalizer
from pytest_incident.model.recorded import OutboundCall
from pytest_incident.model.spec import DEFAULT_MATCH_ON, MATCH_FIELDS


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


assert tuple(MATCHERS) == MATCH_FIELDS  # the parts the spec accepts, all implemented


def _header(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v.strip() for k, v in headers if k.lower() == name]


@dataclass(frozen=True)
class MatchRules:
    """Which parts must agree (`match_on`) and what is normalized in bodies first."""

    parts: tuple[str, ...] = DEFAULT_MATCH_ON
    normalizers: tuple[Normalizer, ...] = ()
    header_normalizers: tuple[HeaderNormalizer, ...] = ()

    def agrees(self, part: str, live: LiveRequest, call: OutboundCall) -> bool:
        if part == "body":
            return self.live_body(live) == self.recorded_body(call)
        if part.startswith("header:"):
            name = part.removeprefix("header:").lower()
            return self.header(live.headers, name) == self.header(call.request_headers, name)
        return MATCHERS[part](live, call)

    def header(self, headers: Sequence[tuple[str, str]], name: str) -> list[str]:
        """The values of header `name`, each after the header normalizers."""
        values = _header(headers, name)
        for normalizer in self.header_normalizers:
            values = [normalizer.normalize_header(name, value) for value in values]
        return values

    def live_body(self, live: LiveRequest) -> str:
        return canonical_body(live.body, self.normalizers)

    def recorded_body(self, call: OutboundCall) -> str:
        return canonical_body(call.request_body, self.normalizers)

    def body_diff(self, live: LiveRequest, call: OutboundCall, limit: int = 12) -> str:
        lines = list(
            difflib.unified_diff(
                self.recorded_body(call).splitlines(),
                self.live_body(live).splitlines(),
                "recorded",
                "now",
                lineterm="",
                n=1,
            )
        )
        shown = lines[:limit]
        if len(lines) > limit:
            shown.append(f"... ({len(lines) - limit} more diff lines)")
        return "\n".join(shown)


def differences(
    live: LiveRequest, call: OutboundCall, match_on: Sequence[str] | MatchRules
) -> list[str]:
    rules = match_on if isinstance(match_on, MatchRules) else MatchRules(tuple(match_on))
    return [part for part in rules.parts if not rules.agrees(part, live, call)]


SIMILARITY_EXACT_LIMIT = 20_000  # longer bodies are compared by difflib's quick_ratio


def similarity(a: str, b: str) -> float:
    """How alike two canonical bodies are, from 0 to 1 (1: equal)."""
    if a == b:
        return 1.0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    if len(a) > SIMILARITY_EXACT_LIMIT or len(b) > SIMILARITY_EXACT_LIMIT:
        return matcher.quick_ratio()
    return matcher.ratio()


@dataclass(frozen=True)
class Choice:
    """Which recorded call serves a live request: `call`, or None with the recorded calls
    that were equally near (`ambiguous`), or None and nothing when none agrees."""

    call: OutboundCall | None
    ambiguous: tuple[OutboundCall, ...] = ()


def choose(
    live: LiveRequest,
    calls: Sequence[OutboundCall],
    used: Collection[int],
    match_on: Sequence[str] | MatchRules = DEFAULT_MATCH_ON,
) -> Choice:
    """The unused agreeing call whose body is nearest the live one (see the header)."""
    rules = match_on if isinstance(match_on, MatchRules) else MatchRules(tuple(match_on))
    agreeing = [c for c in calls if c.order not in used and not differences(live, c, rules)]
    if len(agreeing) <= 1:
        return Choice(agreeing[0] if agreeing else None)
    live_body = rules.live_body(live)
    bodies = {c.order: rules.recorded_body(c) for c in agreeing}
    if len(set(bodies.values())) == 1:  # all alike: recorded order
        return Choice(agreeing[0])
    scores = {c.order: similarity(live_body, bodies[c.order]) for c in agreeing}
    best = max(scores.values())
    nearest_calls = [c for c in agreeing if scores[c.order] == best]
    if len({bodies[c.order] for c in nearest_calls}) > 1:
        return Choice(None, tuple(nearest_calls))
    return Choice(nearest_calls[0])


def find_match(
    live: LiveRequest,
    calls: Sequence[OutboundCall],
    used: Collection[int],
    match_on: Sequence[str] | MatchRules = DEFAULT_MATCH_ON,
) -> OutboundCall | None:
    """The call that serves `live`, or None (no call agrees, or the choice is ambiguous)."""
    return choose(live, calls, used, match_on).call


@dataclass(frozen=True)
class Candidate:
    call: OutboundCall
    differs: tuple[str, ...]  # parts that differ; empty = identical but already used
    used: bool
    diff: str = ""  # body diff (recorded -> now) when the body differs

    def describe(self) -> str:
        if not self.differs:
            why = "already served earlier in this request" if self.used else "identical"
        else:
            why = "differs in " + ", ".join(self.differs)
        text = f"{self.call.describe()}  ({why})"
        if self.diff:
            text += "\n" + "\n".join(f"    {line}" for line in self.diff.splitlines())
        return text


def nearest(
    live: LiveRequest,
    calls: Sequence[OutboundCall],
    used: Collection[int],
    match_on: Sequence[str] | MatchRules = DEFAULT_MATCH_ON,
    limit: int = 3,
) -> list[Candidate]:
    rules = match_on if isinstance(match_on, MatchRules) else MatchRules(tuple(match_on))
    live_body = rules.live_body(live)
    alike = {c.order: similarity(live_body, rules.recorded_body(c)) for c in calls}
    ranked = sorted(
        (Candidate(c, tuple(differences(live, c, rules)), c.order in used) for c in calls),
        key=lambda cand: (len(cand.differs), -alike[cand.call.order], cand.used, cand.call.order),
    )[:limit]
    # the body diff only for the nearest one: it is what the reader compares against
    if ranked and "body" in ranked[0].differs:
        best = ranked[0]
        ranked[0] = Candidate(best.call, best.differs, best.used, rules.body_diff(live, best.call))
    return ranked

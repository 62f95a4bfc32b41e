# Calibration: which parts of an answer are noise. Pure: two answers the same code gave to the
# same recorded request in, the entries that differed out, in the form `expect.response`
# ignores (`header:<name>`, `body:<dotted.path>` with array indices as `*`, or `body` for a
# body that is not JSON) - learned from the code, not guessed from the values (Diffy's idea:
# what differs between two runs of one version cannot tell versions apart).
#
# A status that differs between the two runs is not noise to ignore but a replay that is not
# deterministic: it is reported, never written.
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pytest_incident.core.json_diff import diff_json, generalized
from pytest_incident.core.responses import Answer, parse_json


@dataclass(frozen=True)
class Calibration:
    entries: tuple[str, ...] = ()  # sorted, unique
    warnings: tuple[str, ...] = ()


def noise_between(first: Answer, second: Answer) -> Calibration:
    entries: set[str] = set()
    warnings: list[str] = []
    if first.status != second.status:
        warnings.append(
            f"answered {first.status} then {second.status}: the replay is not deterministic "
            "(a status is never ignored)"
        )
    names = {k.lower() for k, _ in (*first.headers, *second.headers)}
    for name in sorted(names):
        if _values(first.headers, name) != _values(second.headers, name):
            entries.add(f"header:{name}")
    first_json, first_value = parse_json(first.body)
    second_json, second_value = parse_json(second.body)
    if first_json and second_json:
        for change in diff_json(first_value, second_value):
            entries.add(f"body:{generalized(change.path)}" if change.path else "body")
    elif first.body != second.body:
        entries.add("body")
    return Calibration(tuple(sorted(entries)), tuple(warnings))


def _values(headers: Sequence[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name]


@dataclass
class RouteNoise:
    """Entries learned per route over many requests, merged with what a file already held."""

    routes: dict[str, set[str]] = field(default_factory=dict)

    def add(self, route: str, entries: Iterable[str]) -> None:
        self.routes.setdefault(route, set()).update(entries)

    def merged(self, known: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
        """Every route's entries, the known ones kept (noise seen once stays noise)."""
        out: dict[str, set[str]] = {route: set(entries) for route, entries in known.items()}
        for route, entries in self.routes.items():
            out.setdefault(route, set()).update(entries)
        return {route: sorted(out[route]) for route in sorted(out)}

# Calibration: which parts of an answer are noise. Pure: two answers the same code gave to the
# same recorded request in, the entries that differed out, in the form `expect.response`
# ignores (`header:<name>`, `body:<dotted.path>` with array indices as `*`, or `body` for a
# body that is not JSON) - learned from the code, not guessed from the values (Diffy's idea:
# what differs between two runs of one version cannot tell versions apart).
#
# A status that differs between the two runs (or a run without an answer) is not noise but a
# replay that is not deterministic: nothing is learned from that request, and the calibration
# file is not written. What an entry cannot express is reported, not widened into an entry
# that hides more: a field that appears, disappears or changes kind; an array whose length
# varies (`items.*` would hide every element); a key that a dotted path cannot name.
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from pytest_incident.core.json_diff import Change, diff_json, generalized, kind
from pytest_incident.core.responses import Answer, decoded, header_values, parse_json


@dataclass(frozen=True)
class Calibration:
    entries: tuple[str, ...] = ()  # sorted, unique
    warnings: tuple[str, ...] = ()  # differences that cannot be learned as noise
    deterministic: bool = True  # False: the two answers differ in status (or one is missing)


def noise_between(first: Answer, second: Answer) -> Calibration:
    if first.status is None or second.status is None or first.status != second.status:
        return Calibration(
            warnings=(
                f"answered {_status(first)}, then {_status(second)}: the replay is not "
                "deterministic, so nothing is learned from it (a status is never noise)",
            ),
            deterministic=False,
        )
    entries: set[str] = set()
    warnings: list[str] = []
    names = {k.lower() for k, _ in (*first.headers, *second.headers)}
    for name in sorted(names):
        before, after = header_values(first.headers, name), header_values(second.headers, name)
        if bool(before) != bool(after):
            warnings.append(f"header {name} was sent in one run only: not learned")
        elif before != after:
            entries.add(f"header:{name}")
    first_body, second_body = (
        decoded(first.body, first.headers),
        decoded(second.body, second.headers),
    )
    first_json, first_value = parse_json(first_body)
    second_json, second_value = parse_json(second_body)
    if first_json and second_json:
        for change in diff_json(first_value, second_value):
            entry, warning = _entry(change)
            if entry:
                entries.add(entry)
            else:
                warnings.append(warning)
    elif first_body != second_body:
        entries.add("body")
    return Calibration(tuple(sorted(entries)), tuple(dict.fromkeys(warnings)))


def _status(answer: Answer) -> str:
    return "no answer" if answer.status is None else str(answer.status)


def _entry(change: Change) -> tuple[str, str]:
    """The entry that ignores `change`, or ("", why it cannot be learned)."""
    where = change.where
    if not change.path:
        return "", "the body changed kind between the runs: not learned"
    if kind(change.was) != kind(change.now):
        was, now = kind(change.was), kind(change.now)
        if isinstance(change.path[-1], int) and "absent" in (was, now):
            return (
                "",
                f"{generalized(change.path[:-1])}: an array whose length varies is not learned",
            )
        return "", f"{where} was {was}, then {now}: a field is noise only in its value, not learned"
    if any(isinstance(p, str) and ("." in p or p == "*" or not p) for p in change.path):
        return "", f"{where}: a key with '.' or '*' cannot be named in a path, not learned"
    return f"body:{generalized(change.path)}", ""


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

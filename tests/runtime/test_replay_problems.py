"""What the database taps could not follow reaches an item's result, never silence."""

from __future__ import annotations

from pathlib import Path

from pytest_incident.runtime.replay import IncidentReplay
from pytest_incident.spec import load_incident


class Tap:
    """Stands in for a PgTap: its problems so far, oldest first."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def problems(self) -> list[str]:
        return list(self.found)


def test_tap_problems_are_taken_once_in_order(tmp_path: Path) -> None:
    (tmp_path / "e.jsonl").write_text('{"format": "pytest-incident-spans", "version": 1}\n')
    (tmp_path / "i.yaml").write_text(
        "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\nsource: e.jsonl\n"
        "target: {command: 'x {port}'}\nsandbox: {allow: ['127.0.0.1:5432']}\n"
    )
    replay = IncidentReplay(load_incident(tmp_path / "i.yaml", {}), [], tmp_path, tmp_path)
    tap = Tap()
    replay.taps = {("127.0.0.1", 5432): tap}  # type: ignore[dict-item]
    tap.found.append("127.0.0.1:40000: the parser gave up")  # during item 1
    assert replay._take_tap_problems() == ["127.0.0.1:40000: the parser gave up"]
    tap.found.append("127.0.0.1:40002: cannot reach 127.0.0.1:5432")  # between items
    tap.found.append("127.0.0.1:40004: the parser gave up")  # during item 2
    assert replay._take_tap_problems() == [
        "127.0.0.1:40002: cannot reach 127.0.0.1:5432",
        "127.0.0.1:40004: the parser gave up",
    ]
    assert replay._take_tap_problems() == []

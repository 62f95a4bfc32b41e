"""What the database taps could not follow reaches an item's result, never silence."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from pytest_incident.runtime import replay as replay_module
from pytest_incident.runtime.replay import IncidentReplay
from pytest_incident.runtime.stubs.pgtap import PgTap
from pytest_incident.spec import load_incident


class Tap:
    """Stands in for a PgTap: its problems so far, oldest first."""

    address = ("127.0.0.1", 40100)

    def __init__(self) -> None:
        self.found: list[str] = []
        self.connected = 0

    def wait_connected(self, count: int, timeout: float) -> int:
        return self.connected

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


def test_connects_the_sandbox_saw_but_no_tap_took_are_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "e.jsonl").write_text('{"format": "pytest-incident-spans", "version": 1}\n')
    (tmp_path / "i.yaml").write_text(
        "window: 2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z\nsource: e.jsonl\n"
        "target: {command: 'x {port}'}\nsandbox: {allow: ['127.0.0.1:5432']}\n"
    )
    replay = IncidentReplay(load_incident(tmp_path / "i.yaml", {}), [], tmp_path, tmp_path)
    tap = Tap()
    replay.taps = {("127.0.0.1", 5432): tap}  # type: ignore[dict-item]
    replay._tapped_connects["127.0.0.1:40100"] = 2
    tap.connected = 1
    assert replay._take_tap_problems() == [
        "1 connection(s) to 127.0.0.1:5432 never reached the tap within "
        f"{replay_module.TAP_CONNECT_WAIT_S:g}s; their writes are unknown"
    ]
    assert replay._take_tap_problems() == []  # reported once


def test_a_tap_reports_a_refused_upstream_once_the_connection_is_taken() -> None:
    """The client's connect returns before the tap has tried the upstream; after
    wait_connected the problem is there (the race that let an item pass green)."""
    held = socket.socket()  # bound, not listening: connects to it are refused
    held.bind(("127.0.0.1", 0))
    tap = PgTap(held.getsockname(), lambda mutations: None)
    try:
        for _ in range(3):
            # the tap may already have reset it (its upstream refused): the connect counts
            with contextlib.suppress(ConnectionResetError):
                socket.create_connection(tap.address, timeout=2).close()
        assert tap.wait_connected(3, 5.0) == 3
        problems = tap.problems()
        assert len(problems) == 3
        assert all("cannot reach" in p and "refused" in p for p in problems)
        assert tap.wait_connected(4, 0.05) == 3  # a fourth never came: the wait times out
    finally:
        tap.close()
        held.close()


def test_the_target_starts_from_its_own_environment_not_pytests() -> None:
    from pytest_incident.runtime.replay import target_base_env

    host = {
        "PATH": "/usr/bin",
        "HOME": "/home/ci",
        "LC_ALL": "C.UTF-8",
        "AWS_SECRET_ACCESS_KEY": "x",
        "HTTPS_PROXY": "http://proxy.internal:3128",
        "PGPASSWORD": "pw",
    }
    assert target_base_env(host, ()) == {
        "PATH": "/usr/bin",
        "HOME": "/home/ci",
        "LC_ALL": "C.UTF-8",
    }
    passed = target_base_env(host, ("PGPASSWORD", "ABSENT"))
    assert passed["PGPASSWORD"] == "pw"
    assert "ABSENT" not in passed and "AWS_SECRET_ACCESS_KEY" not in passed


def test_target_python_gets_its_venv_as_activating_it_would(tmp_path: Path) -> None:
    from pytest_incident.runtime.replay import interpreter_env

    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    pytests = {"PATH": "/pytest-venv/bin:/usr/bin", "VIRTUAL_ENV": "/pytest-venv", "HOME": "/h"}
    assert interpreter_env(venv / "bin" / "python", pytests) == {
        "PATH": f"{venv}/bin:/pytest-venv/bin:/usr/bin",
        "VIRTUAL_ENV": str(venv),
        "HOME": "/h",
    }
    # an interpreter in no venv: pytest's VIRTUAL_ENV does not describe it
    assert interpreter_env(Path("/usr/bin/python3"), pytests) == {
        "PATH": "/pytest-venv/bin:/usr/bin",
        "HOME": "/h",
    }

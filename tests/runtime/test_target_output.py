"""The target's output is kept as a bounded tail: a flood costs neither memory nor disk, and
what it printed last, right before it died, is in the tail."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pytest_incident.model.errors import TargetError
from pytest_incident.runtime.output import OUTPUT_KEPT, OutputRing
from pytest_incident.runtime.process import Launch, TargetProcess

FLOOD_MB = 64


def run_into(ring: OutputRing, script: str) -> int:
    write_end = ring.pipe("--- start\n")
    try:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=write_end)
    finally:
        os.close(write_end)
    return proc.wait()


def test_a_flood_keeps_only_the_tail() -> None:
    ring = OutputRing()
    script = (
        "import sys\n"
        f"for i in range({FLOOD_MB} * 1024): sys.stdout.write(f'{{i:09d}}' + 'x' * 1014 + '\\n')\n"
        "print('the last line', flush=True)\n"
    )
    assert run_into(ring, script) == 0
    tail = ring.tail(3)
    assert tail.splitlines()[-1] == "the last line"
    assert tail.splitlines()[-2].startswith(f"{FLOOD_MB * 1024 - 1:09d}x")
    assert ring.written > FLOOD_MB * 1024 * 1024
    assert len(ring._kept) <= OUTPUT_KEPT
    ring.close()


def test_the_tail_has_what_was_printed_right_before_the_call() -> None:
    """No waiting for the reader thread: tail() drains the pipe itself."""
    ring = OutputRing()
    for round_ in range(50):
        assert run_into(ring, f"print('round {round_}')") == 0
        assert ring.tail(1) == f"round {round_}"
    ring.close()


def test_a_line_cut_by_the_limit_is_not_shown_as_a_whole_line() -> None:
    ring = OutputRing(limit=16)
    assert run_into(ring, "print('0123456789' * 3); print('end')") == 0
    assert ring.tail() == "end"


def test_readers_racing_the_tail_lose_nothing() -> None:
    ring = OutputRing(limit=1 << 20)
    tails: list[str] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            tails.append(ring.tail(1))

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        assert run_into(ring, "for i in range(20000): print(i)") == 0
    finally:
        stop.set()
        asker.join()
    text = ring.tail(20001)
    assert text.splitlines()[1:] == [str(i) for i in range(20000)]
    ring.close()


@pytest.mark.skipif(sys.platform != "linux", reason="Linux processes")
def test_a_target_that_floods_then_dies_shows_its_last_words(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        f"chunk = 'y' * 1023 + '\\n'\n"
        f"for _ in range({FLOOD_MB} * 1024): sys.stdout.write(chunk)\n"
        "print('fatal: cannot start', flush=True)\n"
        "sys.exit(7)\n"
    )
    launch = Launch((sys.executable, "-c", script), dict(os.environ), tmp_path, 1, 30.0)
    target = TargetProcess(launch, None, tmp_path)
    with pytest.raises(TargetError, match="exited with status 7 before it listened"):
        target.start()
    assert target.output_tail(1) == "fatal: cannot start"
    assert target.output.written > FLOOD_MB * 1024 * 1024
    assert sum(f.stat().st_size for f in tmp_path.iterdir()) == 0  # no log on disk
    target.close()

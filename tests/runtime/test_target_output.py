"""The target's output is kept as a bounded tail: a flood costs neither memory nor disk, and
what it printed last, right before it died, is in the tail."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from pytest_incident.model.errors import TargetError
from pytest_incident.runtime.output import CUT, OUTPUT_KEPT, OutputRing
from pytest_incident.runtime.process import Launch, TargetProcess
from pytest_incident.sandbox.policy import SandboxPolicy

FLOOD_MB = 64


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    assert ring.tail() == f"{CUT}90123456789\nend"


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


def write_into(ring: OutputRing, *chunks: bytes) -> None:
    """`chunks` through a pipe of `ring`'s, each a write of its own."""
    write_end = ring.pipe()
    try:
        for chunk in chunks:
            os.write(write_end, chunk)
    finally:
        os.close(write_end)


def test_last_words_longer_than_the_limit_are_not_lost() -> None:
    """A target that dies printing one huge line (a traceback serialized as one JSON log
    record, say): its end is what is kept, shown as cut, not dropped for being cut."""
    ring = OutputRing(limit=64)
    assert run_into(ring, "print('{\"trace\": \"' + 'x' * 500 + ' FATAL: no database\"}')") == 0
    tail = ring.tail()
    assert tail.startswith(CUT)
    assert tail.endswith('FATAL: no database"}')
    assert len(tail) == len(CUT) + 63  # the kept bytes but the line break


@pytest.mark.parametrize("chunks", [[b"xxxx\n1234567\n"], [b"xxxx\n", b"1234567\n"]])
def test_a_tail_that_begins_at_a_line_break_keeps_its_first_line_whole(
    chunks: list[bytes],
) -> None:
    ring = OutputRing(limit=8)
    write_into(ring, *chunks)
    assert ring.tail() == "1234567"  # exactly the limit, whole: neither dropped nor marked
    write_into(ring, b"8")
    assert ring.tail() == f"{CUT}234567\n8"  # the twin: one byte more, and it is cut


def test_output_that_is_not_utf8_is_shown_replaced() -> None:
    ring = OutputRing(limit=8)
    write_into(ring, b"\xff\xfe binary \x00\n", "caf\u00e9 \u00e9t\u00e9\n".encode())
    # the limit cuts inside the first "é": half a character, replaced, in a cut line
    assert ring.tail() == f"{CUT}\ufffd \u00e9t\u00e9"
    write_into(ring, b"\xc3(\n")
    assert ring.tail(1) == "\ufffd("


def output_readers(before: Iterable[threading.Thread] = ()) -> set[threading.Thread]:
    """The output readers running now that were not running `before`."""
    running = {t for t in threading.enumerate() if t.name == "incident-target-output"}
    return running - set(before)


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def test_close_ends_a_reader_waiting_on_a_pipe_still_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """A daemon may hold the pipe's write end for ever: close() ends its reader all the same,
    and closes the read end (the daemon's next write fails, it is not read into nowhere)."""
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    before = output_readers()
    ring = OutputRing()
    write_end = ring.pipe()  # held here, as by a daemon
    try:
        os.write(write_end, b"daemon: still here\n")
        assert wait_until(lambda: ring.written > 0)  # the reader is at its select again
        (reader,) = output_readers(before)
        ring.close()
        reader.join(10)
        assert not reader.is_alive()
        with pytest.raises(BrokenPipeError):
            os.write(write_end, b"anyone?\n")
    finally:
        os.close(write_end)
    assert ring.tail() == "daemon: still here"  # what it had is kept
    assert errors == []


LISTENER = """
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("up", flush=True)
time.sleep(60)
"""

# a listener that leaves a daemon behind (a new session, stdout still the target's pipe)
LISTENER_WITH_DAEMON = (
    """
import os, time
if os.fork() == 0:
    os.setsid()
    daemon = os.fork()
    if daemon == 0:
        print("daemon: up", flush=True)
        time.sleep(60)
        os._exit(0)
    with open("daemons.txt", "a") as pids:  # before the target goes on
        pids.write(f"{daemon}\\n")
    os._exit(0)
os.wait()
"""
    + LISTENER
)


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(sys.platform != "linux", reason="Linux processes")
@pytest.mark.parametrize("script", [LISTENER, LISTENER_WITH_DAEMON], ids=["plain", "daemon"])
def test_starting_a_sandboxed_target_again_and_again_leaks_no_descriptor(
    tmp_path: Path, script: str
) -> None:
    """Each start makes a pipe and a reader; each stop ends them (the tracer ends every
    process of the target, a daemon too, so the pipe's last writer is gone)."""
    port = free_port()
    launch = Launch((sys.executable, "-c", script, str(port)), dict(os.environ), tmp_path, port)
    before = output_readers()
    target = TargetProcess(launch, SandboxPolicy(), tmp_path)
    target.start()  # the first start opens what stays for good (the events file's directory)
    target.stop()
    assert wait_until(lambda: not output_readers(before))
    descriptors = open_descriptors()
    try:
        for _ in range(8):
            target.start()
            target.stop()
        assert wait_until(lambda: not output_readers(before))
        assert wait_until(lambda: open_descriptors() <= descriptors)
    finally:
        target.close()
    assert "up" in target.output_tail()


@pytest.mark.skipif(sys.platform != "linux", reason="Linux processes")
def test_a_bare_targets_daemon_keeps_its_pipe_only_until_close(tmp_path: Path) -> None:
    """Unsandboxed (benchmarks), nothing ends a daemon that left the target's session: its
    pipe stays open -- until close()."""
    port = free_port()
    launch = Launch(
        (sys.executable, "-c", LISTENER_WITH_DAEMON, str(port)), dict(os.environ), tmp_path, port
    )
    target = TargetProcess(launch, None, tmp_path)
    before = output_readers()
    descriptors = open_descriptors()
    try:
        target.start()
        target.stop()
        assert output_readers(before)  # the daemon holds the pipe
        target.close()
        assert wait_until(lambda: not output_readers(before))
        assert open_descriptors() <= descriptors
    finally:
        for pid in (tmp_path / "daemons.txt").read_text().split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)

"""Who listens on the target's port: a readiness probe that connects proves only that
something does; the kernel's socket tables say whose it is."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_incident.runtime.listeners import listening_inodes, port_listeners, process_tree

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's /proc")

HOST_NET = Path("/proc/self/net")

LISTEN = """
import socket, sys, time
s = socket.socket()
if sys.argv[2] == "reuseport":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(60)
"""

# a double fork: the listener is a grandchild whose parent has exited, in a new session
DAEMON = """
import os, socket, sys, time
if os.fork():
    os._exit(0)
os.setsid()
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(60)
"""

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
ROW = "{n}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000   0  0 {inode} 1 0"
TABLE = "\n".join(
    [
        HEADER + "  timeout inode",
        ROW.format(n=0, local="0100007F:1F90", remote="00000000:0000", state="0A", inode=111),
        ROW.format(n=1, local="0100007F:1F90", remote="0100007F:D431", state="01", inode=222),
        ROW.format(n=2, local="00000000:1F91", remote="00000000:0000", state="0A", inode=333),
    ]
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False)
        proc.kill()
        proc.wait()


def start(procs: list[subprocess.Popen[str]], script: str, *args: str) -> subprocess.Popen[str]:
    """`script` in a session of its own (as the runtime starts a target), once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    procs.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "listening"
    return proc


def test_only_listening_rows_of_the_port_count() -> None:
    assert listening_inodes(TABLE, 0x1F90) == {111}  # not the established connection (222)
    assert listening_inodes(TABLE, 0x1F91) == {333}
    assert listening_inodes(TABLE, 80) == set()
    assert listening_inodes("header only\n  0: garbage\n", 80) == set()


def test_the_targets_own_listener_is_owned(started: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    target = start(started, LISTEN, str(port), "plain")
    found = port_listeners(port, target.pid, HOST_NET)
    assert found.owned
    assert found.ours and not found.foreign


def test_an_orphan_that_left_the_tree_and_the_session_is_foreign(
    started: list[subprocess.Popen[str]],
) -> None:
    port = free_port()
    launcher = subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(port)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    started.append(launcher)
    assert launcher.stdout is not None
    assert launcher.stdout.readline().strip() == "listening"
    # the launcher exited and the daemon, in a session of its own, went to init: nothing ties
    # it to what was started (in a sandboxed run the tracer is a subreaper and keeps it)
    found = port_listeners(port, launcher.pid, HOST_NET)
    assert not found.owned
    assert found.foreign


def test_someone_else_on_the_port_is_foreign(started: list[subprocess.Popen[str]]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        target = start(started, "print('listening', flush=True); import time; time.sleep(60)")
        found = port_listeners(port, target.pid, HOST_NET)
        assert not found.owned
        assert found.foreign and not found.ours
        assert "another process (not the target's) listens on 127.0.0.1:" in found.describe()


def test_a_listener_shared_through_reuseport_is_not_the_targets_alone(
    started: list[subprocess.Popen[str]],
) -> None:
    """With SO_REUSEPORT the kernel spreads connections over both listeners: the target
    listening too is not enough."""
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        target = start(started, LISTEN, str(port), "reuseport")
        found = port_listeners(port, target.pid, HOST_NET)
        assert found.ours and found.foreign
        assert not found.owned


def test_the_process_tree_takes_children_and_the_session(
    started: list[subprocess.Popen[str]],
) -> None:
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    started.append(parent)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    tree = process_tree(parent.pid)
    assert {parent.pid, child} <= tree
    assert 1 not in tree
    assert os.getpid() not in tree
